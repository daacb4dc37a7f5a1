r"""Mult-VAE and Mult-DAE for collaborative filtering :cite:`liang2018variational`.

A user's clicks :math:`x_u` are drawn from a multinomial over items,
:math:`\pi(z_u)=\mathrm{softmax}(f_\theta(z_u))`, :math:`z_u\sim\mathcal N(0,I)`. Training maximises
the β-weighted ELBO

.. math:: \mathcal L_u=\mathbb E_{q_\phi(z\mid x_u)}\Big[\sum_i x_{ui}\log\pi_i(z)\Big]
   -\beta\,\mathrm{KL}\big(q_\phi(z\mid x_u)\,\|\,\mathcal N(0,I)\big),

with :math:`\beta` annealed linearly by update count up to a cap. The encoder reads the
L2-normalised click vector with dropout. Gaussian (a weighted squared error) and
logistic (Bernoulli) likelihoods are the paper's alternatives. Mult-DAE drops the KL and the
sampling. Scoring uses :math:`z=\mu` and excludes the fold-in items.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ..data import minibatches
from ..estimators.reparam import reparameterize
from ..nn import MLP
from ..runtime import History, check_choice, descend, progress, rand, randn
from ..vi.kl import gaussian_kl_standard
from ..vi.models import bernoulli_log_likelihood
from .metrics import ndcg_at_k
from .split import HeldOut

LIKELIHOODS = ("mult", "gaussian", "logistic")


def log_likelihood(
    logits: torch.Tensor,
    x: torch.Tensor,
    likelihood: str = "mult",
    confidence: tuple[float, float] = (1.0, 1.0),
) -> torch.Tensor:
    r"""Per-user log-likelihood (up to constants) of clicks ``x`` given decoder outputs ``logits`` :math:`f`.

    ``mult``: :math:`\sum_i x_i\log\mathrm{softmax}(f)_i`; ``logistic``:
    :math:`\sum_i\log\mathrm{Bern}(x_i;\sigma(f_i))`; ``gaussian``: the weighted squared error
    :math:`-\sum_i\frac{c_{x_i}}{2}(x_i-f_i)^2` of :cite:`liang2018variational`, with
    ``confidence`` :math:`=(c_0,c_1)` the weights of the unobserved and the observed entries
    (:math:`c_1>c_0` in the convention of weighted matrix factorisation, :cite:`hu2008collaborative`).
    """
    if likelihood == "mult":
        return (F.log_softmax(logits, -1) * x).sum(-1)
    if likelihood == "gaussian":
        c0, c1 = confidence
        if c0 <= 0 or c1 <= 0:
            raise ValueError(f"confidence weights must be positive, got {confidence}")
        weight = c0 + (c1 - c0) * x  # c_{x_ui}: c_1 on a click, c_0 elsewhere
        return -0.5 * (weight * (x - logits) ** 2).sum(-1)
    check_choice("likelihood", likelihood, LIKELIHOODS)
    return bernoulli_log_likelihood(logits, x)  # logistic


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, p=2, dim=-1)


def _init(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.normal_(layer.bias, std=0.001)


def _check_likelihood(likelihood: str) -> None:
    check_choice("likelihood", likelihood, LIKELIHOODS)


class ClickDropout(nn.Dropout):
    r"""Input dropout for click vectors that draws its mask at the clicks only.

    The same distribution as :class:`torch.nn.Dropout` (each entry kept with probability
    :math:`1-p` and scaled by :math:`1/(1-p)`, the identity in evaluation mode), but a zero
    stays zero whatever its mask says, so only the nonzero entries draw: a few dozen per user
    instead of one per item.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        rows, cols = x.nonzero(as_tuple=True)
        keep = rand(len(rows), device=x.device, dtype=x.dtype) >= self.p
        rows, cols = rows[keep], cols[keep]
        out = torch.zeros_like(x)
        out[rows, cols] = x[rows, cols] / (1.0 - self.p)
        return out


