import math

import pytest
import torch

from varbook.sde.fbm import (
    approximation_error,
    brownian_increments,
    fbm_covariance,
    fbm_sde_rollout,
    gamma_grid,
    gammainc,
    gammaincc_scaled,
    mafbm_covariance,
    mafbm_paths,
    optimal_omega,
    riemann_liouville_paths,
    riemann_omega,
    simulate_ou,
    target_energy,
    v_h,
)

F64 = torch.float64


def test_incomplete_gamma_values_and_gradcheck():
    a = torch.tensor([0.7, 1.3, 2.2], dtype=F64, requires_grad=True)
    x = torch.tensor([0.3, 4.0, 25.0], dtype=F64, requires_grad=True)
    torch.testing.assert_close(gammainc(a, x), torch.special.gammainc(a.detach(), x.detach()))
    torch.testing.assert_close(
        gammaincc_scaled(a, x), torch.special.gammaincc(a.detach(), x.detach()) * torch.exp(x.detach())
    )
    assert torch.autograd.gradcheck(gammainc, (a, x))
    assert torch.autograd.gradcheck(gammaincc_scaled, (a, x))


@pytest.mark.parametrize("a", [0.6, 1.2, 1.9])
@pytest.mark.parametrize("x", [0.05, 1.0, 8.0, 120.0])
def test_shape_derivatives_against_finite_differences(a, x):
    h = 1e-6
    for fn in (gammainc, gammaincc_scaled):
        aa = torch.tensor(a, dtype=F64, requires_grad=True)
        fn(aa, torch.tensor(x, dtype=F64)).backward()
        fd = (
            fn(torch.tensor(a + h, dtype=F64), torch.tensor(x, dtype=F64))
            - fn(torch.tensor(a - h, dtype=F64), torch.tensor(x, dtype=F64))
        ) / (2 * h)
        assert abs(float(aa.grad) - float(fd)) <= 1e-6 * (1 + abs(float(fd)))


def test_gamma_grid_and_v_h():
    g = gamma_grid(5, 20.0)
    torch.testing.assert_close(g[0] * g[-1], torch.tensor(1.0, dtype=F64))
    torch.testing.assert_close(g[-1], torch.tensor(20.0, dtype=F64))
    for H, v in ((0.3, 1.383), (0.7, 0.995), (0.1, 3.52), (0.9, 1.93)):
        assert float(v_h(H)) == pytest.approx(v, rel=5e-3)


@pytest.mark.parametrize("kind", ["I", "II"])
def test_optimal_weights_solve_the_normal_equations_and_beat_perturbations(kind):
    g = gamma_grid(4, 10.0)
    w = optimal_omega(0.35, g, 1.5, kind)
    e = approximation_error(w, 0.35, g, 1.5, kind)
    assert 0 <= float(e) < 1
    for i in range(4):
        d = torch.zeros(4, dtype=F64)
        d[i] = 1e-3
        assert float(approximation_error(w + d, 0.35, g, 1.5, kind)) > float(e)


@pytest.mark.parametrize("kind", ["I", "II"])
def test_a_is_the_integrated_covariance_of_the_ou_terms(kind):
    from varbook.sde.fbm import _system

    H, T = torch.tensor(0.3, dtype=F64), 1.0
    g = gamma_grid(3, 5.0)
    A, _ = _system(H, g, T, kind)
    ts = torch.linspace(0, T, 4001, dtype=F64)
    for i in range(3):
        for j in range(3):
            integral = torch.trapezoid(_cross_diag(g[i], g[j], ts, kind), ts)
            assert float(integral) == pytest.approx(float(A[i, j]), rel=1e-5)


def test_b_is_the_integrated_covariance_with_the_target_type_two():
    # E[B_H(t) Y_k(t)] = gamma^{-a} P(a, gamma t) with a = H + 1/2, so b_k = gamma^{-a} int_0^T P(a, gamma t) dt
    from varbook.sde.fbm import _system

    H, T = torch.tensor(0.3, dtype=F64), 1.5
    g = gamma_grid(3, 5.0)
    _, b = _system(H, g, T, "II")
    ts = torch.linspace(0, T, 20001, dtype=F64)
    for k in range(3):
        integrand = g[k] ** (-(H + 0.5)) * torch.special.gammainc(H + 0.5, g[k] * ts)
        assert float(torch.trapezoid(integrand, ts)) == pytest.approx(float(b[k]), rel=1e-6)


def _cross_diag(gi, gj, t, kind):
    s = gi + gj
    if kind == "I":  # Cov(Y_i(t) - Y_i(0), Y_j(t) - Y_j(0)) for stationary OU processes
        return (1 - torch.exp(-gi * t) - torch.exp(-gj * t) + 1) / s
    return (1 - torch.exp(-s * t)) / s


