r"""The experiments of the NIW-Meta chapter :cite:`kim2024hierarchical`: SineLine runs, step costs, few-shot classification.

Every SineLine method trains the same MLP on tasks from the same distribution. NIW-Meta and
MAML see the same stream of tasks (a task generator seeded alike; NIW-Meta's SGLD and Monte
Carlo draws come from a second generator); the pooled model draws more tasks per step:

* NIW-Meta (:class:`~varbook.bayes.meta.NIWMeta`), local fits on support ∪ query;
* MAML :cite:`finn2017model`, first or second order, adapted on the support and scored on the query;
* a pooled model, one parameter vector fitted to every task's points, with no adaptation.

:func:`cost_curve` measures one meta-step's backward time and autograd memory against the
number of inner steps (SGLD steps for NIW-Meta, gradient steps for MAML).

:func:`fewshot_run` trains NIW-Meta, ProtoNet :cite:`snell2017prototypical` and first-order
MAML on N-way K-shot image episodes (:func:`varbook.data.fewshot.episodes`) with the same
4-block CNN (:func:`conv4`) and scores accuracy and ECE on held-out classes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from varbook import runtime
from varbook.data.fewshot import ClassSplit, Episodes, RegressionTasks, episodes, sineline
from varbook.nn import MLP

from . import metrics
from .meta import (
    FunctionalNet,
    Likelihood,
    NIWMeta,
    categorical_nll,
    gaussian_nll,
    maml_adapt,
    maml_loss,
    meta_train,
    pooled_loss,
    protonet_logits,
    step_cost,
)


@dataclass(frozen=True)
class SineLineConfig:
    """Sizes and step sizes of the SineLine runs (defaults: the smoke profile).

    ``maml_lr`` is MAML's inner learning rate on the summed NLL (noise 0.3), the same step as 0.01
    on the mean squared error of 5 points. ``step_size`` is SGLD's :math:`\\epsilon`, whose drift
    step :math:`\\epsilon/2` on the likelihood is half of that (twice as large diverged on some
    tasks of 15 points within 10 steps). ``max_grad_norm`` clips every method's outer gradient
    (``None``: no clipping); with ``eval_every > 0`` and test tasks, every run logs its test
    query MSE every ``eval_every`` meta-steps (``history["test_mse"]``). ``kl_weight`` scales
    NIW-Meta's expected-KL term :math:`g_i` (``0``: the ablation without it). With
    ``stop_on_nonfinite`` a run whose loss diverges stops and records the step
    (``history["diverged_at"]``) instead of raising.
    """

    hidden: tuple[int, ...] = (40, 40)
    noise: float = 0.3
    n_support: int = 5
    n_query: int = 10
    tasks_per_step: int = 4
    iterations: int = 1000
    lr: float = 1e-3
    sgld_steps: int = 3
    step_size: float = 3.6e-4
    gamma0: float = 1.0
    n0: float = 1.0
    a_max: float = 1e3
    maml_steps: int = 5
    maml_lr: float = 3.6e-4
    pooled_tasks: int = 16
    pooled_lr: float = 3e-3
    max_grad_norm: float | None = None
    eval_every: int = 0
    kl_weight: float = 1.0
    stop_on_nonfinite: bool = False


def make_net(cfg: SineLineConfig, seed: int, device: runtime.DeviceLike = None) -> FunctionalNet:
    """The 1-40-40-1 ReLU MLP of the runs, initialised from ``seed`` (the same for every method)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = MLP(1, list(cfg.hidden), 1)
    return FunctionalNet(module.to(device))


def _tasks(cfg: SineLineConfig, n: int, g: torch.Generator, device: runtime.DeviceLike) -> RegressionTasks:
    return sineline(n, cfg.n_support, cfg.n_query, cfg.noise, generator=g, device=device)


