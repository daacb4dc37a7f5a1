import pytest
import torch

from varbook.estimators import GradientStats, bonferroni_z, gradient_stats, mean_difference_z


def test_gradient_stats_on_known_samples():
    samples = torch.tensor([[1.0, 0.0], [3.0, 0.0], [1.0, 2.0], [3.0, 2.0]], dtype=torch.float64)
    st = gradient_stats(samples, torch.tensor([2.0, 0.0], dtype=torch.float64))
    assert torch.allclose(st.mean, torch.tensor([2.0, 1.0], dtype=torch.float64))
    assert torch.allclose(st.bias, torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert st.trace_var == pytest.approx(4 / 3 + 4 / 3)
    assert st.mse == pytest.approx((1 + 1 + 5 + 5) / 4)
    assert st.cosine == pytest.approx(2 / 5**0.5)
    assert torch.allclose(st.bias_se, torch.full((2,), (4 / 3 / 4) ** 0.5, dtype=torch.float64))
    assert st.max_abs_z == pytest.approx(1 / (1 / 3) ** 0.5)
    assert set(st.as_row()) >= {"tr Var", "MSE", "SNR"}


def test_bad_shapes():
    with pytest.raises(ValueError):
        gradient_stats(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError):
        gradient_stats(torch.zeros(1, 3), torch.zeros(3))


def test_bonferroni_bound():
    assert bonferroni_z(1, 0.05) == pytest.approx(1.959964, abs=1e-5)
    assert bonferroni_z(10, 0.01) == pytest.approx(3.290527, abs=1e-5)
    with pytest.raises(ValueError):
        bonferroni_z(0)


def test_mean_difference_z_separates_equal_and_shifted_means():
    g = torch.Generator().manual_seed(0)
    exact = torch.zeros(5, dtype=torch.float64)
    x = gradient_stats(torch.randn(4000, 5, generator=g, dtype=torch.float64), exact)
    y = gradient_stats(torch.randn(4000, 5, generator=g, dtype=torch.float64), exact)
    shifted = gradient_stats(0.2 + torch.randn(4000, 5, generator=g, dtype=torch.float64), exact)
    assert mean_difference_z(x, y) < bonferroni_z(5, 0.001)
    assert mean_difference_z(shifted, x) > 5  # 0.2 / sqrt(2 / 4000) is about 6.3
    # by hand on one coordinate: means 1 and 0, standard errors 0.3 and 0.4, so z = 1 / 0.5
    a = GradientStats(2, torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([0.3]), 0.0, 0.0, 1.0, 1.0)
    b = GradientStats(2, torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([0.4]), 0.0, 0.0, 1.0, 1.0)
    assert mean_difference_z(a, b) == pytest.approx(2.0)


def test_linear_trend_is_least_squares_with_its_standard_error():
    from varbook.estimators import linear_trend

    g = torch.Generator().manual_seed(0)
    x = [1.0, 2.0, 3.0, 4.0]
    y = torch.tensor(x, dtype=torch.float64)[:, None] * -0.5 + torch.randn(4, 50, generator=g, dtype=torch.float64)
    t = linear_trend(x, y)
    # the same slope as ordinary least squares on all 200 points
    xs = torch.tensor(x, dtype=torch.float64).repeat_interleave(50)
    design = torch.stack([torch.ones_like(xs), xs], 1)
    coef = torch.linalg.lstsq(design, y.flatten()[:, None]).solution.flatten()
    assert t.slope == pytest.approx(float(coef[1]), abs=1e-12)
    # se from the group variances: sum_k w_k^2 s_k^2 / n with w = (x - 2.5) / 5
    w = (torch.tensor(x, dtype=torch.float64) - 2.5) / 5
    assert t.se == pytest.approx(float((w**2 * y.var(1) / 50).sum().sqrt()), rel=1e-12)
    assert t.z == pytest.approx(t.slope / t.se)


def test_linear_trend_z_is_calibrated_without_a_trend():
    """Under no trend, z is about N(0, 1): |z| > 2.58 in about 1 % of 2000 draws (binomial s.e. 0.22 %)."""
    from varbook.estimators import linear_trend

    g = torch.Generator().manual_seed(1)
    zs = torch.tensor([linear_trend([1, 2, 3, 4], torch.rand(4, 200, generator=g)).z for _ in range(2000)])
    assert abs(float(zs.mean())) < 4 * (1 / 2000) ** 0.5
    assert float((zs.abs() > 2.576).double().mean()) < 0.01 + 4 * 0.0022


def test_linear_trend_floors_the_standard_error_of_an_exact_statistic():
    from varbook.estimators import linear_trend

    flat = torch.ones(3, 5, dtype=torch.float64) + 1e-16 * torch.tensor([0.0, 1.0, 2.0])[:, None]
    t = linear_trend([1, 2, 3], flat)
    assert t.se == 0 and abs(t.z) < 1e-6  # rounding is not a trend
    with pytest.raises(ValueError):
        linear_trend([1, 1], torch.ones(2, 3))
    with pytest.raises(ValueError):
        linear_trend([1, 2, 3], torch.ones(2, 3))
