r"""Conditional computation with stochastic binary gates :cite:`bengio2013estimating`.

A small *gater* path maps the input :math:`x` to :math:`G` stochastic gates :math:`g_j(x)`; the
*main* path has :math:`G` blocks :math:`H_j` of :math:`U` rectified units, and the classifier
reads :math:`\tilde H_j=g_j H_j`. Whenever :math:`g_j=0` the block's input and output
multiply-adds can be skipped. Training minimises cross-entropy plus the sparsity penalty

.. math:: \lambda_s\sum_j(\bar p_j-\rho)^2,

where :math:`\bar p_j` is the batch mean of the probability that gate :math:`j` is non-zero and
:math:`\rho` the target rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Split, minibatches
from ..estimators.bernoulli import BinaryStochastic
from ..runtime import descend, progress
from .mlp import MLP


class GatedMLP(nn.Module):
    """Gater MLP + ``n_blocks`` blocks of ``block_size`` ReLU units + linear classifier.

    ``estimator=None`` gives the dense baseline: no gater, every gate is 1.
    ``forward`` returns the logits and the gates' pre-activations (``None`` when dense).
    """

    def __init__(
        self,
        d_in: int,
        n_classes: int,
        n_blocks: int = 16,
        block_size: int = 16,
        gater_hidden: int = 32,
        estimator: str | None = "st_sigmoid",
        noise_std: float = 1.0,
    ):
        super().__init__()
        self.d_in, self.n_classes = d_in, n_classes
        self.n_blocks, self.block_size, self.gater_hidden = n_blocks, block_size, gater_hidden
        self.main = nn.Linear(d_in, n_blocks * block_size)
        self.classifier = nn.Linear(n_blocks * block_size, n_classes)
        self.estimator = estimator
        if estimator is None:
            self.gater = None
            self.gate = None
        else:
            self.gater = MLP(d_in, [gater_hidden], n_blocks)
            self.gate = BinaryStochastic(estimator, noise_std=noise_std)

    @property
    def gated(self) -> bool:
        return self.gater is not None

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        hidden = F.relu(self.main(x)).view(x.shape[0], self.n_blocks, self.block_size)
        if not self.gated:
            return self.classifier(hidden.flatten(1)), None
        a = self.gater(x)
        g = self.gate(a, generator)
        return self.classifier((hidden * g.unsqueeze(-1)).flatten(1)), a

    def gates(self, x: torch.Tensor, a: torch.Tensor | None = None) -> torch.Tensor:
        """The gates the model uses on ``x`` in its current mode (all ones when dense).

        ``a`` are the gate pre-activations if a forward pass already computed them.
        """
        if not self.gated:
            return torch.ones(x.shape[0], self.n_blocks, device=x.device)
        return self.gate(self.gater(x) if a is None else a)

    def multiply_adds(self, gates: torch.Tensor) -> dict[str, float]:
        """Multiply-adds per example: those performed with ``gates`` (zero gates skip their block) and the dense count.

        A block costs ``d_in * U`` (its units) plus ``U * n_classes`` (its share of the classifier);
        the gater costs ``d_in * gater_hidden + gater_hidden * G``.
        """
        n = gates.shape[0]
        block = self.d_in * self.block_size + self.block_size * self.n_classes
        active_blocks = float((gates != 0).sum())
        gater = (self.d_in * self.gater_hidden + self.gater_hidden * self.n_blocks) if self.gated else 0
        main_dense = self.n_blocks * block
        return {
            "main_performed": active_blocks * block / n,
            "main_dense": float(main_dense),
            "gater": float(gater),
            "total_performed": active_blocks * block / n + gater,
        }


@dataclass
class GateStats:
    """Test-time summary of a gated network."""

    accuracy: float
    gate_rate: float
    skipped_main: float
    skipped_total: float

    def as_row(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "gate rate": self.gate_rate,
            "skipped MACs (main path)": self.skipped_main,
            "skipped MACs (whole net)": self.skipped_total,
        }


@torch.no_grad()
def evaluate_gated(model: GatedMLP, x: torch.Tensor, y: torch.Tensor) -> GateStats:
    """Accuracy, fraction of non-zero gates, and skipped multiply-adds with the noise off (``model.eval()``)."""
    was_training = model.training
    model.eval()
    logits, a = model(x)
    gates = model.gates(x, a)
    model.train(was_training)
    macs = model.multiply_adds(gates)
    return GateStats(
        accuracy=float((logits.argmax(1) == y).float().mean()),
        gate_rate=float((gates != 0).double().mean()),
        skipped_main=1 - macs["main_performed"] / macs["main_dense"],
        skipped_total=1 - macs["total_performed"] / macs["main_dense"],
    )


def gated_loss(
    model: GatedMLP,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    target_rate: float,
    sparsity_cost: float,
    baseline=None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training objective of one minibatch: returns (loss to differentiate, mean cross-entropy).

    For REINFORCE gates the loss includes the score-function surrogate weighted by each
    example's cross-entropy minus ``baseline``.
    """
    logits, a = model(x, generator)
    ce = F.cross_entropy(logits, y, reduction="none")
    loss = ce.mean()
    if model.gated:
        rate = model.gate.fire_probability(a).mean(0)
        loss = loss + sparsity_cost * ((rate - target_rate) ** 2).sum()
        if model.estimator == "reinforce":
            loss = loss + model.gate.reinforce_surrogate(ce, baseline)
    return loss, ce.mean().detach()


def train_gated(
    model: GatedMLP,
    data: Split,
    *,
    epochs: int,
    batch_size: int = 32,
    lr: float = 0.1,
    momentum: float = 0.0,
    target_rate: float = 0.2,
    sparsity_cost: float = 1.0,
    baseline=None,
    generator: torch.Generator | None = None,
    desc: str | None = None,
    show_progress: bool = True,
) -> dict[str, list[float]]:
    """Minibatch SGD on :func:`gated_loss`; returns per-epoch training cross-entropy and test accuracy/gate rate.

    Stops with :class:`~varbook.runtime.NonFiniteLossError` if the loss becomes NaN or infinite.
    """
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    history: dict[str, list[float]] = {"train_ce": [], "test_accuracy": [], "test_gate_rate": []}
    device = data.x_train.device
    step = 0
    epochs_iter = range(epochs)
    if show_progress:
        epochs_iter = progress(epochs_iter, desc=desc or (model.estimator or "dense"), leave=True)
    for _ in epochs_iter:
        model.train()
        total, count = 0.0, 0
        for idx in minibatches(len(data.x_train), batch_size, generator, device):
            loss, ce = gated_loss(
                model,
                data.x_train[idx],
                data.y_train[idx],
                target_rate=target_rate,
                sparsity_cost=sparsity_cost,
                baseline=baseline,
                generator=None,
            )
            descend(opt, loss, step)
            total += float(ce) * len(idx)
            count += len(idx)
            step += 1
        stats = evaluate_gated(model, data.x_test, data.y_test)
        history["train_ce"].append(total / count)
        history["test_accuracy"].append(stats.accuracy)
        history["test_gate_rate"].append(stats.gate_rate)
    return history
