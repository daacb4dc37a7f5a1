"""One minibatch training loop for the models that need nothing more: Adam, a cosine learning-rate decay, a progress bar.

Both loops follow the library's training-loop contract: they step through
:func:`~varbook.runtime.descend`, take ``desc`` (a progress-bar label, ``None`` for silence) and
report a :class:`~varbook.runtime.History`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..runtime import History, descend, progress, randint
from .mlp import MLP


def train_steps(
    model: nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    tensors: Sequence[torch.Tensor],
    steps: int,
    batch_size: int,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    cosine: bool = True,
    desc: str | None = None,
    generator: torch.Generator | None = None,
) -> History:
    """Run ``steps`` Adam steps on ``loss_fn(*batch)``, each batch drawn with replacement from ``tensors``.

    All tensors share their first dimension and live on the model's device. Returns a
    :class:`~varbook.runtime.History` with the loss of every step (``history["loss"]``); stops with
    :class:`~varbook.runtime.NonFiniteLossError` if the loss stops being finite. ``desc`` labels
    a progress bar; ``None`` trains silently.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive, got {steps}, {batch_size}")
    n = tensors[0].shape[0]
    if any(t.shape[0] != n for t in tensors):
        raise ValueError("all tensors must have the same number of rows")
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if cosine else None
    history = History()
    model.train()
    for step in range(steps) if desc is None else progress(range(steps), desc=desc):
        idx = randint(0, n, (batch_size,), generator=generator, device=tensors[0].device)
        loss = loss_fn(*(t[idx] for t in tensors))
        descend(opt, loss, step, "training loss" if desc is None else f"{desc} loss")
        if sched is not None:
            sched.step()
        history.log(loss=loss.detach())
    model.eval()
    return history


def fit_classifier(
    x: torch.Tensor,
    y: torch.Tensor,
    hidden: tuple[int, ...] = (256, 256),
    steps: int = 1500,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    desc: str | None = None,
) -> MLP:
    """An :class:`~varbook.nn.MLP` classifier of flat inputs ``x`` with integer labels ``y``, trained by :func:`train_steps`.

    The chapters use it as a fixed judge of generated images: its accuracy on samples and the
    Fréchet distance of its last hidden layer (:meth:`~varbook.nn.MLP.features`). ``desc`` labels
    a progress bar (``None``: silent).
    """
    if x.dim() != 2 or y.dim() != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(f"need flat inputs (N, d) and labels (N,), got {tuple(x.shape)} and {tuple(y.shape)}")
    model = MLP(x.shape[1], list(hidden), int(y.max()) + 1).to(x.device)
    train_steps(
        model,
        lambda a, b: F.cross_entropy(model(a), b),
        (x, y),
        steps,
        batch_size,
        lr=lr,
        weight_decay=weight_decay,
        desc=desc,
    )
    return model
