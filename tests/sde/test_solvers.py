import math

import pytest
import torch

from varbook.sde import euler, euler_maruyama, heun


@pytest.mark.parametrize("solver,order", [(euler, 1), (heun, 2)])
def test_order_on_linear_decay(solver, order):
    x0 = torch.ones(1, dtype=torch.float64)
    errs = []
    for n in (50, 100):
        ts = torch.linspace(0, 1, n + 1, dtype=torch.float64)
        errs.append(abs(float(solver(lambda x, t: -x, x0, ts)) - math.exp(-1)))
    assert abs(math.log2(errs[0] / errs[1]) - order) < 0.1


def test_backward_in_time_and_paths():
    ts = torch.linspace(1, 0, 11, dtype=torch.float64)
    path = heun(lambda x, t: -x, torch.ones(3, dtype=torch.float64), ts, path=True)
    assert path.shape == (11, 3)
    torch.testing.assert_close(
        path[-1], torch.full((3,), math.e, dtype=torch.float64), rtol=2e-3 * 10, atol=0
    )  # Heun error ~ e h^2 / 6


def test_euler_maruyama_ornstein_uhlenbeck_moments():
    # dx = -x dt + sqrt(2) dW from x = 2: mean 2 e^{-t}, variance 1 - e^{-2t}
    n = 20000
    g = torch.Generator().manual_seed(0)
    ts = torch.linspace(0, 1, 201, dtype=torch.float64)
    x = euler_maruyama(
        lambda x, t: -x, lambda x, t: math.sqrt(2), torch.full((n,), 2.0, dtype=torch.float64), ts, generator=g
    )
    mean, var = 2 * math.exp(-1), 1 - math.exp(-2)
    assert abs(float(x.mean()) - mean) < 4 * math.sqrt(var / n) + 5e-3
    assert abs(float(x.var()) - var) < 4 * var * math.sqrt(2 / n) + 5e-3


def test_bad_grid():
    with pytest.raises(ValueError, match="monotone"):
        euler(lambda x, t: x, torch.zeros(1), torch.tensor([0.0, 1.0, 0.5]))
    with pytest.raises(ValueError, match="at least two"):
        euler(lambda x, t: x, torch.zeros(1), torch.tensor([0.0]))


def _gbm_strong_error(method: str, n_steps: int, n_paths: int = 4000, seed: int = 0) -> float:
    """Mean |X_N - X(T)| for geometric Brownian motion driven by the solver's own increments (regenerated from its seed)."""
    from varbook.sde import stochastic_heun

    mu, sig = 0.5, 0.8
    ts = torch.linspace(0, 1, n_steps + 1, dtype=torch.float64)
    x0 = torch.ones(n_paths, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    if method == "heun":  # Stratonovich dX = mu X dt + sig X o dW: X_1 = exp(mu + sig W_1)
        out = stochastic_heun(lambda x, t: mu * x, lambda x, t: sig * x, x0, ts, generator=gen)
        drift_exp = mu
    else:  # Ito dX = mu X dt + sig X dW: X_1 = exp(mu - sig^2 / 2 + sig W_1)
        out = euler_maruyama(lambda x, t: mu * x, lambda x, t: sig * x, x0, ts, generator=gen)
        drift_exp = mu - sig**2 / 2
    g = torch.Generator().manual_seed(seed)
    w = sum(torch.randn(n_paths, generator=g, dtype=torch.float64) for _ in range(n_steps)) / math.sqrt(n_steps)
    return float((out - torch.exp(drift_exp + sig * w)).abs().mean())


def test_strong_orders():
    em_order = math.log(_gbm_strong_error("em", 16) / _gbm_strong_error("em", 256)) / math.log(16)
    heun_order = math.log(_gbm_strong_error("heun", 16) / _gbm_strong_error("heun", 256)) / math.log(16)
    assert abs(em_order - 0.5) < 0.15, em_order
    assert abs(heun_order - 1.0) < 0.15, heun_order


def test_weak_order_of_euler_maruyama():
    # additive-noise OU: E X_T = x0 e^{-T}; Euler-Maruyama's mean is x0 (1 - h)^N exactly, a first-order bias
    n = 20000
    errs = []
    for steps in (10, 20):
        ts = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
        x = euler_maruyama(lambda x, t: -x, lambda x, t: 0.5, torch.full((n,), 2.0, dtype=torch.float64), ts,
                           generator=torch.Generator().manual_seed(steps))  # fmt: skip
        assert abs(float(x.mean()) - 2 * (1 - 1 / steps) ** steps) < 4 * float(x.std()) / math.sqrt(n)
        errs.append(abs(2 * (1 - 1 / steps) ** steps - 2 * math.exp(-1)))
    assert abs(math.log2(errs[0] / errs[1]) - 1.0) < 0.1
