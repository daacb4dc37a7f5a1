r"""Sparse subspace variational inference (SSVI) :cite:`li2024training`.

The variational family lives on a subspace :math:`\gamma` of fixed size: active weights are
:math:`\mathcal N(\mu_j,\sigma_j^2)`, the others exactly 0. Training alternates
:math:`\Delta T` optimiser steps inside the subspace with a *removal-and-addition* step: in each
layer, drop the :math:`n=\lfloor n_{\rm active}\,\alpha_t\rfloor` active weights with the lowest
score under :math:`q` (e.g. the signal-to-noise ratio of :math:`|\theta|`) and add as many
inactive ones with the largest dense gradient :math:`|\partial L/\partial\mu|`, where
:math:`\alpha_t=\frac\alpha2(1+\cos(\pi t/T_{\rm end}))`. New weights start at :math:`\mu=0` with the
layer's mean :math:`\rho`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Split, minibatches
from ..runtime import check_finite, progress
from .layers import _MeanField, kl_divergence, mean_field_layers
from .metrics import accuracy, mc_predict


def _folded_mean(mu, sigma):
    return mu * torch.erf(mu / (sigma * math.sqrt(2))) + sigma * math.sqrt(2 / math.pi) * torch.exp(
        -(mu**2) / (2 * sigma**2)
    )


def _exp_abs_moment(mu, sigma, lam):
    normal = torch.distributions.Normal(torch.zeros((), dtype=mu.dtype), 1.0)
    a = torch.exp(lam**2 * sigma**2 / 2 + lam * mu) * normal.cdf(mu / sigma + lam * sigma)
    b = torch.exp(lam**2 * sigma**2 / 2 - lam * mu) * normal.cdf(-mu / sigma + lam * sigma)
    return a + b


def drop_score(
    mu: torch.Tensor, sigma: torch.Tensor, criterion: str = "snr_mean_abs", lam: float = 1.0
) -> torch.Tensor:
    r"""How much a weight matters under :math:`q=\mathcal N(\mu,\sigma^2)`; the lowest scores are dropped.

    ``mean`` :math:`|\mu|`; ``snr`` :math:`|\mu|/\sigma`; ``e_mean_abs`` :math:`\mathbb E|\theta|`
    (folded normal); ``snr_mean_abs`` :math:`\mathbb E|\theta|/\mathrm{sd}|\theta|` (the paper's default);
    ``e_exp_mean_abs`` :math:`\mathbb E e^{\lambda|\theta|}`; ``snr_exp_mean_abs`` its signal-to-noise ratio.
    """
    sigma = sigma.clamp_min(1e-12)
    if criterion == "mean":
        return mu.abs()
    if criterion == "snr":
        return mu.abs() / sigma
    if criterion in ("e_mean_abs", "snr_mean_abs"):
        m1 = _folded_mean(mu, sigma)
        if criterion == "e_mean_abs":
            return m1
        return m1 / (mu**2 + sigma**2 - m1**2).clamp_min(1e-24).sqrt()
    if criterion in ("e_exp_mean_abs", "snr_exp_mean_abs"):
        m1 = _exp_abs_moment(mu, sigma, lam)
        if criterion == "e_exp_mean_abs":
            return m1
        return m1 / (_exp_abs_moment(mu, sigma, 2 * lam) - m1**2).clamp_min(1e-24).sqrt()
    raise ValueError(f"unknown drop criterion {criterion!r}: use one of {', '.join(CRITERIA)}")


CRITERIA = ("mean", "snr", "e_mean_abs", "snr_mean_abs", "e_exp_mean_abs", "snr_exp_mean_abs")


def random_masks(
    layers: list[_MeanField], density: float, generator: torch.Generator | None = None, rescale: bool = True
) -> None:
    r"""Give every layer a random mask with exactly ``round(density * size)`` active weights; zero the rest.

    With ``rescale`` the active means are multiplied by :math:`1/\sqrt{\mathrm{density}}`: a unit then
    has about ``density`` times as many inputs, and this keeps its pre-activation at the scale the
    dense initialisation gives it.
    """
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density}")
    for layer in layers:
        n = layer.mu.numel()
        k = max(1, round(density * n))
        idx = torch.randperm(n, generator=generator)[:k].to(layer.mask.device)
        mask = torch.zeros(n, dtype=torch.bool, device=layer.mask.device)
        mask[idx] = True
        layer.mask.copy_(mask.view_as(layer.mask))
        with torch.no_grad():
            layer.mu.mul_(layer.mask / (math.sqrt(density) if rescale else 1.0))


@dataclass
class DropGrowScheduler:
    """The SSVI removal-and-addition schedule over the mean-field layers of a model.

    Call :meth:`is_update_step` before each optimiser step; on an update step, run the
    forward/backward pass with :meth:`dense_gradients` active, then call :meth:`update` instead
    of the optimiser step.
    """

    layers: list[_MeanField]
    density: float
    delta_t: int
    t_end: int
    alpha: float = 0.3
    criterion: str = "snr_mean_abs"
    history: list[dict] = field(default_factory=list)

    def __post_init__(self):
        if self.criterion not in CRITERIA:
            raise ValueError(f"unknown drop criterion {self.criterion!r}: use one of {', '.join(CRITERIA)}")
        if self.delta_t < 1 or self.t_end < 1 or not 0 <= self.alpha < 1:
            raise ValueError("need delta_t >= 1, t_end >= 1 and 0 <= alpha < 1")
        self.targets = [max(1, round(self.density * layer.mu.numel())) for layer in self.layers]

    def drop_fraction(self, t: int) -> float:
        """:math:`\\alpha_t=\\frac\\alpha2(1+\\cos(\\pi t/T_{end}))`."""
        return self.alpha / 2 * (1 + math.cos(math.pi * t / self.t_end))

    def is_update_step(self, t: int) -> bool:
        return 0 < t < self.t_end and t % self.delta_t == 0

    def dense_gradients(self, enabled: bool = True) -> None:
        for layer in self.layers:
            layer.keep_dense_grad = enabled

    @torch.no_grad()
    def update(self, t: int, optimizer: torch.optim.Optimizer | None = None) -> int:
        """Drop and grow in every layer; returns how many weights moved. Resets momentum of changed entries."""
        frac = self.drop_fraction(t)
        moved = 0
        for layer, target in zip(self.layers, self.targets, strict=True):
            grad = layer.weight_mean.grad if layer.weight_mean is not None else None
            if grad is None:
                raise RuntimeError("no dense gradient: run forward/backward with dense_gradients() enabled first")
            mask = layer.mask.flatten()
            n = int(target * frac)
            if n == 0:
                continue
            score = drop_score(layer.mu.flatten(), F.softplus(layer.rho.flatten()), self.criterion)
            score[~mask] = float("inf")
            drop = score.topk(n, largest=False).indices
            grow_score = grad.flatten().abs().clone()
            grow_score[mask] = -1.0  # only weights inactive before this update can grow
            grow = grow_score.topk(n).indices
            mean_rho = layer.rho.flatten()[mask].mean()
            mask[drop] = False
            mask[grow] = True
            layer.mask.copy_(mask.view_as(layer.mask))
            changed = torch.cat([drop, grow])
            layer.mu.view(-1)[changed] = 0.0
            layer.rho.view(-1)[grow] = mean_rho
            if optimizer is not None:
                for p in (layer.mu, layer.rho):
                    state = optimizer.state.get(p, {})
                    if "momentum_buffer" in state and state["momentum_buffer"] is not None:
                        state["momentum_buffer"].view(-1)[changed] = 0.0
            moved += n
        self.history.append({"t": t, "moved": moved, "active": [layer.active() for layer in self.layers]})
        return moved

    def check_density(self) -> bool:
        """Whether every layer has exactly its target number of active weights."""
        return all(layer.active() == target for layer, target in zip(self.layers, self.targets, strict=True))


def training_flops(model: nn.Module, n_examples: int, steps: int, update_steps: int = 0) -> float:
    r"""Analytic multiply-adds of training, counting only what a sparse implementation would compute.

    Per example and mean-field layer: the forward pass costs the active weights twice (mean and
    variance paths of the local reparameterisation) and the backward pass twice that. An update
    step adds a dense gradient with respect to the mean weights (one dense product). Biases and
    activations are ignored.
    """
    total = 0.0
    for layer in mean_field_layers(model):
        active, dense = layer.active(), layer.mu.numel()
        total += steps * n_examples * 6 * active + update_steps * n_examples * dense
    return total


@dataclass
class BNNRun:
    history: dict[str, list[float]]
    steps: int
    update_steps: int
    mask_snapshots: list[torch.Tensor]


def train_bnn(
    model: nn.Module,
    data: Split,
    *,
    epochs: int,
    batch_size: int = 128,
    lr: float = 0.01,
    momentum: float = 0.9,
    kl_scale: float = 0.01,
    warmup_fraction: float = 0.5,
    scheduler: DropGrowScheduler | None = None,
    snapshot_layer: int = -1,
    snapshot_every: int = 1,
    generator: torch.Generator | None = None,
    desc: str | None = None,
    callback: Callable[[int], None] | None = None,
) -> BNNRun:
    """SGD on the tempered negative ELBO, :math:`-\\frac1B\\sum\\log p(y\\mid x,\\theta)+\\lambda\\frac{\\mathrm{KL}}{N}`.

    :math:`\\lambda` warms up linearly over the first ``warmup_fraction`` of the epochs. Masked
    entries are kept at exactly zero after every step. With a ``scheduler``, update iterations
    compute the dense gradient and replace the optimiser step by a removal-and-addition step.
    Records per epoch the training loss and the mean-weight test accuracy.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum)
    n = len(data.x_train)
    steps_per_epoch = -(-n // batch_size)
    total_steps = steps_per_epoch * epochs
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    layers = mean_field_layers(model)
    history: dict[str, list[float]] = {"loss": [], "test_accuracy": []}
    snapshots, t, update_steps = [], 0, 0
    epochs_iter = progress(range(epochs), desc=desc) if desc else range(epochs)
    for epoch in epochs_iter:
        model.train()
        lam = kl_scale * min(1.0, (epoch + 1) / max(1.0, warmup_fraction * epochs))
        total = 0.0
        for idx in minibatches(n, batch_size, generator, data.x_train.device):
            update = scheduler is not None and scheduler.is_update_step(t)
            if update:
                scheduler.dense_gradients(True)
            logits = model(data.x_train[idx])
            loss = F.cross_entropy(logits, data.y_train[idx]) + lam * kl_divergence(model) / n
            check_finite(loss, t)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if update:
                scheduler.update(t, opt)
                scheduler.dense_gradients(False)
                update_steps += 1
            else:
                opt.step()
            cosine.step()
            with torch.no_grad():
                for layer in layers:
                    layer.mu.mul_(layer.mask)
            total += float(loss.detach()) * len(idx)
            t += 1
        history["loss"].append(total / n)
        history["test_accuracy"].append(accuracy(mc_predict(model, data.x_test, 1), data.y_test))
        if epoch % snapshot_every == 0:
            snapshots.append(layers[snapshot_layer].mask.detach().cpu().clone())
        if callback is not None:
            callback(epoch)
    return BNNRun(history, t, update_steps, snapshots)
