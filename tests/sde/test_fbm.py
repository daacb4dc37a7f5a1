import math

import pytest
import torch

from varbook.nn import MLP
from varbook.runtime import History
from varbook.sde import fbm
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
    sample_fbm,
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


def test_without_shape_derivative_zeroes_only_the_derivative_in_a():
    a = torch.tensor([0.8, 1.7], dtype=F64, requires_grad=True)
    x = torch.tensor([0.5, 3.0], dtype=F64, requires_grad=True)
    for fn in (gammainc, gammaincc_scaled):
        (ga, gx) = torch.autograd.grad(fn(a, x).sum(), (a, x))
        with fbm.without_shape_derivative():
            value = fn(a, x)
            (ga0, gx0) = torch.autograd.grad(value.sum(), (a, x))
        torch.testing.assert_close(value, fn(a, x))
        assert bool((ga != 0).all()) and bool((ga0 == 0).all())
        torch.testing.assert_close(gx0, gx)
    assert fbm._SHAPE_DERIVATIVE == [True]  # restored on leaving the block
    with pytest.raises(RuntimeError), fbm.without_shape_derivative():
        raise RuntimeError
    assert fbm._SHAPE_DERIVATIVE == [True]  # ... also after an error


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
    H, T = torch.tensor(0.3, dtype=F64), 1.0
    g = gamma_grid(3, 5.0)
    A, _ = fbm.normal_equations(H, g, T, kind)
    ts = torch.linspace(0, T, 4001, dtype=F64)
    for i in range(3):
        for j in range(3):
            integral = torch.trapezoid(_cross_diag(g[i], g[j], ts, kind), ts)
            assert float(integral) == pytest.approx(float(A[i, j]), rel=1e-5)


def test_b_is_the_integrated_covariance_with_the_target_type_two():
    # E[B_H(t) Y_k(t)] = gamma^{-a} P(a, gamma t) with a = H + 1/2, so b_k = gamma^{-a} int_0^T P(a, gamma t) dt
    H, T = torch.tensor(0.3, dtype=F64), 1.5
    g = gamma_grid(3, 5.0)
    _, b = fbm.normal_equations(H, g, T, "II")
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
    # the brief's calibration of the piecewise-linear rule: relative MSE (%) at T = 1, K = 5, gamma_max = 20
    for H, pct in ((0.2, 20.9), (0.3, 19.7), (0.4, 42.6), (0.6, 8.5), (0.7, 13.0), (0.8, 27.0)):
        err = float(approximation_error(riemann_omega(H, g), H, g))
        assert 100 * err == pytest.approx(pct, abs=0.05)
        assert err > float(approximation_error(optimal_omega(H, g), H, g))
    with pytest.raises(ValueError, match="H != 1/2"):
        riemann_omega(0.5, g)


@pytest.mark.parametrize("H", [0.3, 0.7])
def test_riemann_rule_is_the_hat_function_quadrature(H):
    # omega_k = int phi_k dmu (H < 1/2) or -int gamma^{1-a} phi_k' dgamma / (Gamma(a) Gamma(2 - a)) (H > 1/2)
    from scipy import integrate

    g = gamma_grid(4, 10.0).tolist()
    a = H + 0.5
    expected = []
    for k in range(4):
        total = 0.0
        if k > 0:  # rising part of the hat on [g_{k-1}, g_k]
            lo, hi = g[k - 1], g[k]
            f = (
                (lambda x, lo=lo, hi=hi: x**-a * (x - lo) / (hi - lo))
                if H < 0.5
                else (lambda x, lo=lo, hi=hi: -(x ** (1 - a)) / (hi - lo))
            )
            total += integrate.quad(f, lo, hi, epsabs=0, epsrel=1e-12)[0]
        if k < 3:  # falling part on [g_k, g_{k+1}]
            lo, hi = g[k], g[k + 1]
            f = (
                (lambda x, lo=lo, hi=hi: x**-a * (hi - x) / (hi - lo))
                if H < 0.5
                else (lambda x, lo=lo, hi=hi: x ** (1 - a) / (hi - lo))
            )
            total += integrate.quad(f, lo, hi, epsabs=0, epsrel=1e-12)[0]
        c = math.gamma(a) * (math.gamma(1 - a) if H < 0.5 else math.gamma(2 - a))
        expected.append(total / c)
    torch.testing.assert_close(
        riemann_omega(H, gamma_grid(4, 10.0)), torch.tensor(expected, dtype=F64), rtol=1e-9, atol=0
    )