def _train(
    cfg: SineLineConfig,
    loss: Callable[[int], torch.Tensor],
    params: Sequence[torch.Tensor],
    lr: float,
    desc: str | None,
    predict: Callable[[RegressionTasks], torch.Tensor],
    test: RegressionTasks | None,
) -> runtime.History:
    monitor = None if test is None else (lambda: {"test_mse": query_mse(predict(test), test)})
    return meta_train(
        loss, params, cfg.iterations, lr, desc, max_grad_norm=cfg.max_grad_norm, monitor=monitor,
        every=cfg.eval_every, stop_on_nonfinite=cfg.stop_on_nonfinite,
    )  # fmt: skip


def train_niw(
    cfg: SineLineConfig,
    seed: int,
    device: runtime.DeviceLike = None,
    desc: str | None = None,
    test: RegressionTasks | None = None,
) -> tuple[NIWMeta, runtime.History]:
    """NIW-Meta on SineLine: ``cfg.iterations`` meta-steps of ``cfg.tasks_per_step`` tasks each (Adam).

    With ``test`` tasks and ``cfg.eval_every``, the query MSE of the prediction (mean of two draws
    from :math:`q^*` fitted on the support) is logged along the way.
    """
    net = make_net(cfg, seed, device)
    niw = NIWMeta(
        net, gaussian_nll(cfg.noise), gamma0=cfg.gamma0, n0=cfg.n0, sgld_steps=cfg.sgld_steps,
        step_size=cfg.step_size, a_max=cfg.a_max, n_eff=float(cfg.iterations * cfg.tasks_per_step),
    ).to(device)  # fmt: skip
    g, g_noise = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1_000_003)

    def loss(step: int) -> torch.Tensor:
        t = _tasks(cfg, cfg.tasks_per_step, g, device)
        return niw.meta_loss(t.x_all, t.y_all, generator=g_noise, kl_weight=cfg.kl_weight)[0]

    def predict(t: RegressionTasks) -> torch.Tensor:
        g_test = torch.Generator().manual_seed(seed)
        return niw.predict(t.x_support, t.y_support, t.x_query, generator=g_test).mean(0)

    return niw, _train(cfg, loss, list(niw.parameters()), cfg.lr, desc, predict, test)


def train_maml(
    cfg: SineLineConfig,
    seed: int,
    second_order: bool,
    device: runtime.DeviceLike = None,
    desc: str | None = None,
    test: RegressionTasks | None = None,
) -> tuple[torch.Tensor, runtime.History]:
    """MAML on SineLine: ``cfg.maml_steps`` inner steps on the support, query NLL as the meta-loss."""
    net = make_net(cfg, seed, device)
    theta = net.flat().requires_grad_(True)
    nll, g = gaussian_nll(cfg.noise), torch.Generator().manual_seed(seed)

    def loss(step: int) -> torch.Tensor:
        t = _tasks(cfg, cfg.tasks_per_step, g, device)
        args = (t.x_support, t.y_support, t.x_query, t.y_query, cfg.maml_steps, cfg.maml_lr, second_order)
        return maml_loss(net, nll, theta, *args)

    history = _train(cfg, loss, [theta], cfg.lr, desc, lambda t: maml_predict(cfg, net, theta.detach(), t), test)
    return theta.detach(), history


def train_pooled(
    cfg: SineLineConfig,
    seed: int,
    device: runtime.DeviceLike = None,
    desc: str | None = None,
    test: RegressionTasks | None = None,
) -> tuple[torch.Tensor, runtime.History]:
    """The pooled baseline: one network fitted to the points of ``cfg.pooled_tasks`` fresh tasks per step."""
    net = make_net(cfg, seed, device)
    theta = net.flat().requires_grad_(True)
    nll, g = gaussian_nll(cfg.noise), torch.Generator().manual_seed(seed)

    def loss(step: int) -> torch.Tensor:
        t = _tasks(cfg, cfg.pooled_tasks, g, device)
        return pooled_loss(net, nll, theta, t.x_all, t.y_all)

    def predict(t: RegressionTasks) -> torch.Tensor:
        return net(theta.detach(), t.x_query).detach()

    return theta.detach(), _train(cfg, loss, [theta], cfg.pooled_lr, desc, predict, test)


