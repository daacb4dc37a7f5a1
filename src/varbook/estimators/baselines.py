r"""Baselines (control variates) for score-function estimators :cite:`bengio2013estimating,williams1992simple`.

A baseline :math:`\bar L` that does not depend on the sample leaves
:math:`(h-p)(L-\bar L)` unbiased and changes only its variance. Per unit :math:`i`, the
variance-minimising constant is

.. math:: \bar L_i = \frac{\mathbb E[(h_i-p_i)^2 L]}{\mathbb E[(h_i-p_i)^2]},

which :class:`PerUnitOptimalBaseline` tracks with exponential moving averages of the numerator
and the denominator. All baselines expose ``value()`` (read before the current sample is
seen) and ``update(score, loss)``.
"""

from __future__ import annotations

import torch


class ConstantBaseline:
    """A fixed baseline (0 gives plain REINFORCE)."""

    def __init__(self, value: float = 0.0):
        self._value = float(value)

    def value(self) -> float:
        return self._value

    def update(self, score: torch.Tensor, loss: torch.Tensor) -> None:
        return None


class EMABaseline:
    r"""A scalar moving average of the loss, :math:`\bar L\leftarrow m\bar L+(1-m)\,\overline{L}_{\text{batch}}`."""

    def __init__(self, momentum: float = 0.9):
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self._mean: torch.Tensor | None = None

    def value(self):
        return 0.0 if self._mean is None else self._mean

    def update(self, score: torch.Tensor, loss: torch.Tensor) -> None:
        batch = loss.detach().mean()
        self._mean = batch if self._mean is None else self.momentum * self._mean + (1 - self.momentum) * batch


class PerUnitOptimalBaseline:
    r"""Per-unit variance-optimal baseline from moving averages of :math:`(h_i-p_i)^2L` and :math:`(h_i-p_i)^2`.

    ``score`` is :math:`h-p` with shape ``(N, *units)``, ``loss`` the per-example loss ``(N,)``.
    Until the first update the value is 0.
    """

    def __init__(self, momentum: float = 0.9, eps: float = 1e-12):
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum, self.eps = momentum, eps
        self._num: torch.Tensor | None = None
        self._den: torch.Tensor | None = None

    def value(self):
        if self._num is None:
            return 0.0
        return self._num / self._den.clamp_min(self.eps)

    def update(self, score: torch.Tensor, loss: torch.Tensor) -> None:
        s2 = score.detach() ** 2
        weight = loss.detach().reshape(-1, *([1] * (s2.dim() - 1)))
        num, den = (s2 * weight).mean(0), s2.mean(0)
        if self._num is None:
            self._num, self._den = num, den
        else:
            m = self.momentum
            self._num = m * self._num + (1 - m) * num
            self._den = m * self._den + (1 - m) * den


def optimal_baseline(
    score: torch.Tensor, loss: torch.Tensor, weights: torch.Tensor | None = None, per_unit: bool = True
):
    r"""The variance-optimal constant baseline from samples or from an enumeration.

    ``score`` ``(S, n)`` holds :math:`h-p`, ``loss`` ``(S,)`` the losses and ``weights`` ``(S,)``
    the probabilities of the states (uniform when ``None``, i.e. Monte Carlo samples).
    ``per_unit=True`` gives one baseline per unit; ``False`` the best single scalar,
    :math:`\sum_i\mathbb E[(h_i-p_i)^2L]/\sum_i\mathbb E[(h_i-p_i)^2]`.
    """
    w = torch.full_like(loss, 1 / loss.shape[0]) if weights is None else weights
    s2 = score**2
    num = (w[:, None] * s2 * loss[:, None]).sum(0)
    den = (w[:, None] * s2).sum(0)
    return num / den if per_unit else num.sum() / den.sum()


def leave_one_out(loss: torch.Tensor, dim: int = 0) -> torch.Tensor:
    r"""Leave-one-out baselines :math:`\bar L_k=\frac{1}{K-1}\sum_{j\ne k}L_j` along ``dim`` (needs :math:`K\ge2`)."""
    k = loss.shape[dim]
    if k < 2:
        raise ValueError("leave-one-out needs at least two samples along dim")
    return (loss.sum(dim, keepdim=True) - loss) / (k - 1)
