r"""The experiments of the chapter on *The Principles of Diffusion Models* :cite:`lai2025principles`.

Each function is one measurement of the chapter, small enough to read beside it:

* exact identities of one field: :func:`conversion_error`, :func:`score_autograd_error`,
  :func:`ddim_euler_gap` and :func:`ddim_step_vs_diffusers` (DDIM against diffusers' scheduler);
* the order of the samplers: :func:`dopri5_reference`, :func:`solver_errors`, :func:`fitted_orders`
  (on :class:`VPLinearClosedForm`, whose :math:`t(\lambda)` needs no bisection);
* the noise floor of the energy distance: :func:`energy_null`;
* trained fields: :func:`fit_denoiser`, :func:`fit_denoisers` (several networks as one, :class:`StackedNets`),
  :func:`sample_from_noise`, :func:`ode_vs_sde`;
* class-conditional images judged by a classifier: :class:`ImageLayout`, :func:`within_class_distance`,
  :class:`Judge`, :func:`guidance_sweep`, :func:`sampler_sweep`;
* flow maps: :func:`fit_meanflow`, :func:`meanflow_same_times`.

The chapter's negative controls are deliberately wrong variants of the same computations, each a
mistake an implementation could make: :func:`flipped_score_convert` (a sign error in a
conversion), ``ddim_euler_gap(..., in_x=True)`` (Euler in the wrong variables), the
``"control: timestep + 1"`` column of :func:`ddim_step_vs_diffusers` (a timestep off by one),
:class:`ScaledScore` (the factor :math:`\tfrac12` of the probability-flow drift lost or added; used
by :func:`half_factor_controls` and :func:`order_controls`), the samplers of :data:`LAGGED` (the
second evaluation at the wrong time), ``solver_errors``' ``"squared error"`` (a norm without its
square root), :func:`reversed_time` (a trained network queried in the opposite time
convention; :func:`reversed_time_distances`), :class:`SwappedGuidance` (the two fields of guidance
swapped) and :func:`meanflow_same_times` (a flow map called with :math:`r = t`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn import functional as F

from ..nn import MLP, train_steps
from ..runtime import History, Meter, check_choice, progress, rand, randn_like
from .field import Denoiser, Field
from .flowmaps import meanflow_loss
from .guidance import GuidedField, guide
from .losses import denoising_loss
from .metrics import frechet_distance
from .param import KINDS, convert
from .samplers import nfe, sample, sample_ddim, sample_ddim_as_euler, sample_euler, steps_for_nfe
from .schedules import DiscreteVP, Schedule, VPLinear, expand, time_grid

SETTINGS: dict[str, dict] = {
    "smoke": dict(
        order_n=500,  # starting points of the order study
        nfes=[10, 20, 40, 80, 160],
        law_n=2000,  # samples of the ring for the ODE / SDE comparison
        law_steps=200,
        moons_n=20000,  # two moons: training set, network, optimiser
        moons_steps=2000,
        moons_hidden=96,
        moons_depth=3,
        moons_batch=512,
        moons_lr=2e-3,
        eval_n=5000,  # samples per evaluation, and sampler steps
        eval_steps=50,
        images="digits",  # 8x8 digits, an MLP denoiser
        clf_steps=500,
        net="mlp",
        hidden=128,
        img_steps=1000,
        img_batch=256,
        img_lr=2e-3,
        per_class=50,  # samples per class when judging images
        ws=[0.0, 0.5, 1.0, 2.0, 3.0],  # guidance strengths
        img_sampler_steps=50,
        img_nfes=[10, 20, 50],
        meanflow=False,
        meanflow_steps=0,
    ),
    "full": dict(
        order_n=2000,
        nfes=[10, 20, 40, 80, 160, 320],
        law_n=5000,
        law_steps=500,
        moons_n=100000,
        moons_steps=5000,
        moons_hidden=256,
        moons_depth=4,
        moons_batch=2048,
        moons_lr=2e-3,
        eval_n=5000,
        eval_steps=100,
        images="mnist5k",  # 5000 MNIST digits, padded to 32x32 for a small UNet
        clf_steps=3000,
        net="unet",
        unet_base=32,
        img_steps=8000,
        img_batch=128,
        img_lr=1e-3,
        per_class=100,
        ws=[0.0, 0.5, 1.0, 2.0, 3.0],
        img_sampler_steps=100,
        img_nfes=[10, 20, 50, 100],
        meanflow=True,
        meanflow_steps=10000,
    ),
}
"""The sizes of the chapter's experiments in each profile."""


def settings(profile: str) -> dict:
    """A copy of the chapter's :data:`SETTINGS` for ``profile`` (``"smoke"`` or ``"full"``)."""
    return dict(SETTINGS[check_choice("profile", profile, SETTINGS)])


