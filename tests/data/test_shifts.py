"""Tests of varbook.data.shifts: held-out classes and image corruptions."""

from __future__ import annotations

import math

import pytest
import torch

from varbook.data import Split
from varbook.data.shifts import CORRUPTIONS, corrupt, hold_out_classes, shift_tests


def split() -> Split:
    g = torch.Generator().manual_seed(0)
    return Split(
        torch.rand(50, 6, generator=g),
        torch.arange(50) % 5,
        torch.rand(20, 6, generator=g),
        torch.arange(20) % 5,
        (2, 3),
        5,
    )


def test_hold_out_classes_relabels_and_returns_the_held_out_images():
    s = split()
    kept, ood = hold_out_classes(s, (1, 3))
    assert kept.n_classes == 3 and set(kept.y_train.tolist()) == {0, 1, 2}
    assert len(kept.x_train) == 30 and len(ood) == 8
    torch.testing.assert_close(ood, s.x_test[torch.isin(s.y_test, torch.tensor([1, 3]))])
    # class 4 becomes 2, and its images go with it
    torch.testing.assert_close(kept.x_train[kept.y_train == 2], s.x_train[s.y_train == 4])
    with pytest.raises(ValueError, match="held_out"):
        hold_out_classes(s, (1, 2, 3, 4))
    with pytest.raises(ValueError, match="held_out"):
        hold_out_classes(s, (7,))


def test_corruptions():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2000, 6, generator=g)
    rot = corrupt(x, "rotate", (2, 3))
    torch.testing.assert_close(rot.reshape(-1, 3, 2)[0], torch.rot90(x[0].reshape(2, 3), 1, (0, 1)))
    dropped = corrupt(x, "dropout", (2, 3), 0.3, g)
    frac = float((dropped == 0).double().mean())
    assert abs(frac - 0.3) < 4 * math.sqrt(0.3 * 0.7 / x.numel())
    noisy = corrupt(x, "noise", (2, 3), 0.5, g)
    assert float(noisy.min()) >= 0 and float(noisy.max()) <= 1 and not torch.equal(noisy, x)
    with pytest.raises(ValueError, match="corruption"):
        corrupt(x, "blur", (2, 3))
    with pytest.raises(ValueError, match="must be"):
        corrupt(x, "noise", (3, 3))


def test_shift_tests_are_the_corruptions_of_the_kept_test_images():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(40) % 4
    s = Split(torch.rand(40, 6, generator=g), y, torch.rand(40, 6, generator=g), y.clone(), (2, 3), 4)
    kept, ood, tests = shift_tests(s, (2,), 0.5, torch.Generator().manual_seed(1))
    assert kept.n_classes == 3 and len(ood) == 10 and list(tests) == ["clean", *CORRUPTIONS]
    torch.testing.assert_close(tests["clean"], kept.x_test.double())
    # the same draws, in the same order, as corrupting the clean images one kind after another
    g2 = torch.Generator().manual_seed(1)
    for kind in CORRUPTIONS:
        assert tests[kind].dtype == torch.float64
        torch.testing.assert_close(tests[kind], corrupt(tests["clean"], kind, (2, 3), 0.5, g2))
