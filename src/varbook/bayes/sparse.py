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
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Split, minibatches
from ..runtime import History, check_choice, descend, progress, randperm
from .layers import MeanField, kl_divergence, mean_field_layers
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
    check_choice("drop criterion", criterion, CRITERIA)
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
    m1 = _exp_abs_moment(mu, sigma, lam)  # e_exp_mean_abs or snr_exp_mean_abs
    if criterion == "e_exp_mean_abs":
        return m1
    return m1 / (_exp_abs_moment(mu, sigma, 2 * lam) - m1**2).clamp_min(1e-24).sqrt()


CRITERIA = ("mean", "snr", "e_mean_abs", "snr_mean_abs", "e_exp_mean_abs", "snr_exp_mean_abs")


def drop_agreement(
    layers: list[MeanField], criteria: tuple[str, ...], fraction: float = 0.15, reference: str = "snr_mean_abs"
) -> dict[str, float]:
    r"""How far the drop criteria agree on a trained subspace: for each of ``criteria``, the fraction of the
    weights that :meth:`DropGrowScheduler.update` would drop by it (the ``floor(fraction * active)`` lowest
    :func:`drop_score` per layer, pooled over ``layers``) that ``reference`` would drop too.

    1 means the two criteria remove exactly the same weights, so an ablation between them cannot differ.
    ``snr`` and ``snr_mean_abs`` always agree: the folded-normal SNR of :math:`|\theta|` depends on
    :math:`(\mu,\sigma)` only through :math:`|\mu|/\sigma`, and increases with it."""

    def dropped(criterion: str) -> set[tuple[int, int]]:
        out = set()
        for i, layer in enumerate(layers):
            mask = layer.mask.flatten()
            n = int(int(mask.sum()) * fraction)
            score = drop_score(layer.mu.detach().flatten(), F.softplus(layer.rho.detach().flatten()), criterion)
            score[~mask] = float("inf")
            out |= {(i, int(j)) for j in score.topk(n, largest=False).indices}
        return out

    ref = dropped(reference)
    if not ref:
        raise ValueError("no weight would be dropped: raise the fraction")
    return {c: len(dropped(c) & ref) / len(ref) for c in criteria}


