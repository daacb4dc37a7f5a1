r"""Baselines (control variates) for score-function estimators :cite:`bengio2013estimating,williams1992simple`.

A baseline :math:`\bar L` that does not depend on the sample leaves
:math:`(h-p)(L-\bar L)` unbiased and changes only its variance. Per unit :math:`i`, the
variance-minimising constant is

.. math:: \bar L_i = \frac{\mathbb E[(h_i-p_i)^2 L]}{\mathbb E[(h_i-p_i)^2]},

which :class:`PerUnitOptimalBaseline` tracks with exponential moving averages of the numerator
and the denominator. All baselines expose ``value()`` (read before the current sample is
seen) and ``update(score, loss)``: the :class:`varbook.protocols.Baseline` protocol.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .bernoulli import bernoulli_log_prob, enumerate_binary, sample_binary


class ConstantBaseline:
    """A fixed baseline (0 gives plain REINFORCE)."""

    def __init__(self, value: float = 0.0):
        self._value = float(value)

    def value(self) -> float:
        return self._value

    def update(self, score: torch.Tensor | None, loss: torch.Tensor) -> None:
        return None


class EMABaseline:
    r"""A scalar moving average of the loss, :math:`\bar L\leftarrow m\bar L+(1-m)\,\overline{L}_{\text{batch}}`."""

    def __init__(self, momentum: float = 0.9):
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self._mean: torch.Tensor | None = None

    def value(self) -> float | torch.Tensor:
        return 0.0 if self._mean is None else self._mean

    def update(self, score: torch.Tensor | None, loss: torch.Tensor) -> None:
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

    def value(self) -> float | torch.Tensor:
        if self._num is None or self._den is None:
            return 0.0
        return self._num / self._den.clamp_min(self.eps)

    def update(self, score: torch.Tensor | None, loss: torch.Tensor) -> None:
        if score is None:
            raise ValueError("the per-unit optimal baseline needs the score h - p of every unit")
        s2 = score.detach() ** 2
        weight = loss.detach().reshape(-1, *([1] * (s2.dim() - 1)))
        # the numerator E[(h-p)^2 L] and denominator E[(h-p)^2] of eq. st-baseline
        num, den = (s2 * weight).mean(0), s2.mean(0)
        if self._num is None or self._den is None:
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


def exact_optimal_baselines(a: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor]):
    r"""The per-unit and the best scalar baseline of :math:`(h-p)(L-\bar L)`, exactly, by enumeration.

    Sums over all :math:`2^n` states :math:`h` of ``n`` units with logits ``a`` (``n`` at most 20):
    :math:`\bar L_i^\star=\mathbb E[(h_i-p_i)^2L]/\mathbb E[(h_i-p_i)^2]` per unit, and
    :math:`\sum_i\mathbb E[(h_i-p_i)^2L]/\sum_i\mathbb E[(h_i-p_i)^2]` for a single scalar
    :cite:`bengio2013estimating`. Returns ``(per_unit, scalar)``.
    """
    states = enumerate_binary(a.shape[-1], a.dtype, a.device)
    weights = bernoulli_log_prob(states, a).sum(-1).exp()  # P(h) of every state
    score = states - torch.sigmoid(a)
    loss = loss_fn(states)
    return optimal_baseline(score, loss, weights), optimal_baseline(score, loss, weights, per_unit=False)


def exact_unnormalised_baseline(a: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    r"""A deliberately wrong per-unit baseline: the numerator :math:`\mathbb E[(h_i-p_i)^2L]` of eq. st-baseline alone.

    The mistake of tracking the score-weighted loss without dividing by :math:`\mathbb E[(h_i-p_i)^2]
    =p_i(1-p_i)\le 1/4`: the baseline is too small by that factor, removes only a fraction of the
    mean loss, and leaves most of the variance. A negative control for the claims about the
    optimal baseline (still unbiased, since it is a constant). Exact, by enumeration.
    """
    states = enumerate_binary(a.shape[-1], a.dtype, a.device)
    weights = bernoulli_log_prob(states, a).sum(-1).exp()
    score = states - torch.sigmoid(a)
    return (weights[:, None] * score**2 * loss_fn(states)[:, None]).sum(0)


def group_baseline_samples(
    a: torch.Tensor,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    n_samples: int,
    group: int = 4,
    *,
    include_self: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""``n_samples`` REINFORCE estimates, each the mean over ``group`` draws with a baseline from the group's losses.

    Draw :math:`K` = ``group`` states :math:`h_k` at logits ``a`` and return
    :math:`\frac1K\sum_k(h_k-p)(L_k-\bar L_k)`, shape ``(n_samples, n)``. With
    ``include_self=False``, :math:`\bar L_k` is the mean of the *other* draws' losses
    (:func:`leave_one_out`) and the estimate is unbiased. ``include_self=True`` is the common
    mistake of using the group mean, :math:`L_k` included: the baseline then depends on the
    sample and the mean estimate is :math:`(K-1)/K` times the gradient (a negative control for
    unbiasedness tests).
    """
    if group < 2:
        raise ValueError("a group baseline needs at least two draws per group")
    a = a.detach()
    h = sample_binary(a.expand(n_samples, group, a.shape[-1]), generator)
    loss = loss_fn(h)  # (n_samples, group)
    b = loss.mean(1, keepdim=True) if include_self else leave_one_out(loss, dim=1)
    return ((h - torch.sigmoid(a)) * (loss - b)[..., None]).mean(1)


def leave_one_out(loss: torch.Tensor, dim: int = 0) -> torch.Tensor:
    r"""Leave-one-out baselines :math:`\bar L_k=\frac{1}{K-1}\sum_{j\ne k}L_j` along ``dim`` (needs :math:`K\ge2`).

    >>> leave_one_out(torch.tensor([1.0, 2.0, 6.0]))
    tensor([4.0000, 3.5000, 1.5000])
    """
    k = loss.shape[dim]
    if k < 2:
        raise ValueError("leave-one-out needs at least two samples along dim")
    return (loss.sum(dim, keepdim=True) - loss) / (k - 1)
