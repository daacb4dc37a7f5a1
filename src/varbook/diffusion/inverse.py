r"""Inverse problems with a diffusion prior: RED-diff :cite:`mardani2024variational` and DPS :cite:`chung2023diffusion`.

Measurements are :math:`y = A x_0 + \sigma_y v` with a linear operator from :mod:`varbook.imaging`. Times use
DDPM's discrete indexing read by :class:`~varbook.diffusion.schedules.DiscreteVP`: index :math:`k \in \{0..T-1\}`
is the time :math:`t = (k + 1)/T`, and a run of ``n_steps`` visits the multiples of :math:`T/n` below :math:`T`.

**RED-diff** fits the mean :math:`\mu` of a (Dirac) variational posterior by minimising

.. math::
    \ell(\mu) = \tfrac12\operatorname{mean}\big((y - A\mu)^2\big) + \lambda\,\mathbb E_{t,\epsilon}\big[w_t\,\operatorname{mean}\big(\operatorname{sg}[\hat\epsilon(x_t, t) - \epsilon]\odot\mu\big)\big],
    \qquad x_t = \alpha_t\mu + \sigma_t\epsilon,

one Adam step per time, with the denoiser never differentiated; the default weight is
:math:`w_t = \sigma_t/\alpha_t` (the inverse square root of the SNR, "linear" in the paper's code).
:math:`w_t` weighs the *gradient*: differentiating a loss weight :math:`\omega_t` of
:math:`\|\hat\epsilon(\alpha_t\mu + \sigma_t\epsilon, t) - \epsilon\|^2` through :math:`x_t` gives the chain-rule factor
:math:`\partial x_t/\partial\mu = \alpha_t` (and a 2), so with the Jacobian of :math:`\hat\epsilon` dropped the
gradient is :math:`2\omega_t\alpha_t(\hat\epsilon - \epsilon)`; the algorithm sets :math:`w_t = 2\omega_t\alpha_t`
directly, which absorbs :math:`\alpha_t`.
**DPS** runs the ancestral sampler and pushes each step down the gradient of
:math:`\|y - A\hat x_0(x_t)\|`, which back-propagates through the denoiser.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from dataclasses import field as dc_field
from functools import partial

import torch

from ..data import Split, mnist5k
from ..imaging.metrics import psnr, quality
from ..imaging.operators import BatchInpainting, GaussianBlur, LinearOperator, SuperResolution
from ..nn import SmallUNet, TimeMLP
from ..runtime import Meter, check_choice, progress, randn, randperm
from .field import Denoiser, Field
from .gmm import GaussianMixture
from .principles import fit_denoiser
from .samplers import ddim_step
from .schedules import Schedule, expand

WEIGHTINGS = {
    "linear": lambda r: r,
    "sqrt": lambda r: r.sqrt(),
    "square": lambda r: r**2,
    "log": torch.log1p,
    "clip": lambda r: r.clamp(max=1.0),
    "power2/3": lambda r: r ** (2 / 3),
    "constant": lambda r: torch.ones_like(r),
}
ORDERS = ("descending", "random", "ascending")


def step_indices(
    n_steps: int, T: int = 1000, order: str = "descending", generator: torch.Generator | None = None
) -> torch.Tensor:
    """The DDPM indices a run of ``n_steps`` visits: multiples of ``T // n_steps`` below ``T``, in the given order.

    >>> step_indices(4, T=8)
    tensor([6, 4, 2, 0])
    """
    check_choice("time order", order, ORDERS)
    if not 1 <= n_steps <= T:
        raise ValueError(f"n_steps must lie in [1, {T}], got {n_steps}")
    k = torch.arange(0, T, T // n_steps)[:n_steps]
    if order == "descending":
        return k.flip(0)
    if order == "ascending":
        return k
    return k[randperm(len(k), generator=generator, device=k.device)]  # "random"


def red_diff_weight(alpha: torch.Tensor, sigma: torch.Tensor, weighting: str = "linear") -> torch.Tensor:
    r"""The weight :math:`w_t` as a function of :math:`\sigma_t/\alpha_t = \mathrm{SNR}^{-1/2}`."""
    check_choice("weighting", weighting, WEIGHTINGS)
    return WEIGHTINGS[weighting](sigma / alpha)


def red_diff_gradient(
    mu: torch.Tensor, y: torch.Tensor, op: LinearOperator, eps_hat: torch.Tensor, eps: torch.Tensor, lam: float, weight
) -> torch.Tensor:
    r"""Gradient of the RED-diff surrogate, summed over images, in closed form (no autograd through the denoiser):
    :math:`-A^\top(y - A\mu)/m + \lambda\,w_t\,(\hat\epsilon - \epsilon)/n` with :math:`m` measurements and :math:`n` pixels per image.

    ``weight`` is the gradient weight :math:`w_t` (the chain-rule factor :math:`\alpha_t` of :math:`x_t` is inside it,
    see the module docstring), a scalar or one value per image."""
    data_fit = -op.T(y - op(mu)) / op.n_out  # -A^T (y - A mu), averaged over measurements
    prior = lam * expand(weight, mu) * (eps_hat - eps) / mu.shape[1]  # lambda w_t (eps_hat - eps), over pixels
    return data_fit + prior


def red_diff(
    field: Field,
    op: LinearOperator,
    y: torch.Tensor,
    n_steps: int = 100,
    lam: float = 0.25,
    lr: float = 0.1,
    weighting: str = "linear",
    order: str = "descending",
    T: int = 1000,
    generator: torch.Generator | None = None,
    desc: str | None = None,
) -> torch.Tensor:
    r"""Restore images from measurements ``y (batch, m)``: Adam (betas 0.9, 0.99) on :math:`\mu`, started at :math:`A^\dagger y`.

    ``field`` is the prior's denoiser (only :math:`\hat\epsilon` is used, without gradients); its schedule
    gives :math:`\alpha_t, \sigma_t` at :math:`t = (k + 1)/T`. ``desc`` labels a progress bar (``None``: silent).
    """
    if lam < 0 or lr <= 0:
        raise ValueError(f"need lam >= 0 and lr > 0, got {lam}, {lr}")
    sch = field.schedule
    ks = step_indices(n_steps, T, order, generator)
    mu = op.pseudo_inverse(y).detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([mu], lr=lr, betas=(0.9, 0.99))
    for k in progress(ks, desc=desc, disable=desc is None):  # times from noisy to clean by default
        t = torch.tensor((int(k) + 1) / T, dtype=torch.float64)
        a, s = sch.alpha(t), sch.sigma(t)
        eps = randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        with torch.no_grad():
            eps_hat = field.eps(a.to(mu) * mu + s.to(mu) * eps, t)  # x_t = alpha_t mu + sigma_t eps
            mu.grad = red_diff_gradient(mu, y, op, eps_hat, eps, lam, red_diff_weight(a, s, weighting).to(mu))
        opt.step()  # one Adam step per time, no backward pass through the denoiser
    return mu.detach()


def dps(
    field: Field,
    op: LinearOperator,
    y: torch.Tensor,
    n_steps: int = 100,
    zeta: float = 0.5,
    eta: float = 1.0,
    T: int = 1000,
    x: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    desc: str | None = None,
) -> torch.Tensor:
    r"""Diffusion posterior sampling: a DDIM(:math:`\eta`) step from :math:`(\hat\epsilon, \hat x_0)`, then
    :math:`x \leftarrow x - \zeta\,\nabla_{x_t}\|y - A\hat x_0(x_t)\|` (one backward pass through the denoiser per step).

    ``x`` is the starting noise at the first time (drawn from :math:`\mathcal N(0, \sigma^2 I)` when omitted); the last
    step lands on :math:`t = 0`, where the sample is :math:`\hat x_0`. ``desc`` labels a progress bar (``None``: silent).
    """
    if zeta < 0 or not 0 <= eta <= 1:
        raise ValueError(f"need zeta >= 0 and eta in [0, 1], got {zeta}, {eta}")
    sch = field.schedule
    ks = step_indices(n_steps, T, "descending")
    ts = torch.cat([(ks.double() + 1) / T, torch.zeros(1, dtype=torch.float64)])
    if x is None:
        x = float(sch.sigma(ts[0])) * randn(y.shape[0], op.n_in, generator=generator, dtype=y.dtype, device=y.device)
    for t, s in progress(list(zip(ts[:-1], ts[1:], strict=True)), desc=desc, disable=desc is None):
        x = x.detach().requires_grad_(True)
        eps, x0 = field.eps_x0(x, t)  # x0 = x_hat_0(x_t), through the denoiser
        (grad,) = torch.autograd.grad((y - op(x0)).flatten(1).norm(dim=1).sum(), x)  # backward pass
        with torch.no_grad():
            x = ddim_step(field, x, t, s, eps, x0, eta, generator) - zeta * grad  # DDIM, then DPS's pull
    return x.detach()


def noisy_measurements(op: LinearOperator, x: torch.Tensor, noise_std: float, generator: torch.Generator | None = None):
    r""":math:`y = Ax + \sigma_y v`, :math:`v \sim \mathcal N(0, I)`."""
    if noise_std < 0:
        raise ValueError(f"noise_std must be non-negative, got {noise_std}")
    y = op(x)
    return y + noise_std * randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)


def posterior_mean(prior: GaussianMixture, op: LinearOperator, y: torch.Tensor, noise_std: float) -> torch.Tensor:
    r"""The exact posterior mean :math:`\mathbb E[x_0 \mid y]` of a Gaussian-mixture prior under ``op``
    (:meth:`~varbook.diffusion.gmm.GaussianMixture.posterior_mean`), image by image for a
    :class:`~varbook.imaging.BatchInpainting`, whose masks differ between images."""
    if isinstance(op, BatchInpainting):
        rows = [prior.posterior_mean(op.image(i).matrix(), y[i : i + 1], noise_std) for i in range(len(op))]
        return torch.cat(rows)
    return prior.posterior_mean(op.matrix(), y, noise_std)


# The experiments of the RED-diff chapter: each runs the samplers above in a fixed order of random draws.


def _mean_psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float(psnr(x, ref).mean())


@dataclass
class Restorations:
    """The restorations of one measurement set by every method of :func:`compare_restorations`.

    ``images`` maps a method to its restored images; ``scores`` maps a method to its mean PSNR and
    SSIM (:func:`~varbook.imaging.metrics.quality`), DPS at every step size first; ``best_zeta`` is
    the step size of the best DPS run (by PSNR); ``ms_per_image`` is the wall time per restored
    image of RED-diff and of one DPS run (mean over the step sizes). The best DPS run is also stored
    under the method ``"DPS (best ζ)"``.
    """

    images: dict[str, torch.Tensor] = dc_field(default_factory=dict)
    scores: dict[str, dict[str, float]] = dc_field(default_factory=dict)
    best_zeta: float = float("nan")
    ms_per_image: dict[str, float] = dc_field(default_factory=dict)

    def gap(self, method: str, reference: str) -> float:
        """Mean PSNR of ``method`` minus that of ``reference``, in dB."""
        return self.scores[method]["PSNR"] - self.scores[reference]["PSNR"]


def compare_restorations(
    field: Field,
    op: LinearOperator,
    y: torch.Tensor,
    x_true: torch.Tensor,
    posterior_mean: torch.Tensor | None = None,
    n_steps: int = 100,
    zetas: Sequence[float] = (0.1, 0.3, 0.5, 1.0, 2.0),
    lam: float = 0.25,
    lr: float = 0.1,
    generator: torch.Generator | None = None,
    desc: str | None = None,
) -> Restorations:
    r"""RED-diff (at ``lam``, ``lr``) against DPS at the best of ``zetas``, with ``n_steps`` denoiser evaluations each.

    The references are the zero-fill :math:`A^\dagger y` and, when given, the exact posterior mean. DPS's step
    size is chosen on ``x_true`` itself (an oracle tuning that favours DPS). Draws: RED-diff, then DPS at each
    step size in turn, all from ``generator``; ``desc`` labels a progress bar over the step sizes.
    """
    images = {"zero-fill (A⁺y)": op.pseudo_inverse(y)}
    if posterior_mean is not None:
        images["posterior mean (exact)"] = posterior_mean
    with Meter(y.device) as m:
        images["RED-diff"] = red_diff(field, op, y, n_steps, lam=lam, lr=lr, generator=generator)
    ms = {"RED-diff": 1000 * m.seconds / len(y)}
    dps_runs, dps_seconds = {}, []
    for zeta in progress(list(zetas), desc=desc, disable=desc is None):
        with Meter(y.device) as m:
            dps_runs[zeta] = dps(field, op, y, n_steps, zeta=zeta, generator=generator)
        dps_seconds.append(m.seconds)
    best = max(dps_runs, key=lambda z: _mean_psnr(dps_runs[z], x_true))
    images["DPS (best ζ)"] = dps_runs[best]
    scores = {f"DPS ζ={z}": quality(v, x_true) for z, v in dps_runs.items()}
    scores.update({method: quality(v, x_true) for method, v in images.items()})
    ms["DPS"] = 1000 * sum(dps_seconds) / len(dps_seconds) / len(y)
    return Restorations(images, scores, best, ms)


def misscaled_prior(prior: GaussianMixture) -> GaussianMixture:
    r"""The prior one gets by fitting the digits in :math:`[0, 1]` while the measurements are in :math:`[-1, 1]`.

    A data-scaling mistake, the negative control of the chapter's bounds: the same mixture read through
    :math:`x \mapsto (x + 1)/2`, with means :math:`(\mu_k + 1)/2` and covariances :math:`\Sigma_k/4` (EM is
    equivariant under this map up to its covariance regulariser).
    """
    return GaussianMixture(prior.weights, (prior.means + 1) / 2, prior.covs / 4)


def with_controls(
    res: Restorations,
    prior: GaussianMixture,
    schedule: Schedule,
    op: LinearOperator,
    y: torch.Tensor,
    x_true: torch.Tensor,
    noise_std: float,
    n_steps: int = 100,
    lam: float = 0.25,
    lr: float = 0.1,
    seed: int = 0,
) -> Restorations:
    """A copy of ``res`` with the restorations of three deliberately wrong variants, the negative controls:

    * ``"RED-diff, times reversed"``: RED-diff visiting the times from clean to noisy, as when the
      noise-to-data indexing is read the wrong way round (:func:`step_indices` ``"ascending"``);
    * ``"RED-diff, prior on [0, 1]"`` and ``"posterior mean, prior on [0, 1]"``: RED-diff and the exact
      posterior mean with :func:`misscaled_prior`.

    The runs draw from a generator of their own, seeded with ``seed``, so the chapter's other draws do not move.
    """
    generator = torch.Generator().manual_seed(seed)
    wrong = misscaled_prior(prior)
    images = {
        "RED-diff, times reversed": red_diff(
            prior.field(schedule), op, y, n_steps, lam, lr, order="ascending", generator=generator
        ),
        "RED-diff, prior on [0, 1]": red_diff(wrong.field(schedule), op, y, n_steps, lam, lr, generator=generator),
        "posterior mean, prior on [0, 1]": posterior_mean(wrong, op, y, noise_std),
    }
    scores = {method: quality(v, x_true) for method, v in images.items()}
    return replace(res, images=res.images | images, scores=res.scores | scores)


def red_diff_ablation(
    field: Field,
    op: LinearOperator,
    y: torch.Tensor,
    x_true: torch.Tensor,
    n_steps: int = 100,
    generator: torch.Generator | None = None,
    random_orders: int = 1,
) -> dict[str, float]:
    """Mean PSNR of RED-diff (default λ and learning rate) for each time order, then each weighting but the default.

    Keys ``"order: <order>"`` for :data:`ORDERS` (``"order: descending"`` is the default run) and
    ``"weighting: <name>"`` for the other :data:`WEIGHTINGS`. ``"order: random"`` is the mean over
    ``random_orders`` runs, each with a permutation of its own: the PSNR of a single random order varies with the
    permutation (by about 0.45 dB between draws on the chapter's digits), far more than that of a fixed order.
    The runs draw from ``generator`` in that order.
    """
    if random_orders < 1:
        raise ValueError(f"random_orders must be positive, got {random_orders}")
    out = {}
    for order in ORDERS:
        runs = random_orders if order == "random" else 1
        psnrs = [
            _mean_psnr(red_diff(field, op, y, n_steps, order=order, generator=generator), x_true) for _ in range(runs)
        ]
        out[f"order: {order}"] = sum(psnrs) / runs
    for weighting in WEIGHTINGS:
        if weighting != "linear":
            restored = red_diff(field, op, y, n_steps, weighting=weighting, generator=generator)
            out[f"weighting: {weighting}"] = _mean_psnr(restored, x_true)
    return out


def lam_sweep(
    field: Field,
    op: LinearOperator,
    y: torch.Tensor,
    x_true: torch.Tensor,
    lams: Sequence[float],
    n_steps: int = 100,
    generator: torch.Generator | None = None,
    desc: str | None = None,
) -> dict[float, float]:
    """Mean PSNR of RED-diff for each weight λ of the prior term (the other settings at their defaults)."""
    return {
        lam: _mean_psnr(red_diff(field, op, y, n_steps, lam=lam, generator=generator), x_true)
        for lam in progress(list(lams), desc=desc, disable=desc is None)
    }


def steps_sweep(
    field: Field,
    op: LinearOperator,
    y: torch.Tensor,
    x_true: torch.Tensor,
    step_counts: Sequence[int],
    zeta: float,
    generator: torch.Generator | None = None,
    desc: str | None = None,
) -> list[dict[str, float]]:
    """Mean PSNR of RED-diff (defaults) and of DPS at a fixed step size ``zeta``, for each number of steps.

    One row per count: ``{"steps": n, "RED-diff": ..., "DPS ζ=<zeta>": ...}``; RED-diff runs first at each count.
    """
    rows = []
    for n in progress(list(step_counts), desc=desc, disable=desc is None):
        red = _mean_psnr(red_diff(field, op, y, n, generator=generator), x_true)
        guided = _mean_psnr(dps(field, op, y, n, zeta=zeta, generator=generator), x_true)
        rows.append({"steps": n, "RED-diff": red, f"DPS ζ={zeta}": guided})
    return rows


def _work_seconds(run: Callable[[], object], device: torch.device) -> float:
    """Seconds of work of ``run()``: the process's CPU time on a CPU device (other processes' load does not count),
    the wall time with the device synchronised on an accelerator."""
    if device.type == "cpu":
        start = time.process_time()
        run()
        return time.process_time() - start
    with Meter(device) as m:
        run()
    return m.seconds


@dataclass
class StepTimes:
    """What :func:`step_times` measured.

    ``ms_per_step``: milliseconds of work per step of each run (median over the repeats); ``speedup``: the
    median over the repeats of DPS's time over RED-diff's, each pair timed back to back; ``control``: the same
    ratio for the second RED-diff timing (the negative control, near 1).
    """

    ms_per_step: dict[str, float]
    speedup: float
    control: float


def step_times(
    field: Field,
    op: LinearOperator,
    y: torch.Tensor,
    n_steps: int = 10,
    zeta: float = 0.5,
    repeats: int = 20,
    warmup: int = 5,
    seed: int = 0,
) -> StepTimes:
    """The work per step of RED-diff and of DPS on the same batch ``y``, and of RED-diff again (the control).

    After a warm-up run of each, runs of ``n_steps`` steps take turns ``repeats`` times in the order RED-diff,
    DPS, RED-diff again; each repeat gives the ratio of DPS's time, and of the second RED-diff's, to the first
    RED-diff's, and the medians of these ratios are reported, so that a burst of load on the machine hits both
    sides of a ratio alike. On a CPU the work is the process's CPU time, on an accelerator the synchronised wall
    time. RED-diff evaluates the denoiser without gradients; DPS back-propagates through it at every step. The
    second RED-diff timing is a negative control: a ratio of two timings of the same method, which a claimed
    speed-up must exceed. Noise (and DPS's starting point) comes from a generator of its own, seeded with ``seed``.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be positive, got {repeats}")
    generator = torch.Generator().manual_seed(seed)
    x = randn(y.shape[0], op.n_in, generator=generator, dtype=y.dtype, device=y.device)
    runs: dict[str, Callable[[int], torch.Tensor]] = {
        "RED-diff": lambda n: red_diff(field, op, y, n, generator=generator),
        "DPS": lambda n: dps(field, op, y, n, zeta=zeta, x=x, generator=generator),
        "RED-diff, again": lambda n: red_diff(field, op, y, n, generator=generator),
    }
    for run in runs.values():
        run(warmup)
    seconds = torch.tensor(
        [[_work_seconds(partial(run, n_steps), y.device) for run in runs.values()] for _ in range(repeats)]
    )  # (repeats, runs)
    ratios = (seconds[:, 1:] / seconds[:, :1]).median(0).values
    ms = {label: 1000 * float(col.median()) / n_steps for label, col in zip(runs, seconds.T, strict=True)}
    return StepTimes(ms, float(ratios[0]), float(ratios[1]))


class _FlatImages(torch.nn.Module):
    """A network on ``(batch, channels, side, side)`` images read as one on flat ``(batch, channels * side²)`` rows."""

    def __init__(self, net: torch.nn.Module, channels: int, side: int):
        super().__init__()
        self.net, self.channels, self.side = net, channels, side

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(-1, self.channels, self.side, self.side), t).flatten(1)


