"""The SDE log-likelihood of stochastic interpolants, the stratified starting points and the field's one-entry cache."""

import math

import pytest
import torch

from varbook.diffusion import GaussianMixture
from varbook.diffusion.interpolants import (
    Interpolant,
    InterpolantMixtureField,
    normal_quantiles,
    sde_log_likelihood,
)
from varbook.sde import ode_log_likelihood

F64 = torch.float64
STD = GaussianMixture(torch.ones(1), torch.zeros(1, 2), torch.eye(2)[None])
TARGET = GaussianMixture(
    torch.tensor([0.4, 0.6]),
    torch.tensor([[1.0, 0.0], [-1.0, 0.5]]),
    torch.tensor([[[0.3, 0.05], [0.05, 0.2]], [[0.25, 0.0], [0.0, 0.4]]]),
)
FIELD = InterpolantMixtureField(Interpolant("one_sided_linear"), STD, TARGET)


def base(y):
    return FIELD.log_prob(y, torch.tensor(0.0, dtype=F64))


def points(n=16, seed=0):
    return TARGET.sample(n, torch.Generator().manual_seed(seed))


def test_eps_zero_is_the_ode_likelihood_by_euler():
    x, ts = points(), torch.linspace(1, 0, 41, dtype=F64)
    ours = sde_log_likelihood(FIELD.b, FIELD.score, x, ts, 0.0, base)
    ode = ode_log_likelihood(FIELD.b, x, ts, base, method="euler")
    assert torch.allclose(ours, ode, atol=1e-10, rtol=0)


def test_paper_estimator_is_unbiased_and_the_control_is_not():
    # many paths per point: the mean error must sit within 4 standard errors (plus the Euler bias, measured
    # at eps = 0 on the same grid); dropping eps |s|^2 biases the estimate upwards by about eps E int |s|^2
    x, k, eps = points(8), 64, 0.5
    exact = FIELD.log_prob(x, torch.tensor(1.0, dtype=F64))
    ts = torch.linspace(1, 0, 101, dtype=F64)
    gen = torch.Generator().manual_seed(1)
    est = sde_log_likelihood(FIELD.b, FIELD.score, x.repeat(k, 1), ts, eps, base, gen).reshape(k, -1)
    err = est - exact
    se = float(err.std() / math.sqrt(err.numel()))
    euler_bias = float((sde_log_likelihood(FIELD.b, FIELD.score, x, ts, 0.0, base) - exact).abs().mean())
    assert abs(float(err.mean())) <= 4 * se + euler_bias
    wrong = sde_log_likelihood(FIELD.b, FIELD.score, x.repeat(k, 1), ts, eps, base, gen, score_term=False)
    assert float((wrong.reshape(k, -1) - exact).mean()) > 10 * se


def test_martingale_term_makes_each_path_nearly_exact():
    x, k, eps = points(8), 16, 0.5
    exact = FIELD.log_prob(x, torch.tensor(1.0, dtype=F64))
    ts = torch.linspace(1, 0, 201, dtype=F64)
    plain = sde_log_likelihood(FIELD.b, FIELD.score, x.repeat(k, 1), ts, eps, base, torch.Generator().manual_seed(2))
    exact_paths = sde_log_likelihood(
        FIELD.b, FIELD.score, x.repeat(k, 1), ts, eps, base, torch.Generator().manual_seed(2), martingale=True
    )
    spread_plain = float((plain.reshape(k, -1) - exact).abs().mean())
    spread_mart = float((exact_paths.reshape(k, -1) - exact).abs().mean())
    assert spread_mart < 0.25 * spread_plain


def test_bad_grids_and_levels_are_refused():
    x = points(4)
    with pytest.raises(ValueError, match="decreasing"):
        sde_log_likelihood(FIELD.b, FIELD.score, x, torch.linspace(0, 1, 5, dtype=F64), 0.1, base)
    with pytest.raises(ValueError, match="non-negative"):
        sde_log_likelihood(FIELD.b, FIELD.score, x, torch.linspace(1, 0, 5, dtype=F64), -0.1, base)