# --- exact identities -------------------------------------------------------------------------


def predictions(field: Field, x: torch.Tensor, t: torch.Tensor) -> dict[str, torch.Tensor]:
    r"""The four readings of one field at :math:`(x, t)`: :math:`\hat\epsilon`, :math:`\hat x_0`, the score and :math:`v`."""
    return {"eps": field.eps(x, t), "x0": field.x0(x, t), "score": field.score(x, t), "v": field.velocity(x, t)}


def flipped_score_convert(
    pred: torch.Tensor, src: str, dst: str, x: torch.Tensor, t, schedule: Schedule
) -> torch.Tensor:
    r"""A deliberately wrong :func:`~varbook.diffusion.param.convert` (negative control): the score read as :math:`+\hat\epsilon/\sigma`.

    A sign error in :math:`s = -\hat\epsilon/\sigma`, in both directions; the conversions that do
    not touch the score are right.
    """
    out = convert(-pred if src == "score" else pred, src, dst, x, t, schedule)
    return -out if dst == "score" else out


def conversion_error(field: Field, x: torch.Tensor, t: torch.Tensor, conv=convert) -> float:
    r"""Largest relative error :math:`|\mathrm{convert}_{a\to b}(p_a) - p_b| / (1 + |p_b|)` over the 12 ordered pairs of kinds.

    The conversions are the affine maps :math:`\hat x_0 = (x - \sigma\hat\epsilon)/\alpha`,
    :math:`s = -\hat\epsilon/\sigma`, :math:`v = \dot\alpha\hat x_0 + \dot\sigma\hat\epsilon` :cite:`lai2025principles`;
    for an exact field they must agree with its own four predictions to rounding error. ``conv``
    replaces :func:`~varbook.diffusion.param.convert` (a negative control: :func:`flipped_score_convert`).
    """
    preds = predictions(field, x, t)
    # convert() applies the affine maps of eq. (dp-conversions), through eps
    return max(
        float(((conv(preds[a], a, b, x, t, field.schedule) - preds[b]).abs() / (1 + preds[b].abs())).max())
        for a in KINDS
        for b in KINDS
        if a != b
    )


def score_autograd_error(field, x: torch.Tensor, t: torch.Tensor) -> float:
    r"""Largest :math:`|\nabla_x \log p_t(x) - s(x, t)|`: autograd of ``field.log_prob`` against the closed-form score."""
    x_req = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(field.log_prob(x_req, t).sum(), x_req)
    return float((grad - field.score(x, t)).abs().max())


@torch.no_grad()
def ddim_euler_gap(field: Field, x: torch.Tensor, ts: torch.Tensor, in_x: bool = False) -> float:
    r"""Largest :math:`|\text{DDIM}(\eta = 0) - \text{Euler on } dy/d\rho = \hat\epsilon|` on the grid ``ts`` :cite:`song2021denoising`.

    The two routes (:func:`~varbook.diffusion.samplers.sample_ddim` and
    :func:`~varbook.diffusion.samplers.sample_ddim_as_euler`) are the same method written in
    :math:`x` and in :math:`(y, \rho) = (x/\alpha, \sigma/\alpha)`, so the gap is rounding error.
    ``in_x=True`` (a negative control) compares DDIM with Euler on the same ODE in :math:`x`
    (:func:`~varbook.diffusion.samplers.sample_euler`), the identity stated in the wrong variables.
    """
    other = sample_euler(field, x, ts) if in_x else sample_ddim_as_euler(field, x, ts)
    return float((sample_ddim(field, x, ts) - other).abs().max())


