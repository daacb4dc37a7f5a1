r"""Log-densities of ODE flows by the instantaneous change of variables :cite:`chen2018neural`.

If :math:`\dot X = b(X, t)` carries :math:`\rho_{t_0}` to :math:`\rho_{t_1}`, then along a path
:math:`\frac{d}{dt}\log\rho_t(X_t) = -\nabla\cdot b(X_t, t)`. Integrating the augmented state
:math:`(X, \ell)` with :math:`\dot\ell = \nabla\cdot b` from the point :math:`x` at :math:`t_1` back to :math:`t_0` gives
:math:`\log\rho_{t_1}(x) = \log\rho_{t_0}(X_{t_0}) + \ell(t_0)`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..protocols import Drift
from ..runtime import Meter, check_choice, randint
from . import solvers

METHODS = ("euler", "heun")
"""The fixed-grid ODE solvers :func:`ode_log_likelihood` integrates with."""


def divergence(
    fx: torch.Tensor, x: torch.Tensor, probes: int = 0, generator: torch.Generator | None = None
) -> torch.Tensor:
    r""":math:`\nabla\cdot f` at ``x`` for ``fx = f(x)`` built with autograd, shape ``(batch,)``.

    ``probes = 0``: exact, one backward pass per dimension. ``probes > 0``: Hutchinson's unbiased
    estimate :math:`\mathbb E[\varepsilon^\top (\partial f/\partial x)\varepsilon]` with that many Rademacher probes.
    """
    if fx.shape != x.shape or x.dim() != 2:
        raise ValueError(f"need f(x) and x of the same shape (batch, d), got {tuple(fx.shape)} and {tuple(x.shape)}")
    total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    if probes == 0:
        for i in range(x.shape[1]):
            total = total + torch.autograd.grad(fx[:, i].sum(), x, retain_graph=True)[0][:, i]
        return total
    for _ in range(probes):
        e = (randint(0, 2, x.shape, generator=generator, device=x.device) * 2 - 1).to(x)
        (vjp,) = torch.autograd.grad(fx, x, e, retain_graph=True)
        total = total + (vjp * e).sum(1)
    return total / probes


def augmented_drift(drift: Drift, probes: int = 0, generator: torch.Generator | None = None) -> Drift:
    r"""The drift of the state :math:`(x, \ell)` with :math:`\dot\ell = \nabla\cdot b(x, t)`, as a function ``(state, t)``
    for any ODE solver; ``probes`` as in :func:`divergence`."""

    def augmented(state: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            y = state[:, :-1].detach().requires_grad_(True)
            fy = drift(y, t)
            div = divergence(fy, y, probes, generator)
        return torch.cat([fy.detach(), div.detach()[:, None]], 1)

    return augmented


def ode_log_likelihood(
    drift: Drift,
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
    check_choice("method", method, METHODS)
    start = torch.cat([x, torch.zeros(x.shape[0], 1, dtype=x.dtype, device=x.device)], 1)
    # integrate (X, l) with dl/dt = div b from t1 back to t0,
    # then log rho_t1(x) = log rho_t0(X_t0) + l(t0)
    end = (solvers.heun if method == "heun" else solvers.euler)(augmented_drift(drift, probes, generator), start, ts)
    return base_log_prob(end[:, :-1]) + end[:, -1]


def ode_log_likelihood_dopri5(
    drift: Drift,
    x: torch.Tensor,
    base_log_prob: Callable[[torch.Tensor], torch.Tensor],
    t1: float = 1.0,
    t0: float = 0.0,
    rtol: float = 1e-8,
    atol: float = 1e-8,
    first_step: float = 1e-3,
) -> torch.Tensor:
    r""":func:`ode_log_likelihood` with torchdiffeq's adaptive dopri5 :cite:`chen2018torchdiffeq` from ``t1`` to ``t0``.

    The same augmented drift (:func:`augmented_drift`, exact divergence); the solver is made to land exactly
    on ``t0``. Needs ``torchdiffeq`` (the ``peers`` extra of varbook).
    """
    base, ell = _dopri5_parts(drift, x, base_log_prob, t1, t0, rtol, atol, first_step)
    return base + ell


def _dopri5_parts(
    drift: Drift,
    x: torch.Tensor,
    base_log_prob: Callable[[torch.Tensor], torch.Tensor],
    t1: float,
    t0: float,
    rtol: float,
    atol: float,
    first_step: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The two terms of :func:`ode_log_likelihood_dopri5`: :math:`\log\rho_{t_0}(X_{t_0})` and :math:`\ell(t_0)`."""
    try:
        from torchdiffeq import odeint
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("ode_log_likelihood_dopri5 needs torchdiffeq: pip install torchdiffeq") from err
    augmented = augmented_drift(drift)
    start = torch.cat([x, torch.zeros(len(x), 1, dtype=x.dtype, device=x.device)], 1)
    end = odeint(
        lambda t, state: augmented(state, t),
        start,
        torch.tensor([t1, t0], dtype=x.dtype),
        method="dopri5",
        rtol=rtol,
        atol=atol,
        options=dict(first_step=first_step, step_t=torch.tensor([t0], dtype=x.dtype)),
    )[-1]
    return base_log_prob(end[:, :-1]), end[:, -1]


def likelihood_errors(
    drift: Drift,
    log_prob: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    heun_steps=(25, 50, 200),
    t1: float = 1.0,
    t0: float = 0.0,
) -> dict[str, dict[str, float]]:
    r"""Accuracy and cost of the ODE log-likelihood of points ``x`` at ``t1`` when the exact ``log_prob(x, t)`` is known.

    Solvers: dopri5 (tolerance 1e-8, :func:`ode_log_likelihood_dopri5`) and our fixed-step Heun with each number of
    ``heun_steps``, all with the base :math:`\log\rho_{t_0}` = ``log_prob(·, t0)``. Returns, per solver, the mean
    absolute error in nats against ``log_prob(x, t1)`` and the wall time in seconds. The row
    ``"dopri5, divergence sign flipped (control)"`` is a negative control from the same dopri5 solve:
    :math:`\log\rho_{t_0}(X_{t_0}) - \ell(t_0)`, the sign a forgotten reversal of the time direction gives.
    """
    t_end = torch.tensor(t1, dtype=x.dtype)
    true_logp = log_prob(x, t_end)

    def base(y: torch.Tensor) -> torch.Tensor:
        return log_prob(y, torch.tensor(t0, dtype=x.dtype))

    rows = {}
    with Meter(x.device) as m:
        base_term, ell = _dopri5_parts(drift, x, base, t1, t0, 1e-8, 1e-8, 1e-3)
    rows["dopri5 (tol 1e-8)"] = {
        "mean |log ρ error| (nats)": float((base_term + ell - true_logp).abs().mean()),
        "seconds": m.seconds,
    }
    rows["dopri5, divergence sign flipped (control)"] = {
        "mean |log ρ error| (nats)": float((base_term - ell - true_logp).abs().mean()),
        "seconds": m.seconds,
    }
    for n in heun_steps:
        with Meter(x.device) as m:
            logp = ode_log_likelihood(drift, x, torch.linspace(t1, t0, n + 1, dtype=x.dtype), base)
        rows[f"ours, Heun {n} steps"] = {
            "mean |log ρ error| (nats)": float((logp - true_logp).abs().mean()),
            "seconds": m.seconds,
        }
    return rows