@dataclass
class LearnedPriors:
    """What :func:`learned_prior_comparison` measured.

    ``rows``: one per (prior, task, method) with PSNR (and, for the UNet, SSIM and seconds per image);
    ``mlp``: PSNR of RED-diff, RED-diff with random time order, the best DPS and the negative control (RED-diff
    with its times reversed) with the digits ε-MLP;
    ``unet_gaps``: RED-diff PSNR minus the best DPS PSNR per MNIST task; ``unet_control_gaps``: the same for
    RED-diff with its times reversed (the negative control).
    """

    rows: list[dict] = dc_field(default_factory=list)
    mlp: dict[str, float] = dc_field(default_factory=dict)
    unet_gaps: dict[str, float] = dc_field(default_factory=dict)
    unet_control_gaps: dict[str, float] = dc_field(default_factory=dict)


def learned_prior_comparison(
    digits_train: torch.Tensor,
    op: LinearOperator,
    y: torch.Tensor,
    x_true: torch.Tensor,
    schedule: Schedule,
    generator: torch.Generator | None = None,
    *,
    mnist: Split | None = None,
    mnist_test: int = 200,
    task: str = "inpainting 50 %",
    n_steps: int = 100,
    zetas: Sequence[float] = (0.1, 0.3, 0.5, 1.0, 2.0),
    noise: float = 0.05,
    mlp_steps: int = 3000,
    unet_steps: int = 6000,
    unet_base: int = 32,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> LearnedPriors:
    """RED-diff against DPS (best of ``zetas``) with learned priors (the full profile of the chapter).

    1. An ε-MLP (4 hidden layers of 256, ``mlp_steps`` steps) trained on the 8x8 digits ``digits_train`` (in
       [-1, 1]) restores the chapter's task ``(op, y)``: DPS at each step size, RED-diff, RED-diff with a random
       time order.
    2. A :class:`~varbook.nn.SmallUNet` (``unet_steps`` steps) trained on ``mnist`` (MNIST-5k split by ``seed``
       when omitted; 28x28 in [0, 1], padded to 32x32 in [-1, 1]) restores its first ``mnist_test`` test digits
       from 50 % inpainting, 4x super-resolution and a Gaussian blur (σ = 2), as in :func:`compare_restorations`.

    Each prior also restores with its times reversed (``order="ascending"``), the negative control, from a
    generator of its own seeded with ``seed``, so that the other draws do not move. Networks are initialised and
    trained (:func:`~varbook.diffusion.principles.fit_denoiser`) from torch's global generator, reseeded with
    ``seed`` before each.
    """
    device = torch.device(device)
    out = LearnedPriors()
    control = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = TimeMLP(64, 256, 4).to(device)
    mlp, _ = fit_denoiser(net, schedule, "eps", (digits_train.to(device),), mlp_steps, 256, desc="digits ε-MLP")
    y_l, x_l = y.float().to(device), x_true.float().to(device)
    best_dps = max(_mean_psnr(dps(mlp, op, y_l, n_steps, zeta=z, generator=generator), x_l) for z in zetas)
    out.mlp["RED-diff"] = _mean_psnr(red_diff(mlp, op, y_l, n_steps, generator=generator), x_l)
    out.mlp["RED-diff, random order"] = _mean_psnr(
        red_diff(mlp, op, y_l, n_steps, order="random", generator=generator), x_l
    )
    out.mlp["DPS (best ζ)"] = best_dps
    out.mlp["RED-diff, times reversed"] = _mean_psnr(
        red_diff(mlp, op, y_l, n_steps, order="ascending", generator=control), x_l
    )
    out.rows += [{"prior": "ε-MLP on 8×8 digits", "task": task, "method": k, "PSNR": v} for k, v in out.mlp.items()]

    def pad(x: torch.Tensor) -> torch.Tensor:  # 28x28 in [0, 1] -> 32x32 in [-1, 1]
        return torch.nn.functional.pad(x.reshape(-1, 1, 28, 28) * 2 - 1, (2, 2, 2, 2), value=-1.0)

    mnist = mnist5k(seed=seed) if mnist is None else mnist
    m_train, m_test = pad(mnist.x_train).to(device), pad(mnist.x_test[:mnist_test]).to(device)
    torch.manual_seed(seed)
    unet = SmallUNet(1, unet_base).to(device)
    fit_denoiser(unet, schedule, "eps", (m_train,), unet_steps, 128, desc="MNIST UNet")
    unet_prior = Denoiser(_FlatImages(unet, 1, 32), schedule, "eps")
    flat_test = m_test.flatten(1)
    unet_ops = {
        "inpainting 50 %": BatchInpainting.random(len(flat_test), 32, 0.5, generator),
        "super-resolution 4×": SuperResolution(32, 4),
        "Gaussian blur σ=2": GaussianBlur(32, 2.0),
    }
    for name, uop in unet_ops.items():
        yu = noisy_measurements(uop, flat_test, noise, generator)
        res = compare_restorations(unet_prior, uop, yu, flat_test, n_steps=n_steps, zetas=zetas, generator=generator)
        out.unet_gaps[name] = res.gap("RED-diff", "DPS (best ζ)")
        reversed_ = red_diff(unet_prior, uop, yu, n_steps, order="ascending", generator=control)
        out.unet_control_gaps[name] = _mean_psnr(reversed_, flat_test) - res.scores["DPS (best ζ)"]["PSNR"]
        for method, ms in (("zero-fill (A⁺y)", 0.0), ("RED-diff", res.ms_per_image["RED-diff"]),
                           ("DPS (best ζ)", res.ms_per_image["DPS"])):  # fmt: skip
            row = {"prior": "UNet on MNIST-5k", "task": name, "method": method, **res.scores[method]}
            out.rows.append(row | {"seconds per image": ms / 1000})
    return out


__all__ = ["WEIGHTINGS", "ORDERS", "step_indices", "red_diff_weight", "red_diff_gradient", "red_diff", "dps",
           "noisy_measurements", "posterior_mean", "Restorations", "compare_restorations", "red_diff_ablation", "lam_sweep",
           "steps_sweep", "StepTimes", "step_times", "misscaled_prior", "with_controls", "LearnedPriors",
           "learned_prior_comparison"]  # fmt: skip
