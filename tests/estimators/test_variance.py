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
