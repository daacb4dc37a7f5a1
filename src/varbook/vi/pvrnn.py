r"""PV-RNN, the predictive-coding-inspired variational RNN :cite:`ahmadi2019novel`.

Layers :math:`l=1..L` of leaky MTRNN units (:class:`varbook.nn.mtrnn.MTRNNCell`), top-down, each
with a Gaussian latent :math:`z^l_t` whose prior depends on :math:`d^l_{t-1}`
(:class:`varbook.vi.latent_seq.LatentCell`) and whose posterior is given by free adaptive vectors
:math:`A^l_t`, one per training sequence and step. The loss with meta-prior weight :math:`w` is

.. math:: \mathcal L(\theta,A)=\sum_t\frac1{D_x}\|x_t-\hat x_t\|^2
   +\sum_l\sum_t w_t\,\frac1{Z_l}\,\mathrm{KL}\big[q(z^l_t)\,\|\,p(z^l_t\mid d^l_{t-1})\big],
   \qquad w_1=w_{\rm first},\ w_{t>1}=w,

averaged over sequences. Every weight carries a leading dimension of models, so that the meta-prior
values of a sweep train as one batched network (one ``w`` per model). At test time
:func:`error_regression` adapts the adaptive vectors of a sliding window with
:func:`varbook.vi.latent_opt.optimize_latents`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from varbook import runtime
from varbook.nn.mtrnn import MTRNNCell, batched_linear, init_weight
from varbook.vi.latent_opt import optimize_latents
from varbook.vi.latent_seq import LatentCell, gaussian_from, sample, step_kl

State = list[tuple[torch.Tensor, torch.Tensor]]
"""Per layer (bottom first), the internal state :math:`h` and output :math:`d`, each ``(M, B, d_l)``."""


class PVRNN(nn.Module):
    """A batch of ``n_models`` PV-RNNs with an adaptive-vector bank of ``n_seq`` sequences of ``length`` steps.

    ``d_sizes``, ``z_sizes`` and ``taus`` list the layers bottom first; the output is linear in
    :math:`d^1_t`.

    >>> m = PVRNN(2, (8, 4), (2, 1), (2.0, 8.0), n_seq=3, length=5, n_models=2)
    >>> out = m.unroll(m.bank(torch.arange(3)), m.initial_state(3), first=True)
    >>> out["x_hat"].shape, out["kl"].shape
    (torch.Size([2, 3, 5, 2]), torch.Size([2, 3, 5]))
    """

    def __init__(
        self,
        x_dim: int,
        d_sizes: Sequence[int],
        z_sizes: Sequence[int],
        taus: Sequence[float],
        n_seq: int,
        length: int,
        n_models: int = 1,
    ) -> None:
        super().__init__()
        if not len(d_sizes) == len(z_sizes) == len(taus) >= 1:
            raise ValueError(f"d_sizes, z_sizes and taus need one entry per layer, got {d_sizes}, {z_sizes}, {taus}")
        if x_dim < 1 or n_seq < 1 or length < 1 or n_models < 1:
            raise ValueError(f"PVRNN needs positive x_dim, n_seq, length and n_models, got {x_dim}, {n_seq}, "
                             f"{length}, {n_models}")  # fmt: skip
        self.x_dim, self.n_models, self.length = x_dim, n_models, length
        self.d_sizes, self.z_sizes = tuple(d_sizes), tuple(z_sizes)
        L = len(d_sizes)
        self.cells = nn.ModuleList(
            MTRNNCell(d_sizes[k], (z_sizes[k],) + ((d_sizes[k + 1],) if k < L - 1 else ()), taus[k], n_models)
            for k in range(L)
        )
        self.latents = nn.ModuleList(LatentCell(d_sizes[k], z_sizes[k], n_models) for k in range(L))
        self.out_weight = init_weight(n_models, x_dim, d_sizes[0])
        self.out_bias = nn.Parameter(torch.zeros(n_models, x_dim))
        # the adaptive-vector bank: per layer (M, n_seq, T, 2 z_l), pre-activations [A^mu, A^sigma]
        self.A = nn.ParameterList(nn.Parameter(torch.zeros(n_models, n_seq, length, 2 * z)) for z in z_sizes)
        self.noise_groups: torch.Tensor | None = None  # set by share_seed: models of a group share ε

    @torch.no_grad()
    def share_seed(self, groups: Sequence[int] | torch.Tensor) -> None:
        """Give the models of each group the same seed: the same start and the same noise.

        ``groups`` labels every model (``(M,)`` integers); each model takes every parameter
        (weights and adaptive vectors) of the first model with its label, and from now on the
        models of a group share each reparameterisation draw :math:`\\varepsilon`, so that models
        trained with different meta-prior weights differ only by their weight.
        """
        labels = torch.as_tensor(groups).reshape(-1)
        if labels.numel() != self.n_models or labels.is_floating_point():
            raise ValueError(f"share_seed needs one integer label per model ({self.n_models}), got {groups}")
        _, compact = torch.unique(labels, return_inverse=True)
        first = torch.stack([(compact == c).nonzero()[0, 0] for c in compact])
        for p in self.parameters():
            p.copy_(p[first.to(p.device)])
        self.noise_groups = compact

    @property
    def latent_cells(self) -> list[LatentCell]:
        """The latent cells, bottom first."""
        return [cast(LatentCell, c) for c in self.latents]

    def initial_state(self, batch: int) -> State:
        """:math:`h_0=d_0=0` for every layer."""
        p = self.out_weight
        return [(p.new_zeros(self.n_models, batch, d), p.new_zeros(self.n_models, batch, d)) for d in self.d_sizes]

    def bank(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """The adaptive vectors of the training sequences ``idx``: per layer ``(M, len(idx), T, 2 z_l)``."""
        return [a[:, idx] for a in self.A]

    def output(self, d1: torch.Tensor) -> torch.Tensor:
        """:math:`\\hat x=W_{\\rm out}d^1+b`, for ``d1`` of shape ``(M, ..., d_1)``."""
        flat = d1.reshape(self.n_models, -1, d1.shape[-1])
        return batched_linear(flat, self.out_weight, self.out_bias).reshape(*d1.shape[:-1], self.x_dim)

    def step(self, state: State, z: Sequence[torch.Tensor]) -> State:
        """One time step, top layer first: each layer is driven by its :math:`z_t` and the new :math:`d^{l+1}_t`."""
        new: list = [None] * len(state)
        above: tuple[torch.Tensor, ...] = ()
        for k in reversed(range(len(state))):
            h, d = self.cells[k](state[k][0], state[k][1], z[k], *above)
            new[k] = (h, d)
            above = (d,)
        return new

    def unroll(
        self,
        pre: Sequence[torch.Tensor],
        state: State,
        *,
        first: bool,
        generator: torch.Generator | None = None,
        use_mean: bool = False,
    ) -> dict:
        """Run the posterior with pre-activations ``pre`` (per layer ``(M, B, T, 2 z_l)``) from ``state``.

        Returns ``x_hat`` (M, B, T, D_x), the per-step ``kl`` summed over layers with each layer's KL
        divided by :math:`Z_l` (M, B, T), and the final ``state``. ``first`` says that the window starts at
        :math:`t=1`, whose prior is :math:`\\mathcal N(0,I)`. The posterior does not depend on the
        recurrence, so :math:`z` is drawn for every step at once and the KL computed after the loop.
        """
        T = pre[0].shape[2]
        z = []
        for p in pre:
            mu, ls = gaussian_from(p)
            z.append(mu if use_mean else sample(mu, ls, generator, self.noise_groups))
        d_prev: list[list[torch.Tensor]] = [[s[1]] for s in state]
        for t in range(T):
            state = self.step(state, [zl[:, :, t] for zl in z])
            for k, s in enumerate(state):
                d_prev[k].append(s[1])
        kl = 0.0
        for k, cell in enumerate(self.latent_cells):
            ds = torch.stack(d_prev[k][:-1], 2)  # d_{t-1} for every step of the window
            M, B = ds.shape[:2]
            prior_pre = cell.prior_pre(ds.reshape(M, B * T, -1)).reshape(M, B, T, -1)
            if first:  # p(z_1) = N(0, I): pre-activations 0 give mean 0 and log-std 0
                prior_pre = torch.cat((torch.zeros_like(prior_pre[:, :, :1]), prior_pre[:, :, 1:]), 2)
            mu_q, ls_q = gaussian_from(pre[k])
            mu_p, ls_p = gaussian_from(prior_pre)
            kl = kl + step_kl(mu_q, ls_q, mu_p, ls_p) / self.z_sizes[k]
        d1 = torch.stack(d_prev[0][1:], 2)
        return {"x_hat": self.output(d1), "kl": kl, "state": state}

    @torch.no_grad()
    def generate(
        self, batch: int, length: int, *, generator: torch.Generator | None = None, use_mean: bool = False,
        state: State | None = None, first: bool = True,
    ) -> dict:  # fmt: skip
        """Free generation: :math:`z_t` drawn from the prior (or its mean), from ``state`` (default :math:`d_0=0`).

        Returns ``x`` (M, B, T, D_x), the prior ``pre``-activations per layer (M, B, T, 2 z_l), whose
        log-std half gives :math:`\\log\\sigma^p_t`, and the final ``state``.
        """
        if length < 1:
            raise ValueError(f"generate needs length >= 1, got {length}")
        state = self.initial_state(batch) if state is None else state
        xs: list[torch.Tensor] = []
        pres: list[list[torch.Tensor]] = [[] for _ in self.z_sizes]
        for t in range(length):
            z = []
            for k, cell in enumerate(self.latent_cells):
                pre = cell.prior_pre(state[k][1])
                if first and t == 0:
                    pre = torch.zeros_like(pre)
                pres[k].append(pre)
                mu, ls = gaussian_from(pre)
                z.append(mu if use_mean else sample(mu, ls, generator, self.noise_groups))
            state = self.step(state, z)
            xs.append(self.output(state[0][1]))
        return {"x": torch.stack(xs, 2), "pre": [torch.stack(p, 2) for p in pres], "state": state}

    @torch.no_grad()
    def init_bank_from_prior(self, generator: torch.Generator | None = None, use_mean: bool = False) -> None:
        """Set every adaptive vector to the prior's pre-activations along a free-generated path (epoch 0)."""
        out = self.generate(self.A[0].shape[1], self.length, generator=generator, use_mean=use_mean)
        for a, pre in zip(self.A, out["pre"], strict=True):
            a.copy_(pre)


