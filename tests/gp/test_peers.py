"""Tests of varbook.gp.peers: GPyTorch's exact GP with our NNGP kernel against varbook.gp.exact."""

from __future__ import annotations

import pytest
import torch

from varbook.gp import exact
from varbook.gp.kernels import nngp_relu

pytest.importorskip("gpytorch")

from varbook.gp import peers  # noqa: E402

F64 = dict(dtype=torch.float64)


def test_gpytorch_matches_our_marginal_likelihood_and_mean():
    g = torch.Generator().manual_seed(0)
    x, xt = torch.randn(15, 3, generator=g, **F64), torch.randn(4, 3, generator=g, **F64)
    y = torch.randn(15, generator=g, **F64)
    kw = dict(depth=3, w_std=1.4, b_std=0.3)
    out = peers.gpytorch_exact_gp(x, y, xt, jitter=0.05, scale_sq=2.0, **kw)
    k = nngp_relu(x, **kw)
    ours = exact.gp_log_marginal(k, y, 0.05, scale_sq=2.0)
    assert out["log_marginal"] == pytest.approx(float(ours), abs=1e-9)
    mean = exact.predict("gp", k, nngp_relu(x, xt, **kw), torch.zeros(4, **F64), y, 0.05).loc
    torch.testing.assert_close(out["mean"], mean)
    # a doubled jitter is a different model: the comparison can see it
    wrong = exact.gp_log_marginal(k, y, 0.1, scale_sq=2.0)
    assert abs(out["log_marginal"] - float(wrong)) > 1e-3


def test_bad_input():
    x = torch.randn(5, 2, **F64)
    with pytest.raises(ValueError, match="need x_train"):
        peers.gpytorch_exact_gp(x, torch.zeros(4, **F64), x, 0.1, 1.0)
    with pytest.raises(ValueError, match="positive"):
        peers.gpytorch_exact_gp(x, torch.zeros(5, **F64), x, 0.0, 1.0)
    # float32 runs silently in GPyTorch but differs from float64 by up to 0.2 on near-duplicates
    x32 = x.float()
    with pytest.raises(TypeError, match="float64"):
        peers.gpytorch_exact_gp(x32, torch.zeros(5), x32, 0.1, 1.0)
    h = exact.Hyper("gp", 1.0, 0.3, 0.1)
    with pytest.raises(TypeError, match="float64"):
        peers.compare_with_gpytorch(h, x32, torch.zeros(5), x32)


def test_nngp_kernel_class_diagonal_equals_the_matrix_diagonal():
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(2), **F64)
    kernel = peers.nngp_kernel_class()(depth=3, w_std=1.4, b_std=0.3, scale_sq=2.0)
    torch.testing.assert_close(kernel.forward(x, x, diag=True), kernel.forward(x, x).diagonal())


def test_compare_with_gpytorch_sees_the_doubled_jitter():
    g = torch.Generator().manual_seed(1)
    x, xt = torch.randn(20, 3, generator=g, **F64), torch.randn(5, 3, generator=g, **F64)
    y = torch.randn(20, generator=g, **F64)
    h = exact.fit_grid("gp", x, y)
    out = peers.compare_with_gpytorch(h, x, y, xt)
    assert out["gap"] < 1e-9 < 1e-3 < out["control_gap"]
    with pytest.raises(ValueError, match="GP fit"):
        peers.compare_with_gpytorch(exact.fit_grid("tp", x, y), x, y, xt)