@torch.no_grad()
def ddim_step_vs_diffusers(
    net: nn.Module,
    x: torch.Tensor,
    n_inference: int = 50,
    positions: Sequence[int] = (0, 25, -1),
) -> list[dict]:
    r"""One DDIM step of ours against diffusers' ``DDIMScheduler.step`` :cite:`vonplaten2022diffusers` on the same inputs.

    ``net(x, t)`` is read as an :math:`\hat\epsilon`-prediction on the DDPM schedule (1000 steps, β
    from :math:`10^{-4}` to 0.02). diffusers' timestep :math:`k` is our :math:`t = (k + 1)/1000` on
    :class:`~varbook.diffusion.schedules.DiscreteVP`, and its step goes from :math:`k` to
    :math:`k - 1000/n_{\text{inference}}`. For each diffusers timestep at ``positions`` of its
    inference grid the row holds the largest difference when our step uses diffusers' float32
    :math:`\bar\alpha` (the same inputs), when it uses our float64 one, and (a negative control) when
    it reads diffusers' timestep one DDPM step late, :math:`t = (k + 2)/1000`, with the same :math:`\bar\alpha`.
    """
    from diffusers import DDIMScheduler

    n_train = 1000
    ref: Any = DDIMScheduler(  # diffusers' own type hints do not show its methods
        num_train_timesteps=n_train,
        beta_start=1e-4,
        beta_end=0.02,
        beta_schedule="linear",
        clip_sample=False,
        set_alpha_to_one=True,
        prediction_type="epsilon",
    )
    ref.set_timesteps(n_inference)
    stride = n_train // n_inference
    ours_ab = DiscreteVP()  # our float64 DDPM schedule
    theirs_ab = DiscreteVP(torch.cat([torch.ones(1, dtype=torch.float64), ref.alphas_cumprod.double()]))
    rows = []
    same = Denoiser(net, theirs_ab, "eps")

    def step(k: int) -> torch.Tensor:  # our times of diffusers' step from timestep k - 1
        return torch.tensor([k / n_train, max(k - stride, 0) / n_train], dtype=torch.float64)

    for k in (int(ref.timesteps[i]) for i in positions):
        theirs = ref.step(same.eps(x, step(k + 1)[0]), k, x).prev_sample
        rows.append(
            {
                "diffusers timestep": k,
                "same ᾱ (max |diff|)": float((sample_ddim(same, x, step(k + 1)) - theirs).abs().max()),
                "our float64 ᾱ (max |diff|)": float(
                    (sample_ddim(Denoiser(net, ours_ab, "eps"), x, step(k + 1)) - theirs).abs().max()
                ),
                "control: timestep + 1": float((sample_ddim(same, x, step(k + 2)) - theirs).abs().max()),
            }
        )
    return rows


# --- order of convergence ---------------------------------------------------------------------


def dopri5_reference(
    field: Field, x: torch.Tensor, t_end: float = 1e-3, tol: float = 1e-10
) -> tuple[torch.Tensor, float]:
    r"""The probability-flow ODE :math:`\dot x = v(x, t)` from :math:`t = 1` to ``t_end`` by adaptive dopri5 :cite:`chen2018torchdiffeq`.

    Returns the end points and the wall-clock seconds the reference took.
    """
    from torchdiffeq import odeint

    dtype = x.dtype
    with Meter(torch.device("cpu")) as meter:
        x_ref = odeint(
            lambda t, y: field.velocity(y, t),
            x,
            torch.tensor([1.0, t_end], dtype=dtype),
            method="dopri5",
            rtol=tol,
            atol=tol,
            options=dict(first_step=1e-4, step_t=torch.tensor([t_end], dtype=dtype)),
        )[-1]
    return x_ref, meter.seconds


class VPLinearClosedForm(VPLinear):
    r""":class:`~varbook.diffusion.schedules.VPLinear` with :meth:`t_of_log_snr` in closed form instead of by bisection.

    :math:`\alpha_t^2 = \mathrm{sigmoid}(2\lambda)`, so :math:`c = -\log\alpha_t = \tfrac12\,\mathrm{softplus}(-2\lambda)`,
    and :math:`a t^2 + b t = c` with :math:`a = \tfrac14(\beta_{max} - \beta_{min})`, :math:`b = \tfrac12\beta_{min}`
    gives :math:`t = 2c / (b + \sqrt{b^2 + 4ac})`. The same schedule, for the samplers that invert
    :math:`\lambda` at every step (DPM-Solver-2's midpoint).
    """

    def t_of_log_snr(self, lam: torch.Tensor, iters: int = 0) -> torch.Tensor:
        c = 0.5 * F.softplus(-2 * torch.as_tensor(lam, dtype=torch.float64))
        a, b = 0.25 * (self.beta_max - self.beta_min), 0.5 * self.beta_min
        return 2 * c / (b + torch.sqrt(b * b + 4 * a * c))


def heun_lagged(field: Field, x: torch.Tensor, ts) -> torch.Tensor:
    r"""Heun with its corrector evaluated at the step's start time (a negative control: an off-by-one time).

    :math:`\tilde x = x + h\,v(x, t)`, :math:`x_s = x + \tfrac h2\big(v(x, t) + v(\tilde x, t)\big)`: the second
    evaluation should be at :math:`s`. The method stays consistent but drops to first order.
    """
    for t, s in zip(ts[:-1], ts[1:], strict=True):
        h = (s - t).to(x)
        d = field.velocity(x, t)
        x = x + 0.5 * h * (d + field.velocity(x + h * d, t))  # the mistake: t instead of s
    return x


