r"""The experiments of sparse subspace variational inference :cite:`li2024training`, as small functions.

* :func:`run_bnn`: one training run of dense VI, SSVI or a static random mask at a given density,
  with its test metrics (accuracy, NLL, ECE, Brier score) and its analytic training FLOPs;
* :func:`compare_methods`: dense VI, SSVI and static masks over seeds and densities;
* :func:`hyperparameter_sweep`: dense VI and SSVI over the initial :math:`\sigma` and the KL scale;
* :func:`subspace_invariants`: whether every sparse run kept its subspace at exactly its size, its
  inactive weights at exactly zero and its KL over the active weights only;
* :func:`static_mask_margin` and :func:`redrawn_mask_metrics`: the comparison with the static mask, and
  the negative control of the accuracy claims (a trained model whose subspace is re-drawn at random).

The bayesian-torch side of the peer comparison is in :mod:`varbook.bayes.peers`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import distributions as D
from torch.nn import functional as F

from .. import runtime
from ..data import Split
from .layers import BayesMLP, mean_field_layers
from .metrics import accuracy, brier, ece, mc_predict, nll
from .sparse import BNNRun, DropGrowScheduler, random_masks, train_bnn, training_flops

METHODS = ("dense", "ssvi", "static", "rigl")
r"""Dense mean-field VI; SSVI (a random initial subspace, then removal and addition); a static random mask; and
RigL, the same removal and addition for a deterministic network (mean weights only, no KL, drop by :math:`|\mu|`)."""


LR_RHO = 300.0
"""The learning rate of the raw scales :math:`\rho` in :func:`run_bnn` (the means have ``lr``)."""


@dataclass
class BNNResult:
    r"""One run of :func:`run_bnn`: its table ``row``, the trained ``model``, the training ``run`` (its
    :class:`~varbook.bayes.BNNRun` history), the SSVI ``scheduler`` (``None`` otherwise), the test
    predictive probabilities ``probs``, per epoch whether every layer had exactly its target size, and the
    standard deviations :math:`\sigma` and ratios :math:`|\mu|/\sigma` of the active weights before training
    (``before``) and after (``after``), each a dict of flat tensors keyed ``"sigma"`` and ``"snr"``."""

    row: dict
    model: BayesMLP
    run: BNNRun
    scheduler: DropGrowScheduler | None
    probs: torch.Tensor
    density_ok: list[bool] = field(default_factory=list)
    before: dict[str, torch.Tensor] = field(default_factory=dict)
    after: dict[str, torch.Tensor] = field(default_factory=dict)


def run_bnn(
    method: str,
    split: Split,
    sizes: Sequence[int],
    epochs: int,
    density: float = 1.0,
    seed: int = 0,
    criterion: str = "snr_mean_abs",
    init_sigma: float = 6e-4,
    init_sigma_std: float = 5e-4,
    kl_scale: float = 0.01,
    lr: float = 0.1,
    lr_rho: float = LR_RHO,
    batch_size: int = 128,
    delta_t: int = 15,
    end_fraction: float = 0.75,
    n_samples: int = 10,
    device: torch.device | str | None = None,
) -> BNNResult:
    r"""Train a :class:`~varbook.bayes.BayesMLP` with ``sizes`` (prior :math:`\mathcal N(0, 0.1^2)`) by
    :func:`~varbook.bayes.train_bnn` and evaluate it on the test split.

    ``method`` is one of :data:`METHODS`. The sparse methods start from a random mask at ``density``
    (:func:`~varbook.bayes.random_masks`); SSVI then changes the subspace every ``delta_t`` iterations
    until ``end_fraction`` of training (:class:`~varbook.bayes.DropGrowScheduler`, drop score
    ``criterion``). Like a fresh run, it first seeds Python, NumPy and torch with ``seed``
    (:func:`~varbook.runtime.seed_all`); the mask and the minibatches come from a generator with the same
    seed. Predictions average the probabilities of ``n_samples`` weight samples.
    """
    runtime.check_choice("method", method, METHODS)
    runtime.seed_all(seed)
    g = torch.Generator().manual_seed(seed)
    model = BayesMLP(list(sizes), 0.1, init_sigma, init_sigma_std, generator=g).to(device)
    layers = mean_field_layers(model)
    steps = -(-len(split.x_train) // batch_size) * epochs
    scheduler = None
    if method != "dense":
        random_masks(layers, density, g)
    if method == "rigl":  # a deterministic network: mean weights only, no KL, drop the smallest |mu|
        criterion, kl_scale = "mean", 0.0
        for layer in layers:
            layer.deterministic = True
            layer.rho.requires_grad_(False)
            assert layer.bias_rho is not None
            layer.bias_rho.requires_grad_(False)
    if method in ("ssvi", "rigl"):
        t_end = int(end_fraction * steps)
        scheduler = DropGrowScheduler(layers, density, delta_t=delta_t, t_end=t_end, criterion=criterion)
    before = posterior_scales(model)
    density_ok: list[bool] = []

    def check(epoch: int) -> None:
        assert scheduler is not None
        density_ok.append(scheduler.check_density())

    run = train_bnn(
        model,
        split,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        lr_rho=lr_rho,
        kl_scale=kl_scale,
        scheduler=scheduler,
        generator=g,
        callback=check if scheduler is not None else None,
    )
    probs = mc_predict(model, split.x_test, n_samples)
    row = {
        "method": method,
        "density": density,
        "seed": seed,
        "criterion": criterion if method in ("ssvi", "rigl") else "",
        "accuracy": accuracy(probs, split.y_test),
        "NLL": nll(probs, split.y_test),
        "ECE": ece(probs, split.y_test),
        "Brier": brier(probs, split.y_test),
        "training FLOPs": training_flops(model, batch_size, run.steps, run.update_steps),
    }
    return BNNResult(row, model, run, scheduler, probs, density_ok, before, posterior_scales(model))


def posterior_scales(model: BayesMLP) -> dict[str, torch.Tensor]:
    r"""The standard deviations :math:`\sigma_j` and the ratios :math:`|\mu_j|/\sigma_j` of the active weights of every
    mean-field layer of ``model``, concatenated (flat, detached, on the CPU)."""
    layers = mean_field_layers(model)
    sigma = torch.cat([layer.sigma[layer.mask].detach().cpu() for layer in layers])
    mu = torch.cat([layer.mu[layer.mask].detach().cpu() for layer in layers])
    return {"sigma": sigma, "snr": mu.abs() / sigma}


def compare_methods(
    split: Split,
    sizes: Sequence[int],
    epochs: int,
    seeds: Iterable[int],
    densities: Sequence[float],
    device: torch.device | str | None = None,
    desc: str | None = None,
    rigl_density: float | None = None,
) -> dict[tuple[str, float, int], BNNResult]:
    """Dense VI for each seed, then SSVI and a static random mask for each seed and density, then (with a
    ``rigl_density``) the deterministic RigL baseline at that density for each seed (:func:`run_bnn` with its
    defaults), keyed by ``(method, density, seed)`` in that order."""
    seeds = list(seeds)
    jobs = [("dense", 1.0, s) for s in seeds]
    jobs += [(m, d, s) for s in seeds for d in densities for m in ("ssvi", "static")]
    jobs += [("rigl", rigl_density, s) for s in seeds] if rigl_density is not None else []
    out = {}
    for method, density, s in jobs if desc is None else runtime.progress(jobs, desc=desc):
        out[(method, density, s)] = run_bnn(method, split, sizes, epochs, density, s, device=device)
    return out


def hyperparameter_sweep(
    split: Split,
    sizes: Sequence[int],
    epochs: int,
    seed: int = 0,
    init_sigmas: Sequence[float] = (1e-3, 1e-2, 5e-2),
    kl_scales: Sequence[float] = (0.01, 0.1, 1.0),
    density: float = 0.1,
    device: torch.device | str | None = None,
    desc: str | None = None,
) -> list[dict]:
    r"""Dense VI and SSVI at ``density`` for every initial :math:`\sigma` and KL scale :math:`\lambda`:
    one :func:`run_bnn` row each, with the columns ``"init σ"``, ``"KL scale"`` and ``"diverged"`` added.

    Each initial :math:`\sigma_j` is drawn from :math:`|\mathcal N(s_0, (5s_0/6)^2)|`, the paper's relative spread
    around ``s0``. A run whose loss becomes non-finite is recorded as diverged, with the chance-level accuracy
    ``1 / n_classes`` and an infinite NLL: a method that diverges for a setting is not robust to it."""
    grid = [(s0, kl) for s0 in init_sigmas for kl in kl_scales]
    jobs = [(point, m) for point in grid for m in ("dense", "ssvi")]
    rows = []
    for (s0, kl), method in jobs if desc is None else runtime.progress(jobs, desc=desc):
        d = 1.0 if method == "dense" else density
        spec = dict(init_sigma=s0, init_sigma_std=5 * s0 / 6, kl_scale=kl, device=device)
        try:
            row = run_bnn(method, split, sizes, epochs, d, seed, **spec).row  # type: ignore[arg-type]
            diverged = False
        except runtime.NonFiniteLossError:
            row = {"method": method, "density": d, "seed": seed, "accuracy": 1 / split.n_classes, "NLL": float("inf")}
            diverged = True
        rows.append({**row, "init σ": s0, "KL scale": kl, "diverged": diverged})
    return rows


def subspace_invariants(results: Iterable[BNNResult]) -> tuple[bool, bool, bool]:
    r"""Three properties of the sparse runs among ``results`` (dense runs are skipped), each ``True`` when it
    held everywhere:

    * the subspace kept its size: every layer had exactly its target number of active weights after
      every epoch and after every update of an SSVI scheduler;
    * inactive weights are exactly zero: :math:`\mu_j = \sigma_j = 0` off the mask;
    * the KL runs over the active weights only: each layer's :meth:`~varbook.bayes.MeanField.kl` equals
      :math:`\sum_{j\in\gamma}\mathrm{KL}(\mathcal N(\mu_j,\sigma_j^2)\,\|\,\mathcal N(0,s^2))` plus the
      bias term, computed independently with :func:`torch.distributions.kl_divergence`.
    """
    results = list(results)
    size_ok = all(all(r.density_ok) for r in results if r.row["method"] in ("ssvi", "rigl"))
    exact_zero = kl_active_only = True
    for r in results:
        for layer in mean_field_layers(r.model):
            if r.row["method"] == "dense":
                continue
            off = ~layer.mask
            exact_zero &= bool((layer.mu[off] == 0).all() and (layer.sigma[off] == 0).all())
            prior = D.Normal(0.0, layer.prior_std)
            kl_active = D.kl_divergence(D.Normal(layer.mu[layer.mask], F.softplus(layer.rho[layer.mask])), prior)
            assert layer.bias_mu is not None and layer.bias_rho is not None
            kl_bias = D.kl_divergence(D.Normal(layer.bias_mu, F.softplus(layer.bias_rho)), prior)
            expected = (kl_active.sum() + kl_bias.sum()).detach()
            kl_active_only &= bool(torch.allclose(layer.kl().detach(), expected, rtol=1e-4))
        if r.scheduler is not None:
            size_ok &= all(h["active"] == r.scheduler.targets for h in r.scheduler.history)
    return size_ok, exact_zero, kl_active_only


def static_mask_margin(
    rows: Iterable[dict], method: str = "ssvi", density: float = 0.1, low_density: float = 0.05
) -> tuple[int, float]:
    """How much ``method`` beats the static random mask, from :func:`run_bnn` rows over seeds: the number of
    seeds where it has both an accuracy at least as high and a lower NLL at ``density``, and its accuracy
    minus the static mask's at ``low_density`` (points; each averaged over seeds).

    ``method="static"`` is the negative control: an SSVI whose removal-and-addition never fires trains
    exactly the static mask (same seed, same initial mask), and it cannot beat itself."""
    rows = list(rows)

    def pick(m: str, d: float) -> dict[int, dict]:
        return {r["seed"]: r for r in rows if r["method"] == m and r["density"] == d}

    ours, static = pick(method, density), pick("static", density)
    if not ours or set(ours) != set(static):
        raise ValueError(f"need {method} and static runs for the same seeds at density {density}")
    wins = sum(ours[s]["accuracy"] >= static[s]["accuracy"] and ours[s]["NLL"] < static[s]["NLL"] for s in ours)
    low_ours, low_static = pick(method, low_density), pick("static", low_density)
    if not low_ours or set(low_ours) != set(low_static):
        raise ValueError(f"need {method} and static runs for the same seeds at density {low_density}")

    def mean_acc(runs: dict[int, dict]) -> float:
        return sum(r["accuracy"] for r in runs.values()) / len(runs)

    return int(wins), 100 * (mean_acc(low_ours) - mean_acc(low_static))


def redrawn_mask_metrics(
    result: BNNResult, split: Split, seed: int = 0, n_samples: int = 10, generator: torch.Generator | None = None
) -> dict[str, float]:
    r"""Test accuracy and NLL of a trained sparse model whose subspace is re-drawn at random, the negative
    control of the accuracy claims: :func:`~varbook.bayes.random_masks` run again on a copy of the trained
    model (a fresh mask at the same density, as when a model is rebuilt and its mask is not restored with its
    weights). The trained means off the new mask are zeroed, so the model loses what it learned. ``seed``
    draws the new mask, ``generator`` the weight samples; ``result`` is left unchanged."""
    if result.row["method"] == "dense":
        raise ValueError("a dense run has no subspace to re-draw")
    model = copy.deepcopy(result.model)
    random_masks(mean_field_layers(model), result.row["density"], torch.Generator().manual_seed(seed))
    probs = mc_predict(model, split.x_test, n_samples, generator)
    return {"accuracy": accuracy(probs, split.y_test), "NLL": nll(probs, split.y_test)}
