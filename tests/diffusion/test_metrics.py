import math

import pytest
import torch

from varbook.diffusion import energy_distance, frechet_distance, gaussian_fit, mmd, sliced_wasserstein


def test_energy_distance_closed_form_for_shifted_normals():
    # 1-D N(0,1) vs N(d,1): 2E|X-Y| - 2E|X-X'| with X-Y ~ N(-d, 2), X-X' ~ N(0, 2)
    d = 1.0
    e_abs = lambda m, v: math.sqrt(2 * v / math.pi) * math.exp(-(m**2) / (2 * v)) + m * math.erf(m / math.sqrt(2 * v))  # noqa: E731
    exact = 2 * e_abs(d, 2.0) - 2 * e_abs(0.0, 2.0)
    g = torch.Generator().manual_seed(0)
    reps = torch.stack(
        [
            energy_distance(
                torch.randn(400, 1, generator=g, dtype=torch.float64),
                d + torch.randn(400, 1, generator=g, dtype=torch.float64),
            )
            for _ in range(40)
        ]
    )
    assert abs(float(reps.mean()) - exact) < 4 * float(reps.std()) / math.sqrt(len(reps))


def test_same_law_gives_zero_in_expectation():
    g = torch.Generator().manual_seed(1)
    reps = torch.stack(
        [energy_distance(torch.randn(300, 2, generator=g), torch.randn(300, 2, generator=g)) for _ in range(40)]
    )
    assert abs(float(reps.mean())) < 4 * float(reps.std()) / math.sqrt(len(reps))
    reps = torch.stack([mmd(torch.randn(300, 2, generator=g), torch.randn(300, 2, generator=g)) for _ in range(40)])
    assert abs(float(reps.mean())) < 4 * float(reps.std()) / math.sqrt(len(reps))


def test_v_statistic_is_positive_with_a_floor_of_order_one_over_n():
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(400, 2, generator=g, dtype=torch.float64), torch.randn(400, 2, generator=g, dtype=torch.float64)
    v, u = energy_distance(x, y, unbiased=False), energy_distance(x, y)
    # U and V differ only in the normalisation of the within-set sums: S/(n(n-1)) against S/n^2
    gap = (torch.cdist(x, x).sum() / 400**2 / 399 + torch.cdist(y, y).sum() / 400**2 / 399) * 1.0
    torch.testing.assert_close(v - u, gap)
    assert float(v) > 0


def test_frechet_and_sliced_distances_of_a_shift():
    x = torch.randn(500, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    shift = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    torch.testing.assert_close(frechet_distance(x, x + shift), shift.pow(2).sum(), rtol=1e-6, atol=1e-6)
    assert float(frechet_distance(x, x)) == pytest.approx(0.0, abs=1e-8)
    g = torch.Generator().manual_seed(3)
    theta = torch.randn(3, 128, generator=g, dtype=torch.float64)
    expected = (shift @ (theta / theta.norm(dim=0))).abs().mean()
    torch.testing.assert_close(sliced_wasserstein(x, x + shift, 128, torch.Generator().manual_seed(3)), expected)


def test_gaussian_fit_moments():
    x = torch.randn(4000, 2, dtype=torch.float64) @ torch.tensor([[1.0, 0.5], [0.0, 0.3]], dtype=torch.float64) + 3
    y = gaussian_fit(x, 20000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(y.mean(0), x.mean(0), atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(y.T), torch.cov(x.T), atol=0.03, rtol=0)


def test_bad_input():
    with pytest.raises(ValueError, match="same dimension"):
        energy_distance(torch.zeros(5, 2), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="NaN"):
        energy_distance(torch.full((5, 2), float("nan")), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="equal sample sizes"):
        sliced_wasserstein(torch.zeros(5, 2), torch.zeros(6, 2))
    with pytest.raises(ValueError, match="bandwidth"):
        mmd(torch.zeros(5, 2), torch.zeros(5, 2), bandwidth=0)
