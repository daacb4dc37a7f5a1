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
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Split, minibatches
from ..estimators.baselines import PerUnitOptimalBaseline
from ..estimators.bernoulli import BinaryStochastic
from ..protocols import Baseline
from ..runtime import History, descend, progress, randperm, seed_all
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
        self.gater: MLP | None
        self.gate: BinaryStochastic | None
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
        if self.gater is None or self.gate is None:  # dense
            return self.classifier(hidden.flatten(1)), None
        a = self.gater(x)
        g = self.gate(a, generator)
        return self.classifier((hidden * g.unsqueeze(-1)).flatten(1)), a

    def classify(self, x: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        """The logits of ``x`` with given ``gates`` ``(N, n_blocks)`` in place of the gater's."""
        hidden = F.relu(self.main(x)).view(x.shape[0], self.n_blocks, self.block_size)
        return self.classifier((hidden * gates.unsqueeze(-1)).flatten(1))

    def gates(
        self, x: torch.Tensor, a: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The gates the model uses on ``x`` in its current mode (all ones when dense).

        ``a`` are the gate pre-activations if a forward pass already computed them; ``generator``
        draws the gates in training mode (in evaluation mode they are deterministic).
        """
        if self.gater is None or self.gate is None:
            return torch.ones(x.shape[0], self.n_blocks, device=x.device)
        return self.gate(self.gater(x) if a is None else a, generator)

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
    accuracy_shuffled: float = float("nan")

    def as_row(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "accuracy, gates shuffled": self.accuracy_shuffled,
            "gate rate": self.gate_rate,
            "skipped MACs (main path)": self.skipped_main,
            "skipped MACs (whole net)": self.skipped_total,
        }


@torch.no_grad()
def evaluate_gated(model: GatedMLP, x: torch.Tensor, y: torch.Tensor) -> GateStats:
    """Accuracy, fraction of non-zero gates, and skipped multiply-adds with the noise off (``model.eval()``).

    ``accuracy_shuffled`` is the accuracy when each image gets the gates of another test image (a
    fixed random permutation): the same gate rate, but gates that no longer depend on the input.
    When it is as high as ``accuracy``, the gating is not conditional on the input.
    """
    was_training = model.training
    model.eval()
    logits, a = model(x)
    gates = model.gates(x, a)
    perm = randperm(x.shape[0], generator=torch.Generator().manual_seed(0), device=x.device)
    shuffled = model.classify(x, gates[perm])
    model.train(was_training)
    macs = model.multiply_adds(gates)
    return GateStats(
        accuracy=float((logits.argmax(1) == y).float().mean()),
        gate_rate=float((gates != 0).double().mean()),
        skipped_main=1 - macs["main_performed"] / macs["main_dense"],
        skipped_total=1 - macs["total_performed"] / macs["main_dense"],
        accuracy_shuffled=float((shuffled.argmax(1) == y).float().mean()),
    )


def gated_loss(
    model: GatedMLP,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    target_rate: float,
    sparsity_cost: float,
    baseline: Baseline | float | torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    add_surrogate: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training objective of one minibatch: returns (loss to differentiate, mean cross-entropy).

    For REINFORCE gates the loss includes the score-function surrogate weighted by each
    example's cross-entropy minus ``baseline``. ``add_surrogate=False`` leaves it out, the
    mistake a negative control makes: the gates then learn from the sparsity penalty only.
    """
    logits, a = model(x, generator)
    ce = F.cross_entropy(logits, y, reduction="none")
    loss = ce.mean()
    if model.gate is not None:
        # eq. st-sparsity, on the batch mean of P(gate j is non-zero)
        rate = model.gate.fire_probability(a).mean(0)
        loss = loss + sparsity_cost * ((rate - target_rate) ** 2).sum()
        if model.estimator == "reinforce" and add_surrogate:
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
    baseline: Baseline | float | torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    desc: str | None = None,
    add_surrogate: bool = True,
) -> History:
    """Minibatch SGD on :func:`gated_loss`; returns per-epoch training cross-entropy and test accuracy/gate rate.

    ``generator`` orders the minibatches; the gates draw their noise from torch's global
    generator. ``desc`` labels a progress bar over epochs (``None``: silent). The history has
    ``train_ce``, ``test_accuracy`` and ``test_gate_rate``, one value per epoch.
    ``add_surrogate`` goes to :func:`gated_loss`. Stops with
    :class:`~varbook.runtime.NonFiniteLossError` if the loss becomes NaN or infinite.
    """
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    history = History()
    device = data.x_train.device
    step = 0
    epochs_iter = range(epochs) if desc is None else progress(range(epochs), desc=desc, leave=True)
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
                add_surrogate=add_surrogate,
            )
            descend(opt, loss, step)
            total += float(ce) * len(idx)
            count += len(idx)
            step += 1
        stats = evaluate_gated(model, data.x_test, data.y_test)
        history.log(train_ce=total / count, test_accuracy=stats.accuracy, test_gate_rate=stats.gate_rate)
    return history


