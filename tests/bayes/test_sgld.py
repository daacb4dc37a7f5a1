"""SGLD samples a Gaussian target with the right moments; the Gaussian fit to its samples."""

from __future__ import annotations

import math

import pytest
import torch

from varbook.bayes.sgld import gaussian_fit, sgld

D = dict(dtype=torch.float64)


def test_sgld_samples_a_gaussian_with_the_right_mean_and_variance():
    # N(mu, s^2) in each of 2 coordinates, 20 000 independent chains; the last iterate of each
    # chain is (after 2000 steps of mixing) a draw from the chain's stationary law, which for
    # SGLD on a Gaussian is exactly N(mu, s^2 / (1 - eps / (4 s^2))): the O(eps) bias is known.
    mu, s, eps = torch.tensor([1.0, -2.0], **D), torch.tensor([0.5, 2.0], **D), 0.05
    n = 20_000
    g = torch.Generator().manual_seed(0)
    out = sgld(lambda t: -0.5 * ((t - mu) / s) ** 2, torch.zeros(n, 2, **D), 2000, eps, burn_in=1999, generator=g)
    draws = out[-1]
    var = s**2 / (1 - eps / (4 * s**2))
    z_mean = (draws.mean(0) - mu) / (var / n).sqrt()
    z_var = (draws.var(0) - var) / (var * math.sqrt(2 / (n - 1)))
    assert z_mean.abs().max() < 4 and z_var.abs().max() < 4
    # the test is sharp: a sampler that forgot the 1/2 on the drift (stationary variance
    # about s^2 / 2) or the O(eps) correction of the second coordinate would fail it
    assert ((s**2 - var).abs() / (var * math.sqrt(2 / (n - 1))))[0] > 4


def test_burn_in_and_thinning_keep_the_right_iterates():
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    every = sgld(lambda t: -0.5 * t**2, torch.zeros(3, **D), 10, 0.1, generator=g1)
    kept = sgld(lambda t: -0.5 * t**2, torch.zeros(3, **D), 10, 0.1, burn_in=3, thin=3, generator=g2)
    assert every.shape == (10, 3) and kept.shape == (3, 3)  # iterates 4, 7, 10
    assert torch.equal(kept, every[[3, 6, 9]])


def test_samples_carry_no_graph_unless_asked():
    theta0 = torch.ones(4, **D, requires_grad=True)
    w = torch.tensor(2.0, **D, requires_grad=True)
    out = sgld(lambda t: -0.5 * w * t**2, theta0, 3, 0.1, generator=torch.Generator().manual_seed(0))
    assert not out.requires_grad
    out = sgld(lambda t: -0.5 * w * t**2, theta0, 3, 0.1, generator=torch.Generator().manual_seed(0), keep_graph=True)
    dw, d0 = torch.autograd.grad(out.sum(), (w, theta0))
    # one noiseless step is (1 - eps w / 2) theta: the chain is differentiated through
    assert d0.abs().min() > 0 and dw.abs() > 0


def test_gaussian_fit_clips_and_falls_back():
    s = torch.tensor([[0.0, 1.0, 5.0], [2.0, 1.0, -5.0]], **D)
    m, a = gaussian_fit(s, a_min=0.1, a_max=100.0)
    assert m.tolist() == [1.0, 1.0, 0.0]
    assert a.tolist() == pytest.approx([0.5, 100.0, 0.1])
    m1, a1 = gaussian_fit(s[:1], a_max=100.0)
    assert torch.equal(m1, s[0]) and a1.tolist() == [100.0] * 3
    assert gaussian_fit(s[:1], fallback_precision=3.0)[1].tolist() == [3.0] * 3


def test_bad_input_is_refused():
    lp = lambda t: -(t**2)  # noqa: E731
    x = torch.zeros(2)
    with pytest.raises(ValueError, match="steps"):
        sgld(lp, x, 0, 0.1)
    with pytest.raises(ValueError, match="burn_in"):
        sgld(lp, x, 3, 0.1, burn_in=3)
    with pytest.raises(ValueError, match="thin"):
        sgld(lp, x, 3, 0.1, thin=0)
    with pytest.raises(ValueError, match="step size"):
        sgld(lp, x, 3, 0.0)
    with pytest.raises(TypeError, match="floating"):
        sgld(lp, torch.zeros(2, dtype=torch.long), 3, 0.1)
    with pytest.raises(ValueError, match="a_min"):
        gaussian_fit(torch.ones(2, 2), a_min=2.0, a_max=1.0)
    with pytest.raises(FloatingPointError, match="SGLD"):
        sgld(lambda t: t * float("nan"), x, 3, 0.1)