class _Recommender(nn.Module):
    """Scoring shared by the autoencoders: decoder logits in evaluation mode (no dropout, :math:`z=\\mu`)."""

    def logits(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    @torch.no_grad()
    def scores(self, x: torch.Tensor) -> torch.Tensor:
        was = self.training
        self.eval()
        out = self.logits(x)
        self.train(was)
        return out


class MultVAE(_Recommender):
    """Encoder ``[I, *hidden, 2 K]`` and decoder ``[K, *reversed(hidden), I]`` with tanh, input dropout.

    ``likelihood`` is one of :data:`LIKELIHOODS`; ``confidence`` :math:`(c_0,c_1)` weighs the
    Gaussian one (:func:`log_likelihood`).
    """

    def __init__(
        self,
        n_items: int,
        hidden: Sequence[int] = (600,),
        latent: int = 200,
        dropout: float = 0.5,
        likelihood: str = "mult",
        confidence: tuple[float, float] = (1.0, 1.0),
    ):
        super().__init__()
        _check_likelihood(likelihood)
        self.encoder = MLP(n_items, list(hidden), 2 * latent, activation=nn.Tanh)
        self.decoder = MLP(latent, list(reversed(hidden)), n_items, activation=nn.Tanh)
        self.drop = ClickDropout(dropout)
        self.likelihood, self.confidence = likelihood, confidence
        _init(self)

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decoder logits, :math:`\\mu` and :math:`\\log\\sigma^2`; samples :math:`z` in training, :math:`z=\\mu` in evaluation.

        ``generator`` draws :math:`z` (``None``: torch's global generator, which also drives the input dropout).
        """
        mu, log_var = self.encoder(self.drop(_normalise(x))).chunk(2, -1)
        z = reparameterize(mu, log_var, generator) if self.training else mu
        return self.decoder(z), mu, log_var

    def loss(self, x: torch.Tensor, beta: float) -> torch.Tensor:
        """The negative β-ELBO averaged over users (log-likelihood summed over items)."""
        logits, mu, log_var = self(x)
        return self.negative_elbo(x, logits, mu, log_var, beta)

    def negative_elbo(
        self, x: torch.Tensor, logits: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor, beta: float
    ) -> torch.Tensor:
        """:meth:`loss` from the outputs of a forward pass on ``x`` (:func:`fit_together` runs that pass batched)."""
        # -(Σ_i x_i log π_i(z) - β KL(q(z|x) || N(0, I))), one z ~ q per user
        log_lik = log_likelihood(logits, x, self.likelihood, self.confidence)
        return (-log_lik + beta * gaussian_kl_standard(mu, log_var)).mean()

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)[0]


class MultDAE(_Recommender):
    """The denoising autoencoder ``[I, *hidden, I]`` with tanh, input dropout and an L2 weight penalty."""

    def __init__(
        self,
        n_items: int,
        hidden: Sequence[int] = (200,),
        dropout: float = 0.5,
        l2: float = 0.01,
        likelihood: str = "mult",
        confidence: tuple[float, float] = (1.0, 1.0),
    ):
        super().__init__()
        _check_likelihood(likelihood)
        sizes = list(hidden)
        self.encoder = nn.Sequential(MLP(n_items, sizes[:-1], sizes[-1], activation=nn.Tanh), nn.Tanh())
        self.decoder = nn.Linear(sizes[-1], n_items)
        self.drop = ClickDropout(dropout)
        self.l2, self.likelihood, self.confidence = l2, likelihood, confidence
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(self.drop(_normalise(x))))

    def loss(self, x: torch.Tensor, beta: float = 0.0) -> torch.Tensor:
        """Negative log-likelihood averaged over users plus ``l2 / batch`` times the squared weights (``beta`` unused)."""
        penalty = sum((p**2).sum() for n, p in self.named_parameters() if n.endswith("weight"))
        log_lik = log_likelihood(self(x), x, self.likelihood, self.confidence)
        return -log_lik.mean() + self.l2 / x.shape[0] * penalty

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)


def beta_at(step: int, total_anneal_steps: int, cap: float) -> float:
    """Linear KL annealing by update count: :math:`\\beta=\\min(\\text{cap},\\ \\text{step}/\\text{total})`."""
    if total_anneal_steps <= 0:
        return cap
    return min(cap, step / total_anneal_steps)


class Scorer(Protocol):
    """Anything that ranks items for users: the autoencoders here, :class:`~varbook.recsys.baselines.EASE`, ..."""

    def scores(self, x: torch.Tensor, /) -> torch.Tensor:
        """Item scores ``(users, items)`` from the click vectors ``x`` ``(users, items)``."""
        ...


def rank_scores(model: Scorer, fold_in: torch.Tensor) -> torch.Tensor:
    """``model``'s item scores in float64, with the fold-in items excluded (:math:`-\\infty`): what the metrics rank."""
    scores = model.scores(fold_in).to(torch.float64)
    scores[fold_in > 0] = -torch.inf
    return scores


def evaluate(model: Scorer, split: HeldOut, k: int, batch_size: int = 500) -> torch.Tensor:
    """NDCG@k of every held-out user, scoring from the fold-in clicks with those items excluded."""
    out = []
    for start in range(0, len(split.users), batch_size):
        scores = rank_scores(model, split.fold_in[start : start + batch_size])
        out.append(ndcg_at_k(scores, split.held_out[start : start + batch_size], k))
    return torch.cat(out)


class FitResult(History):
    """What :func:`fit` returns: the :class:`~varbook.runtime.History` of the run, one entry per epoch
    (``beta`` at its end, validation NDCG@k ``val_ndcg``, mean training ``loss``), with the trained
    ``model``, the ``best_epoch`` whose parameters it keeps and the training ``users_per_second``;
    :func:`fit_together` adds the :class:`Checkpoint` of the best epoch (``checkpoint``).
    """

    def __init__(self, model: nn.Module, best_epoch: int = -1, users_per_second: float = 0.0):
        super().__init__()
        self.model, self.best_epoch, self.users_per_second = model, best_epoch, users_per_second
        self.checkpoint: Checkpoint | None = None


def fit(
    model: MultVAE | MultDAE,
    train: torch.Tensor,
    validation: HeldOut,
    *,
    epochs: int,
    batch_size: int = 100,
    lr: float = 1e-3,
    cap: float = 0.2,
    total_anneal_steps: int | None = None,
    k: int = 100,
    generator: torch.Generator | None = None,
    desc: str | None = None,
) -> FitResult:
    r"""Adam on minibatches of users; β annealed by step to ``cap`` over ``total_anneal_steps`` (default: the whole run).

    Each step descends the negative β-ELBO of :cite:`liang2018variational` with
    :math:`\beta=\min(\text{cap},\,\text{step}/\text{total})` (:func:`beta_at`; the Mult-DAE ignores β).
    Keeps the parameters of the epoch with the best validation NDCG@k and returns a
    :class:`FitResult`: the per-epoch :class:`~varbook.runtime.History` (β, validation NDCG@k,
    loss) with the best epoch and the training throughput in users per second. ``desc`` labels
    a progress bar over epochs (``None``: silent).
    """
    if epochs < 1:
        raise ValueError(f"epochs must be positive, got {epochs}")
    opt = torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    steps_per_epoch = -(-train.shape[0] // batch_size)
    total = steps_per_epoch * epochs if total_anneal_steps is None else total_anneal_steps
    history = FitResult(model)
    best, best_state, step, seconds = -1.0, None, 0, 0.0
    epochs_iter = progress(range(epochs), desc=desc) if desc else range(epochs)
    for epoch in epochs_iter:
        model.train()
        start, total_loss = time.perf_counter(), 0.0
        for idx in minibatches(train.shape[0], batch_size, generator, train.device):
            beta = beta_at(step, total, cap)
            loss = model.loss(train[idx], beta)
            descend(opt, loss, step)
            total_loss += float(loss.detach()) * len(idx)
            step += 1
        seconds += time.perf_counter() - start
        score = float(evaluate(model, validation, k).mean())
        history.log(beta=beta, val_ndcg=score, loss=total_loss / train.shape[0])
        if score > best:
            best, history.best_epoch, best_state = score, epoch, copy.deepcopy(model.state_dict())
    if best_state is None:
        raise ValueError("no epoch reached a finite validation NDCG")
    model.load_state_dict(best_state)
    history.users_per_second = train.shape[0] * epochs / max(seconds, 1e-9)
    return history


@dataclass
class Checkpoint:
    r"""Where a run of :func:`fit_together` stood at the end of an epoch: enough to continue it exactly.

    The model's weights and Adam's moments (in :func:`fit_together`'s stacked layout, one model),
    the number of updates so far, and the states of the generators that draw the dropout masks,
    the noise :math:`\epsilon` and the minibatches.
    """

    epoch: int
    step: int
    params: dict[str, torch.Tensor]
    moments: dict[str, dict[str, torch.Tensor]]
    rng: list[torch.Tensor]
    batches: torch.Tensor | None


def _rng_states(device: torch.device) -> list[torch.Tensor]:
    """The global generators' states: the CPU one, and the accelerator's when the model lives on CUDA."""
    states = [torch.get_rng_state()]
    if device.type == "cuda":
        states.append(torch.cuda.get_rng_state(device))
    return states


def _set_rng_states(states: list[torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(states[0])
    if device.type == "cuda":
        torch.cuda.set_rng_state(states[1], device)


def _stack(models: Sequence[MultVAE], shared: str) -> dict[str, torch.Tensor]:
    """Each weight of ``models`` stacked along a model axis, each ``Linear`` weight transposed to ``(models, in, out)``.

    The weight ``shared`` of the first layer, which reads the input all models share, is laid out
    ``(in, models, out)``, so that one matmul computes the layer for every model. These layouts
    make every gradient contiguous (no copy when it is accumulated).
    """
    out = {}
    for name, _ in models[0].named_parameters():
        w = torch.stack([dict(m.named_parameters())[name].detach() for m in models])
        if name.endswith("weight"):
            w = w.transpose(1, 2).transpose(0, 1) if name == shared else w.transpose(1, 2)
        out[name] = w.contiguous()
    return out


def _take(stacked: dict[str, torch.Tensor], i: int, shared: str) -> dict[str, torch.Tensor]:
    """Model ``i``'s slice of a :func:`_stack`-ed dictionary, as a one-model one (a copy)."""
    return {n: (w[:, i : i + 1] if n == shared else w[i : i + 1]).detach().clone() for n, w in stacked.items()}


def _unstack(stacked: dict[str, torch.Tensor], shared: str) -> dict[str, torch.Tensor]:
    """A one-model :func:`_stack`-ed dictionary back to the model's own ``state_dict`` layout."""
    out = {}
    for name, w in stacked.items():
        w = w[:, 0] if name == shared else w[0]
        out[name] = w.T if name.endswith("weight") else w
    return out


def _stacked_linear(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """A ``Linear`` layer of each model, ``bias`` ``(models, out)``.

    ``h`` is ``(models, users, in)`` with ``weight`` ``(models, in, out)``, or ``(users, in)``, an
    input every model shares, with ``weight`` ``(in, models, out)``: then one product computes
    the layer of every model, summing the weight rows of each user's nonzero entries only
    (``embedding_bag``), since click vectors are mostly zeros.
    """
    if h.dim() == 2:
        width, models, out = weight.shape
        rows, cols = h.nonzero(as_tuple=True)  # in row order: each user's entries are contiguous
        offsets = torch.searchsorted(rows, torch.arange(h.shape[0], device=h.device))
        y = F.embedding_bag(
            cols, weight.view(width, models * out), offsets, mode="sum", per_sample_weights=h[rows, cols]
        )
        return y.view(-1, models, out).transpose(0, 1) + bias[:, None]
    return torch.baddbmm(bias[:, None], h, weight)


def _stacked_forward(
    model: MultVAE, params: dict[str, torch.Tensor], x: torch.Tensor, eps: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""``model``'s encoder and decoder run at once for each set of weights in ``params`` (:func:`_stack`).

    ``x`` is the (already normalised and dropped-out) input, ``eps`` the noise of
    :math:`z=\mu+\sigma\epsilon` (``None``: :math:`z=\mu`); both are shared by every model.
    Returns the logits, :math:`\mu` and :math:`\log\sigma^2`, each ``(models, users, ...)``.
    """
    h = x
    for part in ("encoder", "decoder"):
        for i, layer in enumerate(getattr(model, part)):
            if isinstance(layer, nn.Linear):
                h = _stacked_linear(h, params[f"{part}.{i}.weight"], params[f"{part}.{i}.bias"])
            else:
                h = layer(h)  # the activation
        if part == "encoder":
            mu, log_var = h.chunk(2, -1)
            h = mu if eps is None else mu + (0.5 * log_var).exp() * eps
    return h, mu, log_var


def fit_together(
    models: Sequence[MultVAE],
    train: torch.Tensor,
    validation: HeldOut,
    *,
    epochs: int,
    caps: Sequence[float],
    total_anneal_steps: Sequence[int | None],
    batch_size: int = 100,
    lr: float = 1e-3,
    k: int = 100,
    generator: torch.Generator | None = None,
    resume: FitResult | None = None,
    desc: str | None = None,
) -> list[FitResult]:
    r""":func:`fit` for several Mult-VAEs of one architecture at once, as one batched network.

    Every weight is stacked along a leading model axis, and batched matmuls run all the models
    on each minibatch at once. They share the minibatch, its dropout mask and the noise
    :math:`\epsilon` of :math:`z=\mu+\sigma\epsilon`, drawn once from torch's global generator,
    as separate runs of :func:`fit` from the same seed would. The loss is the sum of each
    model's own ``negative_elbo`` with its own β (``caps[i]``, ``total_anneal_steps[i]``, as in
    :func:`fit`), so each model gets its own gradient, and Adam acts elementwise, so each follows
    its own run. Each model keeps the parameters of its epoch with the best validation NDCG@k,
    and its result a :class:`Checkpoint` of that epoch (``checkpoint``).

    ``resume`` (one model only) continues another run of this function from its checkpoint, with
    that run's history up to the checkpoint's epoch: the model's own weights are replaced, and
    ``train``, ``epochs``, ``batch_size`` and ``generator`` must be the run's. Returns one
    :class:`FitResult` per model; ``users_per_second`` is each model's share of the batched
    training (users times epochs times models, over the seconds it took).
    """
    if epochs < 1:
        raise ValueError(f"epochs must be positive, got {epochs}")
    if not models or not len(models) == len(caps) == len(total_anneal_steps):
        raise ValueError("fit_together needs a model, and one cap and one total_anneal_steps per model")
    base, device = models[0], train.device
    shapes = {n: p.shape for n, p in base.named_parameters()}
    for m in models:
        if {n: p.shape for n, p in m.named_parameters()} != shapes or m.drop.p != base.drop.p:
            raise ValueError("fit_together trains models of one architecture (same layers and dropout)")
    shared = next(n for n in shapes if n.endswith("weight"))  # the first layer reads the shared input
    histories = [FitResult(m) for m in models]
    params = _stack(models, shared)
    first, step = 0, 0
    ckpt = None if resume is None else resume.checkpoint
    if resume is not None:
        if len(models) != 1 or ckpt is None:
            raise ValueError("resume continues one model from a run of fit_together (its checkpoint)")
        params = {n: w.clone() for n, w in ckpt.params.items()}
        first, step = ckpt.epoch + 1, ckpt.step
        for name, values in resume.items():
            histories[0][name] = values[:first]
        histories[0].best_epoch, histories[0].checkpoint = ckpt.epoch, ckpt
        _set_rng_states(ckpt.rng, device)
        if generator is not None and ckpt.batches is not None:
            generator.set_state(ckpt.batches)
    for w in params.values():
        w.requires_grad_()
    opt = torch.optim.Adam(params.values(), lr=lr, fused=True)  # elementwise: one Adam per model
    if ckpt is not None:
        opt.state.update({params[n]: {k_: v.clone() for k_, v in m.items()} for n, m in ckpt.moments.items()})
    steps_per_epoch = -(-train.shape[0] // batch_size)
    totals = [steps_per_epoch * epochs if t is None else t for t in total_anneal_steps]
    latent = base.decoder[0].in_features
    best = [max(h.get("val_ndcg", []), default=-1.0) for h in histories]
    seconds, validation_input = 0.0, _normalise(validation.fold_in)
    epochs_iter = progress(range(first, epochs), desc=desc) if desc else range(first, epochs)
    for epoch in epochs_iter:
        base.train()
        start, total_loss = time.perf_counter(), torch.zeros(len(models), dtype=torch.float64)
        for idx in minibatches(train.shape[0], batch_size, generator, device):
            betas = [beta_at(step, total, cap) for total, cap in zip(totals, caps, strict=True)]
            x = train[idx]
            x_in = base.drop(_normalise(x))  # one dropout mask, then one ε, as each run of fit draws them
            eps = randn(x.shape[0], latent, device=device, dtype=x.dtype)
            logits, mu, log_var = _stacked_forward(base, params, x_in, eps)
            outputs = zip(models, logits.unbind(), mu.unbind(), log_var.unbind(), betas, strict=True)
            losses = torch.stack([m.negative_elbo(x, f, m_, v, b) for m, f, m_, v, b in outputs])
            descend(opt, losses.sum(), step)
            total_loss += losses.detach().double().cpu() * len(idx)
            step += 1
        seconds += time.perf_counter() - start
        with torch.no_grad():  # validation NDCG@k of every model, z = μ and no dropout
            scores = _stacked_forward(base, params, validation_input, None)[0].to(torch.float64)
            scores[:, validation.fold_in > 0] = -torch.inf
            ndcg = [float(ndcg_at_k(s, validation.held_out, k).mean()) for s in scores]
        for i, history in enumerate(histories):
            history.log(beta=betas[i], val_ndcg=ndcg[i], loss=float(total_loss[i]) / train.shape[0])
            if ndcg[i] > best[i]:
                best[i], history.best_epoch = ndcg[i], epoch
                moments = {  # Adam's moments of model i, and its count of steps (a scalar)
                    n: {
                        key: v.clone() if v.dim() == 0 else _take({n: v}, i, shared)[n]
                        for key, v in opt.state[w].items()
                    }
                    for n, w in params.items()
                }
                history.checkpoint = Checkpoint(
                    epoch, step, _take(params, i, shared), moments, _rng_states(device),
                    None if generator is None else generator.get_state(),
                )  # fmt: skip
    for model, history in zip(models, histories, strict=True):
        if history.checkpoint is None:
            raise ValueError("no epoch reached a finite validation NDCG")
        model.load_state_dict(_unstack(history.checkpoint.params, shared))
        trained = train.shape[0] * (epochs - first) * len(models)
        history.users_per_second = trained / seconds if seconds > 0 else getattr(resume, "users_per_second", 0.0)
    return histories
