r"""Regression data with heavy-tailed noise or a covariate shift, as in :cite:`lee2022scale`.

* :func:`synthetic_regression`: the official code's ``syn-normal`` and ``syn-t``. A latent
  function drawn from a GP with the RBF kernel :math:`\exp(-\tfrac12(x-x')^2)` on the points
  ``linspace(-N/2, N/2, N)``, plus :math:`0.2\,\mathcal N(0,1)` noise (``"normal"``) or
  :math:`0.8\times` standard Cauchy noise (``"t"``, a Student-t with one degree of freedom).
  ``protocol="official"`` (the default) is the official data set itself, one fixed draw
  (``numpy.random.RandomState(761)``, :math:`N=300` for ``syn-t``; ``RandomState(829)``,
  :math:`N=100` for ``syn-normal``), and the seed draws only the split;
  ``protocol="fresh"`` draws a new latent function and noise on :math:`N=300` points per seed.
  The latent function varies on a scale of one unit, too fast for the NNGP of one
  standardised input (rank 2 without a bias); on ``syn-t`` at :math:`n\le60` the training points
  are 5 to 10 apart, white noise even to an RBF kernel;
* :func:`diabetes_regression`: scikit-learn's diabetes table (442 patients, 10 features), with an
  i.i.d. split or a covariate-shift split on the body-mass index.

Both return a :class:`RegressionSplit` in float64 whose inputs and targets are standardised with
the *training* mean and standard deviation (as the official code does), so that a test NLL is in
units of the training targets' standard deviation.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..runtime import check_choice, randn, randperm

NOISES = ("normal", "t")
"""Noise kinds of :func:`synthetic_regression`: Gaussian (``syn-normal``) or Cauchy (``syn-t``)."""
PROTOCOLS = ("official", "fresh")
"""Data protocols of :func:`synthetic_regression`: the official fixed draw, or a new draw per seed."""
OFFICIAL_DRAWS = {"t": (761, 300), "normal": (829, 100)}
"""The official code's ``numpy.random.RandomState`` seed and number of points of ``syn-t`` and ``syn-normal``."""
DIABETES_SPLITS = ("iid", "shift")
"""Splits of :func:`diabetes_regression`: random, or train on the lowest 80 % of BMI and test on the rest."""


@dataclass(frozen=True)
class RegressionSplit:
    """Inputs ``x_*`` of shape ``(n, d)`` and targets ``y_*`` of shape ``(n,)``, standardised on the training part."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    name: str

    def to(self, device) -> RegressionSplit:
        """The split on ``device``."""
        return replace(
            self,
            x_train=self.x_train.to(device),
            y_train=self.y_train.to(device),
            x_test=self.x_test.to(device),
            y_test=self.y_test.to(device),
        )


def _standardised(
    x: torch.Tensor, y: torch.Tensor, train: torch.Tensor, test: torch.Tensor, name: str
) -> RegressionSplit:
    xm, xs = x[train].mean(0), x[train].std(0)
    xs = torch.where(xs > 0, xs, torch.ones_like(xs))
    ym, ys = y[train].mean(), y[train].std()
    return RegressionSplit((x[train] - xm) / xs, (y[train] - ym) / ys, (x[test] - xm) / xs, (y[test] - ym) / ys, name)


def _check_sizes(n_train: int, pool: int) -> None:
    if not isinstance(n_train, int) or not 2 <= n_train <= pool:
        raise ValueError(f"n_train must be an integer between 2 and {pool}, got {n_train!r}")


@functools.lru_cache(maxsize=4)
def _official_draw(noise: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # exactly experiments/regression/data.py of the official code: same generator, same calls, same order
    seed, num = OFFICIAL_DRAWS[noise]
    rs = np.random.RandomState(seed)
    x = np.linspace(-num / 2, num / 2, num)[:, None]
    cov = np.exp(-0.5 * (x - x.T) ** 2)
    latent = rs.multivariate_normal(mean=np.zeros(num), cov=cov, size=1).flatten()
    eps = rs.standard_normal(size=num) * 0.2 if noise == "normal" else rs.standard_t(df=1, size=num) * 0.8
    return x, latent, latent + eps


def _draw(
    noise: str, protocol: str, n_points: int, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs ``(N, 1)``, latent function values and noisy targets ``(N,)`` of a synthetic set, in float64.

    The fresh draw takes its latent function and noise from ``g`` (the official one ignores it).
    """
    if protocol == "official":
        x, latent, y = (torch.tensor(a, dtype=torch.float64) for a in _official_draw(noise))
        return x, latent, y
    x = torch.linspace(-n_points / 2, n_points / 2, n_points, dtype=torch.float64)[:, None]
    cov = torch.exp(-0.5 * (x - x.T) ** 2) + 1e-8 * torch.eye(n_points, dtype=torch.float64)
    latent = torch.linalg.cholesky(cov) @ randn(n_points, generator=g, dtype=torch.float64)
    eps = randn(n_points, generator=g, dtype=torch.float64)
    if noise == "normal":
        return x, latent, latent + 0.2 * eps
    # a standard Cauchy draw is a ratio of two independent standard normals
    return x, latent, latent + 0.8 * eps / randn(n_points, generator=g, dtype=torch.float64)