def test_approximation_error_closed_form_matches_simulation():
    H, T = torch.tensor(0.7, dtype=F64), 1.0
    g = gamma_grid(5, 20.0)
    w = optimal_omega(H, g, T, "II")
    ts = torch.linspace(0, T, 1001, dtype=F64)
    dW = brownian_increments(ts, 1000, torch.Generator().manual_seed(0))
    err = riemann_liouville_paths(H, ts, dW) - mafbm_paths(w, simulate_ou(g, ts, dW, "II"), "II")
    per_path = (err[1:] ** 2).sum(0) * float(ts[1] - ts[0])
    closed = approximation_error(w, H, g, T, "II") * target_energy(H, T, "II")
    assert abs(float(per_path.mean()) - float(closed)) < 4 * float(per_path.std()) / math.sqrt(1000) + 0.2 * float(
        closed
    )


@pytest.mark.parametrize("kind", ["I", "II"])
def test_covariances(kind):
    ts = torch.linspace(0.1, 1.0, 5, dtype=F64)
    c = fbm_covariance(ts, 0.6, kind)
    torch.testing.assert_close(c, c.T)
    var = (
        v_h(0.6) * ts**1.2
        if kind == "I"
        else ts**1.2 / (1.2 * torch.exp(2 * torch.lgamma(torch.tensor(1.1, dtype=F64))))
    )
    torch.testing.assert_close(torch.diagonal(c), var, rtol=1e-8, atol=1e-10)
    g = gamma_grid(6, 20.0)
    w = optimal_omega(0.6, g, 1.0, kind)
    approx = mafbm_covariance(w, g, ts, kind)
    assert (approx - c).abs().max() < 0.1 * c.abs().max()
    # the simulated OU processes have that covariance
    grid = torch.linspace(0, 1.0, 201, dtype=F64)
    gen = torch.Generator().manual_seed(1)
    paths = mafbm_paths(w, simulate_ou(g, grid, brownian_increments(grid, 10000, gen), kind, gen), kind)
    emp = paths[-1].var()
    closed = mafbm_covariance(w, g, grid[-1:], kind)[0, 0]
    assert abs(float(emp) - float(closed)) < 4 * float(closed) * math.sqrt(2 / 10000) + 0.02 * float(closed)


def test_riemann_rule():
    g = gamma_grid(5, 20.0)
    for H in (0.2, 0.3, 0.4):
        assert float(approximation_error(riemann_omega(H, g), H, g)) > float(
            approximation_error(optimal_omega(H, g), H, g)
        )
    with pytest.raises(ValueError, match="H < 1/2"):
        riemann_omega(0.7, g)


def test_control_cost_matches_a_girsanov_estimate():
    # K = 1, omega = 1, type II, sigma = 1: X = Y, prior dX = -g X dt + dW, posterior adds u = -0.8 X + 0.5
    g = torch.tensor([1.0], dtype=F64)
    ts = torch.linspace(0, 1, 101, dtype=F64)
    ctrl = lambda t, x, y: -0.8 * x + 0.5  # noqa: E731
    gen = torch.Generator().manual_seed(0)
    path, kl = fbm_sde_rollout(torch.zeros(5000, 1, dtype=F64), ts, torch.ones(1, dtype=F64), g,
                               lambda x, t: 0 * x, lambda x, t: torch.ones_like(x), ctrl, kind="II", generator=gen)  # fmt: skip
    x, h = path[:, :, 0], 0.01
    u = -0.8 * x[:-1] + 0.5
    dx = x[1:] - x[:-1]
    # log q/p of the Gaussian transitions: (dx - (-g x + u) h)^2 vs (dx + g x h)^2 over 2h
    log_ratio = ((dx + x[:-1] * h) ** 2 - (dx - (-x[:-1] + u) * h) ** 2).sum(0) / (2 * h)
    assert abs(float(log_ratio.mean() - kl.mean())) < 4 * float(log_ratio.std()) / math.sqrt(5000)


def test_bad_input():
    with pytest.raises(ValueError, match="Hurst"):
        optimal_omega(1.2, gamma_grid(3))
    with pytest.raises(ValueError, match="type"):
        optimal_omega(0.3, gamma_grid(3), kind="III")
    with pytest.raises(ValueError, match="gammainc"):
        gammainc(torch.tensor(-1.0), torch.tensor(1.0))
    with pytest.raises(ValueError, match="increasing"):
        brownian_increments(torch.tensor([0.0, 0.0, 1.0]), 3)