def dpm2_lagged(field: Field, x: torch.Tensor, ts) -> torch.Tensor:
    r"""DPM-Solver-2 with :math:`\hat\epsilon(u, \cdot)` evaluated at the step's start time instead of the midpoint (a negative control).

    Otherwise :func:`~varbook.diffusion.samplers.sample_dpm_solver_2`; it drops to first order.
    """
    sch = field.schedule
    for t, s in zip(ts[:-1], ts[1:], strict=True):
        lam_t, lam_s = sch.log_snr(t), sch.log_snr(s)
        h = lam_s - lam_t
        m = sch.t_of_log_snr(lam_t + h / 2)
        a_t, a_m, a_s = sch.alpha(t), sch.alpha(m), sch.alpha(s)
        u = (a_m / a_t).to(x) * x - (sch.sigma(m) * torch.expm1(h / 2)).to(x) * field.eps(x, t)
        x = (a_s / a_t).to(x) * x - (sch.sigma(s) * torch.expm1(h)).to(x) * field.eps(u, t)  # t instead of m
    return x


LAGGED = {"heun (lagged)": (heun_lagged, "heun"), "dpm2 (lagged)": (dpm2_lagged, "dpm2")}
"""Negative controls of the order study: each name maps to the sampler and to the method whose budget it spends."""


class ScaledScore(Field):
    r"""The field ``field`` with its score (and so its :math:`\hat\epsilon`) multiplied by ``factor`` (a negative control).

    The probability-flow velocity becomes :math:`f x - \tfrac12 g^2\,(\text{factor}\cdot s)`: ``factor=2``
    is the ODE run with the reverse SDE's drift :math:`f x - g^2 s`, ``factor=0.5`` the reverse SDE run
    with the ODE's :math:`\tfrac12 g^2` (the factor one half lost or added).
    """

    kind = "eps"

    def __init__(self, field: Field, factor: float):
        self.field, self.factor, self.schedule = field, factor, field.schedule

    def predict(self, x, t):
        return self.factor * self.field.eps(x, t)


def solver_errors(
    field: Field,
    x: torch.Tensor,
    x_ref: torch.Tensor,
    nfes: Sequence[int],
    methods: Sequence[str] = ("euler", "ddim", "heun", "dpm2"),
    t_end: float = 1e-3,
    desc: str | None = None,
) -> list[dict]:
    r"""Mean distance :math:`\frac1n\sum_i\|\hat x_i - x^{\text{ref}}_i\|` of each sampler's end points to ``x_ref`` at each budget.

    Each sampler integrates from the schedule's :math:`t_{max}` to ``t_end`` on a grid uniform in
    :math:`\lambda = \log(\alpha/\sigma)`, with the number of steps that spends the budget
    (:func:`~varbook.diffusion.samplers.steps_for_nfe`). One row per sampler and budget; it also
    holds the ``"squared error"`` :math:`\frac1n\sum_i\|\hat x_i - x^{\text{ref}}_i\|^2`, the distance
    without its square root (a negative control for the fitted order, which it doubles).
    ``methods`` may name the deliberately wrong samplers of :data:`LAGGED`.
    """
    rows = []
    for method in methods if desc is None else progress(methods, desc=desc):
        run, budget = LAGGED.get(method, (lambda f, y, ts, m=method: sample(m, f, y, ts), method))
        for n_eval in nfes:
            ts = time_grid(field.schedule, steps_for_nfe(budget, n_eval), t_min=t_end)
            dist = (run(field, x, ts) - x_ref).norm(dim=1)
            rows.append(
                {"sampler": method, "NFE": nfe(budget, ts), "error": float(dist.mean()),
                 "squared error": float((dist**2).mean())}
            )  # fmt: skip
    return rows


def order_controls(
    field: Field, x: torch.Tensor, x_ref: torch.Tensor, nfes: Sequence[int], t_end: float = 1e-3
) -> tuple[dict[str, float], dict[str, float], list[dict]]:
    r"""The order study's negative controls: :func:`solver_errors` and :func:`fitted_orders` of deliberately wrong variants.

    Returns the fitted orders of Euler and DDIM on the field with its score doubled
    (:class:`ScaledScore`, the reverse SDE's :math:`g^2` in the ODE), the fitted orders of Heun and
    DPM-Solver-2 with their second evaluation at the wrong time (:data:`LAGGED`), and the rows of
    the latter (named ``"heun"`` and ``"dpm2"``).
    """
    doubled = fitted_orders(solver_errors(ScaledScore(field, 2.0), x, x_ref, nfes, ("euler", "ddim"), t_end), 0)
    lag_rows = [
        r | {"sampler": LAGGED[r["sampler"]][1]} for r in solver_errors(field, x, x_ref, nfes, tuple(LAGGED), t_end)
    ]
    return doubled, fitted_orders(lag_rows, 0), lag_rows


def fitted_orders(rows: Sequence[dict], min_nfe: int = 20, error: str = "error") -> dict[str, float]:
    r"""The order of each sampler: minus the least-squares slope of :math:`\log(\text{error})` against :math:`\log(\text{NFE})`.

    Only budgets with NFE ``>= min_nfe`` enter the fit (the asymptotic regime); samplers come in
    alphabetical order. ``error`` names the column fitted.
    """
    orders = {}
    for method in sorted({r["sampler"] for r in rows}):
        pts = [(r["NFE"], r[error]) for r in rows if r["sampler"] == method and r["NFE"] >= min_nfe]
        n_eval, err = np.array(pts, dtype=np.float64).T
        orders[method] = float(-np.polyfit(np.log(n_eval), np.log(err), 1)[0])
    return orders


