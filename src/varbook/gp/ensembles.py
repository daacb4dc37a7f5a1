r"""Finite ensembles with a random last-layer scale, the finite-width side of :cite:`lee2022scale`.

Each member is an :class:`~varbook.nn.MLP` whose output is multiplied by a fixed scale
:math:`\sigma`, drawn once per member, :math:`f_m(x)=\sigma_m\,\mathrm{MLP}_m(x)`. Its readout
weights start at :math:`\mathcal N(0,\sigma_{\rm last}^2/n)` (bias zero), so the effective readout
weights :math:`\sigma_mW` have the variance :math:`\sigma_m^2\sigma_{\rm last}^2/n` of the paper's
scale mixture, and :math:`\sigma_m` keeps multiplying them during training (the NTK
parameterisation of neural-tangents' ``Dense(W_std=sigma)``, as in the official ensembles).

* prior-scale ensemble: :math:`\sigma_m^2\sim\mathrm{InvGamma}(\alpha,\beta)` (official default
  :math:`\alpha=\beta=2`), the finite analogue of the Student-t process;
* fixed-scale ensemble: :math:`\sigma_m=1`, the analogue of the GP.

The Bayesian predictive averages probabilities, :math:`\frac1M\sum_m\mathrm{softmax}(f_m(x))`;
the official code averages logits, :math:`\mathrm{softmax}(\frac1M\sum_mf_m(x))`. Both are reported.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..bayes.metrics import accuracy, ece, nll
from ..data import Split, minibatches
from ..nn import MLP
from ..runtime import History, descend, progress, randn, randperm
from .svgp import inverse_gamma_rsample

SCALES = ("fixed", "inverse gamma")
"""The two ensembles: fixed last-layer scale, or one drawn per member from an inverse gamma."""


class ScaledMLP(nn.Module):
    r"""An :class:`~varbook.nn.MLP` times a fixed (untrained) scale: :math:`f(x)=\sigma\,\mathrm{MLP}(x)`.

    The MLP's readout starts at :math:`\mathcal N(0,\sigma_{\rm last}^2/n)` weights (drawn from
    ``generator``) and zero bias; the hidden layers keep the MLP's own initialisation.
    """

    def __init__(
        self, mlp: MLP, sigma: float, last_w_std: float = 1.0, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        if not sigma > 0 or not last_w_std > 0:
            raise ValueError(f"sigma and last_w_std must be positive, got {sigma}, {last_w_std}")
        self.mlp = mlp
        readout = mlp[-1]
        assert isinstance(readout, nn.Linear)
        with torch.no_grad():
            w = readout.weight
            w.copy_(randn(w.shape, generator=generator, device=w.device, dtype=w.dtype))
            w.mul_(last_w_std / math.sqrt(readout.in_features))
            readout.bias.zero_()
        self.register_buffer("sigma", torch.tensor(float(sigma), device=readout.weight.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sigma * self.mlp(x)


def draw_scales(
    kind: str, n_members: int, prior: tuple[float, float] = (2.0, 2.0), generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""The members' scales :math:`\sigma_m`: ones (``"fixed"``) or :math:`\sqrt{\sigma_m^2}`, :math:`\sigma_m^2\sim\mathrm{InvGamma}(\alpha,\beta)`.

    >>> draw_scales("fixed", 3)
    tensor([1., 1., 1.], dtype=torch.float64)
    """
    if kind not in SCALES:
        raise ValueError(f"kind must be one of {SCALES}, got {kind!r}")
    if n_members < 1:
        raise ValueError(f"n_members must be positive, got {n_members}")
    if kind == "fixed":
        return torch.ones(n_members, dtype=torch.float64)
    a, b = (torch.tensor(float(v), dtype=torch.float64) for v in prior)
    return inverse_gamma_rsample(a, b, n_members, generator).sqrt()


