r"""Distribution shifts of image classification sets, as in the classification tests of :cite:`lee2022scale`.

* :func:`hold_out_classes`: train on some classes only; the held-out classes are
  out-of-distribution inputs whose labels the classifier cannot predict.
* :func:`corrupt`: the brief's three corruptions of flattened images in [0, 1]: additive
  Gaussian noise (clipped to [0, 1]), pixel dropout (each pixel set to 0 with probability
  ``strength``) and a rotation by 90 degrees.
* :func:`shift_tests`: both at once, the test sets of the shift benchmarks (clean and the three
  corruptions), shared by the sparse GP classifiers and the ensembles of the scale-mixture chapter.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ..runtime import check_choice, rand, randn
from . import Split

CORRUPTIONS = ("noise", "dropout", "rotate")
"""The corruptions of :func:`corrupt`."""


def hold_out_classes(split: Split, held_out: tuple[int, ...]) -> tuple[Split, torch.Tensor]:
    """The split without the classes ``held_out`` (the others relabelled ``0 .. C-1`` in order), and the held-out test images.

    >>> import torch
    >>> s = Split(torch.zeros(4, 1), torch.tensor([0, 1, 2, 1]), torch.zeros(2, 1), torch.tensor([1, 2]), (1, 1), 3)
    >>> kept, ood = hold_out_classes(s, (1,))
    >>> kept.y_train.tolist(), kept.n_classes, tuple(ood.shape)
    ([0, 1], 2, (1, 1))
    """
    if not held_out or any(not 0 <= c < split.n_classes for c in held_out) or len(set(held_out)) >= split.n_classes - 1:
        raise ValueError(f"held_out must name between 1 and {split.n_classes - 2} of the classes, got {held_out}")
    keep = [c for c in range(split.n_classes) if c not in held_out]
    relabel = torch.full((split.n_classes,), -1, dtype=torch.int64)
    relabel[keep] = torch.arange(len(keep))
    out = torch.tensor(list(held_out))
    tr, te = ~torch.isin(split.y_train, out), ~torch.isin(split.y_test, out)
    kept = replace(
        split,
        x_train=split.x_train[tr],
        y_train=relabel[split.y_train[tr]],
        x_test=split.x_test[te],
        y_test=relabel[split.y_test[te]],
        n_classes=len(keep),
    )
    return kept, split.x_test[~te]


def corrupt(
    x: torch.Tensor,
    kind: str,
    shape: tuple[int, int],
    strength: float = 0.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Flattened images ``x`` (``(N, H*W)``, values in [0, 1]) after the corruption ``kind``.

    ``"noise"``: add :math:`\\mathcal N(0,\\text{strength}^2)` and clip to [0, 1]; ``"dropout"``:
    zero each pixel with probability ``strength``; ``"rotate"``: rotate by 90 degrees
    (``strength`` unused).
    """
    check_choice("corruption", kind, CORRUPTIONS)
    if x.ndim != 2 or x.shape[1] != shape[0] * shape[1]:
        raise ValueError(f"x must be (N, {shape[0] * shape[1]}) for images {shape}, got {tuple(x.shape)}")
    if not 0 < strength <= 1:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    if kind == "noise":
        return (x + strength * randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)).clamp(0, 1)
    if kind == "dropout":
        return x * (rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) >= strength)
    return torch.rot90(x.reshape(-1, *shape), 1, (1, 2)).reshape(len(x), -1)


def shift_tests(
    split: Split,
    held_out: tuple[int, ...] = (1, 4, 8),
    strength: float = 0.5,
    generator: torch.Generator | None = None,
) -> tuple[Split, torch.Tensor, dict[str, torch.Tensor]]:
    """The split without ``held_out`` classes, the held-out test images, and the test sets under shift :cite:`lee2022scale`.

    The test sets, in float64, are ``"clean"`` (the kept classes' test images) and one per
    corruption of :data:`CORRUPTIONS` (:func:`corrupt` with ``strength``, drawn from ``generator``
    in that order); all share the labels ``kept.y_test``.

    >>> s = Split(torch.rand(6, 4), torch.tensor([0, 1, 2, 0, 1, 2]), torch.rand(3, 4), torch.tensor([0, 1, 2]), (2, 2), 3)
    >>> kept, ood, tests = shift_tests(s, (1,), generator=torch.Generator().manual_seed(0))
    >>> sorted(tests), tuple(tests["rotate"].shape), tuple(ood.shape)
    (['clean', 'dropout', 'noise', 'rotate'], (2, 4), (1, 4))
    """
    kept, ood = hold_out_classes(split, held_out)
    tests = {"clean": kept.x_test.double()}
    for kind in CORRUPTIONS:
        tests[kind] = corrupt(tests["clean"], kind, kept.shape, strength, generator)
    return kept, ood, tests


__all__ = ["CORRUPTIONS", "corrupt", "hold_out_classes", "shift_tests"]
