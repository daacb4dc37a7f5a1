"""scikit-learn's tables as tensors: breast cancer, raw digit pixels, and ill-conditioned synthetic classification.

Every loader returns a :class:`Table` (features ``x`` of shape ``(n, d)``, integer labels ``y`` of
shape ``(n,)``), deterministic for its arguments and offline. The features are left as they come
(the conditioning of a problem is part of what a chapter studies); :meth:`Table.standardised`
rescales each column to zero mean and unit variance when that is wanted.

:func:`digits_table` is the same data as :func:`varbook.data.digits`, kept as one table of raw
pixel intensities instead of a train/test split of images.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from ..runtime import randperm


def _sklearn_datasets():
    import importlib.util

    if importlib.util.find_spec("sklearn") is None:  # pragma: no cover - scikit-learn is a dependency
        from . import MissingDatasetPackage

        raise MissingDatasetPackage(
            "these tables ship inside 'scikit-learn', which is not installed: pip install scikit-learn"
        )
    import sklearn.datasets

    return sklearn.datasets


@dataclass(frozen=True)
class Table:
    """A labelled table: ``x`` of shape ``(n, d)`` (floating point), ``y`` of shape ``(n,)`` (int64 classes)."""

    x: torch.Tensor
    y: torch.Tensor
    n_classes: int
    name: str

    def __post_init__(self) -> None:
        if self.x.ndim != 2 or self.y.shape != (self.x.shape[0],):
            raise ValueError(
                f"a table needs x of shape (n, d) and y of shape (n,), got {tuple(self.x.shape)} and {tuple(self.y.shape)}"
            )
        if not self.x.is_floating_point() or self.y.is_floating_point() or self.y.dtype == torch.bool:
            raise TypeError(
                f"a table needs floating-point x and integer class labels y, got {self.x.dtype} and {self.y.dtype}"
            )

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def n_features(self) -> int:
        return self.x.shape[1]

    def to(self, device=None, dtype: torch.dtype | None = None) -> Table:
        """The table on ``device``, its features cast to ``dtype`` (labels stay int64)."""
        return replace(self, x=self.x.to(device=device, dtype=dtype), y=self.y.to(device))

    def standardised(self) -> Table:
        """Each column shifted to mean 0 and scaled to standard deviation 1 (constant columns become 0)."""
        mean, std = self.x.mean(0), self.x.std(0)
        std = torch.where(std > 0, std, torch.ones_like(std))
        return replace(self, x=(self.x - mean) / std, name=f"{self.name}, standardised")

    def condition_number(self) -> float:
        """Ratio of the largest to the smallest non-zero singular value of ``x`` with a column of ones."""
        ones = torch.ones(len(self), 1, dtype=self.x.dtype, device=self.x.device)
        s = torch.linalg.svdvals(torch.cat([self.x, ones], 1).double())
        s = s[s > s[0] * 1e-12]
        return float(s[0] / s[-1])

    def split(self, n_test: int, seed: int = 0) -> tuple[Table, Table]:
        """A deterministic random train/test split with ``n_test`` rows held out."""
        if not 0 < n_test < len(self):
            raise ValueError(f"n_test must be between 1 and {len(self) - 1}, got {n_test}")
        perm = randperm(len(self), generator=torch.Generator().manual_seed(seed)).to(self.x.device)
        tr, te = perm[n_test:], perm[:n_test]
        return replace(self, x=self.x[tr], y=self.y[tr]), replace(self, x=self.x[te], y=self.y[te])


def _table(x: np.ndarray, y: np.ndarray, name: str, dtype: torch.dtype) -> Table:
    ys = torch.as_tensor(y, dtype=torch.int64)
    return Table(torch.as_tensor(np.asarray(x, dtype=np.float64)).to(dtype), ys, int(ys.max()) + 1, name)


def breast_cancer(dtype: torch.dtype = torch.float64) -> Table:
    """scikit-learn's Wisconsin breast cancer table: 569 rows, 30 raw features, 2 classes (1 = benign).

    >>> t = breast_cancer()
    >>> tuple(t.x.shape), t.n_classes
    ((569, 30), 2)
    """
    data = _sklearn_datasets().load_breast_cancer()
    return _table(data.data, data.target, "breast cancer", dtype)


def digits_table(scale: float = 1 / 16, dtype: torch.dtype = torch.float64) -> Table:
    """scikit-learn's 1797 handwritten 8x8 digits as one table of pixel intensities times ``scale``.

    The raw intensities are integers 0 to 16; the default ``scale`` puts them in [0, 1], as
    :func:`varbook.data.digits` does. A common factor hardly changes the conditioning: the
    columns keep their very different variances (and the always-blank pixels stay 0).

    >>> t = digits_table()
    >>> tuple(t.x.shape), t.n_classes, float(t.x.max())
    ((1797, 64), 10, 1.0)
    """
    if not (scale > 0 and np.isfinite(scale)):
        raise ValueError(f"scale must be a positive finite number, got {scale}")
    data = _sklearn_datasets().load_digits()
    return _table(data.data * scale, data.target, "digits", dtype)


def ill_conditioned_classification(
    n: int = 10_000,
    d: int = 100,
    n_classes: int = 2,
    decades: float = 3.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> Table:
    """``sklearn.datasets.make_classification`` with its columns scaled over ``decades`` powers of ten.

    Column ``j`` is multiplied by :math:`10^{-\\text{decades}\\cdot j/(d-1)}`, so the column scales
    span ``decades`` orders of magnitude (and the condition number grows by about that much).
    Half of the columns are informative, a quarter redundant.

    >>> t = ill_conditioned_classification(n=200, d=8, seed=0)
    >>> tuple(t.x.shape), t.n_classes
    ((200, 8), 2)
    """
    if n < 2 * n_classes or d < 2 or n_classes < 2:
        raise ValueError(f"need n >= 2 * n_classes, d >= 2 and n_classes >= 2, got n={n}, d={d}, n_classes={n_classes}")
    if not (0 <= decades < np.inf):
        raise ValueError(f"decades must be a non-negative finite number, got {decades}")
    x, y = _sklearn_datasets().make_classification(
        n_samples=n,
        n_features=d,
        n_informative=max(2, d // 2),
        n_redundant=d // 4,
        n_classes=n_classes,
        random_state=seed,
    )
    x = x * 10.0 ** (-decades * np.arange(d) / (d - 1))
    return _table(x, y, f"classification, columns over {decades:g} decades", dtype)


__all__ = ["Table", "breast_cancer", "digits_table", "ill_conditioned_classification"]