@pytest.mark.parametrize(("H", "T"), [(0.2, 1.0), (0.3, 6.0), (0.7, 1.0), (0.8, 6.0)])
def test_b_is_the_integrated_covariance_with_the_target_type_one(H, T):
    # E[B_H(t)(Y_k(t) - Y_k(0))] Gamma(a) = int_0^t u^(H-1/2) e^(-g u) du
    #     + (e^(-g t) - 1) int_0^inf ((t + v)^(H-1/2) - v^(H-1/2)) e^(-g v) dv,
    # by quadrature on its own (no incomplete gamma function); b_k is its integral over [0, T]
    from scipy import integrate

    g = gamma_grid(4, 20.0)
    _, b = fbm.normal_equations(H, g, T, "I")
    al = H - 0.5
    for k, gk in enumerate(g.tolist()):

        def cov(t, gk=gk):
            near = integrate.quad(lambda u: u**al * math.exp(-gk * u), 0, t, epsabs=0, epsrel=1e-11, limit=200)[0]
            far = integrate.quad(lambda v: ((t + v) ** al - v**al) * math.exp(-gk * v), 0, math.inf, epsabs=0,
                                 epsrel=1e-11, limit=200)[0]  # fmt: skip
            return (near + (math.exp(-gk * t) - 1) * far) / math.gamma(H + 0.5)

        integral = integrate.quad(cov, 0, T, epsabs=0, epsrel=1e-9, limit=200)[0]
        assert integral == pytest.approx(float(b[k]), rel=1e-6)


def test_approximation_error_raises_on_a_negative_error(monkeypatch):
    g = gamma_grid(5, 20.0)
    right = fbm.normal_equations

    def wrong(H, gammas, T=1.0, kind="I"):  # a b vector twice too large, as from a wrong prefactor
        A, b = right(H, gammas, T, kind)
        return A, 2 * b

    monkeypatch.setattr(fbm, "normal_equations", wrong)
    w = optimal_omega(0.3, g)  # the solution of the wrong system
    with pytest.raises(ValueError, match="negative mean-square error"):
        approximation_error(w, 0.3, g)


def test_variance_error():
    g = gamma_grid(5, 20.0)
    ts = torch.linspace(0.05, 1, 20, dtype=F64)
    w = optimal_omega(0.3, g)
    err = fbm.variance_error(w, 0.3, g, ts)
    direct = torch.diagonal(mafbm_covariance(w, g, ts)) / torch.diagonal(fbm_covariance(ts, 0.3)) - 1
    torch.testing.assert_close(err, direct)
    assert float(err.abs().max()) < 0.05  # 4.5 % at t = 1/gamma_max
    # the type-II b vector in the type-I system (a formula mix-up) is off by 40 % somewhere
    A, _ = fbm.normal_equations(0.3, g, 1.0, "I")
    _, b2 = fbm.normal_equations(0.3, g, 1.0, "II")
    assert float(fbm.variance_error(torch.linalg.solve(A, b2), 0.3, g, ts).abs().max()) > 0.4
    with pytest.raises(ValueError, match="times > 0"):
        fbm.variance_error(w, 0.3, g, torch.tensor([0.0, 1.0], dtype=F64))


@pytest.mark.parametrize("H", [0.02, 0.05, 0.1, 0.15, 0.21, 0.3, 0.5, 0.7, 0.95])
def test_type_two_covariance_against_quadrature_at_small_h(H):
    # the diagonal is t^{2H} / (2H Gamma(H + 1/2)^2); it was +inf for H below about 0.21
    from scipy import integrate

    ts = torch.tensor([0.0, 0.01, 0.3, 0.300001, 1.0], dtype=F64)
    c = fbm_covariance(ts, H, "II")
    assert bool(torch.isfinite(c).all())
    G2 = math.gamma(H + 0.5) ** 2
    for i, s in enumerate(ts.tolist()):
        for j, t in enumerate(ts.tolist()):
            m, d = min(s, t), abs(t - s)
            if m == 0:
                ref = 0.0
            elif d == 0:
                ref = m ** (2 * H) / (2 * H * G2)
            else:
                ref = integrate.quad(lambda x, d=d: x ** (H - 0.5) * (x + d) ** (H - 0.5), 0, m, epsabs=0,
                                     epsrel=1e-12, limit=500)[0] / G2  # fmt: skip
            assert float(c[i, j]) == pytest.approx(ref, rel=1e-9 if H >= 0.05 else 1e-5, abs=1e-300)