def train_member(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    x_valid: torch.Tensor,
    y_valid: torch.Tensor,
    epochs: int = 100,
    batch_size: int = 250,
    lr: float = 1e-2,
    generator: torch.Generator | None = None,
    desc: str | None = None,
) -> History:
    r"""Adam on the cross-entropy :math:`-\log\mathrm{softmax}(f(x))_y` for ``epochs`` epochs; keep the best validation epoch.

    As the official ensembles: after each epoch the validation NLL is measured and the weights of
    the best epoch (epoch 0 is the initialisation) are loaded back at the end. The history logs
    each step's ``loss`` and each epoch's ``valid_nll``.
    """
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"epochs, batch_size and lr must be positive, got {epochs}, {batch_size}, {lr}")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = History()

    def valid_nll() -> float:
        model.eval()
        with torch.no_grad():
            value = float(F.cross_entropy(model(x_valid), y_valid))
        model.train()
        return value

    best = (valid_nll(), copy.deepcopy(model.state_dict()))
    step = 0
    model.train()
    for _ in progress(range(epochs), desc=desc, disable=desc is None):
        for idx in minibatches(len(x), batch_size, generator, x.device):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            descend(opt, loss, step, "ensemble member cross-entropy")
            history.log(loss=loss.detach())
            step += 1
        history.log(valid_nll=valid_nll())
        if history.last("valid_nll") < best[0]:
            best = (history.last("valid_nll"), copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[1])
    model.eval()
    return history


def average_predictions(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Class probabilities of an ensemble from its members' logits ``(M, N, C)`` :cite:`lee2022scale`.

    Returns the probability average :math:`\frac1M\sum_m\mathrm{softmax}(f_m)` (the Bayesian
    predictive) and the logit average :math:`\mathrm{softmax}(\frac1M\sum_mf_m)` (the official code's).

    >>> p, q = average_predictions(torch.tensor([[[0.0, 10.0]], [[0.0, -10.0]]]))
    >>> p.round(decimals=3), q
    (tensor([[0.5000, 0.5000]]), tensor([[0.5000, 0.5000]]))
    """
    if logits.ndim != 3:
        raise ValueError(f"logits must be (members, N, classes), got {tuple(logits.shape)}")
    return logits.softmax(-1).mean(0), logits.mean(0).softmax(-1)


def scale_ensemble_benchmark(
    kept: Split,
    tests: dict[str, torch.Tensor],
    n_members: int = 10,
    hidden: tuple[int, ...] = (512, 512, 512, 512),
    epochs: int = 100,
    batch_size: int = 250,
    lr: float = 1e-2,
    prior: tuple[float, float] = (2.0, 2.0),
    valid_fraction: float = 0.1,
    generator: torch.Generator | None = None,
    desc: str | None = None,
) -> list[dict[str, Any]]:
    r"""Train a fixed-scale and a prior-scale ensemble of ``n_members`` MLPs each; test both on ``tests``.

    ``kept`` is the training split (its held-out classes already removed) and ``tests`` maps a
    test-set name to inputs labelled ``kept.y_test`` (e.g. from
    :func:`~varbook.data.shifts.shift_tests`). A random ``valid_fraction`` of the training images
    is the validation set of every member (:func:`train_member`). Returns one row per ensemble
    and test set: ``nll`` of the probability average, ``nll (logit average)`` of the official
    logit average, ``accuracy`` and ``ece`` of the probability average, and the members' scales.
    """
    if not 0 < valid_fraction < 1:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    if any(len(t) != len(kept.y_test) for t in tests.values()):
        raise ValueError("every test set needs one row per label of kept.y_test")
    x, y = kept.x_train.float(), kept.y_train
    order = randperm(len(x), generator=generator, device=x.device)
    n_valid = max(1, math.floor(valid_fraction * len(x)))
    valid, train = order[:n_valid], order[n_valid:]
    rows: list[dict[str, Any]] = []
    for kind in SCALES:
        scales = draw_scales(kind, n_members, prior, generator)
        members = []
        for m, sigma in enumerate(scales.tolist()):
            mlp = MLP(x.shape[1], list(hidden), kept.n_classes).to(x.device)
            model = ScaledMLP(mlp, sigma, generator=generator)
            label = None if desc is None else f"{desc}: {kind} {m + 1}/{n_members}"
            train_member(model, x[train], y[train], x[valid], y[valid], epochs, batch_size, lr, generator, label)
            members.append(model)
        for name, xt in tests.items():
            with torch.no_grad():
                logits = torch.stack([model(xt.float()) for model in members]).double()
            probs, official = average_predictions(logits)
            row = {"model": kind, "test": name, "nll": nll(probs, kept.y_test)}
            row["nll (logit average)"] = nll(official, kept.y_test)
            row |= {"accuracy": accuracy(probs, kept.y_test), "ece": ece(probs, kept.y_test)}
            rows.append(row | {"scales": [round(s, 4) for s in scales.tolist()]})
    return rows


__all__ = ["SCALES", "ScaledMLP", "average_predictions", "draw_scales", "scale_ensemble_benchmark", "train_member"]
