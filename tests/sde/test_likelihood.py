import math

import pytest
import torch

from varbook.sde import divergence, likelihood_errors, ode_log_likelihood, ode_log_likelihood_dopri5


def test_divergence_exact_and_hutchinson():
    a = torch.tensor([[1.0, 2.0, 0.0], [0.5, -1.0, 3.0], [0.0, 1.0, 2.0]], dtype=torch.float64)
    x = torch.randn(500, 3, dtype=torch.float64, requires_grad=True)
    fx = x @ a.T + torch.sin(x)
    exact = torch.trace(a) + torch.cos(x.detach()).sum(1)
    torch.testing.assert_close(divergence(fx, x), exact)
    est = divergence(fx, x, probes=200, generator=torch.Generator().manual_seed(0))
    err = est - exact
    assert abs(float(err.mean())) < 4 * float(err.std()) / math.sqrt(len(err)) + 1e-9


def test_ode_log_likelihood_of_a_linear_flow():
    # dx/dt = -x/2 carries N(0, I) at t = 0 to N(0, e^{-1} I) at t = 1
    x = torch.randn(100, 2, dtype=torch.float64)
    ts = torch.linspace(1, 0, 201, dtype=torch.float64)
    base = lambda y: -0.5 * (y**2).sum(1) - math.log(2 * math.pi)  # noqa: E731
    logp = ode_log_likelihood(lambda y, t: -0.5 * y, x, ts, base)
    var = math.exp(-1)
    exact = -0.5 * (x**2).sum(1) / var - math.log(2 * math.pi * var)
    torch.testing.assert_close(logp, exact, rtol=0, atol=1e-4)  # Heun, h = 1/200


def test_bad_input():
    with pytest.raises(ValueError, match="unknown method"):
        ode_log_likelihood(lambda y, t: y, torch.zeros(2, 2), torch.linspace(1, 0, 3), lambda y: y.sum(1), method="rk4")
    with pytest.raises(ValueError, match="same shape"):
        divergence(torch.zeros(2, 3), torch.zeros(2, 2))


def test_dopri5_log_likelihood_of_a_linear_flow_and_the_solver_table():
    # the flow of the test above, whose log-density at t = 1 is known in closed form
    x = torch.randn(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def log_prob(y, t):  # N(0, e^{-t} I)
        var = torch.exp(-t)
        return -0.5 * (y**2).sum(1) / var - torch.log(2 * math.pi * var)

    def drift(y, t):
        return -0.5 * y

    exact = log_prob(x, torch.tensor(1.0, dtype=torch.float64))
    logp = ode_log_likelihood_dopri5(drift, x, lambda y: log_prob(y, torch.tensor(0.0, dtype=torch.float64)))
    torch.testing.assert_close(logp, exact, rtol=0, atol=1e-7)
    rows = likelihood_errors(drift, log_prob, x, heun_steps=(5, 20))
    control = rows.pop("dopri5, divergence sign flipped (control)")
    assert list(rows) == ["dopri5 (tol 1e-8)", "ours, Heun 5 steps", "ours, Heun 20 steps"]
    errors = [r["mean |log ρ error| (nats)"] for r in rows.values()]
    assert errors[0] < 1e-7 and errors[2] < errors[1]  # Heun converges with the number of steps
    # the control: log ρ0(X0) − ℓ; here div b = −1 (−1/2 per dimension), so ℓ = 1 and it is off by 2 nats
    assert control["mean |log ρ error| (nats)"] == pytest.approx(2.0, abs=1e-6)
    assert all(r["seconds"] >= 0 for r in rows.values())
