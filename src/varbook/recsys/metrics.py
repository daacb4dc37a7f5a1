r"""Ranking metrics of the strong-generalisation protocol :cite:`liang2018variational`.

With binary relevance, a user's held-out items :math:`H` and the top-:math:`k` list
:math:`\omega(1..k)`:

.. math:: \mathrm{DCG@}k=\sum_{r=1}^k\frac{\mathbb 1[\omega(r)\in H]}{\log_2(r+1)},\qquad
   \mathrm{NDCG@}k=\frac{\mathrm{DCG@}k}{\sum_{r=1}^{\min(k,|H|)}1/\log_2(r+1)},

.. math:: \mathrm{Recall@}k=\frac{\sum_{r=1}^k\mathbb 1[\omega(r)\in H]}{\min(k,|H|)}.
"""

from __future__ import annotations

import torch


def _check(scores: torch.Tensor, held_out: torch.Tensor, k: int) -> None:
    if scores.shape != held_out.shape or scores.dim() != 2:
        raise ValueError(
            f"scores and held_out must be (users, items) of the same shape, got {tuple(scores.shape)} and {tuple(held_out.shape)}"
        )
    if not 0 < k <= scores.shape[1]:
        raise ValueError(f"k must be between 1 and the number of items ({scores.shape[1]}), got {k}")
    if (held_out.sum(1) == 0).any():
        raise ValueError("every user needs at least one held-out item")


def ndcg_at_k(scores: torch.Tensor, held_out: torch.Tensor, k: int) -> torch.Tensor:
    """NDCG@k per user for scores ``(users, items)`` (items to exclude set to ``-inf``) and binary ``held_out``."""
    _check(scores, held_out, k)
    top = scores.topk(k, dim=1).indices
    hits = held_out.gather(1, top).to(torch.float64)
    discount = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64, device=scores.device))
    dcg = (hits * discount).sum(1)
    n_held = held_out.sum(1).clamp(max=k).long()
    ideal = torch.cumsum(discount, 0)[n_held - 1]
    return dcg / ideal


def recall_at_k(scores: torch.Tensor, held_out: torch.Tensor, k: int) -> torch.Tensor:
    """Recall@k per user, normalised by :math:`\\min(k, |H|)` as in the paper."""
    _check(scores, held_out, k)
    top = scores.topk(k, dim=1).indices
    hits = held_out.gather(1, top).to(torch.float64).sum(1)
    return hits / held_out.sum(1).clamp(max=k).to(torch.float64)