# --- the noise floor of the energy distance ----------------------------------------------------


def energy_null(
    law, n: int, pairs: int, generator: torch.Generator | None = None, unbiased: bool = True, dtype=None
) -> torch.Tensor:
    r"""Energy distances between ``pairs`` pairs of independent samples of ``n`` points of ``law`` (anything with ``sample(n, generator)``).

    Their spread is the noise of the statistic when a sampler is exact: the calibration of a
    threshold on the energy distance to the data. ``unbiased=False`` gives the V-statistic, whose mean
    over pairs is the noise floor a sampler's V-statistic is compared with (about
    :math:`2\,\mathbb E\|X - X'\|/n` for two samples of ``n`` points); ``dtype`` casts the samples first.
    """
    from .metrics import energy_distance

    def draw() -> torch.Tensor:
        x = law.sample(n, generator)
        return x if dtype is None else x.to(dtype)

    return torch.tensor([float(energy_distance(draw(), draw(), unbiased=unbiased)) for _ in range(pairs)])


def half_factor_controls(
    field: Field,
    x: torch.Tensor,
    ts: torch.Tensor,
    reference: torch.Tensor,
    generator: torch.Generator | None = None,
    unbiased: bool = True,
) -> list[float]:
    r"""Energy distances to ``reference`` of the two dynamics with the factor :math:`\tfrac12` of the drift moved (negative controls).

    The probability-flow ODE (Heun) with the reverse SDE's drift :math:`f x - g^2 s` (``ScaledScore(field, 2)``)
    and the reverse SDE (Euler–Maruyama) with the ODE's :math:`f x - \tfrac12 g^2 s` (``ScaledScore(field, 0.5)``),
    both from ``x`` on the grid ``ts``; ``unbiased=False`` measures the V-statistic.
    """
    from .metrics import energy_distance

    ode = sample("heun", ScaledScore(field, 2.0), x, ts)
    sde = sample("sde", ScaledScore(field, 0.5), x, ts, generator=generator)
    return [float(energy_distance(y, reference, unbiased=unbiased)) for y in (ode, sde)]


# --- trained fields ---------------------------------------------------------------------------


def fit_denoiser(
    net: nn.Module,
    schedule: Schedule,
    kind: str,
    tensors: Sequence[torch.Tensor],
    steps: int,
    batch_size: int,
    lr: float = 1e-3,
    desc: str | None = None,
    **loss_kwargs,
) -> tuple[Denoiser, History]:
    r"""Train ``net`` as a ``kind`` prediction on ``schedule`` by :func:`~varbook.diffusion.losses.denoising_loss`.

    ``tensors`` is ``(x0,)`` or ``(x0, labels)`` (labels go to the loss as ``cond``);
    ``loss_kwargs`` go to the loss (``p_uncond`` and ``null_label`` for classifier-free guidance).
    The loop is :func:`~varbook.nn.train_steps`. Returns the trained field and the loss history.
    """
    history = train_steps(
        net,
        lambda x0, *cond: denoising_loss(net, x0, schedule, kind, *cond, **loss_kwargs),
        tensors,
        steps,
        batch_size,
        lr=lr,
        desc=desc,
    )
    return Denoiser(net, schedule, kind), history