def check_count(name: str, value: int, minimum: int = 1) -> None:
    """Raise a :class:`ValueError` unless ``value`` is an integer ``>= minimum`` (iterations, horizons)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_sequences(x: torch.Tensor, x_dim: int, shape: tuple[int, int] | None = None) -> None:
    """Raise a :class:`ValueError` unless ``x`` is ``(batch, T, x_dim)``, and ``(batch, T) = shape`` if given."""
    ok = isinstance(x, torch.Tensor) and x.dim() == 3 and x.shape[-1] == x_dim
    if ok and shape is not None:
        ok = tuple(x.shape[:2]) == tuple(shape)
    if not ok:
        want = f"({shape[0]}, {shape[1]}, {x_dim})" if shape is not None else f"(batch, T, {x_dim})"
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be {want}, got {got}")


def as_weights(w: float | Sequence[float] | torch.Tensor, n_models: int, like: torch.Tensor) -> torch.Tensor:
    """The meta-prior weight of every model, ``(M,)``; a scalar is shared. Negative weights are an error."""
    w_ = torch.as_tensor(w, dtype=like.dtype, device=like.device).reshape(-1)
    if w_.numel() == 1:
        w_ = w_.expand(n_models)
    if w_.numel() != n_models:
        raise ValueError(f"need one meta-prior weight per model ({n_models}), got {w_.numel()}")
    if (w_ < 0).any() or not torch.isfinite(w_).all():
        raise ValueError(f"meta-prior weights must be finite and >= 0, got {w_.tolist()}")
    return w_


def free_energy(x: torch.Tensor, x_hat: torch.Tensor, kl: torch.Tensor, w, w_first, *, first: bool):
    """Per model and sequence: :math:`\\sum_t\\|x_t-\\hat x_t\\|^2/D_x` and :math:`\\sum_t w_t\\,\\mathrm{KL}_t`.

    ``x`` is (B, T, D_x) (shared by the models), ``x_hat`` (M, B, T, D_x), ``kl`` (M, B, T). Returns
    (reconstruction, weighted KL), each (M, B).
    """
    M = x_hat.shape[0]
    w_ = as_weights(w, M, x_hat)
    w1 = as_weights(w_first, M, x_hat)
    weights = w_[:, None, None].expand_as(kl).clone()
    if first:
        weights[:, :, 0] = w1[:, None]
    rec = ((x.unsqueeze(0) - x_hat) ** 2).mean(-1).sum(-1)
    return rec, (weights * kl).sum(-1)


def train(
    model: PVRNN,
    x: torch.Tensor,
    w,
    w_first,
    *,
    iters: int,
    lr: float = 1e-3,
    generator: torch.Generator | None = None,
    desc: str | None = None,
) -> runtime.History:
    """Full-batch Adam on the weights and the adaptive vectors of every model at once.

    Logs, per iteration, the total loss and, per model, the reconstruction error per step
    (``mse_m``, :math:`\\frac1T\\sum_t\\|x_t-\\hat x_t\\|^2/D_x`) and the KL per step (``kl_m``,
    unweighted, each layer's divided by :math:`Z_l`).
    """
    check_count("iters", iters)
    check_sequences(x, model.x_dim, (model.A[0].shape[1], model.length))
    as_weights(w, model.n_models, x)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    idx = torch.arange(x.shape[0], device=x.device)
    history = runtime.History()
    T = x.shape[1]
    for it in runtime.progress(range(iters), desc=desc, disable=desc is None):
        out = model.unroll(model.bank(idx), model.initial_state(len(idx)), first=True, generator=generator)
        rec, wkl = free_energy(x, out["x_hat"], out["kl"], w, w_first, first=True)
        loss = (rec + wkl).mean(1).sum()
        runtime.descend(opt, loss, it)
        if it % 10 == 0 or it == iters - 1:
            mse = rec.detach().mean(1) / T
            kl = out["kl"].detach().mean((1, 2))
            history.log(loss=loss.detach(), **{f"mse_{m}": mse[m] for m in range(model.n_models)},
                        **{f"kl_{m}": kl[m] for m in range(model.n_models)})  # fmt: skip
    return history


def _detach(state: State) -> State:
    return [(h.detach(), d.detach()) for h, d in state]


def error_regression(
    model: PVRNN,
    x: torch.Tensor,
    w,
    w_first,
    *,
    window: int,
    steps: int,
    lr: float,
    horizon: int = 1,
    maximize: bool = False,
    generator: torch.Generator | None = None,
    desc: str | None = None,
) -> torch.Tensor:
    r"""``horizon``-step-ahead predictions of ``x`` (B, T, D_x) by error regression, weights frozen.

    At each step :math:`t` the adaptive vectors of the window of the last ``window`` observations
    :math:`x_{t-W..t-1}` (the newest initialised from the prior) take ``steps`` Adam steps with
    learning rate ``lr`` on the window's free energy, from the deterministic state carried over from
    the previous window (posterior means); then the generative model runs ``horizon`` steps with the
    prior mean of :math:`z`, and its last output predicts :math:`x_{t+H-1}` (stored at that index).
    Every model and sequence is an independent problem of one
    :func:`~varbook.vi.latent_opt.optimize_latents` call per step. Returns (M, B, T, D_x), NaN at
    :math:`t<H`. ``maximize=True`` climbs the window's free energy instead (a negative control).
    """
    check_count("the horizon", horizon)
    check_sequences(x, model.x_dim)
    B, T, _ = x.shape
    if window < 1 or window >= T:
        raise ValueError(f"the window must be between 1 and T - 1 = {T - 1} steps, got {window}")
    M = model.n_models
    trainable = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():  # weights frozen: the window's vectors are the only trainable tensors
        p.requires_grad_(False)
    try:
        preds = torch.full((M, B, T, model.x_dim), float("nan"), dtype=x.dtype, device=x.device)
        A = [x.new_zeros(M, B, T, 2 * z) for z in model.z_sizes]
        start = model.initial_state(B)  # state before the window's first step
        end = start  # state after the last observed step
        for t in runtime.progress(range(1, T), desc=desc, disable=desc is None):
            s = max(0, t - window)
            if t > 1 and s > 0:  # slide: carry the state one step, through the dropped vector's mean
                start = _detach(model.step(start, [gaussian_from(a[:, :, s - 1])[0] for a in A]))
            for k, cell in enumerate(model.latent_cells):  # the new step's vector starts at the prior
                A[k][:, :, t - 1] = 0.0 if t == 1 else cell.prior_pre(end[k][1])
            target = x[:, s:t]

            def window_loss(*pre, s=s, target=target, start=start):
                out = model.unroll(pre, start, first=s == 0, generator=generator)
                rec, wkl = free_energy(target, out["x_hat"], out["kl"], w, w_first, first=s == 0)
                return rec + wkl

            fitted, _ = optimize_latents([a[:, :, s:t] for a in A], window_loss, steps, lr, maximize=maximize)
            for a, f in zip(A, fitted, strict=True):
                a[:, :, s:t] = f
            with torch.no_grad():
                end = model.unroll(fitted, start, first=s == 0, use_mean=True)["state"]
                if t + horizon - 1 < T:
                    ahead = model.generate(B, horizon, use_mean=True, state=end, first=False)["x"]
                    preds[:, :, t + horizon - 1] = ahead[:, :, -1]
        return preds
    finally:
        for p, flag in zip(model.parameters(), trainable, strict=True):
            p.requires_grad_(flag)


@torch.no_grad()
def prior_predictions(model: PVRNN, batch: int, length: int) -> torch.Tensor:
    """Prediction from the prior: the prior-mean path from :math:`d_0=0`, the same for every sequence."""
    return model.generate(batch, length, use_mean=True)["x"]


@torch.no_grad()
def lyapunov_exponent(model: PVRNN, steps: int = 500, burn_in: int = 200, eps: float = 1e-6) -> torch.Tensor:
    r"""Largest Lyapunov exponent of the prior-mean dynamics, per model (Benettin's method).

    The map :math:`(h,d)_{t-1}\mapsto(h,d)_t` with :math:`z_t` the prior mean is iterated from
    :math:`d_0=0` and from a copy perturbed by ``eps``; the distance of the internal states is
    renormalised to ``eps`` after every step and :math:`\lambda=\frac1n\sum\log(\delta_t/\epsilon)`.
    A positive :math:`\lambda` is deterministic chaos. The map is iterated on a float64 copy of the
    model: in float32 the rounding of an ``eps``-sized difference (about 10 % at ``eps = 1e-6``)
    biases :math:`\lambda` by as much as the exponents of a trained network. Returns float64 ``(M,)``.
    """
    check_count("steps", steps)
    check_count("burn_in", burn_in, 0)
    model = copy.deepcopy(model).double()

    def advance(state: State) -> State:
        z = [cell.prior(state[k][1])[0] for k, cell in enumerate(model.latent_cells)]
        return model.step(state, z)

    state = model.initial_state(1)
    for _ in range(burn_in):
        state = advance(state)
    h = torch.cat([s[0] for s in state], -1)
    direction = torch.ones_like(h) / h.shape[-1] ** 0.5
    other = _split(model, h + eps * direction)
    total = torch.zeros(model.n_models, dtype=h.dtype, device=h.device)
    for _ in range(steps):
        state, other = advance(state), advance(other)
        a, b = torch.cat([s[0] for s in state], -1), torch.cat([s[0] for s in other], -1)
        dist = (b - a).norm(dim=-1).reshape(model.n_models)
        total += torch.log(dist / eps)
        other = _split(model, a + eps * (b - a) / dist.reshape(-1, 1, 1))
    return total / steps


def _split(model: PVRNN, h: torch.Tensor) -> State:
    out, i = [], 0
    for d in model.d_sizes:
        part = h[..., i : i + d]
        out.append((part, torch.tanh(part)))
        i += d
    return out
