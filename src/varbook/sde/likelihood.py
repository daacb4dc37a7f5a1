r"""Log-densities of ODE flows by the instantaneous change of variables :cite:`chen2018neural`.

If :math:`\dot X = b(X, t)` carries :math:`\rho_{t_0}` to :math:`\rho_{t_1}`, then along a path
:math:`\frac{d}{dt}\log\rho_t(X_t) = -\nabla\cdot b(X_t, t)`. Integrating the augmented state
:math:`(X, \ell)` with :math:`\dot\ell = \nabla\cdot b` from the point :math:`x` at :math:`t_1` back to :math:`t_0` gives
:math:`\log\rho_{t_1}(x) = \log\rho_{t_0}(X_{t_0}) + \ell(t_0)`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from . import solvers


def divergence(
    fx: torch.Tensor, x: torch.Tensor, probes: int = 0, generator: torch.Generator | None = None
) -> torch.Tensor:
    r""":math:`\nabla\cdot f` at ``x`` for ``fx = f(x)`` built with autograd, shape ``(batch,)``.

    ``probes = 0``: exact, one backward pass per dimension. ``probes > 0``: Hutchinson's unbiased
    estimate :math:`\mathbb E[\varepsilon^\top (\partial f/\partial x)\varepsilon]` with that many Rademacher probes.
    """
    if fx.shape != x.shape or x.dim() != 2:
        raise ValueError(f"need f(x) and x of the same shape (batch, d), got {tuple(fx.shape)} and {tuple(x.shape)}")
    if probes == 0:
        return sum(torch.autograd.grad(fx[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(x.shape[1]))
    total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for _ in range(probes):
        e = (torch.randint(0, 2, x.shape, generator=generator) * 2 - 1).to(x)
        (vjp,) = torch.autograd.grad(fx, x, e, retain_graph=True)
        total = total + (vjp * e).sum(1)
    return total / probes


def augmented_drift(
    drift: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    probes: int = 0,
    generator: torch.Generator | None = None,
):
    r"""The drift of the state :math:`(x, \ell)` with :math:`\dot\ell = \nabla\cdot b(x, t)`, as a function ``(state, t)``
    for any ODE solver; ``probes`` as in :func:`divergence`."""

    def augmented(state, t):
        with torch.enable_grad():
            y = state[:, :-1].detach().requires_grad_(True)
            fy = drift(y, t)
            div = divergence(fy, y, probes, generator)
        return torch.cat([fy.detach(), div.detach()[:, None]], 1)

    return augmented


def ode_log_likelihood(
    drift: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    ts,
    base_log_prob: Callable[[torch.Tensor], torch.Tensor],
    method: str = "heun",
    probes: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r""":math:`\log\rho_{t_1}(x)` for points ``x (batch, d)`` of the flow of ``drift``; ``ts`` runs from :math:`t_1` (where ``x`` lives) to :math:`t_0`.

    ``base_log_prob`` is :math:`\log\rho_{t_0}`; ``method`` is ``"euler"`` or ``"heun"`` on the fixed grid;
    ``probes`` as in :func:`divergence`.
    """
    if method not in ("euler", "heun"):
        raise ValueError(f"unknown method {method!r}: use 'euler' or 'heun'")
    start = torch.cat([x, torch.zeros(x.shape[0], 1, dtype=x.dtype, device=x.device)], 1)
    end = (solvers.heun if method == "heun" else solvers.euler)(augmented_drift(drift, probes, generator), start, ts)
    return base_log_prob(end[:, :-1]) + end[:, -1]
