r"""Predictive metrics for Bayesian classifiers: Monte Carlo predictive probabilities, NLL, ECE, Brier score.

Predictions average the *probabilities* over weight samples,
:math:`\bar p(y\mid x)=\frac1S\sum_s\mathrm{softmax}(f_{\theta_s}(x))`. With :math:`M` equal-width
confidence bins :math:`B_m`, :math:`\mathrm{ECE}=\sum_m\frac{|B_m|}{n}\,|\mathrm{acc}(B_m)-\mathrm{conf}(B_m)|`.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from .layers import sampling


@torch.no_grad()
def mc_predict(
    model: nn.Module, x: torch.Tensor, n_samples: int = 10, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Predictive class probabilities ``(N, C)`` averaged over ``n_samples`` weight samples (evaluation mode).

    ``generator`` draws the samples (``None``: torch's global generator); one sample is the mean network.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be positive, got {n_samples}")
    was = model.training
    model.eval()
    with sampling(model, n_samples > 1, generator):
        probs = sum(torch.softmax(model(x), -1) for _ in range(n_samples)) / n_samples
    model.train(was)
    return cast(torch.Tensor, probs)


def _check(probs: torch.Tensor, y: torch.Tensor) -> None:
    if probs.dim() != 2 or y.shape != probs.shape[:1]:
        raise ValueError(f"expected probs (N, C) and labels (N,), got {tuple(probs.shape)} and {tuple(y.shape)}")


def nll(probs: torch.Tensor, y: torch.Tensor) -> float:
    """Mean negative log predictive probability of the true class."""
    _check(probs, y)
    return float(-probs.gather(1, y[:, None]).clamp_min(1e-12).log().mean())


def brier(probs: torch.Tensor, y: torch.Tensor) -> float:
    """Mean squared distance between the probability vector and the one-hot label."""
    _check(probs, y)
    onehot = torch.nn.functional.one_hot(y, probs.shape[1]).to(probs.dtype)
    return float(((probs - onehot) ** 2).sum(1).mean())


def reliability(probs: torch.Tensor, y: torch.Tensor, n_bins: int = 15) -> dict[str, torch.Tensor]:
    """Per confidence bin: mean confidence, accuracy and count (bins ``(k/M, (k+1)/M]``)."""
    _check(probs, y)
    conf, pred = probs.max(1)
    correct = (pred == y).to(probs.dtype)
    idx = ((conf * n_bins).ceil().long() - 1).clamp(0, n_bins - 1)
    count = torch.bincount(idx, minlength=n_bins).to(probs.dtype)
    conf_sum = torch.bincount(idx, weights=conf, minlength=n_bins)
    acc_sum = torch.bincount(idx, weights=correct, minlength=n_bins)
    safe = count.clamp_min(1)
    return {"confidence": conf_sum / safe, "accuracy": acc_sum / safe, "count": count}


def ece(probs: torch.Tensor, y: torch.Tensor, n_bins: int = 15) -> float:
    """Expected calibration error with ``n_bins`` equal-width bins."""
    r = reliability(probs, y, n_bins)
    return float((r["count"] / r["count"].sum() * (r["accuracy"] - r["confidence"]).abs()).sum())


def accuracy(probs: torch.Tensor, y: torch.Tensor) -> float:
    _check(probs, y)
    return float((probs.argmax(1) == y).float().mean())