def maml_predict(cfg: SineLineConfig, net: FunctionalNet, theta: torch.Tensor, t: RegressionTasks) -> torch.Tensor:
    """MAML's query predictions after ``cfg.maml_steps`` inner steps on each task's support."""
    nll = gaussian_nll(cfg.noise)
    adapted = maml_adapt(net, nll, theta, t.x_support, t.y_support, cfg.maml_steps, cfg.maml_lr, second_order=False)
    return net(adapted.detach(), t.x_query).detach()


def query_mse(pred: torch.Tensor, t: RegressionTasks) -> float:
    """Mean squared error over every query point of every task."""
    return float(((pred - t.y_query) ** 2).mean())


def cost_curve(
    cfg: SineLineConfig,
    steps: Sequence[int] = (1, 2, 5, 10),
    n_tasks: int = 16,
    reps: int = 7,
    seed: int = 0,
    device: runtime.DeviceLike = None,
) -> dict[str, dict[str, list[float]]]:
    """Backward time and peak saved-tensor bytes of one meta-step against the number of inner steps.

    Methods: NIW-Meta, NIW-Meta differentiated through its SGLD chain (``stop_gradient=False``),
    second- and first-order MAML, all on the same batch of ``n_tasks`` tasks and the same
    network (:func:`~varbook.bayes.meta.step_cost`). The step counts are measured in ``reps``
    interleaved rounds; the time is the fastest round's, the memory the largest.
    """
    net = make_net(cfg, seed, device)
    nll = gaussian_nll(cfg.noise)
    niw = NIWMeta(net, nll, sgld_steps=cfg.sgld_steps, step_size=cfg.step_size, a_max=cfg.a_max).to(device)
    theta = net.flat().requires_grad_(True)
    g = torch.Generator().manual_seed(seed)
    t = _tasks(cfg, n_tasks, g, device)
    makers: dict[str, tuple[Callable[[int], Callable[[], torch.Tensor]], list[torch.Tensor]]] = {
        "NIW-Meta": (
            lambda k: lambda: niw.meta_loss(t.x_all, t.y_all, steps=k, generator=g)[0],
            list(niw.parameters()),
        ),
        "NIW-Meta, no stop-gradient": (
            lambda k: lambda: niw.meta_loss(t.x_all, t.y_all, steps=k, generator=g, stop_gradient=False)[0],
            list(niw.parameters()),
        ),
        "MAML, 2nd order": (
            lambda k: (
                lambda: maml_loss(net, nll, theta, t.x_support, t.y_support, t.x_query, t.y_query, k, cfg.maml_lr)
            ),
            [theta],
        ),
        "MAML, 1st order": (
            lambda k: (
                lambda: maml_loss(
                    net, nll, theta, t.x_support, t.y_support, t.x_query, t.y_query, k, cfg.maml_lr, second_order=False
                )
            ),
            [theta],
        ),
    }
    out: dict[str, dict[str, list[float]]] = {}
    for name, (make, params) in makers.items():
        # one repetition of every step count per round, so that a burst of load on the
        # machine slows all of them alike; the fastest round of each counts
        rounds = [[step_cost(make(k), params, reps=1) for k in steps] for _ in range(reps)]
        out[name] = {
            "backward_s": [min(r[i]["backward_s"] for r in rounds) for i in range(len(steps))],
            "saved_bytes": [max(r[i]["saved_bytes"] for r in rounds) for i in range(len(steps))],
        }
    return out


# ---------------------------------------------------------------------------------------------
# Few-shot classification: NIW-Meta, ProtoNet and first-order MAML on image episodes
# ---------------------------------------------------------------------------------------------

FEWSHOT_METHODS = ("NIW-Meta", "ProtoNet", "MAML, 1st order")
"""The methods of :func:`fewshot_run`."""