def denoising_pair(
    x0: torch.Tensor, schedule: Schedule, kind: str, t_min: float = 1e-3, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""The input :math:`(x_t, t)` and the regression target of :func:`~varbook.diffusion.losses.denoising_loss`, without the network.

    :math:`t \sim U(t_{min}, t_{max})`, :math:`\epsilon \sim \mathcal N(0, I)`,
    :math:`x_t = \alpha_t x_0 + \sigma_t\epsilon`; the target is :math:`\epsilon` (``eps``), :math:`x_0`
    (``x0``) or :math:`\dot\alpha_t x_0 + \dot\sigma_t\epsilon` (``v``), drawn in the same order as the
    loss draws them, so ``((net(x_t, t) - target) ** 2).mean()`` is that loss. The score target
    needs the loss's weighting and is left to :func:`~varbook.diffusion.losses.denoising_loss`.
    """
    check_choice("prediction kind", kind, ("eps", "x0", "v"))
    if not 0 <= t_min < schedule.t_max:
        raise ValueError(f"need 0 <= t_min < t_max = {schedule.t_max}, got {t_min}")
    t = t_min + (schedule.t_max - t_min) * rand(x0.shape[0], generator=generator, device=x0.device, dtype=x0.dtype)
    eps = randn_like(x0, generator)
    if kind == "eps":
        target = eps
    elif kind == "x0":
        target = x0
    else:
        target = expand(schedule.d_alpha(t), x0) * x0 + expand(schedule.d_sigma(t), x0) * eps
    return schedule.q_sample(x0, t, eps), t, target


class StackedNets(nn.Module):
    r"""Networks of one architecture run as one: their parameters stacked along a leading model axis, the
    forward pass vectorised over it (:func:`torch.func.vmap` of :func:`torch.func.functional_call`).

    ``forward(x, t)`` takes ``x`` of shape ``(M, batch, ...)`` and ``t`` of shape ``(M, batch)``, one slice per
    network; :meth:`unstack` copies the trained parameters back into the ``M`` networks.
    """

    def __init__(self, nets: Sequence[nn.Module]):
        super().__init__()
        if len(nets) < 1 or len({type(n) for n in nets}) != 1:
            raise ValueError("StackedNets needs one or more networks of one type")
        params, buffers = stack_module_state(list(nets))
        self.names = list(params)
        self.stacked = nn.ParameterList([nn.Parameter(params[k].detach().clone()) for k in self.names])
        self.stacked_buffers = buffers
        self.nets = tuple(nets)  # a tuple, so that their parameters are not this module's
        self.base = copy.deepcopy(nets[0]).to("meta")

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        def one(params, buffers, x, t):
            return functional_call(self.base, (params, buffers), (x, t))

        return vmap(one)(dict(zip(self.names, self.stacked, strict=True)), self.stacked_buffers, x, t)

    @torch.no_grad()
    def unstack(self) -> None:
        """Copy the stacked parameters back into the networks (slice ``m`` into network ``m``)."""
        for m, net in enumerate(self.nets):
            for name, p in zip(self.names, self.stacked, strict=True):
                net.get_parameter(name).copy_(p[m])


def fit_denoisers(
    nets: Sequence[nn.Module],
    targets: Sequence[tuple[Schedule, str]],
    x0: torch.Tensor,
    steps: int,
    batch_size: int,
    lr: float = 1e-3,
    desc: str | None = None,
) -> tuple[list[Denoiser], History]:
    r"""Train several networks of one architecture at once, network ``m`` as a ``kind`` prediction on its ``schedule``.

    The same training as :func:`fit_denoiser` for each ``(schedule, kind)`` of ``targets``, vectorised:
    the networks run as one :class:`StackedNets` and one Adam step updates all of them. They share each
    minibatch of data ``x0`` and draw their own times and noise (:func:`denoising_pair`); the loss is the
    sum of their losses, whose gradients do not mix, and Adam acts on each parameter separately, so
    each network trains as it would alone. Returns the trained fields and the history of the summed loss.
    """
    if len(nets) != len(targets):
        raise ValueError(f"{len(nets)} networks for {len(targets)} targets")
    stacked = StackedNets(nets)

    def loss(x: torch.Tensor) -> torch.Tensor:
        xt, t, target = (torch.stack(v) for v in zip(*(denoising_pair(x, s, k) for s, k in targets), strict=True))
        return ((stacked(xt, t) - target) ** 2).flatten(1).mean(1).sum()

    history = train_steps(stacked, loss, (x0,), steps, batch_size, lr=lr, desc=desc)
    stacked.unstack()
    for net in nets:
        net.eval()
    return [Denoiser(net, s, k) for net, (s, k) in zip(nets, targets, strict=True)], history


@torch.no_grad()
def sample_from_noise(
    method: str,
    field: Field,
    z: torch.Tensor,
    steps: int,
    t_max: float | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    r"""Sample with ``method`` on a uniform grid of ``steps`` steps from ``t_max`` to :math:`10^{-3}`, starting at :math:`\sigma_{t_{max}} z`.

    ``z`` is standard normal noise (on the CPU); the sampler runs on ``device`` and the samples
    come back on the CPU.
    """
    ts = time_grid(field.schedule, steps, t_min=1e-3, t_max=t_max, spacing="uniform")
    x = (z * float(field.schedule.sigma(ts[0]))).to(device)
    return sample(method, field, x, ts, generator=generator).cpu()


class ReversedTime(nn.Module):
    r"""``net`` queried at :math:`1 - t`: the opposite time convention (noise at :math:`t = 0`, as in rectified flow)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, t: torch.Tensor, *cond) -> torch.Tensor:
        return self.net(x, 1 - t, *cond)


def reversed_time(model: Denoiser) -> Denoiser:
    r"""The same trained network with its time reversed, :math:`t \to 1 - t` (a negative control: :class:`ReversedTime`)."""
    return Denoiser(ReversedTime(model.net), model.schedule, model.kind, model.cond)


