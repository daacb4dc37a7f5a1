r"""Few-shot meta-learning: NIW-Meta :cite:`kim2024hierarchical`, MAML :cite:`finn2017model`, ProtoNet :cite:`snell2017prototypical`.

Every method sees a network through :class:`FunctionalNet`: its parameters as one flat vector
:math:`\theta\in\mathbb R^P` per task, evaluated on a batch of tasks at once with
``torch.func.vmap`` over ``torch.func.functional_call``. A likelihood maps the predictions of
each task to its negative log-likelihood :math:`-\log p(D_i\mid\theta_i)`, shape ``(T,)``.

NIW-Meta keeps a global Normal-Gamma over the parameters, :math:`\phi=(m_0,\gamma_0,n_0)`.
Each task's local Gaussian :math:`q_i^*=\mathcal N(m_i^*,1/\gamma_i^*)` is a one-time closed
form (:func:`varbook.bayes.conjugate.niw_local_posterior`) of a quadratic fit
:math:`(\bar m_i,\bar A_i)` to a few SGLD iterates, which are *not* differentiated: the meta
gradient reaches :math:`\phi` through the closed form only, so no graph of the inner loop is
kept. MAML differentiates through its inner gradient steps (second order) or treats the inner
gradients as constants (first order).
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap

from varbook import memory, runtime

from .conjugate import expected_kl, gamma_kl, niw_local_posterior
from .sgld import gaussian_fit, sgld

Likelihood = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``nll(pred, y)``: per-task negative log-likelihood, shape ``(T,)``, of predictions ``(T, n, ...)``."""


class FunctionalNet:
    """A module evaluated with its parameters given as flat vectors, one per task.

    ``net(theta, x)`` with ``theta`` of shape ``(T, P)`` (or ``(P,)``, shared by every task) and
    ``x`` of shape ``(T, n, ...)`` returns ``(T, n, ...)``: the module applied to each task's
    inputs with that task's parameters (``vmap`` over ``functional_call``). A module that is an
    ``nn.Sequential`` of ``nn.Linear`` layers and parameter-free element-wise modules (such as
    :class:`varbook.nn.MLP`) takes a faster path with the same result: batched matrix products
    (``torch.baddbmm``) of each task's weights, with no ``vmap``.
    """

    def __init__(self, module: nn.Module):
        named = list(module.named_parameters())
        if not named:
            raise ValueError("the module has no parameters")
        self.module = module
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self._linear_stack = isinstance(module, nn.Sequential) and all(
            isinstance(m, nn.Linear)
            and m.bias is not None
            or (not list(m.parameters()) and isinstance(m, (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, nn.ELU)))
            for m in module.children()
        )

    @property
    def n_params(self) -> int:
        """:math:`P`, the number of parameters."""
        return sum(self.sizes)

    def flat(self) -> torch.Tensor:
        """The module's current parameters as one detached vector ``(P,)``."""
        return torch.cat([p.detach().reshape(-1) for p in self.module.parameters()]).clone()

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """``theta`` ``(P,)`` as the module's named parameters."""
        parts = theta.split(self.sizes)
        return {n: p.view(s) for n, p, s in zip(self.names, parts, self.shapes, strict=True)}

    def _one(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.module, self.unflatten(theta), (x,))

    def _linear(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The fast path for a stack of ``Linear`` layers and activations: ``theta`` ``(T, P)``, ``x`` ``(T, n, d)``."""
        parts = iter(theta.split(self.sizes, -1))
        for m in self.module.children():
            if isinstance(m, nn.Linear):
                w = next(parts).reshape(-1, m.out_features, m.in_features)
                b = next(parts)
                x = torch.baddbmm(b[:, None, :], x, w.transpose(1, 2))
            else:
                x = m(x)
        return x

    def __call__(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if theta.shape[-1] != self.n_params or theta.dim() not in (1, 2):
            raise ValueError(f"theta must have shape (P,) or (T, P) with P={self.n_params}, got {tuple(theta.shape)}")
        if self._linear_stack and x.dim() == 3:
            return self._linear(theta.expand(x.shape[0], -1), x)
        return vmap(self._one, in_dims=(0 if theta.dim() == 2 else None, 0))(theta, x)


def gaussian_nll(noise: float) -> Likelihood:
    r"""Per-task Gaussian NLL, :math:`\sum_j\big[(y_j-f_j)^2/2\sigma^2+\log(\sigma\sqrt{2\pi})\big]`, of noise ``σ``."""
    if not noise > 0:
        raise ValueError(f"the noise scale must be positive, got {noise}")

    def nll(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        sq = ((y - pred) ** 2).flatten(1).sum(1)
        return sq / (2 * noise**2) + y[0].numel() * math.log(noise * math.sqrt(2 * math.pi))

    return nll


def categorical_nll(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-task cross-entropy summed over the task's examples: logits ``(T, n, C)``, labels ``(T, n)``."""
    if logits.dim() != 3 or y.shape != logits.shape[:2]:
        raise ValueError(f"expected logits (T, n, C) and labels (T, n), got {tuple(logits.shape)}, {tuple(y.shape)}")
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).sum(1)