def random_masks(
    layers: list[MeanField], density: float, generator: torch.Generator | None = None, rescale: bool = True
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
        idx = randperm(n, generator=generator, device=layer.mask.device)[:k]
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

    layers: list[MeanField]
    density: float
    delta_t: int
    t_end: int
    alpha: float = 0.3
    criterion: str = "snr_mean_abs"
    history: list[dict] = field(default_factory=list)

    def __post_init__(self):
        check_choice("drop criterion", self.criterion, CRITERIA)
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
        r"""Drop and grow in every layer; returns how many weights moved (grown weights that were inactive before).

        Each layer drops its ``n`` active weights with the lowest :func:`drop_score`, then grows the ``n`` weights off
        the reduced mask with the largest :math:`|\partial L/\partial\mu|`; a weight dropped in this update may
        grow back (then nothing about it changes), as in the official code. Newly active weights get
        :math:`\mu=0` and the layer's mean :math:`\rho`; the momentum of every weight that changed is reset."""
        frac = self.drop_fraction(t)  # alpha_t, the cosine-decayed drop fraction
        moved = 0
        for layer, target in zip(self.layers, self.targets, strict=True):
            grad = layer.weight_mean.grad if layer.weight_mean is not None else None
            if grad is None:
                raise RuntimeError("no dense gradient: run forward/backward with dense_gradients() enabled first")
            mask = layer.mask.flatten()
            n = int(target * frac)
            if n == 0:
                continue
            # remove the n active weights with the lowest score (by default the SNR of |theta|) ...
            score = drop_score(layer.mu.flatten(), F.softplus(layer.rho.flatten()), self.criterion)
            score[~mask] = float("inf")
            drop = score.topk(n, largest=False).indices
            # ... and add the n weights off the reduced mask with the largest dense
            # gradient |dL/dmu|; as in the official code, a weight dropped just now
            # can grow back, and then keeps its mu, rho and momentum
            kept = mask.clone()
            kept[drop] = False
            grow_score = grad.flatten().abs().clone()
            grow_score[kept] = -1.0
            grow = grow_score.topk(n).indices
            mean_rho = layer.rho.flatten()[mask].mean()
            new = grow[~mask[grow]]  # grown weights inactive before this update
            gone = drop[~torch.isin(drop, grow)]  # dropped, and not grown back
            kept[grow] = True
            layer.mask.copy_(kept.view_as(layer.mask))
            changed = torch.cat([gone, new])
            layer.mu.view(-1)[changed] = 0.0
            layer.rho.view(-1)[new] = mean_rho
            if optimizer is not None:
                for p in (layer.mu, layer.rho):
                    state = optimizer.state.get(p, {})
                    if "momentum_buffer" in state and state["momentum_buffer"] is not None:
                        state["momentum_buffer"].view(-1)[changed] = 0.0
            moved += len(new)
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


class BNNRun(History):
    """What :func:`train_bnn` returns: the :class:`~varbook.runtime.History` of the per-epoch training loss
    (``"loss"``) and mean-weight test accuracy (``"test_accuracy"``), with the number of optimisation
    ``steps``, how many of them were subspace ``update_steps``, and the ``mask_snapshots`` of one layer."""

    def __init__(self) -> None:
        super().__init__()
        self.steps = 0
        self.update_steps = 0
        self.mask_snapshots: list[torch.Tensor] = []


class _SubspaceStep:
    """Stands in for the optimiser on an update iteration of :func:`train_bnn`: :func:`~varbook.runtime.descend`
    zeroes the gradients and backpropagates as on any step, then :meth:`step` moves the subspace
    (:meth:`DropGrowScheduler.update`) instead of the weights."""

    def __init__(self, optimizer: torch.optim.Optimizer, scheduler: DropGrowScheduler, t: int):
        self.optimizer, self.scheduler, self.t = optimizer, scheduler, t

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        self.scheduler.update(self.t, self.optimizer)


def train_bnn(
    model: nn.Module,
    data: Split,
    *,
    epochs: int,
    batch_size: int = 128,
    lr: float = 0.01,
    lr_rho: float | None = None,
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

    :math:`\\lambda` warms up linearly over the first ``warmup_fraction`` of the epochs. The raw scales
    :math:`\\rho` (``rho``, ``bias_rho``) have their own learning rate ``lr_rho`` (``None``: ``lr``), as ``lr_std`` in
    the official code; everything else has ``lr``; both follow the cosine schedule. Masked
    entries are kept at exactly zero after every step. With a ``scheduler``, update iterations
    compute the dense gradient and replace the optimiser step by a removal-and-addition step.
    Every iteration steps through :func:`~varbook.runtime.descend` (which stops on a non-finite loss);
    ``desc`` labels a progress bar over the epochs (``None``: silent). Returns a :class:`BNNRun`, the
    :class:`~varbook.runtime.History` of the training loss and the mean-weight test accuracy per epoch.
    """
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    rhos = [p for name, p in named if name.split(".")[-1] in ("rho", "bias_rho")]
    means = [p for name, p in named if name.split(".")[-1] not in ("rho", "bias_rho")]
    groups: list[dict[str, Any]] = [{"params": means}, {"params": rhos, "lr": lr if lr_rho is None else lr_rho}]
    opt = torch.optim.SGD([g for g in groups if g["params"]], lr=lr, momentum=momentum)
    n = len(data.x_train)
    steps_per_epoch = -(-n // batch_size)
    total_steps = steps_per_epoch * epochs
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    layers = mean_field_layers(model)
    run = BNNRun()
    t = 0
    for epoch in range(epochs) if desc is None else progress(range(epochs), desc=desc):
        model.train()
        lam = kl_scale * min(1.0, (epoch + 1) / max(1.0, warmup_fraction * epochs))
        total = 0.0
        for idx in minibatches(n, batch_size, generator, data.x_train.device):
            subspace = scheduler if scheduler is not None and scheduler.is_update_step(t) else None
            if subspace is not None:
                subspace.dense_gradients(True)
            logits = model(data.x_train[idx])
            # the tempered negative ELBO per example: CE + lambda KL(q_gamma || p_gamma) / N
            loss = F.cross_entropy(logits, data.y_train[idx]) + lam * kl_divergence(model) / n
            if subspace is None:
                descend(opt, loss, t)
            else:  # removal and addition instead of the optimiser step
                descend(cast(torch.optim.Optimizer, _SubspaceStep(opt, subspace, t)), loss, t)
                subspace.dense_gradients(False)
                run.update_steps += 1
            cosine.step()
            with torch.no_grad():
                for layer in layers:
                    layer.mu.mul_(layer.mask)
            total += float(loss.detach()) * len(idx)
            t += 1
        run.log(loss=total / n, test_accuracy=accuracy(mc_predict(model, data.x_test, 1), data.y_test))
        if epoch % snapshot_every == 0:
            run.mask_snapshots.append(layers[snapshot_layer].mask.detach().cpu().clone())
        if callback is not None:
            callback(epoch)
    run.steps = t
    return run
