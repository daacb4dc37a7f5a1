"""Tests of varbook.gp.exact: GP and Student-t process regression against direct computations."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import stats

from varbook.data.heavy_tailed import synthetic_regression
from varbook.gp import exact
from varbook.gp.kernels import nngp_relu
from varbook.vi.kl import inverse_gamma_kl

F64 = dict(dtype=torch.float64)


@pytest.fixture
def problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 2, generator=g, **F64)
    xt = torch.randn(5, 2, generator=g, **F64)
    y = torch.randn(12, generator=g, **F64)
    return x, xt, y, nngp_relu(x, depth=2, b_std=0.5)


def test_gp_marginal_is_a_multivariate_normal_density(problem):
    _, _, y, k = problem
    c = k + 0.1 * torch.eye(12, **F64)
    direct = torch.distributions.MultivariateNormal(torch.zeros(12, **F64), 2.5 * c).log_prob(y)
    torch.testing.assert_close(exact.gp_log_marginal(k, y, 0.1, scale_sq=2.5), direct)
    # the closed-form scale q/n maximises it
    best = exact.gp_log_marginal(k, y, 0.1)
    for s2 in (0.3, 1.0, 3.0):
        assert best >= exact.gp_log_marginal(k, y, 0.1, scale_sq=s2)


def test_tp_marginal_is_a_multivariate_t_density(problem):
    _, _, y, k = problem
    c = (k + 0.1 * torch.eye(12, **F64)).numpy()
    direct = stats.multivariate_t(shape=(3.0 / 2.0) * c, df=4.0).logpdf(y.numpy())
    assert abs(float(exact.tp_log_marginal(k, y, 0.1, 2.0, 3.0)) - direct) < 1e-10


def test_tp_marginal_is_the_scale_mixture_of_gps(problem):
    """Integrate the GP likelihood over sigma^2 ~ InvGamma(alpha, beta) by quadrature."""
    _, _, y, k = problem
    alpha, beta = 1.5, 0.8
    s2 = np.exp(np.linspace(-8, 8, 20001))
    _, logdet, q = exact.solve_terms(k, y, 0.1)  # log N(y; 0, s2 C) at every s2, in closed form
    log_gp = -0.5 * (12 * np.log(2 * math.pi * s2) + float(logdet) + float(q) / s2)
    assert log_gp[10000] == pytest.approx(float(exact.gp_log_marginal(k, y, 0.1, scale_sq=1.0)))
    log_prior = stats.invgamma(alpha, scale=beta).logpdf(s2)
    integrand = np.exp(log_gp + log_prior + np.log(s2))  # d sigma^2 = sigma^2 d log sigma^2
    quad = math.log(np.trapezoid(integrand, np.log(s2)))
    assert abs(quad - float(exact.tp_log_marginal(k, y, 0.1, alpha, beta))) < 1e-6


def test_tp_predictive_closed_form(problem):
    x, xt, y, _ = problem
    h = exact.Hyper("tp", 1.0, 0.5, 0.1, depth=2, alpha=2.0, beta=3.0)
    pred = h.predictive(x, y, xt)
    k, kx, kd = h.kernels(x, xt)
    c_inv = torch.linalg.inv(k + 0.1 * torch.eye(12, **F64))
    q, nu, s = float(y @ c_inv @ y), 4.0, 1.5
    var = kd + 0.1 - ((kx.T @ c_inv) * kx.T).sum(1)
    torch.testing.assert_close(pred.loc, kx.T @ c_inv @ y)
    torch.testing.assert_close(pred.scale**2, (nu + q / s) / (nu + 12) * s * var)
    assert pred.df == nu + 12
    ref = stats.t(df=pred.df, loc=pred.loc.numpy(), scale=pred.scale.numpy()).logpdf(y[:5].numpy())
    np.testing.assert_allclose(pred.log_prob(y[:5]).numpy(), ref, rtol=1e-12)


def test_tp_predictive_is_the_scale_mixture_of_gp_predictives(problem):
    """Integrate the GP predictive over the posterior sigma^2 | y ~ InvGamma(alpha + n/2, beta + q/2)."""
    x, xt, y, _ = problem
    alpha, beta = 2.0, 3.0
    h = exact.Hyper("tp", 1.0, 0.5, 0.1, depth=2, alpha=alpha, beta=beta)
    pred = h.predictive(x, y, xt)
    unit = exact.Hyper("gp", 1.0, 0.5, 0.1, depth=2)  # the GP predictive at s^2 = q/n, rescaled below
    k, kx, kd = unit.kernels(x, xt)
    base = exact.predict("gp", k, kx, kd, y, 0.1, scale_sq=1.0)  # N(mu, v) at sigma^2 = 1
    q = float(exact.solve_terms(k, y, 0.1)[2])
    s2 = np.exp(np.linspace(-10, 10, 40001))
    post = stats.invgamma(alpha + 6, scale=beta + q / 2).pdf(s2)  # n = 12
    y_star = np.array([-2.0, 0.3, 4.0])
    for j in range(5):
        mu, v = float(base.loc[j]), float(base.scale[j]) ** 2
        dens = stats.norm.pdf(y_star[:, None], mu, np.sqrt(s2 * v)[None]) * post * s2
        quad = np.log(np.trapezoid(dens, np.log(s2), axis=1))
        direct = stats.t(pred.df, float(pred.loc[j]), float(pred.scale[j])).logpdf(y_star)
        np.testing.assert_allclose(quad, direct, atol=1e-6)


def test_gaussian_shape_keeps_location_and_variance():
    t = exact.Predictive(torch.tensor([0.5, -1.0], **F64), torch.tensor([1.0, 2.0], **F64), df=5.0)
    g = t.gaussian()
    torch.testing.assert_close(g.loc, t.loc)
    torch.testing.assert_close(g.scale**2, torch.tensor([1.0, 4.0], **F64) * stats.t(5.0).var())
    assert math.isinf(g.df) and g.gaussian() is g
    with pytest.raises(ValueError, match="df <= 2"):
        exact.Predictive(t.loc, t.scale, df=2.0).gaussian()


def test_gp_predictive_closed_form(problem):
    x, xt, y, _ = problem
    h = exact.Hyper("gp", 1.0, 0.5, 0.1, depth=2)
    pred = h.predictive(x, y, xt)
    k, kx, kd = h.kernels(x, xt)
    c_inv = torch.linalg.inv(k + 0.1 * torch.eye(12, **F64))
    s2 = float(y @ c_inv @ y) / 12
    torch.testing.assert_close(pred.scale**2, s2 * (kd + 0.1 - ((kx.T @ c_inv) * kx.T).sum(1)))
    assert math.isinf(pred.df)
    ref = stats.norm(pred.loc.numpy(), pred.scale.numpy()).logpdf(y[:5].numpy())
    np.testing.assert_allclose(pred.log_prob(y[:5]).numpy(), ref, rtol=1e-12)


def test_fit_grid_finds_the_best_grid_point(problem):
    x, _, y, _ = problem
    grid = exact.Grid(w_std=(1.0, 2.0), b_std=(0.3,), jitter=(0.01, 1.0), alpha=(1.0, 3.0), beta=(1.0,))
    best = exact.fit_grid("tp", x, y, depth=2, grid=grid)
    scores = {
        (w, e, a): float(exact.tp_log_marginal(nngp_relu(x, depth=2, w_std=w, b_std=0.3), y, e, a, 1.0))
        for w in grid.w_std
        for e in grid.jitter
        for a in grid.alpha
    }
    assert (best.w_std, best.jitter, best.alpha) == max(scores, key=scores.get)
    assert best.log_marginal == pytest.approx(max(scores.values()))


def test_fit_adam_improves_a_poor_start(problem):
    # from hyperparameters far from the grid optimum, Adam must raise the marginal likelihood by
    # a clear amount (gradient ascent on the loss, a sign error, leaves it at the start)
    x, _, y, _ = problem
    for kind in exact.KINDS:
        best = exact.fit_grid(kind, x, y, depth=2)
        start = replace(best, w_std=2.0, b_std=1.0, jitter=3.0, alpha=1.0, beta=3.0)
        start = replace(start, log_marginal=float(exact.log_marginal(start, x, y)))
        fitted, history = exact.fit_adam(start, x, y, steps=300, lr=0.05)
        assert fitted.log_marginal > start.log_marginal + 1.0
        assert fitted.log_marginal == pytest.approx(float(exact.log_marginal(fitted, x, y)))
        assert 1 <= len(history["loss"]) <= 300


def test_fit_adam_stops_on_a_plateau(problem):
    # from the GP's grid optimum at the official rate 1e-2 the loss no longer improves, so
    # ReduceLROnPlateau (patience 5) halves the rate every 6 steps; 1e-2 falls below 1e-4 after 7
    # halvings, so the fit stops after about 7 * 6 = 42 steps (43 measured), long before `steps`.
    # Without the scheduler it would run all 5000 steps.
    x, _, y, _ = problem
    h = exact.fit_grid("gp", x, y, depth=2)
    _, history = exact.fit_adam(h, x, y, steps=5000, lr=1e-2)
    assert 36 <= len(history["loss"]) <= 50
    assert history["lr"][0] == 1e-2 and history["lr"][-1] < 1e-4
    assert len(set(history["lr"])) >= 8  # 1e-2 and at least 7 halvings


def test_nll_gap_and_sweep():
    d = synthetic_regression("t", n_train=20, seed=0)
    gap = exact.nll_gap(d.x_train, d.y_train, d.x_test, d.y_test)
    assert gap["tp - gp"] == pytest.approx(gap["tp"] - gap["gp"])
    h = exact.fit_grid("tp", d.x_train, d.y_train)
    wrong = exact.prior_predictive(h, d.x_test)
    k_test = torch.stack([nngp_relu(x[None], depth=4, w_std=h.w_std, b_std=h.b_std)[0, 0] for x in d.x_test])
    torch.testing.assert_close(wrong.scale**2, h.beta / h.alpha * (k_test + h.jitter))
    assert gap["tp prior - gp"] == pytest.approx(wrong.nll(d.y_test) - gap["gp"])
    shaped = h.predictive(d.x_train, d.y_train, d.x_test).gaussian()
    assert gap["tp gaussian - gp"] == pytest.approx(shaped.nll(d.y_test) - gap["gp"])
    assert gap["alpha"] == h.alpha
    rows = exact.sweep_nll_gaps({"a": lambda s: synthetic_regression("normal", 20, s)}, [0, 1])
    assert [r["seed"] for r in rows] == [0, 1] and all(math.isfinite(r["tp - gp"]) for r in rows)


def test_bad_input(problem):
    x, xt, y, k = problem
    with pytest.raises(ValueError, match="kernel"):
        exact.gp_log_marginal(k, y[:5], 0.1)
    with pytest.raises(TypeError, match="dtype"):
        exact.gp_log_marginal(k.float(), y, 0.1)
    with pytest.raises(ValueError, match="positive"):
        exact.tp_log_marginal(k, y, 0.1, -1.0, 1.0)
    with pytest.raises(ValueError, match="kind"):
        exact.fit_grid("cauchy", x, y)
    with pytest.raises(ValueError, match="positive definite"):
        exact.predict("gp", -torch.eye(12, **F64), k[:, :5], k.diagonal()[:5], y, 1e-6)
    with pytest.raises(ValueError, match="alpha must be positive"):
        exact.predict("tp", k, k[:, :5], k.diagonal()[:5], y, 0.1, alpha=-1.0)
    with pytest.raises(ValueError, match="scale_sq must be positive"):
        exact.predict("gp", k, k[:, :5], k.diagonal()[:5], y, 0.1, scale_sq=-1.0)
    with pytest.raises(ValueError, match="scale_sq must be positive"):
        exact.gp_log_marginal(k, y, 0.1, scale_sq=-1.0)
    with pytest.raises(ValueError, match="jitter must be positive"):
        exact.predict("gp", k, k[:, :5], k.diagonal()[:5], y, 0.0)
    with pytest.raises(ValueError, match="k_test_diag"):
        exact.predict("gp", k, k[:, :3], k.diagonal()[:1], y, 0.1)
    with pytest.raises(ValueError, match="every axis"):
        exact.fit_grids(x, y, grid=exact.Grid(beta=()))
    with pytest.raises(ValueError, match="control of a TP"):
        exact.prior_predictive(exact.Hyper("gp", 1.0, 0.5, 0.1), xt)
    with pytest.raises(ValueError, match="positive"):
        inverse_gamma_kl(math.nan, 1.0, 2.0, 2.0)
    with pytest.raises(ValueError, match="steps"):
        exact.fit_adam(exact.Hyper("gp", 1.0, 0.5, 0.1), x, y, steps=0)
    # a non-positive-definite grid point is skipped, not chosen
    _, logdet, q = exact.solve_terms(-torch.eye(12, **F64)[None].expand(2, -1, -1), y, torch.tensor([0.0, 2.0], **F64))
    assert math.isnan(float(logdet[0])) and math.isfinite(float(logdet[1]))
