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
        lambda x, t: -x, lambda t: math.sqrt(2), torch.full((n,), 2.0, dtype=torch.float64), ts, generator=g
    )
    mean, var = 2 * math.exp(-1), 1 - math.exp(-2)
    assert abs(float(x.mean()) - mean) < 4 * math.sqrt(var / n) + 5e-3
    assert abs(float(x.var()) - var) < 4 * var * math.sqrt(2 / n) + 5e-3


def test_bad_grid():
    with pytest.raises(ValueError, match="monotone"):
        euler(lambda x, t: x, torch.zeros(1), torch.tensor([0.0, 1.0, 0.5]))
    with pytest.raises(ValueError, match="at least two"):
        euler(lambda x, t: x, torch.zeros(1), torch.tensor([0.0]))
