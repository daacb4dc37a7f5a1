r"""Our SDE solvers side by side with a peer library's, on a problem with a closed form.

The peer is torchsde (from the ``peers`` extra); a reader without it gets an
:class:`ImportError` that names the package.
"""

from __future__ import annotations

import math

import torch

from ..runtime import Meter
from .solvers import euler_maruyama


def _torchsde():
    try:
        import torchsde
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the torchsde comparison needs the package torchsde (pip install torchsde)") from err
    return torchsde


class _OU(torch.nn.Module):
    """:math:`dX = -X\\,dt + dW` in torchsde's interface (``f(t, y)``, ``g(t, y)``)."""

    noise_type, sde_type = "diagonal", "ito"

    def f(self, t, y):
        return -y

    def g(self, t, y):
        return torch.ones_like(y)


def moment_z(a: torch.Tensor, b: torch.Tensor) -> float:
    r"""The larger of the differences of the means and of the variances of two independent samples ``a`` and
    ``b`` (of Gaussian values), each in standard errors of that difference:
    :math:`|\bar a - \bar b|/\sqrt{(s_a^2 + s_b^2)/n}` and :math:`|s_a^2 - s_b^2|/\sqrt{2(s_a^4 + s_b^4)/(n - 1)}`."""
    n = a.numel()
    va, vb = float(a.var()), float(b.var())
    z_mean = abs(float(a.mean() - b.mean())) / math.sqrt((va + vb) / n)
    z_var = abs(va - vb) / math.sqrt(2 * (va**2 + vb**2) / (n - 1))
    return max(z_mean, z_var)


def ou_against_torchsde(
    n: int, steps: int = 100, x0: float = 2.0, generator: torch.Generator | None = None
) -> tuple[dict[str, list[float]], float, float]:
    r"""Euler–Maruyama of :func:`~varbook.sde.euler_maruyama` and of torchsde on the Ornstein–Uhlenbeck SDE
    :math:`dX = -X\,dt + dW` from :math:`X_0 = x_0`, ``n`` paths, ``steps`` steps on :math:`[0, 1]`, on the CPU in
    float64.

    Returns a table and two statistics. The table maps ``"varbook.sde"``, ``"torchsde"`` and ``"exact"`` (mean
    :math:`x_0e^{-1}`, variance :math:`(1 - e^{-2})/2`) to ``[mean at t = 1, variance at t = 1, ms per step]``
    (NaN for the exact time). The statistic is :func:`moment_z` of the two solvers' values at :math:`t = 1`; the
    second is the same for a negative control, our solver with the Brownian increment scaled by :math:`h` instead of
    :math:`\sqrt h` (a diffusion of :math:`\sqrt h`), against the same torchsde paths.
    """
    torchsde = _torchsde()
    ts = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    start = torch.full((n, 1), x0, dtype=torch.float64)
    cpu = torch.device("cpu")
    with Meter(cpu) as m_ours:
        ours = euler_maruyama(lambda x, t: -x, lambda x, t: 1.0, start, ts, generator=generator)
    with Meter(cpu) as m_theirs:
        theirs = torchsde.sdeint(_OU(), start, ts, method="euler", dt=1 / steps)[-1]
    wrong = euler_maruyama(lambda x, t: -x, lambda x, t: math.sqrt(1 / steps), start, ts, generator=generator)
    table = {
        "varbook.sde": [float(ours.mean()), float(ours.var()), 1000 * m_ours.seconds / steps],
        "torchsde": [float(theirs.mean()), float(theirs.var()), 1000 * m_theirs.seconds / steps],
        "exact": [x0 * math.exp(-1), (1 - math.exp(-2)) / 2, math.nan],
    }
    return table, moment_z(ours, theirs), moment_z(wrong, theirs)