def fit_gated(
    data: Split,
    estimator: str | None,
    *,
    target_rate: float,
    seed: int,
    n_blocks: int = 16,
    block_size: int = 16,
    gater_hidden: int = 32,
    epochs: int = 30,
    batch_size: int = 32,
    noise_std: float = 1.0,
    sparsity_cost: float = 0.1,
    desc: str | None = None,
    add_surrogate: bool = True,
) -> tuple[GatedMLP, History]:
    """Build and train one gated network with the settings of the chapter, from ``seed``.

    Seeds torch's global generator (initial weights, gate noise) and a minibatch generator
    with ``seed``. Plain SGD, learning rate 0.1, sparsity cost 0.1 (``sparsity_cost``; a negative
    value is the sign mistake the chapter's negative control makes); momentum 0.5 for STS and 0
    otherwise; REINFORCE gates use a :class:`~varbook.estimators.PerUnitOptimalBaseline`
    (moving averages with momentum 0.9). ``estimator=None`` trains the dense network.
    ``add_surrogate=False`` trains REINFORCE gates without their learning signal (a control).
    """
    seed_all(seed)
    g = torch.Generator().manual_seed(seed)
    model = GatedMLP(
        data.n_features, data.n_classes, n_blocks, block_size, gater_hidden, estimator=estimator, noise_std=noise_std
    ).to(data.x_train.device)
    history = train_gated(
        model,
        data,
        epochs=epochs,
        batch_size=batch_size,
        lr=0.1,
        momentum=0.5 if estimator == "sts" else 0.0,
        target_rate=target_rate,
        sparsity_cost=sparsity_cost,
        baseline=PerUnitOptimalBaseline(0.9) if estimator == "reinforce" else None,
        generator=g,
        desc=desc,
        add_surrogate=add_surrogate,
    )
    return model, history


@dataclass(frozen=True)
class Run:
    """One network of a sweep: the arguments of :func:`fit_gated` that differ between networks."""

    estimator: str | None
    target_rate: float
    seed: int
    noise_std: float = 1.0
    add_surrogate: bool = True