def reversed_time_distances(
    models: dict[str, Denoiser],
    z: torch.Tensor,
    steps: int,
    reference: torch.Tensor,
    device: torch.device | str | None = None,
    unbiased: bool = True,
) -> list[float]:
    r"""Energy distance to ``reference`` of each model sampled by Heun with its time reversed (:func:`reversed_time`, a negative control).

    The same noise ``z`` and grid as :func:`sample_from_noise` gives the right samples; ``unbiased=False``
    measures the V-statistic.
    """
    from .metrics import energy_distance

    def ed(m: Denoiser) -> float:
        y = sample_from_noise("heun", reversed_time(m), z, steps, device=device)
        return float(energy_distance(y, reference, unbiased=unbiased))

    return [ed(m) for m in models.values()]


def ode_vs_sde(
    fields: dict[str, Field],
    z: torch.Tensor,
    steps: int,
    reference: torch.Tensor,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    unbiased: bool = True,
) -> list[dict]:
    r"""Each field sampled from the same noise by its probability-flow ODE (Heun) and its reverse SDE (Euler–Maruyama).

    A row per field: the energy distance of each set of samples to ``reference`` and between the
    two sets (``unbiased=False``: the V-statistic). The grid stops below :math:`t = 1` by :math:`10^{-3}`,
    where the straight path's reverse SDE is singular.
    """
    from .metrics import energy_distance

    def ed(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(energy_distance(a, b, unbiased=unbiased))

    rows = []
    for name, field in fields.items():
        t_top = min(field.schedule.t_max, 1 - 1e-3)  # the straight path's SDE is singular at t = 1
        ode = sample_from_noise("heun", field, z, steps, t_max=t_top, device=device)
        sde = sample_from_noise("sde", field, z, steps, t_max=t_top, generator=generator, device=device)
        rows.append(
            {
                "model": name,
                "ODE (Heun)": ed(ode, reference),
                "SDE (Euler–Maruyama)": ed(sde, reference),
                "ODE vs SDE samples": ed(ode, sde),
            }
        )
    return rows


# --- images judged by a classifier ------------------------------------------------------------


@dataclass(frozen=True)
class ImageLayout:
    """Flat images of ``side`` × ``side`` pixels, and the layout a network takes them in.

    ``image=False`` (an MLP): the flat vectors themselves. ``image=True`` (a UNet): batches of
    shape ``(N, 1, side + 2 pad, side + 2 pad)``, padded with the background value −1.
    """

    side: int
    pad: int = 0
    image: bool = False

    def to_net(self, x: torch.Tensor) -> torch.Tensor:
        """Flat images ``(N, side²)`` in, the network's layout out."""
        if not self.image:
            return x
        return F.pad(x.reshape(-1, 1, self.side, self.side), (self.pad,) * 4, value=-1.0)

    def to_flat(self, x: torch.Tensor) -> torch.Tensor:
        """The network's layout in, flat images ``(N, side²)`` out (the padding cut off)."""
        if not self.image:
            return x
        p, s = self.pad, self.side
        return x[:, :, p : p + s, p : p + s].reshape(len(x), -1)


def within_class_distance(x: torch.Tensor, labels: torch.Tensor, n_classes: int = 10) -> float:
    r"""Diversity: the mean over classes of the mean pairwise distance :math:`\|x_i - x_j\|` within the class."""
    return float(torch.stack([torch.pdist(x[labels == k]).mean() for k in range(n_classes)]).mean())


@dataclass(frozen=True)
class Judge:
    r"""A fixed classifier's verdict on flat images generated for given labels.

    ``classifier`` (an :class:`~varbook.nn.MLP` of flat images, never shown samples) gives the class
    accuracy against the requested labels and, through its last hidden layer (``features``), the
    Fréchet distance :cite:`heusel2017gans` of the images to the ``reference`` images;
    :func:`within_class_distance` measures diversity. ``layout`` (when given) tells
    :meth:`flat` how to read a sampler's output.
    """

    classifier: MLP
    reference: torch.Tensor
    layout: ImageLayout | None = None

    def flat(self, x: torch.Tensor) -> torch.Tensor:
        """A sampler's output in the network's layout, as flat images clamped to :math:`[-1, 1]`."""
        return (x if self.layout is None else self.layout.to_flat(x)).clamp(-1, 1)

    @torch.no_grad()
    def __call__(self, imgs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """Class accuracy, within-class distance and Fréchet distance of flat ``imgs`` asked for ``labels``."""
        features = self.classifier.features
        return {
            "class accuracy": float((self.classifier(imgs).argmax(1) == labels).float().mean()),
            "within-class distance": within_class_distance(imgs, labels),
            "Fréchet (digits)": float(frechet_distance(features(imgs), features(self.reference))),
        }


class SwappedGuidance(GuidedField):
    r"""Classifier-free guidance with its two fields swapped (a negative control): :math:`(1 + w)\hat\epsilon(x, \varnothing) - w\hat\epsilon(x, c)`.

    The arguments of :func:`~varbook.diffusion.guidance.guide` in the wrong order: it guides away from the class.
    """

    def predict(self, x, t):
        cond = self.denoiser.with_cond(self.labels).predict(x, t)
        return guide(self.denoiser.with_cond(self.null).predict(x, t), cond, self.w)


@torch.no_grad()
def guidance_sweep(
    model: Denoiser,
    labels: torch.Tensor,
    z: torch.Tensor,
    ws: Sequence[float],
    steps: int,
    judge: Judge,
    generator: torch.Generator | None = None,
    desc: str | None = None,
    null_label: int = 10,
    swapped: bool = False,
) -> tuple[list[dict], dict[float, torch.Tensor]]:
    r"""Classifier-free guidance :cite:`ho2022classifierfree` at each strength ``w``, sampled by DDPM from the same start ``z``.

    The guided field is :math:`(1 + w)\hat\epsilon(x, t, c) - w\hat\epsilon(x, t, \varnothing)`
    (:class:`~varbook.diffusion.guidance.GuidedField`), sampled over ``steps`` uniform steps from
    :math:`t_{max}` to :math:`10^{-3}`. Returns one row of the ``judge``'s verdict per ``w`` and the
    flat samples (on the CPU) by ``w``. ``swapped=True`` guides by :class:`SwappedGuidance` (a negative control).
    """
    ts = time_grid(model.schedule, steps, t_min=1e-3, spacing="uniform")
    rows, imgs_by_w = [], {}
    for w in ws if desc is None else progress(ws, desc=desc):
        field = (SwappedGuidance if swapped else GuidedField)(model, labels, null_label=null_label, w=w)
        imgs = judge.flat(sample("ddpm", field, z, ts, generator=generator))
        imgs_by_w[w] = imgs.cpu()
        rows.append({"w": w, **judge(imgs, labels)})
    return rows, imgs_by_w


@torch.no_grad()
def sampler_sweep(
    model: Denoiser,
    labels: torch.Tensor,
    z: torch.Tensor,
    methods: Sequence[str],
    nfes: Sequence[int],
    judge: Judge,
    generator: torch.Generator | None = None,
    desc: str | None = None,
    null_label: int = 10,
) -> list[dict]:
    r"""The conditional field (no guidance) sampled by each method at each budget, from the same start ``z``.

    A row per method and budget: the NFE, the ``judge``'s Fréchet distance and class accuracy,
    and the wall-clock milliseconds per generated image.
    """
    plain = GuidedField(model, labels, null_label=null_label, w=0.0)
    rows = []
    for method in methods if desc is None else progress(methods, desc=desc):
        for n_eval in nfes:
            ts = time_grid(model.schedule, steps_for_nfe(method, n_eval), t_min=1e-3, spacing="uniform")
            with Meter(z.device) as meter:
                imgs = judge.flat(sample(method, plain, z, ts, generator=generator))
            verdict = judge(imgs, labels)
            rows.append(
                {
                    "sampler": method,
                    "NFE": nfe(method, ts),
                    "Fréchet (digits)": verdict["Fréchet (digits)"],
                    "class accuracy": verdict["class accuracy"],
                    "ms per image": 1000 * meter.seconds / len(imgs),
                }
            )
    return rows


# --- flow maps --------------------------------------------------------------------------------


def fit_meanflow(
    net: nn.Module, x: torch.Tensor, steps: int, batch_size: int, lr: float = 1e-3, desc: str | None = None
) -> History:
    r"""Train a flow map ``net(z, t, r)`` on data ``x`` by the MeanFlow loss :cite:`geng2025meanflow`.

    The regression target is :math:`u_{\text{tgt}} = v - (t - r)(v\cdot\partial_z u + \partial_t u)`
    (:func:`~varbook.diffusion.flowmaps.meanflow_loss`); the loop is :func:`~varbook.nn.train_steps`.
    """
    return train_steps(net, lambda x0: meanflow_loss(net, x0), (x,), steps, batch_size, lr=lr, desc=desc)


@torch.no_grad()
def meanflow_same_times(net: nn.Module, z: torch.Tensor) -> torch.Tensor:
    r"""One jump of a MeanFlow map with both times at :math:`t = 1`, :math:`z - u(z, 1, 1)` (a negative control).

    The map called with :math:`r = t`, its instantaneous velocity: one Euler step of flow matching
    instead of the average velocity over :math:`[0, 1]` of :func:`~varbook.diffusion.flowmaps.sample_meanflow`.
    """
    one = torch.ones(z.shape[0], dtype=z.dtype, device=z.device)
    return z - net(z, one, one)