def _inv_softplus(x: float) -> float:
    return x + math.log(-math.expm1(-x))


class NIWMeta(nn.Module):
    r"""NIW-Meta :cite:`kim2024hierarchical` with a diagonal Normal-Gamma over all parameters.

    Global parameters: :math:`m_0` (initialised at ``net``'s weights), :math:`\log\gamma_0` and
    :math:`n_0=\mathrm{softplus}(\cdot)+10^{-3}` (one scalar). The hyperprior on the precisions
    is the initial Gamma, weighted by ``1 / n_eff``.
    """

    def __init__(
        self,
        net: FunctionalNet,
        nll: Likelihood,
        *,
        gamma0: float = 1.0,
        n0: float = 1.0,
        sgld_steps: int = 3,
        burn_in: int = 0,
        step_size: float = 1e-3,
        a_min: float = 1e-4,
        a_max: float = 1e3,
        n_eff: float = 1e4,
    ):
        super().__init__()
        if not (gamma0 > 0 and n0 > 1e-3 and n_eff > 0):
            raise ValueError(f"need gamma0 > 0, n0 > 1e-3 and n_eff > 0, got {gamma0}, {n0}, {n_eff}")
        if isinstance(sgld_steps, bool) or not isinstance(sgld_steps, int) or sgld_steps < 1:
            raise ValueError(f"sgld_steps must be an integer >= 1, got {sgld_steps!r}")
        if isinstance(burn_in, bool) or not isinstance(burn_in, int) or not 0 <= burn_in < sgld_steps:
            raise ValueError(f"burn_in must be an integer in [0, sgld_steps={sgld_steps}), got {burn_in!r}")
        if not step_size > 0:
            raise ValueError(f"step_size must be positive, got {step_size}")
        if not 0 < a_min <= a_max:
            raise ValueError(f"need 0 < a_min <= a_max, got {a_min} and {a_max}")
        self.net, self.nll = net, nll
        self.m0 = nn.Parameter(net.flat())
        self.log_gamma0 = nn.Parameter(torch.full_like(self.m0, math.log(gamma0)))
        self.raw_n0 = nn.Parameter(torch.tensor(_inv_softplus(n0 - 1e-3), dtype=self.m0.dtype))
        self.hyper = (n0, gamma0)
        self.sgld_steps, self.burn_in, self.step_size = sgld_steps, burn_in, step_size
        self.a_min, self.a_max, self.n_eff = a_min, a_max, n_eff

    @property
    def n0(self) -> torch.Tensor:
        return nn.functional.softplus(self.raw_n0) + 1e-3

    @property
    def gamma0(self) -> torch.Tensor:
        return self.log_gamma0.exp()

    def local_fit(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        stop_gradient: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r""":math:`(\bar m_i,\bar A_i)` of every task, ``(T, P)`` each, from SGLD on :math:`\log p(D_i\mid\theta)` started at :math:`m_0`.

        ``stop_gradient=False`` differentiates through the SGLD chain (a negative control: it
        rebuilds MAML's graph). ``steps`` overrides ``sgld_steps`` for this call (the cost
        experiment); the burn-in is then cut to ``steps - 1`` if it is longer, so that one iterate
        is kept (and :math:`\bar A` falls back to ``a_max``).
        """
        steps = self.sgld_steps if steps is None else steps
        theta0 = self.m0.expand(x.shape[0], -1)
        samples = sgld(
            lambda th: -self.nll(self.net(th, x), y),
            theta0 if not stop_gradient else theta0.detach(),
            steps,
            self.step_size,
            burn_in=min(self.burn_in, steps - 1),
            generator=generator,
            keep_graph=not stop_gradient,
        )
        return gaussian_fit(samples, self.a_min, self.a_max)

    def local_posterior(self, x: torch.Tensor, y: torch.Tensor, **fit) -> tuple[torch.Tensor, torch.Tensor]:
        r""":math:`(m_i^*,\gamma_i^*)` of every task (:func:`~varbook.bayes.conjugate.niw_local_posterior`)."""
        m_bar, a_bar = self.local_fit(x, y, **fit)
        return niw_local_posterior(m_bar, a_bar, self.m0, self.gamma0, self.n0)

    def meta_loss(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        n_mc: int = 1,
        surrogate: bool = False,
        kl_weight: float = 1.0,
        **fit,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        r"""The NIW-Meta objective on a batch of tasks, :math:`\mathbb E_i[f_i+g_i]+\mathrm{KL}(q(\phi)\|p(\phi))/N_{\rm eff}`.

        :math:`f_i=\mathbb E_{q_i^*}[-\log p(D_i\mid\theta)]` by ``n_mc`` reparameterised draws
        :math:`\theta=m^*+\gamma^{*-1/2}\epsilon` (or, with ``surrogate=True``, the quadratic
        :math:`\tfrac12\sum_k\bar A_k((m^*_k-\bar m_k)^2+1/\gamma^*_k)`); :math:`g_i` is
        :func:`~varbook.bayes.conjugate.expected_kl`, weighted by ``kl_weight`` (``0`` drops it: an
        ablation, not the method). ``fit`` goes to :meth:`local_fit`.
        """
        if not surrogate and (isinstance(n_mc, bool) or not isinstance(n_mc, int) or n_mc < 1):
            raise ValueError(f"n_mc must be an integer >= 1, got {n_mc!r}")
        m_bar, a_bar = self.local_fit(x, y, generator=generator, **fit)
        m_star, g_star = niw_local_posterior(m_bar, a_bar, self.m0, self.gamma0, self.n0)
        if surrogate:
            f = 0.5 * (a_bar * ((m_star - m_bar) ** 2 + 1 / g_star)).sum(-1)
        else:
            draws = [
                self.nll(self.net(m_star + g_star.rsqrt() * runtime.randn_like(m_star, generator), x), y)
                for _ in range(n_mc)
            ]
            f = torch.stack(draws).mean(0)
        g = expected_kl(m_star, g_star, self.m0, self.gamma0, self.n0)
        hyper = gamma_kl(self.n0, self.gamma0, *self.hyper).sum() / self.n_eff
        loss = (f + kl_weight * g).mean() + hyper
        return loss, {"f": float(f.detach().mean()), "g": float(g.detach().mean()), "hyper": float(hyper.detach())}

    @torch.no_grad()
    def predict(
        self,
        x_support: torch.Tensor,
        y_support: torch.Tensor,
        x_query: torch.Tensor,
        *,
        n_samples: int = 2,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        r"""Query outputs of :math:`\theta_s\sim q^*` fitted on the support only, ``(S, T, n_q, ...)``.

        ``n_samples=0`` uses the mean :math:`m^*` alone (one output).
        """
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 0:
            raise ValueError(f"n_samples must be an integer >= 0, got {n_samples!r}")
        m_star, g_star = self.local_posterior(x_support, y_support, generator=generator)
        if n_samples == 0:
            return self.net(m_star, x_query)[None]
        return torch.stack(
            [
                self.net(m_star + g_star.rsqrt() * runtime.randn_like(m_star, generator), x_query)
                for _ in range(n_samples)
            ]
        )


def maml_adapt(
    net: FunctionalNet,
    nll: Likelihood,
    theta: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    lr: float,
    second_order: bool = True,
) -> torch.Tensor:
    r"""MAML's inner loop :cite:`finn2017model` for every task: :math:`\theta_i\leftarrow\theta_i-\alpha\nabla\mathcal L_i(\theta_i)`.

    Starts from the shared ``theta`` ``(P,)``; returns the adapted ``(T, P)``. With
    ``second_order`` the gradients are differentiated (``create_graph``), so the result depends
    on ``theta`` through every step; first order treats them as constants.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if not lr > 0:
        raise ValueError(f"the inner learning rate must be positive, got {lr}")
    theta_t = theta.expand(x.shape[0], -1)
    for step in range(steps):
        with torch.enable_grad():
            if not theta_t.requires_grad:  # under no_grad, or from a tensor without history
                theta_t = theta_t.detach().requires_grad_(True)
            loss = nll(net(theta_t, x), y).sum()
            runtime.check_finite(loss, step, "MAML inner loss")
            (grad,) = torch.autograd.grad(loss, theta_t, create_graph=second_order)
            theta_t = theta_t - lr * (grad if second_order else grad.detach())
    return theta_t


def maml_loss(
    net: FunctionalNet,
    nll: Likelihood,
    theta: torch.Tensor,
    x_support: torch.Tensor,
    y_support: torch.Tensor,
    x_query: torch.Tensor,
    y_query: torch.Tensor,
    steps: int,
    lr: float,
    second_order: bool = True,
) -> torch.Tensor:
    """MAML's meta-objective: the mean over tasks of the query NLL after :func:`maml_adapt` on the support."""
    adapted = maml_adapt(net, nll, theta, x_support, y_support, steps, lr, second_order)
    return nll(net(adapted, x_query), y_query).mean()


def pooled_loss(
    net: FunctionalNet, nll: Likelihood, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """The pooled baseline: one parameter vector for every task, the mean NLL over tasks (no adaptation)."""
    return nll(net(theta, x), y).mean()


def prototypes(z_support: torch.Tensor, y_support: torch.Tensor, n_way: int) -> torch.Tensor:
    r"""ProtoNet's class prototypes :cite:`snell2017prototypical`, :math:`c_j=\frac1{K}\sum_{y=j}z`: ``(T, N, D)``.

    ``z_support`` ``(T, n, D)`` are embeddings, ``y_support`` ``(T, n)`` labels in ``0..n_way-1``.
    """
    if z_support.dim() != 3 or y_support.shape != z_support.shape[:2]:
        raise ValueError("expected embeddings (T, n, D) and labels (T, n)")
    onehot = nn.functional.one_hot(y_support, n_way).to(z_support.dtype)  # (T, n, N)
    counts = onehot.sum(1)
    if bool((counts == 0).any()):
        raise ValueError("every class needs at least one support example")
    return onehot.transpose(1, 2) @ z_support / counts[..., None]


def protonet_logits(
    z_support: torch.Tensor, y_support: torch.Tensor, z_query: torch.Tensor, n_way: int
) -> torch.Tensor:
    r"""ProtoNet logits :math:`-\|z-c_j\|^2` of the query embeddings ``(T, m, D)``: ``(T, m, N)``."""
    return -(torch.cdist(z_query, prototypes(z_support, y_support, n_way)) ** 2)


class _ClippedAdam(torch.optim.Adam):
    """Adam whose step first rescales the gradients to a total norm of at most ``max_norm``."""

    def __init__(self, params: list[torch.Tensor], lr: float, max_norm: float | None):
        super().__init__(params, lr=lr)
        self.max_norm = max_norm

    def step(self, closure=None):
        if self.max_norm is not None:
            params = [p for group in self.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.max_norm)
        return super().step(closure)


def meta_train(
    loss_fn: Callable[[int], torch.Tensor],
    params: Iterable[torch.Tensor],
    iterations: int,
    lr: float,
    desc: str | None = None,
    *,
    max_grad_norm: float | None = None,
    monitor: Callable[[], dict[str, float]] | None = None,
    every: int = 0,
    stop_on_nonfinite: bool = False,
) -> runtime.History:
    """Adam on ``params`` for ``iterations`` meta-steps; ``loss_fn(step)`` draws a batch of tasks and returns the loss.

    ``max_grad_norm`` clips the total gradient norm of every step (``None``: no clipping). With
    ``monitor`` and ``every > 0``, ``monitor()`` is called after every ``every``-th step and its
    values are logged with the step number (``history["eval_step"]``), e.g. a test error.

    A non-finite loss (:class:`varbook.runtime.NonFiniteLossError`, also from an inner loop)
    stops training with that error; with ``stop_on_nonfinite`` it ends the loop there instead
    (the parameters stay as they are), records the step in ``history["diverged_at"]`` and
    prints a message.
    """
    if iterations < 1 or not lr > 0:
        raise ValueError(f"need iterations >= 1 and lr > 0, got {iterations} and {lr}")
    if max_grad_norm is not None and not max_grad_norm > 0:
        raise ValueError(f"max_grad_norm must be positive, got {max_grad_norm}")
    params = list(params)
    opt = _ClippedAdam(params, lr, max_grad_norm)
    history = runtime.History()
    for step in runtime.progress(range(iterations), desc=desc, disable=desc is None, leave=False):
        try:
            loss = loss_fn(step)
            runtime.check_finite(loss, step, "meta loss")
        except runtime.NonFiniteLossError as err:
            if not stop_on_nonfinite:
                raise
            print(f"{desc or 'meta-training'}: stopped at meta-step {step}: {err}")
            history.log(diverged_at=step)
            break
        history.log(loss=loss.detach())
        runtime.descend(opt, loss, step, "meta loss")
        if monitor is not None and every > 0 and (step + 1) % every == 0:
            history.log(eval_step=step + 1, **monitor())
    return history


def step_cost(loss_fn: Callable[[], torch.Tensor], params: Sequence[torch.Tensor], reps: int = 5) -> dict[str, float]:
    """Cost of one meta-step: the fastest of ``reps`` backward passes (s) and the peak saved-tensor bytes.

    The memory is the ``peak`` of :class:`varbook.memory.SavedTensors` (every save counted).

    ``loss_fn()`` builds the meta-loss (forward, including any inner loop); the backward time
    is that of ``loss.backward()`` alone: the second of two passes over the same graph, so that
    what the forward pass left in the caches does not count. The memory is measured over the
    forward and both backward passes.
    """
    if reps < 1:
        raise ValueError(f"reps must be positive, got {reps}")
    times, peak = [], 0
    for _ in range(reps):
        for p in params:
            p.grad = None
        with memory.SavedTensors() as meter:
            loss = loss_fn()
            loss.backward(retain_graph=True)  # a first pass warms the caches
            enabled = gc.isenabled()
            gc.disable()  # no collection of unrelated garbage inside the timed pass
            try:
                t0 = time.perf_counter()
                loss.backward()
                times.append(time.perf_counter() - t0)
            finally:
                if enabled:
                    gc.enable()
        peak = max(peak, meter.peak)
        del loss
    return {"backward_s": min(times), "saved_bytes": float(peak)}


__all__ = [
    "FunctionalNet",
    "Likelihood",
    "NIWMeta",
    "categorical_nll",
    "gaussian_nll",
    "maml_adapt",
    "maml_loss",
    "meta_train",
    "pooled_loss",
    "protonet_logits",
    "prototypes",
    "step_cost",
]