class GatedStack(nn.Module):
    """``M`` gated networks of one shape and one estimator, computed as one batched network.

    The weights of ``models`` are copied into stacked tensors (``weights[name]`` has shape
    ``(M, in, out)``, ``biases[name]`` ``(M, 1, out)``), so that every linear layer of the ``M``
    networks is one batched matrix product; :meth:`write_back` copies them back into ``models``.
    The gates of the ``M`` networks are drawn by one call of the first network's
    :class:`~varbook.estimators.BinaryStochastic` layer, on the ``M * N`` rows of the stacked
    minibatches (network by network).
    """

    def __init__(self, models: list[GatedMLP]):
        super().__init__()
        kinds = {
            (m.d_in, m.n_classes, m.n_blocks, m.block_size, m.estimator, m.gate and m.gate.noise_std) for m in models
        }
        if len(kinds) != 1:
            raise ValueError("a GatedStack needs at least one model, all of one shape, estimator and noise")
        self.models = models  # a plain list: their parameters are not this module's
        self.n_blocks, self.block_size, self.estimator = models[0].n_blocks, models[0].block_size, models[0].estimator
        self.gate = models[0].gate
        self.layers: dict[str, list[nn.Linear]] = {
            "main": [m.main for m in models],
            "classifier": [m.classifier for m in models],
        }
        for i, layer in enumerate(models[0].gater or []):
            if isinstance(layer, nn.Linear):
                self.layers[f"gater{i}"] = [cast(nn.Linear, cast(MLP, m.gater)[i]) for m in models]
        self.weights = nn.ParameterDict(
            {k: torch.stack([layer.weight.detach().t() for layer in v]) for k, v in self.layers.items()}
        )
        self.biases = nn.ParameterDict(
            {k: torch.stack([layer.bias.detach()[None] for layer in v]) for k, v in self.layers.items()}
        )

    def linear(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.biases[name], x, self.weights[name])

    def gater(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.models[0].gater or []):
            x = self.linear(f"gater{i}", x) if isinstance(layer, nn.Linear) else layer(x)
        return x

    def draw_gates(self, a: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The gates ``(M, N, n_blocks)`` of pre-activations ``a``, all drawn in one call of the gate layer."""
        if self.gate is None:
            raise RuntimeError("a dense stack has no gates")
        return self.gate(a.flatten(0, 1), generator).view_as(a)

    def classify(self, x: torch.Tensor, gates: torch.Tensor | None) -> torch.Tensor:
        """The logits ``(M, N, n_classes)`` of inputs ``(M, N, d_in)`` with ``gates`` (``None``: dense)."""
        hidden = F.relu(self.linear("main", x))
        if gates is not None:
            hidden = hidden.view(*x.shape[:2], self.n_blocks, self.block_size) * gates.unsqueeze(-1)
        return self.linear("classifier", hidden.flatten(2))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """Logits ``(M, N, n_classes)`` and gate pre-activations ``(M, N, n_blocks)`` (``None`` when dense)."""
        if self.gate is None:
            return self.classify(x, None), None
        a = self.gater(x)
        return self.classify(x, self.draw_gates(a, generator)), a

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Test accuracy and fraction of non-zero gates of every network, noise off (as :func:`evaluate_gated`)."""
        was_training = self.training
        self.eval()
        x = x.expand(len(self.models), -1, -1)
        gates = self.draw_gates(self.gater(x)) if self.gate is not None else None
        accuracy = (self.classify(x, gates).argmax(-1) == y).float().mean(1)
        self.train(was_training)
        if gates is None:
            return accuracy, torch.ones_like(accuracy, dtype=torch.float64)
        return accuracy, (gates != 0).double().mean((1, 2))

    @torch.no_grad()
    def write_back(self) -> None:
        """Copy the stacked weights into the networks the stack was built from."""
        for name, layers in self.layers.items():
            for m, layer in enumerate(layers):
                layer.weight.copy_(self.weights[name][m].t())
                layer.bias.copy_(self.biases[name][m, 0])


class PerNetworkBaseline:
    """One baseline per network, for the ``M * N`` rows of ``M`` stacked minibatches of ``N`` examples.

    Follows the :class:`~varbook.protocols.Baseline` protocol: ``value()`` gives each row its own
    network's baseline (shape ``(M * N, 1)`` or ``(M * N, units)``); ``update`` passes each
    network's rows to its own baseline, so each baseline sees what it would see in a network
    trained alone.
    """

    def __init__(self, baselines: list[Baseline], rows: int, device: torch.device | str | None = None):
        self.baselines, self.rows, self.device = baselines, rows, device

    def value(self) -> float | torch.Tensor:
        values = [b.value() for b in self.baselines]
        if all(not isinstance(v, torch.Tensor) and v == values[0] for v in values):
            return float(values[0])  # one number for every row (before the first update)
        per_network = torch.stack(torch.broadcast_tensors(*[torch.as_tensor(v, device=self.device) for v in values]))
        per_row = per_network.reshape(len(values), 1, -1).expand(-1, self.rows, -1)
        return per_row.reshape(len(values) * self.rows, -1)

    def update(self, score: torch.Tensor | None, loss: torch.Tensor) -> None:
        n = len(self.baselines)
        scores = [None] * n if score is None else score.reshape(n, self.rows, *score.shape[1:]).unbind()
        losses = loss.reshape(n, self.rows).unbind()
        for baseline, network_score, network_loss in zip(self.baselines, scores, losses, strict=True):
            baseline.update(network_score, network_loss)


def stacked_gated_loss(
    stack: GatedStack,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    target_rates: torch.Tensor,
    sparsity_cost: float,
    baselines: list[Baseline] | None = None,
    generator: torch.Generator | None = None,
    add_surrogate: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    r""":func:`gated_loss` of every network of ``stack`` on its own minibatch ``x[m], y[m]``.

    ``target_rates`` holds each network's :math:`\rho` (shape ``(M,)``), ``baselines`` each
    REINFORCE network's baseline. Returns the sum of the ``M`` losses (each network's parameters
    get the gradient of its own loss only) and the ``M`` mean cross-entropies.
    """
    logits, a = stack(x, generator)
    ce = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape)
    loss = ce.mean(1).sum()
    if stack.gate is not None and a is not None:
        # eq. st-sparsity for each network, on the batch mean of P(gate j is non-zero)
        rate = stack.gate.fire_probability(a).mean(1)
        loss = loss + sparsity_cost * ((rate - target_rates[:, None]) ** 2).sum()
        if stack.estimator == "reinforce" and add_surrogate:
            m, n = y.shape
            baseline = PerNetworkBaseline(baselines, n, ce.device) if baselines is not None else None
            # the surrogate averages over all M * N rows: times M, it is the sum of the M networks'
            loss = loss + m * stack.gate.reinforce_surrogate(ce.flatten(), baseline)
    return loss, ce.mean(1).detach()


def _global_generator_copy(device: torch.device) -> torch.Generator:
    """A generator in the state of torch's global generator of ``device`` (whose draws it repeats)."""
    g = torch.Generator(device=device)
    g.set_state(torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state())
    return g


def fit_gated_together(
    data: Split,
    runs: list[Run],
    *,
    n_blocks: int = 16,
    block_size: int = 16,
    gater_hidden: int = 32,
    epochs: int = 30,
    batch_size: int = 32,
    sparsity_cost: float = 0.1,
    desc: str | None = None,
) -> list[tuple[GatedMLP, History]]:
    """Train the networks of ``runs`` side by side, each with the settings of :func:`fit_gated`.

    Every network is built from its seed as :func:`fit_gated` builds it, takes its minibatches in
    the same order and has its own baseline. The networks that share an estimator, a noise level
    and ``add_surrogate`` form one :class:`GatedStack`; one SGD step moves all the stacks. A stack
    draws its gate noise from the generator :func:`fit_gated` would use for its first network, so
    a network alone in its stack is trained as :func:`fit_gated` trains it, up to rounding (the
    batched products add in another order); the others draw the same distribution, not the same
    numbers.
    """
    device = data.x_train.device
    models, noise, order = [], [], []
    for run in runs:
        seed_all(run.seed)
        order.append(torch.Generator().manual_seed(run.seed))
        shape = (data.n_features, data.n_classes, n_blocks, block_size, gater_hidden)
        models.append(GatedMLP(*shape, estimator=run.estimator, noise_std=run.noise_std).to(device))
        noise.append(_global_generator_copy(device))
    groups: dict[tuple, list[int]] = {}
    for i, run in enumerate(runs):
        noise_std = run.noise_std if run.estimator == "noisy_relu" else None
        groups.setdefault((run.estimator, noise_std, run.add_surrogate), []).append(i)
    stacks = [(GatedStack([models[i] for i in members]), members) for members in groups.values()]
    params = [{"params": s.parameters(), "momentum": 0.5 if s.estimator == "sts" else 0.0} for s, _ in stacks]
    opt = torch.optim.SGD(params, lr=0.1)
    targets = [torch.tensor([runs[i].target_rate for i in members], device=device) for _, members in stacks]
    baselines: list[Baseline] = [PerUnitOptimalBaseline(0.9) for _ in runs]
    histories = [History() for _ in runs]
    step = 0
    epochs_iter = range(epochs) if desc is None else progress(range(epochs), desc=desc, leave=True)
    for _ in epochs_iter:
        totals = [torch.zeros(len(members), dtype=torch.float64, device=device) for _, members in stacks]
        batches = [minibatches(len(data.x_train), batch_size, g, device) for g in order]
        for idx in zip(*batches, strict=True):
            idx_all = torch.stack(idx)
            loss = torch.zeros((), device=device)
            for (stack, members), target, total in zip(stacks, targets, totals, strict=True):
                rows = idx_all[members]
                stack_loss, ce = stacked_gated_loss(
                    stack,
                    data.x_train[rows],
                    data.y_train[rows],
                    target_rates=target,
                    sparsity_cost=sparsity_cost,
                    baselines=[baselines[i] for i in members],
                    generator=noise[members[0]],
                    add_surrogate=runs[members[0]].add_surrogate,
                )
                loss = loss + stack_loss
                total += ce.double() * rows.shape[1]
            descend(opt, loss, step)
            step += 1
        for (stack, members), total in zip(stacks, totals, strict=True):
            accuracy, gate_rate = stack.evaluate(data.x_test, data.y_test)
            for j, i in enumerate(members):
                histories[i].log(
                    train_ce=total[j] / len(data.x_train), test_accuracy=accuracy[j], test_gate_rate=gate_rate[j]
                )
    for stack, _ in stacks:
        stack.write_back()
    return list(zip(models, histories, strict=True))


def sweep_gated(
    data: Split,
    estimators: dict[str, str],
    rates: list[float],
    seeds: list[int],
    desc: str | None = None,
    extra: dict[str, Run] | None = None,
    **settings,
) -> tuple[list[dict], dict[tuple, History]]:
    """Train the dense network and every (estimator, target rate) pair for each seed, then test them.

    ``estimators`` maps a label to an estimator name; ``extra`` maps a label to one more network
    (a control, a variant); ``settings`` go to :func:`fit_gated_together`, which trains all the
    networks side by side, each as :func:`fit_gated` would. Returns one row per network (label,
    target rate, seed and :meth:`GateStats.as_row`): the dense networks first (label ``"dense"``,
    rate 1.0), then, for each seed, every estimator at every rate, then ``extra``; and the
    histories keyed by ``(label, rate, seed)``.
    """
    jobs = [("dense", Run(None, 1.0, s)) for s in seeds]
    jobs += [(label, Run(name, rate, s)) for s in seeds for label, name in estimators.items() for rate in rates]
    jobs += list((extra or {}).items())
    trained = fit_gated_together(data, [run for _, run in jobs], desc=desc, **settings)
    rows, histories = [], {}
    for (label, run), (model, history) in zip(jobs, trained, strict=True):
        stats = evaluate_gated(model, data.x_test, data.y_test)
        rows.append({"estimator": label, "target rate": run.target_rate, "seed": run.seed, **stats.as_row()})
        histories[(label, run.target_rate, run.seed)] = history
    return rows, histories