def test_control_cost_matches_a_girsanov_estimate():
    # K = 1, omega = 1, type II, sigma = 1: X = Y, prior dX = -g X dt + dW, posterior adds u = -0.8 X + 0.5
    g = torch.tensor([1.0], dtype=F64)
    ts = torch.linspace(0, 1, 101, dtype=F64)
    ctrl = lambda x, t, y: -0.8 * x + 0.5  # noqa: E731
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


def test_rollout_calls_the_control_with_x_then_t_then_y():
    seen = []

    def control(x, t, y):
        seen.append((tuple(x.shape), t.dim(), tuple(y.shape)))
        return torch.zeros_like(x)

    ts = torch.linspace(0, 1, 4, dtype=F64)
    g = gamma_grid(3)
    fbm_sde_rollout(torch.zeros(5, 2, dtype=F64), ts, torch.ones(3, dtype=F64), g, lambda x, t: 0 * x,
                    lambda x, t: torch.ones_like(x), control, generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert seen == [((5, 2), 0, (5, 2, 3))] * 3


# ---- the chapter's experiments


def test_error_sweep_rows():
    rows = fbm.error_sweep((1.0, 2.0), (2, 4), (0.3, 0.7))
    assert len(rows) == 8
    assert [(r["T"], r["K"], r["H"]) for r in rows[:2]] == [(1.0, 2, 0.3), (1.0, 2, 0.7)]
    g = gamma_grid(4)
    expected = float(approximation_error(optimal_omega(0.7, g, 2.0, "II"), 0.7, g, 2.0, "II"))
    assert rows[-1]["type II, optimal"] == expected
    assert all(r["type I, Riemann"] > r["type I, optimal"] for r in rows)
    assert rows[-1]["type I, Riemann"] == float(approximation_error(fbm.riemann_omega(0.7, g), 0.7, g, 2.0, "I"))
    assert "type I, type-II weights" not in rows[0]
    controlled = fbm.error_sweep((2.0,), (4,), (0.3,), controls=True)[0]
    w2 = optimal_omega(0.3, g, 2.0, "II")
    assert controlled["type I, type-II weights"] == float(approximation_error(w2, 0.3, g, 2.0, "I"))
    for kind in ("I", "II"):
        off = optimal_omega(0.4, g, 2.0, kind)
        assert controlled[f"type {kind}, weights for H + 0.1"] == float(approximation_error(off, 0.3, g, 2.0, kind))
        assert controlled[f"type {kind}, weights for H + 0.1"] > controlled[f"type {kind}, optimal"]


def test_sample_mafbm_is_the_composition_and_has_the_closed_form_variance():
    g = gamma_grid(4, 10.0)
    w = optimal_omega(0.4, g)
    ts = torch.linspace(0, 1, 101, dtype=F64)
    paths = fbm.sample_mafbm(w, g, ts, 4000, "I", torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(3)
    dW = brownian_increments(ts, 4000, gen)
    torch.testing.assert_close(paths, mafbm_paths(w, simulate_ou(g, ts, dW, "I", gen), "I"), rtol=0, atol=0)
    assert paths.shape == (101, 4000) and bool((paths[0] == 0).all())
    closed = float(mafbm_covariance(w, g, ts[-1:])[0, 0])
    assert abs(float(paths[-1].var()) - closed) < 4 * closed * math.sqrt(2 / 4000) + 0.02 * closed


def test_simulated_error_is_close_to_the_closed_form():
    g = gamma_grid(5, 20.0)
    sim, closed = fbm.simulated_error(torch.tensor(0.7, dtype=F64), g, 1.0, 500, 500, torch.Generator().manual_seed(0))
    w = optimal_omega(0.7, g, 1.0, "II")
    assert closed == pytest.approx(float(approximation_error(w, 0.7, g, 1.0, "II") * target_energy(0.7, 1.0, "II")))
    assert closed == fbm.closed_form_mse(w, 0.7, g, 1.0, "II")
    assert 0.7 < sim / closed < 1.3
    # without the shared Brownian motion the error is about Var B + Var B-hat, thousands of times the closed form
    wrong, closed_again = fbm.simulated_error(0.7, g, 1.0, 500, 500, torch.Generator().manual_seed(0), independent=True)
    assert closed_again == closed and wrong / closed > 100


def test_variance_gap():
    ts = torch.linspace(0.01, 1, 50, dtype=F64)
    exact = fbm_covariance(ts, 0.3)
    assert fbm.variance_gap(exact, exact, ts) == 0
    assert fbm.variance_gap(1.1 * exact, exact, ts) == pytest.approx(0.1)


def test_weight_gradient_agrees_with_finite_differences():
    row = fbm.weight_gradient(0.35, gamma_grid(4), 1.5, "II")
    assert (row["H"], row["type"], row["T"]) == (0.35, "II", 1.5)
    assert row["relative difference"] < 1e-6
    assert row["autograd"] == pytest.approx(row["finite difference"], rel=1e-6)
    h = 1e-6
    fd = (
        optimal_omega(0.35 + h, gamma_grid(4), 1.5, "II").sum()
        - optimal_omega(0.35 - h, gamma_grid(4), 1.5, "II").sum()
    ) / (2 * h)
    assert row["finite difference"] == pytest.approx(float(fd), rel=1e-12)
    with fbm.without_shape_derivative():
        wrong = fbm.weight_gradient(0.35, gamma_grid(4), 1.5, "II")
    assert wrong["finite difference"] == row["finite difference"] and wrong["relative difference"] > 1e-2


def test_controls_start_at_zero_are_seeded_and_leave_the_global_generator_alone():
    state = torch.get_rng_state()
    a, b = fbm.BridgeControl(3, 8, seed=1), fbm.BridgeControl(3, 8, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    torch.manual_seed(1)
    reference = MLP(6, [8, 8], 1, activation=torch.nn.Tanh)
    assert torch.equal(a.net[0].weight, reference[0].weight)
    x, y = torch.randn(4, 1), torch.randn(4, 1, 3)
    assert torch.equal(a(x, torch.tensor(0.5, dtype=F64), y), torch.zeros(4, 1))


def test_train_bridge_follows_the_contract_and_pulls_the_end_point_to_zero():
    g = gamma_grid(3, 5.0)
    ts = torch.linspace(0, 1, 11, dtype=F64)
    w = fbm.unit_omega(torch.tensor(0.5, dtype=F64), g).float()
    control = fbm.BridgeControl(3, 16, seed=0)
    gen = torch.Generator().manual_seed(0)
    before = fbm.bridge_paths(control, w, g, ts, 1000, gen)
    history = fbm.train_bridge(control, w, g, ts, 0.1, iters=30, lr=2e-2, batch=32, generator=gen)
    assert isinstance(history, History) and len(history["loss"]) == 30
    assert sum(history["loss"][-10:]) < 0.5 * sum(history["loss"][:10])
    after = fbm.bridge_paths(control, w, g, ts, 1000, gen)
    assert after.shape == (11, 1000) and bool((after[0] == 0).all())
    assert float(after[-1].std()) < 0.5 * float(before[-1].std())


def test_fbm_bridge_std_closed_forms():
    ts = torch.tensor([0.25, 0.5, 1.0], dtype=F64)
    # without the observation (infinite noise) the std is t^H; with an exact observation it vanishes at T
    torch.testing.assert_close(fbm.fbm_bridge_std(0.3, ts, 1.0, 1e6), ts**0.3, rtol=1e-6, atol=1e-9)
    assert float(fbm.fbm_bridge_std(0.3, ts, 1.0, 0.0)[-1]) < 1e-6
    # Brownian bridge (H = 1/2, exact end point at T = 1): std sqrt(t (1 - t))
    torch.testing.assert_close(fbm.fbm_bridge_std(0.5, ts[:2], 1.0, 0.0), (ts[:2] * (1 - ts[:2])).sqrt())


def test_noisy_fbm():
    ts = torch.linspace(0.1, 1, 10, dtype=F64)
    clean = fbm.noisy_fbm(ts, 0.6, 5, 0.0, torch.Generator().manual_seed(2))
    torch.testing.assert_close(clean, sample_fbm(ts, 0.6, 5, torch.Generator().manual_seed(2)))
    obs = fbm.noisy_fbm(ts, 0.6, 20000, 0.5, torch.Generator().manual_seed(2))
    assert obs.shape == (20000, 10)
    assert float(obs[:, -1].var()) == pytest.approx(1 + 0.25, rel=0.05)


def test_fit_hurst_recovers_the_index():
    ts = torch.linspace(0.05, 1, 20, dtype=F64)
    g = gamma_grid(5, 20.0)
    obs = fbm.noisy_fbm(ts, 0.7, 64, 0.05, torch.Generator().manual_seed(0))
    history = fbm.fit_hurst(obs, ts, g, 0.05, iters=120)
    assert set(history) == {"loss", "H", "scale"} and len(history["H"]) == 120
    assert abs(history.last("H") - 0.7) < 0.1
    assert history["loss"][-1] < history["loss"][0]


def test_hurst_recovered():
    assert fbm.hurst_recovered([0.3, 0.5, 0.7], [0.32, 0.49, 0.68])
    assert fbm.hurst_recovered([0.7, 0.3], [0.75, 0.25])  # any order of the true values
    assert not fbm.hurst_recovered([0.3, 0.5, 0.7], [0.35, 0.5, 0.45])  # not monotone
    assert not fbm.hurst_recovered([0.3, 0.5, 0.7], [0.45, 0.5, 0.7])  # 0.15 off
    assert fbm.hurst_recovered([0.3, 0.5], [0.45, 0.5], tol=0.2)
    assert not fbm.hurst_recovered([0.3, 0.5, 0.7], [0.99, 0.99, 0.09])  # the control's values


def test_observation_control_and_the_elbo_loop():
    ts = torch.linspace(0, 1, 11, dtype=F64)
    obs_idx = torch.tensor([5, 10])
    obs = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    control = fbm.ObservationControl(obs, ts, obs_idx, K=3, hidden=8, seed=0)
    assert control.next_obs.tolist() == [0] * 5 + [1] * 5
    x, y = torch.zeros(2, 1), torch.zeros(2, 1, 3)
    assert torch.equal(control(x, ts[0], y), torch.zeros(2, 1))
    history = fbm.fit_hurst_elbo(control, gamma_grid(3), iters=3, generator=torch.Generator().manual_seed(0))
    assert set(history) == {"loss", "H", "scale"} and len(history["loss"]) == 3
    assert all(math.isfinite(v) for v in history["loss"])
    learned = fbm.hurst_by_elbo((0.3, 0.7), gamma_grid(3), 2, n=4, steps=10, seed=0,
                                generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert set(learned) == {0.3, 0.7} and all(0 < v < 1 for v in learned.values())


def test_noisy_fou_and_the_learned_drift_loop():
    ts = torch.linspace(0, 2, 201, dtype=F64)
    # theta = 0: the fOU is unit fBM; with theta > 0 the variance at t = 2 falls towards the stationary value
    free = fbm.noisy_fou(ts, 0.7, 0.0, 4000, 0.0, torch.Generator().manual_seed(0))
    assert free.shape == (4000, 201) and bool((free[:, 0] == 0).all())
    assert float(free[:, -1].var()) == pytest.approx(2**1.4, rel=0.1)
    pulled = fbm.noisy_fou(ts, 0.7, 2.0, 4000, 0.0, torch.Generator().manual_seed(0))
    # stationary variance of the fOU: Gamma(2H + 1) / (2 theta^{2H}) = 0.235 at H = 0.7, theta = 2
    assert float(pulled[:, -1].var()) == pytest.approx(math.gamma(2.4) / (2 * 2**1.4), rel=0.15)
    with pytest.raises(ValueError, match="starts at 0"):
        fbm.noisy_fou(ts[1:], 0.7, 2.0, 3, 0.0)
    history = fbm.fou_by_elbo(
        0.7, 2.0, gamma_grid(3), 3, n=4, steps=10, seed=0, generator=torch.Generator().manual_seed(0)
    )
    assert set(history) == {"loss", "H", "scale", "theta"} and len(history["theta"]) == 3
    assert history["theta"][0] != 0.5 and all(math.isfinite(v) for v in history["loss"])


def test_mafbm_bridge_std():
    g = gamma_grid(5, 20.0)
    ts = torch.tensor([0.0, 0.5, 1.0], dtype=F64)
    w = fbm.unit_omega(0.5, g)
    # without the observation the std is the approximation's own: sqrt of the diagonal of its covariance
    free = fbm.mafbm_bridge_std(w, g, ts, 1.0, 1e6)
    torch.testing.assert_close(free, torch.diagonal(mafbm_covariance(w, g, ts)).sqrt(), rtol=1e-6, atol=1e-9)
    # with an exact observation it vanishes at T, and it is close to the exact fBM bridge where the approximation is good
    pinned = fbm.mafbm_bridge_std(w, g, ts, 1.0, 0.0)
    assert float(pinned[-1]) < 1e-6 and float(pinned[0]) == 0
    assert float(pinned[1]) == pytest.approx(float(fbm.fbm_bridge_std(0.5, ts, 1.0, 0.0)[1]), rel=0.05)


def test_mixed_omega_is_the_type_one_matrix_with_the_type_two_vector():
    g = gamma_grid(4, 10.0)
    A, _ = fbm.normal_equations(0.3, g, 2.0, "I")
    _, b = fbm.normal_equations(0.3, g, 2.0, "II")
    torch.testing.assert_close(A @ fbm.mixed_omega(0.3, g, 2.0), b)