@dataclass(frozen=True)
class FewShotConfig:
    """Sizes and step sizes of a few-shot classification run (defaults: the smoke profile on digits).

    Episodes are ``n_way``-way ``k_shot``-shot with ``n_query`` query images per class in
    training and ``test_query`` in the ``test_episodes`` test episodes. ``maml_lr`` is MAML's
    inner learning rate on the summed cross-entropy of the support; ``step_size`` is SGLD's
    :math:`\\epsilon` for NIW-Meta's local fits; ``n_samples`` draws from :math:`q^*` are averaged
    at test time (the official default, 2).
    """

    data: str = "digits"
    n_way: int = 3
    k_shot: int = 1
    n_query: int = 5
    test_query: int = 15
    test_episodes: int = 200
    tasks_per_step: int = 4
    iterations: int = 200
    lr: float = 1e-3
    channels: int = 32
    blocks: int = 4
    sgld_steps: int = 3
    step_size: float = 1e-3
    gamma0: float = 1.0
    n0: float = 1.0
    a_max: float = 1e3
    n_samples: int = 2
    maml_steps: int = 5
    maml_lr: float = 0.1
    chunk: int = 50


def conv4(side: int, channels: int = 32, blocks: int = 4, n_out: int | None = None) -> nn.Sequential:
    """The few-shot CNN of :cite:`snell2017prototypical`: ``blocks`` x (conv 3x3, GroupNorm, ReLU, 2x2 max-pool).

    Input ``(n, 1, side, side)``; output the flattened features ``(n, channels * s * s)``, where
    ``s`` is ``side`` halved (rounding up) ``blocks`` times, followed by a linear layer to
    ``n_out`` logits when given. GroupNorm (8 groups) instead of BatchNorm: it has no running
    statistics, so the network is a pure function of its parameters under ``vmap``.

    >>> conv4(8)(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 32])
    >>> conv4(28, n_out=3)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 3])
    """
    if side < 1 or channels < 1 or blocks < 1:
        raise ValueError(f"need side, channels and blocks >= 1, got {side}, {channels}, {blocks}")
    layers: list[nn.Module] = []
    s = side
    for i in range(blocks):
        layers += [
            nn.Conv2d(1 if i == 0 else channels, channels, 3, padding=1),
            nn.GroupNorm(min(8, channels), channels),
            nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
        ]
        s = -(-s // 2)
    layers.append(nn.Flatten())
    if n_out is not None:
        layers.append(nn.Linear(channels * s * s, n_out))
    return nn.Sequential(*layers)


def protonet_nll(n_way: int, n_proto: int) -> Likelihood:
    r"""ProtoNet's likelihood of a labelled set :cite:`snell2017prototypical`, from embeddings ``(T, n, D)``.

    The prototypes are the class means of each task's first ``n_proto`` embeddings (the support);
    every example of the task is scored, :math:`-\sum_j\log\mathrm{softmax}_{y_j}(-\|z_j-c\|^2)`
    (:func:`~varbook.bayes.meta.protonet_logits`). This is the likelihood :math:`p(D_i\mid\theta)` of
    NIW-Meta on top of ProtoNet: :math:`\theta` is the embedding network, and labels are
    episode-local, so no classifier head has to be adapted.
    """
    if n_way < 1 or n_proto < n_way:
        raise ValueError(f"need n_way >= 1 and n_proto >= n_way, got {n_way} and {n_proto}")

    def nll(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return categorical_nll(protonet_logits(z[:, :n_proto], y[:, :n_proto], z, n_way), y)

    return nll


def fewshot_data(cfg: FewShotConfig, device: runtime.DeviceLike = None) -> ClassSplit:
    """:func:`~varbook.data.fewshot.class_split` of ``cfg.data`` (test classes 6-9), standardised by the training classes' pixels."""
    from varbook.data.fewshot import class_split

    split = class_split(cfg.data)
    train = torch.isin(split.y, torch.tensor(split.train_classes))
    mean, std = split.x[train].mean(), split.x[train].std()
    return ClassSplit(((split.x - mean) / std).to(device), split.y.to(device), split.train_classes, split.test_classes)


def _fewshot_net(
    cfg: FewShotConfig, split: ClassSplit, seed: int, head: bool, device: runtime.DeviceLike
) -> FunctionalNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = conv4(split.x.shape[-1], cfg.channels, cfg.blocks, cfg.n_way if head else None)
    return FunctionalNet(module.to(device))


def train_fewshot(
    cfg: FewShotConfig,
    method: str,
    split: ClassSplit,
    seed: int,
    device: runtime.DeviceLike = None,
    desc: str | None = None,
) -> tuple[NIWMeta | tuple[FunctionalNet, torch.Tensor], runtime.History]:
    """Meta-train one of :data:`FEWSHOT_METHODS` on episodes of the training classes (Adam, ``cfg.iterations`` steps).

    * ``"NIW-Meta"``: :class:`~varbook.bayes.meta.NIWMeta` over the CNN embedding with the ProtoNet
      likelihood :func:`protonet_nll`; local fits on support ∪ query (the support's prototypes).
    * ``"ProtoNet"``: the same embedding, query cross-entropy against the support's prototypes.
    * ``"MAML, 1st order"``: the CNN with a linear head, ``cfg.maml_steps`` inner steps on the support.

    Returns the trained :class:`NIWMeta`, or ``(net, theta)`` for the two others, and the history.
    """
    runtime.check_choice("few-shot method", method, FEWSHOT_METHODS)
    g, g_noise = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1_000_003)
    net = _fewshot_net(cfg, split, seed, method == "MAML, 1st order", device)
    n_sup = cfg.n_way * cfg.k_shot

    def batch() -> Episodes:
        return episodes(
            split.x, split.y, split.train_classes, cfg.n_way, cfg.k_shot, cfg.n_query, cfg.tasks_per_step, generator=g
        )

    if method == "NIW-Meta":
        niw = NIWMeta(
            net, protonet_nll(cfg.n_way, n_sup), gamma0=cfg.gamma0, n0=cfg.n0, sgld_steps=cfg.sgld_steps,
            step_size=cfg.step_size, a_max=cfg.a_max, n_eff=float(cfg.iterations * cfg.tasks_per_step),
        ).to(device)  # fmt: skip

        def niw_loss(step: int) -> torch.Tensor:
            e = batch()
            x, y = torch.cat([e.x_support, e.x_query], 1), torch.cat([e.y_support, e.y_query], 1)
            return niw.meta_loss(x, y, generator=g_noise)[0]

        return niw, meta_train(niw_loss, niw.parameters(), cfg.iterations, cfg.lr, desc)
    theta = net.flat().requires_grad_(True)

    def loss(step: int) -> torch.Tensor:
        e = batch()
        if method == "ProtoNet":
            logits = protonet_logits(net(theta, e.x_support), e.y_support, net(theta, e.x_query), cfg.n_way)
            return categorical_nll(logits, e.y_query).mean()
        args = (e.x_support, e.y_support, e.x_query, e.y_query, cfg.maml_steps, cfg.maml_lr)
        return maml_loss(net, categorical_nll, theta, *args, second_order=False)

    history = meta_train(loss, [theta], cfg.iterations, cfg.lr, desc)
    return (net, theta.detach()), history


def fewshot_probs(
    cfg: FewShotConfig,
    method: str,
    model: NIWMeta | tuple[FunctionalNet, torch.Tensor],
    e: Episodes,
    generator: torch.Generator | None = None,
    n_samples: int | None = None,
) -> torch.Tensor:
    """Query class probabilities ``(E, n_query, n_way)`` of a model from :func:`train_fewshot`, in chunks of episodes.

    NIW-Meta averages the probabilities of ``n_samples`` (default ``cfg.n_samples``) draws from
    :math:`q^*` fitted on the support only (``0``: the mean :math:`m^*`); ProtoNet uses the support's
    prototypes; MAML adapts on the support (first order).
    """
    runtime.check_choice("few-shot method", method, FEWSHOT_METHODS)
    n_samples = cfg.n_samples if n_samples is None else n_samples
    out = []
    for i in range(0, e.x_support.shape[0], cfg.chunk):
        xs, ys, xq = (t[i : i + cfg.chunk] for t in (e.x_support, e.y_support, e.x_query))
        if isinstance(model, NIWMeta):
            if method != "NIW-Meta":
                raise ValueError(f"a NIWMeta model needs method 'NIW-Meta', got {method!r}")
            m_star, g_star = model.local_posterior(xs, ys, generator=generator)
            with torch.no_grad():
                draws = [m_star] if n_samples == 0 else [
                    m_star + g_star.rsqrt() * runtime.randn_like(m_star, generator) for _ in range(n_samples)
                ]  # fmt: skip
                probs = [
                    protonet_logits(model.net(th, xs), ys, model.net(th, xq), cfg.n_way).softmax(-1) for th in draws
                ]
            out.append(torch.stack(probs).mean(0))
            continue
        net, theta = model
        if method == "ProtoNet":
            with torch.no_grad():
                out.append(protonet_logits(net(theta, xs), ys, net(theta, xq), cfg.n_way).softmax(-1))
        else:
            adapted = maml_adapt(net, categorical_nll, theta, xs, ys, cfg.maml_steps, cfg.maml_lr, second_order=False)
            out.append(net(adapted.detach(), xq).detach().softmax(-1))
    return torch.cat(out)


def fewshot_scores(probs: torch.Tensor, e: Episodes, n_bins: int = 15) -> dict[str, float]:
    """Accuracy, its standard error over episodes, and the ECE (:func:`~varbook.bayes.metrics.ece`) of pooled query predictions."""
    flat, y = probs.reshape(-1, probs.shape[-1]), e.y_query.reshape(-1)
    per_episode = (probs.argmax(-1) == e.y_query).double().mean(1)
    return {
        "accuracy": metrics.accuracy(flat, y),
        "accuracy_se": float(per_episode.std() / per_episode.numel() ** 0.5),
        "ece": metrics.ece(flat, y, n_bins),
    }


def fewshot_run(
    cfg: FewShotConfig, seed: int = 0, device: runtime.DeviceLike = None, progress: bool = True
) -> dict[str, dict]:
    """Train every method of :data:`FEWSHOT_METHODS` on ``cfg`` and score it on ``cfg.test_episodes`` test episodes.

    The test episodes (held-out classes, drawn from a generator seeded ``10_000 + seed``) are the
    same for every method. Returns, per method, :func:`fewshot_scores` plus ``"probs"`` (query
    probabilities) and ``"history"``; under the key ``"episodes"`` the test episodes.
    """
    split = fewshot_data(cfg, device)
    test = episodes(
        split.x, split.y, split.test_classes, cfg.n_way, cfg.k_shot, cfg.test_query, cfg.test_episodes,
        generator=torch.Generator().manual_seed(10_000 + seed),
    )  # fmt: skip
    out: dict[str, dict] = {"episodes": {"test": test}}
    for method in FEWSHOT_METHODS:
        desc = f"{method}, {cfg.data} {cfg.k_shot}-shot" if progress else None
        model, history = train_fewshot(cfg, method, split, seed, device, desc)
        probs = fewshot_probs(cfg, method, model, test, torch.Generator().manual_seed(seed))
        out[method] = {**fewshot_scores(probs, test), "probs": probs, "history": history, "model": model}
    return out


__all__ = [
    "FEWSHOT_METHODS",
    "FewShotConfig",
    "SineLineConfig",
    "conv4",
    "fewshot_data",
    "fewshot_probs",
    "fewshot_run",
    "fewshot_scores",
    "protonet_nll",
    "train_fewshot",
    "cost_curve",
    "make_net",
    "maml_predict",
    "query_mse",
    "train_maml",
    "train_niw",
    "train_pooled",
]
