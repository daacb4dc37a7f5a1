r"""Fixed-grid solvers for :math:`dx = b(x, t)\,dt + g(x, t)\,dW` and its deterministic special case.

The grid ``ts`` may increase or decrease (reverse-time SDEs integrate from :math:`t = 1` down to 0);
the Brownian increment over a step has variance :math:`|t_{n+1} - t_n|`. Drifts take ``(x, t)``
with ``t`` a 0-dimensional float64 tensor. Each solver returns the final state, or the whole path
(``(n_steps + 1, *x.shape)``) with ``path=True``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..protocols import Diffusion, Drift
from ..runtime import randn_like

Step = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, bool], torch.Tensor]
"""One step ``step(x, t, s, last)`` from time ``t`` to ``s``; ``last`` marks the final step of the grid."""


def _check_grid(ts: torch.Tensor) -> torch.Tensor:
    ts = torch.as_tensor(ts, dtype=torch.float64)
    if ts.dim() != 1 or ts.numel() < 2:
        raise ValueError(f"ts must be a 1-D grid of at least two times, got shape {tuple(ts.shape)}")
    d = ts.diff()
    if not ((d > 0).all() or (d < 0).all()):
        raise ValueError("ts must be strictly monotone")
    return ts


def _run(step: Step, x: torch.Tensor, ts, path: bool) -> torch.Tensor:
    ts = _check_grid(ts)
    out = [x]
    for n in range(len(ts) - 1):
        x = step(x, ts[n], ts[n + 1], n == len(ts) - 2)
        if path:
            out.append(x)
    return torch.stack(out) if path else x


def euler(drift: Drift, x: torch.Tensor, ts, path: bool = False) -> torch.Tensor:
    r"""Explicit Euler for :math:`\dot x = b(x, t)`: :math:`x_{n+1} = x_n + (t_{n+1} - t_n)\,b(x_n, t_n)`. One evaluation per step.

    For :math:`\dot x = -x` each step of size :math:`h` multiplies by :math:`1 - h`:

    >>> euler(lambda x, t: -x, torch.ones(1), torch.linspace(0, 1, 3))
    tensor([0.2500])
    """
    return _run(lambda x, t, s, last: x + (s - t).to(x) * drift(x, t), x, ts, path)


def heun(drift: Drift, x: torch.Tensor, ts, path: bool = False, euler_last: bool = False) -> torch.Tensor:
    r"""Heun's method (explicit trapezoid), second order: two evaluations per step.

    :math:`\tilde x = x_n + h\,b(x_n, t_n)`, :math:`x_{n+1} = x_n + \tfrac h2\,(b(x_n, t_n) + b(\tilde x, t_{n+1}))`.
    ``euler_last=True`` takes a plain Euler last step, for drifts that are singular at the final time
    (the data end of a diffusion, :cite:`karras2022elucidating`); that makes :math:`2N - 1` evaluations.
    """

    def step(x, t, s, last):
        h = (s - t).to(x)
        d = drift(x, t)
        pred = x + h * d
        if last and euler_last:
            return pred
        return x + 0.5 * h * (d + drift(pred, s))

    return _run(step, x, ts, path)


def euler_maruyama(
    drift: Drift,
    diffusion: Diffusion,
    x: torch.Tensor,
    ts,
    generator: torch.Generator | None = None,
    path: bool = False,
    noise_last: bool = True,
) -> torch.Tensor:
    r"""Euler–Maruyama (Itô): :math:`x_{n+1} = x_n + b(x_n, t_n)\,h + g(x_n, t_n)\sqrt{|h|}\,z_n`, :math:`z_n \sim \mathcal N(0, I)`.

    ``diffusion(x, t)`` returns :math:`g(x, t)` (a scalar or a tensor broadcastable to ``x``; diagonal noise). ``noise_last=False``
    leaves the noise out of the last step, the usual choice when the last step lands on the data.
    Noise is drawn from ``generator`` on its own device (:func:`varbook.runtime.randn_like`), so that a CPU
    generator gives the same runs on every device.
    """

    def step(x, t, s, last):
        h = (s - t).to(x)
        g = torch.as_tensor(diffusion(x, t), dtype=x.dtype, device=x.device)
        x_next = x + h * drift(x, t)
        if last and not noise_last:
            return x_next
        z = randn_like(x, generator)
        return x_next + g * h.abs().sqrt() * z

    return _run(step, x, ts, path)


def stochastic_heun(
    drift: Drift,
    diffusion: Diffusion,
    x: torch.Tensor,
    ts,
    generator: torch.Generator | None = None,
    path: bool = False,
) -> torch.Tensor:
    r"""Stochastic Heun for the **Stratonovich** SDE :math:`dx = b\,dt + g(x, t)\circ dW` with diagonal noise.

    Predictor :math:`\tilde x = x + bh + g\Delta W`, corrector
    :math:`x + \tfrac12(b + \tilde b)h + \tfrac12(g + \tilde g)\Delta W` with the same increment; strong order 1 for
    additive or commutative noise. ``diffusion(x, t)`` returns :math:`g` with the shape of ``x``.
    """

    def step(x, t, s, last):
        h = (s - t).to(x)
        dw = randn_like(x, generator) * h.abs().sqrt()
        b, g = drift(x, t), diffusion(x, t)
        pred = x + b * h + g * dw
        return x + 0.5 * (b + drift(pred, s)) * h + 0.5 * (g + diffusion(pred, s)) * dw

    return _run(step, x, ts, path)
