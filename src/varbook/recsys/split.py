"""The strong-generalisation split: whole users held out, each held-out user's clicks folded in 80/20."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..runtime import randperm


@dataclass
class HeldOut:
    """Held-out users: ``fold_in`` clicks are the model's input, ``held_out`` clicks are scored (both ``(users, items)``)."""

    users: torch.Tensor
    fold_in: torch.Tensor
    held_out: torch.Tensor

    def to(self, device) -> HeldOut:
        return HeldOut(self.users, self.fold_in.to(device), self.held_out.to(device))


@dataclass
class StrongSplit:
    """Training users' click matrix and the validation and test users."""

    train_users: torch.Tensor
    train: torch.Tensor
    validation: HeldOut
    test: HeldOut

    @property
    def n_items(self) -> int:
        return self.train.shape[1]

    def to(self, device) -> StrongSplit:
        return StrongSplit(self.train_users, self.train.to(device), self.validation.to(device), self.test.to(device))


def _fold(clicks: torch.Tensor, users: torch.Tensor, fraction: float, generator: torch.Generator) -> HeldOut:
    fold_in = torch.zeros_like(clicks)
    held = torch.zeros_like(clicks)
    for row in range(clicks.shape[0]):
        items = clicks[row].nonzero().flatten()
        perm = items[randperm(len(items), generator=generator)]
        n_held = max(1, int(round(fraction * len(items))))
        held[row, perm[:n_held]] = 1
        fold_in[row, perm[n_held:]] = 1
    return HeldOut(users, fold_in, held)


def strong_generalization_split(
    clicks: torch.Tensor,
    n_validation: int,
    n_test: int,
    seed: int = 0,
    held_out_fraction: float = 0.2,
    min_clicks: int = 5,
) -> StrongSplit:
    """Split a binary ``(users, items)`` click matrix by users; fold in 80 % of each held-out user's clicks.

    Users with fewer than ``min_clicks`` clicks are dropped first. Items never clicked by a
    training user are kept (their columns are simply zero in training). Deterministic for a seed.
    """
    if clicks.dim() != 2:
        raise ValueError(f"clicks must be a (users, items) matrix, got shape {tuple(clicks.shape)}")
    if not ((clicks == 0) | (clicks == 1)).all():
        raise ValueError("clicks must be binary (0 or 1)")
    if not 0 < held_out_fraction < 1:
        raise ValueError(f"held_out_fraction must be in (0, 1), got {held_out_fraction}")
    active = (clicks.sum(1) >= min_clicks).nonzero().flatten()
    if n_validation + n_test >= len(active):
        raise ValueError(f"{n_validation} + {n_test} held-out users leave no training users among {len(active)}")
    g = torch.Generator().manual_seed(seed)
    users = active[randperm(len(active), generator=g)]
    val_users, test_users = users[:n_validation], users[n_validation : n_validation + n_test]
    train_users = users[n_validation + n_test :].sort().values
    return StrongSplit(
        train_users,
        clicks[train_users],
        _fold(clicks[val_users], val_users, held_out_fraction, g),
        _fold(clicks[test_users], test_users, held_out_fraction, g),
    )
