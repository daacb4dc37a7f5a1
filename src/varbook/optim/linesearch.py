r"""The Armijo backtracking line search, as a ``torch.optim`` optimiser.

One step from :math:`\theta` with gradient :math:`g=\nabla f(\theta)` tries
:math:`\theta-\alpha g` for :math:`\alpha=\alpha_0,\beta\alpha_0,\beta^2\alpha_0,\dots` and accepts
the first step size that satisfies Armijo's sufficient-decrease condition

.. math:: f(\theta-\alpha g)\le f(\theta)-c\,\alpha\,\lVert g\rVert^2 .

The next step starts from the accepted :math:`\alpha` times ``grow`` (:math:`\ge 1`), and
:meth:`Armijo.reset` puts it back to ``init_step``. On a minibatch loss this is the stochastic
line search (SLS) of Vaswani et al.; inside the target-based surrogate method
:cite:`lavington2023target` it minimises the surrogate of one outer step, reset at every outer
step so that a small step found once does not stay forever. The defaults are those of the
paper's code: :math:`c=0.1`, :math:`\beta=0.9`, :math:`\alpha_0=10`, at most 100 backtracks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

Closure = Callable[[bool], torch.Tensor]
"""``closure(backward)``: the loss at the current parameters; with ``backward=True`` also ``loss.backward()``."""


@dataclass
class LineSearchStep:
    """What the last :meth:`Armijo.step` did."""

    loss: float  # f(theta) before the step
    loss_next: float  # f at the last step size tried
    step_size: float  # the accepted step size (the last one tried when none was accepted)
    grad_norm_sq: float  # ||g||^2
    backtracks: int  # step sizes rejected
    accepted: bool  # False: no step size passed; the parameters did not move


class Armijo(torch.optim.Optimizer):
    """Gradient steps whose size is chosen by backtracking until Armijo's condition holds.

    ``step(closure)`` needs a closure that takes ``backward`` (see :data:`Closure`): it is called
    once with ``True`` for the gradient, then with ``False`` (under ``torch.no_grad``) for every
    step size tried. Counters: :attr:`gradients` (closure calls with a backward pass) and
    :attr:`evaluations` (calls without).

    >>> w = torch.nn.Parameter(torch.tensor([3.0]))
    >>> opt = Armijo([w], init_step=10.0)
    >>> def f(backward):
    ...     loss = (w**2).sum()
    ...     if backward:
    ...         loss.backward()
    ...     return loss
    >>> _ = opt.step(f)
    >>> opt.last.accepted, float(w.detach()) < 3.0
    (True, True)
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        init_step: float = 10.0,
        c: float = 0.1,
        beta: float = 0.9,
        max_backtracks: int = 100,
        grow: float = 1.0,
        max_step: float = math.inf,
    ):
        if not init_step > 0 or not math.isfinite(init_step):
            raise ValueError(f"init_step must be a positive number, got {init_step}")
        if not 0 < c < 1:
            raise ValueError(f"Armijo's constant c must be in (0, 1), got {c}")
        if not 0 < beta < 1:
            raise ValueError(f"the backtracking factor beta must be in (0, 1), got {beta}")
        if max_backtracks < 0:
            raise ValueError(f"max_backtracks must be non-negative, got {max_backtracks}")
        if not 1 <= grow < math.inf:
            raise ValueError(f"grow must be a finite number of at least 1, got {grow}")
        if not max_step > 0:
            raise ValueError(f"max_step must be positive (math.inf: no cap), got {max_step}")
        super().__init__(params, {})
        self.init_step, self.c, self.beta = float(init_step), float(c), float(beta)
        self.max_backtracks, self.grow, self.max_step = int(max_backtracks), float(grow), float(max_step)
        self.step_size = self.init_step
        self.gradients = 0
        self.evaluations = 0
        self.last: LineSearchStep | None = None

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def reset(self, step: float | None = None) -> None:
        """Start the next line search from ``step`` (default: ``init_step``) again."""
        if step is not None and not (math.isfinite(step) and step > 0):
            raise ValueError(f"the line search must restart from a positive step, got {step}")
        self.step_size = self.init_step if step is None else float(step)

    def step(self, closure=None) -> torch.Tensor:  # type: ignore[override]
        """One Armijo step; returns the loss before it."""
        if closure is None:
            raise ValueError("Armijo.step needs a closure(backward) that returns the loss")
        params = self._params()
        self.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss = closure(True)
        self.gradients += 1
        f0 = float(loss.detach())
        if not math.isfinite(f0):
            raise FloatingPointError(f"the line search started from a loss of {f0}")
        with torch.no_grad():
            start = [p.detach().clone() for p in params]
            grads = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in params]
            gnorm2 = float(sum((g * g).sum() for g in grads))
            alpha = min(self.step_size * self.grow, self.max_step)
            accepted, backtracks, f1 = gnorm2 == 0.0, 0, f0
            while not accepted:
                for p, p0, g in zip(params, start, grads, strict=True):
                    torch.add(p0, g, alpha=-alpha, out=p)
                f1 = float(closure(False))
                self.evaluations += 1
                if f1 <= f0 - self.c * alpha * gnorm2:  # Armijo's condition
                    accepted = True
                elif backtracks == self.max_backtracks:
                    break
                else:
                    alpha *= self.beta
                    backtracks += 1
            if not accepted:  # no step size passed: stay where we were
                for p, p0 in zip(params, start, strict=True):
                    p.copy_(p0)
        self.step_size = alpha
        self.last = LineSearchStep(f0, f1, alpha, gnorm2, backtracks, accepted)
        return loss


__all__ = ["Armijo", "Closure", "LineSearchStep"]
