r"""The kinds of callable the library passes around, as :class:`typing.Protocol` types.

One convention per kind: the state :math:`x` comes first, the time :math:`t` second, and anything
else after them. The parameters are positional-only, so any function or lambda with that shape
fits, whatever it names its arguments.

* :class:`Drift` ``b(x, t) -> Tensor``: the solvers of :mod:`varbook.sde.solvers`, probability-flow ODEs;
* :class:`Diffusion` ``g(x, t) -> Tensor | float``: :func:`varbook.sde.solvers.euler_maruyama`;
* :class:`Score` ``s(x, t) -> Tensor``, :math:`\nabla_x\log p_t(x)`: interpolant SDEs, reverse-time samplers;
* :class:`Control` ``u(x, t, y) -> Tensor``: :func:`varbook.sde.fbm.fbm_sde_rollout`;
* :class:`Baseline` ``value()`` and ``update(score, loss)``: REINFORCE in :mod:`varbook.estimators`.

>>> import torch
>>> def drift(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
...     return -x
>>> isinstance(drift, Drift)
True
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

__all__ = ["Drift", "Diffusion", "Score", "Control", "Baseline"]


@runtime_checkable
class Drift(Protocol):
    r"""A drift :math:`b(x, t)`: states ``x`` of shape ``(batch, ...)`` and a time ``t`` (0-dimensional or ``(batch,)``)."""

    def __call__(self, x: torch.Tensor, t: torch.Tensor, /) -> torch.Tensor: ...


@runtime_checkable
class Diffusion(Protocol):
    r"""A diffusion coefficient :math:`g(x, t)`: a tensor broadcastable to ``x`` (diagonal noise) or a number."""

    def __call__(self, x: torch.Tensor, t: torch.Tensor, /) -> torch.Tensor | float: ...


@runtime_checkable
class Score(Protocol):
    r"""A score :math:`s(x, t) = \nabla_x\log p_t(x)`, with the shape of ``x``."""

    def __call__(self, x: torch.Tensor, t: torch.Tensor, /) -> torch.Tensor: ...


@runtime_checkable
class Control(Protocol):
    r"""A control :math:`u(x, t, y)` of a controlled SDE: the state ``x``, the time ``t``, then the auxiliary state ``y``
    (the Ornstein–Uhlenbeck states of Markov-approximate fBM); returns a tensor with the shape of ``x``."""

    def __call__(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, /) -> torch.Tensor: ...


@runtime_checkable
class Baseline(Protocol):
    r"""A control variate :math:`\bar L` for score-function estimators (:mod:`varbook.estimators.baselines`).

    ``value()`` is read before the current sample is seen (a number, or a per-unit tensor);
    ``update(score, loss)`` then folds in the sample's score :math:`h - p` and per-example loss.
    The score is ``None`` where the caller has no per-unit score (a random choice of a
    :mod:`varbook.vi.programmable` program); a baseline that needs it raises a :class:`ValueError`.
    """

    def value(self) -> float | torch.Tensor: ...

    def update(self, score: torch.Tensor | None, loss: torch.Tensor) -> None: ...