def test_normal_quantiles_are_the_midpoint_quantiles():
    q = normal_quantiles(10001, dim=2)
    assert q.shape == (10001, 2) and torch.equal(q[:, 0], q[:, 1])
    assert float(q[5000, 0]) == pytest.approx(0.0, abs=1e-12)
    assert torch.allclose(q[:, 0], -q.flip(0)[:, 0], atol=1e-10)  # symmetric
    assert float(q.std()) == pytest.approx(1.0, abs=2e-3)
    u = 0.5 * (1 + torch.erf(q[:, 0] / math.sqrt(2)))
    assert torch.allclose(u, (torch.arange(10001, dtype=F64) + 0.5) / 10001, atol=1e-12)
    with pytest.raises(ValueError):
        normal_quantiles(0)


def test_the_one_entry_cache_never_serves_stale_parts():
    f = InterpolantMixtureField(Interpolant("one_sided_linear"), STD, TARGET)
    fresh = InterpolantMixtureField(Interpolant("one_sided_linear"), STD, TARGET)
    x, t = points(6), torch.tensor(0.4, dtype=F64)
    assert torch.equal(f.b(x, t), fresh.b(x, t))
    assert torch.equal(f.score(x, t), fresh.score(x, t))  # served from the cache, same values
    assert torch.equal(f.score(x, 0.7), fresh.score(x, 0.7))  # another time
    x.mul_(2.0)  # an in-place change of x must be seen
    assert torch.equal(f.score(x, 0.7), fresh.score(x, 0.7))
    xr = x.clone().requires_grad_(True)
    with torch.no_grad():
        f.score(xr, t)
    (grad,) = torch.autograd.grad(f.log_prob(xr, t).sum(), xr)  # grad mode changed: recomputed with a graph
    assert torch.allclose(grad, fresh.score(x, t), atol=1e-10)


def test_likelihood_sweep_rows_and_control():
    from varbook.diffusion.interpolants import sde_likelihood_sweep

    rows = sde_likelihood_sweep(
        FIELD.b, FIELD.score, FIELD.log_prob, points(8), [0.2], steps=50, paths=8,
        generator=torch.Generator().manual_seed(4), control_eps=0.5,
    )  # fmt: skip
    assert [r["ε"] for r in rows] == [0.2, 0.5]
    right, wrong = rows
    assert abs(right["z = error / SE"]) < 4 and wrong["z = error / SE"] > 10
    assert right["NLL, exact"] == pytest.approx(wrong["NLL, exact"])


def test_flow_matching_peer_agrees_and_its_control_does_not():
    pytest.importorskip("flow_matching")
    from varbook.diffusion.interpolants import as_field, flow_matching_peer
    from varbook.nn import TimeMLP

    torch.manual_seed(0)
    field = as_field(TimeMLP(2, 16, 2))
    g = torch.Generator().manual_seed(0)
    x0, x1, t = torch.randn(200, 2, generator=g), torch.randn(200, 2, generator=g) + 2, torch.rand(200, generator=g)
    row = flow_matching_peer(field, x0, x1, t, torch.randn(100, 2, generator=g), steps=20)
    diffs = [v for k, v in row.items() if "max" in k and "control" not in k]
    assert len(diffs) == 4 and max(diffs) < 1e-4
    assert row["control: x_t at 1 - t (max |diff|)"] > 0.1


def test_levels_per_point_equal_one_run_per_level():
    x, ts = points(5), torch.linspace(1, 0, 11, dtype=F64)
    eps = torch.tensor([0.0, 0.5, 1.0, 0.5, 0.2], dtype=F64)
    keep = torch.tensor([True, True, True, False, True])
    batched = sde_log_likelihood(
        FIELD.b, FIELD.score, x, ts, eps, base, torch.Generator().manual_seed(5), martingale=True, score_term=keep
    )
    for i in range(len(x)):  # the draws do not depend on the levels: row i is row i of a run at its own level
        alone = sde_log_likelihood(
            FIELD.b, FIELD.score, x, ts, float(eps[i]), base, torch.Generator().manual_seed(5),
            martingale=True, score_term=bool(keep[i]),
        )  # fmt: skip
        torch.testing.assert_close(batched[i], alone[i])
    with pytest.raises(ValueError, match="one value per point"):
        sde_log_likelihood(FIELD.b, FIELD.score, x, ts, eps[:3], base)
    with pytest.raises(ValueError, match="non-negative"):
        sde_log_likelihood(FIELD.b, FIELD.score, x, ts, -eps, base)
