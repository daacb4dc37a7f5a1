r"""Baselines for implicit-feedback recommendation: popularity, EASE :cite:`steck2019embarrassingly`
and weighted matrix factorisation (WMF, :cite:`hu2008collaborative`) through the ``implicit`` library.

EASE learns an item-item matrix :math:`B` with zero diagonal minimising
:math:`\lVert X-XB\rVert_F^2+\lambda\lVert B\rVert_F^2`; with :math:`P=(X^\top X+\lambda I)^{-1}`,
the closed form is :math:`B_{ij}=-P_{ij}/P_{jj}` off the diagonal.
"""

from __future__ import annotations

import importlib.util

import numpy as np
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


def has_implicit() -> bool:
    """Whether the peer library ``implicit`` (WMF by alternating least squares) is installed."""
    return importlib.util.find_spec("implicit") is not None


class WMF:
    r"""Weighted matrix factorisation :cite:`hu2008collaborative`, fitted by the ``implicit`` library's ALS.

    Minimises :math:`\sum_{u,i}c_{ui}(x_{ui}-p_u^\top q_i)^2+\lambda(\lVert P\rVert^2+\lVert Q\rVert^2)`
    with :math:`c_{ui}=\alpha` on a click and 1 elsewhere (``implicit`` scales the clicks by
    ``alpha``). A held-out user, unseen in training, is folded in by one weighted least-squares
    solve for :math:`p_u` against the trained item factors :math:`Q` (``recalculate_user``); the
    scores are :math:`p_u^\top q_i`. Raises :class:`ImportError` when ``implicit`` is missing.
    """

    def __init__(
        self,
        train: torch.Tensor,
        factors: int = 50,
        regularization: float = 1.0,
        alpha: float = 10.0,
        iterations: int = 15,
        seed: int = 0,
    ):
        if not has_implicit():
            raise ImportError("WMF needs the peer library 'implicit': pip install implicit")
        import threadpoolctl
        from implicit.cpu.als import AlternatingLeastSquares

        self.model = AlternatingLeastSquares(
            factors=factors, regularization=regularization, alpha=alpha, iterations=iterations,
            random_state=seed, num_threads=1,
        )  # fmt: skip
        with threadpoolctl.threadpool_limits(1, "blas"):  # implicit warns about a BLAS thread pool
            self.model.fit(_csr(train), show_progress=False)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        users = self.model.recalculate_user(np.arange(x.shape[0]), _csr(x))
        out = np.asarray(users, dtype=np.float64) @ np.asarray(self.model.item_factors, dtype=np.float64).T
        return torch.as_tensor(out, device=x.device)


def _csr(x: torch.Tensor):
    from scipy import sparse

    return sparse.csr_matrix(x.detach().cpu().numpy().astype(np.float32))
