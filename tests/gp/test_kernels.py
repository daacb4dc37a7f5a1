"""Tests of varbook.gp.kernels: the ReLU NNGP recursion and the random finite networks."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from varbook.gp.kernels import arccos_step, nngp_relu, nngp_relu_diag, relu_network_outputs

F64 = dict(dtype=torch.float64)


def cho_saul_arccos1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cho and Saul's first-order arc-cosine kernel (1/pi) |x| |y| J_1(theta), written independently."""
    nx, ny = x.norm(dim=1)[:, None], y.norm(dim=1)[None, :]
    cos = (x @ y.T / (nx * ny)).clamp(-1, 1)
    theta = torch.arccos(cos)
    return nx * ny / math.pi * (torch.sin(theta) + (math.pi - theta) * torch.cos(theta))


def test_depth_one_is_the_arc_cosine_kernel():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(7, 3, generator=g, **F64), torch.randn(5, 3, generator=g, **F64)
    # one hidden layer, sigma_w = 1, no bias, readout 1: E[relu(w.x/sqrt d) relu(w.y/sqrt d)] = k_1 / (2 d)
    got = nngp_relu(x, y, depth=1, w_std=1.0, b_std=0.0, last_w_std=1.0)
    torch.testing.assert_close(got, cho_saul_arccos1(x, y) / (2 * 3), rtol=1e-12, atol=1e-14)


def test_arccos_step_against_monte_carlo():
    g = torch.Generator().manual_seed(1)
    k11, k22, k12 = 2.0, 0.5, -0.6
    chol = torch.linalg.cholesky(torch.tensor([[k11, k12], [k12, k22]], **F64))
    uv = torch.randn(400_000, 2, generator=g, **F64) @ chol.T
    prod = torch.relu(uv[:, 0]) * torch.relu(uv[:, 1])
    exact = arccos_step(torch.tensor(k12, **F64), torch.tensor(k11, **F64), torch.tensor(k22, **F64))
    se = prod.std() / len(prod) ** 0.5
    assert abs(prod.mean() - exact) < 4 * se


def test_diagonal_recursion_and_grid_broadcast():
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(2), **F64)
    w, b, last = 1.4, 0.3, 0.7
    k = nngp_relu(x, depth=4, w_std=w, b_std=b, last_w_std=last)
    diag = w**2 * (x * x).sum(1) / 6 + b**2
    for _ in range(3):
        diag = w**2 * diag / 2 + b**2
    torch.testing.assert_close(k.diagonal(), last**2 * diag / 2)
    grid = nngp_relu(x, depth=4, w_std=torch.tensor([1.0, 1.4])[:, None], b_std=torch.tensor([0.0, 0.3]))
    assert grid.shape == (2, 2, 4, 4)
    torch.testing.assert_close(grid[1, 1], k / last**2)


def test_finite_networks_match_explicit_weights():
    """The conditional sampler has the law of networks drawn with explicit weight matrices."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 4, generator=g, **F64)
    n, width = 3000, 16
    fast = relu_network_outputs(x, n, width, depth=2, w_std=1.4, b_std=0.3, generator=g)
    w1 = torch.randn(n, 4, width, generator=g, **F64) * 1.4 / 2
    h = x @ w1 + 0.3 * torch.randn(n, 1, width, generator=g, **F64)
    w2 = torch.randn(n, width, width, generator=g, **F64) * 1.4 / width**0.5
    h = torch.relu(h) @ w2 + 0.3 * torch.randn(n, 1, width, generator=g, **F64)
    w3 = torch.randn(n, width, 1, generator=g, **F64) / width**0.5
    slow = (torch.relu(h) @ w3)[..., 0]
    for j in range(3):  # two-sample KS at each input: the same law (finite width 16 included)
        assert stats.ks_2samp(fast[:, j].numpy(), slow[:, j].numpy()).pvalue > 1e-3


def test_wide_networks_approach_the_kernel():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(6, 3, generator=g, **F64)
    f = relu_network_outputs(x, 4000, 256, depth=3, generator=g)
    k = nngp_relu(x, depth=3)
    err = float((f.T @ f / 4000 - k).norm() / k.norm())
    wrong = float((f.T @ f / 4000 - nngp_relu(x, depth=2)).norm() / k.norm())
    assert err < 0.06 < wrong  # Monte Carlo error about sqrt(2/4000) = 0.022 per entry


def test_scale_mixture_multiplies_outputs():
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(6), **F64)
    s2 = torch.full((10,), 4.0, **F64)
    a = relu_network_outputs(x, 10, 8, generator=g1)
    b = relu_network_outputs(x, 10, 8, scale_sq=s2, generator=g2)
    torch.testing.assert_close(b, 2 * a)


def test_bad_input():
    x = torch.zeros(3, 2, **F64)
    with pytest.raises(ValueError, match="depth"):
        nngp_relu(x, depth=0)
    with pytest.raises(ValueError, match="same d"):
        nngp_relu(x, torch.zeros(3, 4, **F64))
    with pytest.raises(ValueError, match="positive"):
        relu_network_outputs(x, 0, 8)
    with pytest.raises(ValueError, match="scale_sq"):
        relu_network_outputs(x, 4, 8, scale_sq=torch.ones(3, **F64))


def test_nngp_relu_diag_is_the_diagonal_of_the_kernel():
    x = torch.randn(7, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    kw = dict(depth=3, w_std=torch.tensor([1.0, 1.4]), b_std=torch.tensor([0.3, 1.0]), last_w_std=2.0)
    torch.testing.assert_close(nngp_relu_diag(x, **kw), nngp_relu(x, **kw).diagonal(dim1=-2, dim2=-1))


def test_finite_networks_work_on_duplicate_inputs_in_float32():
    # duplicate inputs make every conditional Gram matrix singular; the jitter must stay above the
    # dtype's resolution (a fixed 1e-10 relative jitter and a 1e-300 floor vanish in float32)
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(3)).repeat(5, 1)  # 20 rows, float32
    out = relu_network_outputs(x, 50, 64, generator=torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32 and bool(torch.isfinite(out).all())
    torch.testing.assert_close(out[:, :4], out[:, 4:8], rtol=0.05, atol=0.05)
