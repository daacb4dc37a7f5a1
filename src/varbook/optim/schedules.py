r"""Step-size schedules: a schedule maps the step number :math:`t = 1, 2, \dots` to a step size.

Every schedule is a plain callable ``schedule(t) -> float`` (:data:`Schedule`), so a
learning-rate controller of a later chapter can take the place of one. :func:`schedule` builds the
three of the target-based surrogate paper :cite:`lavington2023target`:

* ``constant``: :math:`\eta_t=\eta_0`;
* ``inverse_sqrt`` (the paper's "stochastic" schedule): :math:`\eta_t=\eta_0/\sqrt t`;
* ``exponential``: :math:`\eta_t=\eta_0\,(1/T)^{(t-1)/T}` over ``total_steps`` :math:`T` (from
  :math:`\eta_0` at :math:`t=1` down to :math:`\eta_0 T^{-(T-1)/T}`), or :math:`\eta_0\gamma^{t-1}`
  for a given ``rate`` :math:`\gamma`.

>>> s = schedule("inverse_sqrt", 2.0)
>>> s(1), s(4)
(2.0, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ..runtime import check_choice

Schedule = Callable[[int], float]
"""A step size per step number (``t`` starts at 1)."""


SCHEDULES = ("constant", "inverse_sqrt", "exponential")
"""The names :func:`schedule` accepts."""


def _check_t(t: int) -> int:
    if t < 1:
        raise ValueError(f"step numbers start at 1, got {t}")
    return t


def constant(eta0: float) -> Callable[[int], float]:
    r""":math:`\eta_t=\eta_0`."""

    def eta(t: int) -> float:
        _check_t(t)
        return eta0

    return eta


def inverse_sqrt(eta0: float) -> Callable[[int], float]:
    r""":math:`\eta_t=\eta_0/\sqrt t` (the paper's "stochastic" schedule)."""
    return lambda t: eta0 / math.sqrt(_check_t(t))


def exponential(eta0: float, rate: float) -> Callable[[int], float]:
    r""":math:`\eta_t=\eta_0\,\gamma^{t-1}` with ``rate`` :math:`\gamma\in(0, 1]`."""
    if not 0 < rate <= 1:
        raise ValueError(f"an exponential schedule needs 0 < rate <= 1, got {rate}")
    return lambda t: eta0 * rate ** (_check_t(t) - 1)


def schedule(name: str, eta0: float, total_steps: int | None = None, rate: float | None = None) -> Schedule:
    """The schedule ``name`` (one of :data:`SCHEDULES`) starting at ``eta0``.

    ``exponential`` takes either ``rate`` or ``total_steps`` (then it decays by a factor
    ``total_steps`` over ``total_steps`` steps, as in the paper's code).

    >>> round(schedule("exponential", 1.0, total_steps=100)(101), 12)
    0.01
    >>> schedule("cosine", 1.0)
    Traceback (most recent call last):
    ...
    ValueError: unknown schedule 'cosine': use one of constant, inverse_sqrt, exponential
    """
    check_choice("schedule", name, SCHEDULES)
    if not (isinstance(eta0, int | float) and math.isfinite(eta0) and eta0 > 0):
        raise ValueError(f"the step size eta0 must be a positive number, got {eta0!r}")
    if name != "exponential" and (total_steps is not None or rate is not None):
        raise ValueError(f"total_steps and rate are for the schedule 'exponential' only, not {name!r}")
    if name == "constant":
        return constant(eta0)
    if name == "inverse_sqrt":
        return inverse_sqrt(eta0)
    if rate is not None and total_steps is not None:
        raise ValueError("an exponential schedule takes rate or total_steps, not both")
    if rate is None:
        if total_steps is None or total_steps < 1:
            raise ValueError("an exponential schedule needs rate or a positive total_steps")
        rate = (1.0 / total_steps) ** (1.0 / total_steps)
    return exponential(eta0, rate)


__all__ = ["SCHEDULES", "Schedule", "constant", "exponential", "inverse_sqrt", "schedule"]
