r"""The SineLine experiments of the NIW-Meta chapter :cite:`kim2024hierarchical`: training runs and step costs.

Every method trains the same MLP on the same stream of SineLine tasks (one generator per run):

* NIW-Meta (:class:`~varbook.bayes.meta.NIWMeta`), local fits on support ∪ query;
* MAML :cite:`finn2017model`, first or second order, adapted on the support and scored on the query;
* a pooled model, one parameter vector fitted to every task's points, with no adaptation.

:func:`cost_curve` measures one meta-step's backward time and autograd memory against the
number of inner steps (SGLD steps for NIW-Meta, gradient steps for MAML).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from varbook import runtime
from varbook.data.fewshot import RegressionTasks, sineline
from varbook.nn import MLP

from .meta import FunctionalNet, NIWMeta, gaussian_nll, maml_adapt, maml_loss, meta_train, pooled_loss, step_cost


@dataclass(frozen=True)
class SineLineConfig:
    """Sizes and step sizes of the SineLine runs (defaults: the smoke profile).

    ``maml_lr`` is MAML's inner learning rate on the summed NLL (noise 0.3), the same step as 0.01
    on the mean squared error of 5 points. ``step_size`` is SGLD's :math:`\\epsilon`, whose drift
    step :math:`\\epsilon/2` on the likelihood is half of that (twice as large diverged on some
    tasks of 15 points within 10 steps).
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


def make_net(cfg: SineLineConfig, seed: int, device: runtime.DeviceLike = None) -> FunctionalNet:
    """The 1-40-40-1 ReLU MLP of the runs, initialised from ``seed`` (the same for every method)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = MLP(1, list(cfg.hidden), 1)
    return FunctionalNet(module.to(device))


def _tasks(cfg: SineLineConfig, n: int, g: torch.Generator, device: runtime.DeviceLike) -> RegressionTasks:
    return sineline(n, cfg.n_support, cfg.n_query, cfg.noise, generator=g, device=device)


def train_niw(
    cfg: SineLineConfig, seed: int, device: runtime.DeviceLike = None, desc: str | None = None
) -> tuple[NIWMeta, runtime.History]:
    """NIW-Meta on SineLine: ``cfg.iterations`` meta-steps of ``cfg.tasks_per_step`` tasks each (Adam)."""
    net = make_net(cfg, seed, device)
    niw = NIWMeta(
        net, gaussian_nll(cfg.noise), gamma0=cfg.gamma0, n0=cfg.n0, sgld_steps=cfg.sgld_steps,
        step_size=cfg.step_size, a_max=cfg.a_max, n_eff=float(cfg.iterations * cfg.tasks_per_step),
    ).to(device)  # fmt: skip
    g = torch.Generator().manual_seed(seed)

    def loss(step: int) -> torch.Tensor:
        t = _tasks(cfg, cfg.tasks_per_step, g, device)
        return niw.meta_loss(t.x_all, t.y_all, generator=g)[0]

    return niw, meta_train(loss, niw.parameters(), cfg.iterations, cfg.lr, desc)


def train_maml(
    cfg: SineLineConfig, seed: int, second_order: bool, device: runtime.DeviceLike = None, desc: str | None = None
) -> tuple[torch.Tensor, runtime.History]:
    """MAML on SineLine: ``cfg.maml_steps`` inner steps on the support, query NLL as the meta-loss."""
    net = make_net(cfg, seed, device)
    theta = net.flat().requires_grad_(True)
    nll, g = gaussian_nll(cfg.noise), torch.Generator().manual_seed(seed)

    def loss(step: int) -> torch.Tensor:
        t = _tasks(cfg, cfg.tasks_per_step, g, device)
        args = (t.x_support, t.y_support, t.x_query, t.y_query, cfg.maml_steps, cfg.maml_lr, second_order)
        return maml_loss(net, nll, theta, *args)

    return theta.detach(), meta_train(loss, [theta], cfg.iterations, cfg.lr, desc)


def train_pooled(
    cfg: SineLineConfig, seed: int, device: runtime.DeviceLike = None, desc: str | None = None
) -> tuple[torch.Tensor, runtime.History]:
    """The pooled baseline: one network fitted to the points of ``cfg.pooled_tasks`` fresh tasks per step."""
    net = make_net(cfg, seed, device)
    theta = net.flat().requires_grad_(True)
    nll, g = gaussian_nll(cfg.noise), torch.Generator().manual_seed(seed)

    def loss(step: int) -> torch.Tensor:
        t = _tasks(cfg, cfg.pooled_tasks, g, device)
        return pooled_loss(net, nll, theta, t.x_all, t.y_all)

    return theta.detach(), meta_train(loss, [theta], cfg.iterations, cfg.pooled_lr, desc)


def maml_predict(cfg: SineLineConfig, net: FunctionalNet, theta: torch.Tensor, t: RegressionTasks) -> torch.Tensor:
    """MAML's query predictions after ``cfg.maml_steps`` inner steps on each task's support."""
    adapted = maml_adapt(net, gaussian_nll(cfg.noise), theta, t.x_support, t.y_support, cfg.maml_steps, cfg.maml_lr)
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


__all__ = [
    "SineLineConfig",
    "cost_curve",
    "make_net",
    "maml_predict",
    "query_mse",
    "train_maml",
    "train_niw",
    "train_pooled",
]