def synthetic_regression(
    noise: str = "t",
    n_train: int = 240,
    seed: int = 0,
    n_points: int | None = None,
    n_test: int | None = None,
    protocol: str = "official",
) -> RegressionSplit:
    r"""The official ``syn-normal`` / ``syn-t`` data: RBF-GP latent function plus Gaussian or Cauchy noise.

    With ``protocol="official"`` the :math:`N` points are the official code's single fixed draw
    (:data:`OFFICIAL_DRAWS`: ``RandomState(761)`` and :math:`N=300` for ``"t"``,
    ``RandomState(829)`` and :math:`N=100` for ``"normal"``; ``n_points`` must be ``None`` or
    :math:`N`), and ``seed`` draws only the split: the permutation
    ``numpy.random.RandomState(seed).permutation(N)``, whose first ``n_test`` points are the test
    set and the next ``n_train`` the training set. With ``protocol="fresh"`` ``seed`` also draws a
    new latent function and noise on ``n_points`` points (300 by default). ``n_test`` defaults
    to 20 % of the points (the official 80/20 split of train plus validation against test).

    >>> s = synthetic_regression("t", n_train=30, seed=0)
    >>> tuple(s.x_train.shape), tuple(s.y_test.shape), s.x_train.dtype
    ((30, 1), (60,), torch.float64)
    >>> tuple(synthetic_regression("normal", n_train=60, seed=0).y_test.shape)
    (20,)
    """
    check_choice("noise", noise, NOISES)
    check_choice("protocol", protocol, PROTOCOLS)
    if protocol == "official":
        official = OFFICIAL_DRAWS[noise][1]
        if n_points not in (None, official):
            raise ValueError(f"the official syn-{noise} has {official} points, got n_points={n_points}")
        n_points = official
    n_points = 300 if n_points is None else n_points
    if not isinstance(n_points, int) or n_points < 4:
        raise ValueError(f"n_points must be an integer of at least 4, got {n_points!r}")
    n_test = n_points // 5 if n_test is None else n_test
    if not 0 < n_test < n_points:
        raise ValueError(f"n_test must be between 1 and {n_points - 1}, got {n_test}")
    _check_sizes(n_train, n_points - n_test)
    g = torch.Generator().manual_seed(seed)
    x, _, y = _draw(noise, protocol, n_points, g)
    if protocol == "official":  # the official permute_dataset
        perm = torch.as_tensor(np.random.RandomState(seed).permutation(n_points))
    else:  # the generator continues after the latent function and the noise
        perm = randperm(n_points, generator=g)
    return _standardised(x, y, perm[n_test : n_test + n_train], perm[:n_test], f"syn-{noise}, {protocol}")


def diabetes_regression(
    split: str = "iid", n_train: int = 100, seed: int = 0, test_fraction: float = 0.2
) -> RegressionSplit:
    """scikit-learn's diabetes regression (442 rows, 10 features) with an i.i.d. or a BMI-shift split.

    ``"iid"``: a random ``test_fraction`` of the rows is the test set. ``"shift"``: the rows with
    the highest body-mass index (column 2) are the test set, so the model is trained on lighter
    patients and tested on heavier ones. In both, ``n_train`` training rows are drawn at random
    (with ``seed``) from the remaining rows.

    >>> s = diabetes_regression("shift", n_train=40, seed=0)
    >>> tuple(s.x_train.shape), bool(s.x_test[:, 2].min() > s.x_train[:, 2].max())
    ((40, 10), True)
    """
    check_choice("split", split, DIABETES_SPLITS)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if importlib.util.find_spec("sklearn") is None:  # pragma: no cover - scikit-learn is a dependency
        from . import MissingDatasetPackage

        raise MissingDatasetPackage("the diabetes table ships inside 'scikit-learn': pip install scikit-learn")
    from sklearn.datasets import load_diabetes

    data = load_diabetes()
    x = torch.as_tensor(np.asarray(data.data, dtype=np.float64))
    y = torch.as_tensor(np.asarray(data.target, dtype=np.float64))
    n_test = math.floor(test_fraction * len(x))
    _check_sizes(n_train, len(x) - n_test)
    g = torch.Generator().manual_seed(seed)
    if split == "iid":
        order = randperm(len(x), generator=g)
        test, pool = order[:n_test], order[n_test:]
    else:
        order = torch.argsort(x[:, 2], stable=True)
        test, pool = order[len(x) - n_test :], order[: len(x) - n_test]
    train = pool[randperm(len(pool), generator=g)[:n_train]]
    return _standardised(x, y, train, test, f"diabetes, {split}")


__all__ = [
    "DIABETES_SPLITS",
    "NOISES",
    "OFFICIAL_DRAWS",
    "PROTOCOLS",
    "RegressionSplit",
    "diabetes_regression",
    "synthetic_regression",
]
