r"""Baselines for implicit-feedback recommendation: popularity and EASE :cite:`steck2019embarrassingly`.

EASE learns an item-item matrix :math:`B` with zero diagonal minimising
:math:`\lVert X-XB\rVert_F^2+\lambda\lVert B\rVert_F^2`; with :math:`P=(X^\top X+\lambda I)^{-1}`,
the closed form is :math:`B_{ij}=-P_{ij}/P_{jj}` off the diagonal.
"""

from __future__ import annotations

import torch


class Popularity:
    """Scores every item by its number of clicks among the training users, for every user."""

    def __init__(self, train: torch.Tensor):
        self.counts = train.sum(0, dtype=torch.float64)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.counts.to(x.device).expand(x.shape[0], -1).clone()


def ease_weights(train: torch.Tensor, lam: float = 200.0) -> torch.Tensor:
    """The EASE item-item weights ``(items, items)`` in float64."""
    if lam <= 0:
        raise ValueError(f"lam must be positive, got {lam}")
    x = train.to(torch.float64)
    gram = x.T @ x
    gram.diagonal().add_(lam)
    p = torch.linalg.inv(gram)
    b = -p / p.diagonal()
    b.diagonal().zero_()
    return b


class EASE:
    """EASE fitted on the training users; a user's scores are ``x @ B``."""

    def __init__(self, train: torch.Tensor, lam: float = 200.0):
        self.weights = ease_weights(train, lam)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.float64) @ self.weights.to(x.device)
