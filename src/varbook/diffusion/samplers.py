r"""Samplers for a :class:`~varbook.diffusion.field.Field`, all on a decreasing time grid ``ts`` (noise to data).

* :func:`sample_ddpm`: ancestral sampling from the Gaussian posterior :math:`q(x_s \mid x_t, \hat x_0)` :cite:`ho2020denoising`.
* :func:`sample_ddim`: DDIM :cite:`song2021denoising`; with :math:`\eta = 0` it is Euler on the probability-flow
  ODE in the variables :math:`y = x/\alpha`, :math:`\rho = \sigma/\alpha` (see :func:`sample_ddim_as_euler`).
* :func:`sample_euler`, :func:`sample_heun`: the probability-flow ODE :math:`\dot x = \dot\alpha\hat x_0 + \dot\sigma\hat\epsilon` in :math:`x`.
* :func:`sample_dpm_solver_2`: DPM-Solver-2, an exponential integrator in :math:`\lambda = \log(\alpha/\sigma)` :cite:`lu2022dpmsolver`.
* :func:`sample_reverse_sde`: Euler–Maruyama on :math:`dx = [f x - g^2\nabla\log p_t]dt + g\,d\bar W` :cite:`song2021scorebased`.

Every sampler returns the state at ``ts[-1]``. When ``ts[-1] = 0`` (where :math:`\sigma = 0` and the fields are
singular) the last step lands on the prediction :math:`\hat x_0` instead of evaluating there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..runtime import check_choice, randn, randn_like
from ..sde import solvers
from .field import Field
from .schedules import Schedule, as_time


def _grid(ts) -> torch.Tensor:
    ts = as_time(ts)
    if ts.dim() != 1 or ts.numel() < 2 or not (ts.diff() < 0).all():
        raise ValueError("ts must be a strictly decreasing 1-D grid of at least two times (noise to data)")
    return ts


def prior(
    schedule: Schedule, n: int, dim: int | tuple[int, ...], t=None, generator=None, dtype=torch.float32, device=None
):
    r"""Starting points :math:`x_T \sim \mathcal N(0, \sigma_T^2 I)` at ``t`` (default ``schedule.t_max``), ignoring the small :math:`\alpha_T x_0`."""
    t = torch.tensor(schedule.t_max if t is None else t, dtype=torch.float64)
    shape = (n, *dim) if isinstance(dim, tuple) else (n, dim)
    return float(schedule.sigma(t)) * randn(shape, generator=generator, dtype=dtype, device=device)


def posterior(schedule: Schedule, t, s, x: torch.Tensor, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Mean and standard deviation of :math:`q(x_s \mid x_t, x_0)` for :math:`s < t` :cite:`kingma2021variational`.

    With :math:`\alpha_{t|s} = \alpha_t/\alpha_s` and :math:`\sigma_{t|s}^2 = \sigma_t^2 - \alpha_{t|s}^2\sigma_s^2`:
    mean :math:`\frac{\alpha_{t|s}\sigma_s^2}{\sigma_t^2}x_t + \frac{\alpha_s\sigma_{t|s}^2}{\sigma_t^2}x_0`,
    variance :math:`\sigma_{t|s}^2\sigma_s^2/\sigma_t^2`.
    """
    a_t, s_t, a_s, s_s = schedule.alpha(t), schedule.sigma(t), schedule.alpha(s), schedule.sigma(s)
    a_ts = a_t / a_s
    var_ts = s_t**2 - a_ts**2 * s_s**2
    mean = (a_ts * s_s**2 / s_t**2).to(x) * x + (a_s * var_ts / s_t**2).to(x) * x0
    return mean, (var_ts * s_s**2 / s_t**2).clamp(min=0).sqrt().to(x)


def sample_ddpm(field: Field, x: torch.Tensor, ts, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Ancestral sampling: :math:`x_s \sim q(x_s \mid x_t, x_0 = \hat x_0(x_t, t))` at each step. One evaluation per step."""
    ts = _grid(ts)
    for t, s in zip(ts[:-1], ts[1:], strict=True):
        mean, std = posterior(field.schedule, t, s, x, field.x0(x, t))
        x = mean + std * randn_like(x, generator)
    return x


def ddim_step(
    field: Field,
    x: torch.Tensor,
    t,
    s,
    eps: torch.Tensor,
    x0: torch.Tensor,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""One DDIM step from :math:`t` to :math:`s < t` given :math:`(\hat\epsilon, \hat x_0)` at :math:`(x, t)`:
    :math:`x_s = \alpha_s\hat x_0 + \sqrt{\sigma_s^2 - c^2}\,\hat\epsilon + c z` with :math:`c = \eta\cdot` (posterior std).

    Noise is drawn only where it enters (:math:`\eta > 0` and :math:`\sigma_s > 0`).
    """
    sch = field.schedule
    a_s, s_s = sch.alpha(s).to(x), sch.sigma(s).to(x)
    if eta == 0:
        return a_s * x0 + s_s * eps
    c = eta * posterior(sch, t, s, x, x0)[1]
    out = a_s * x0 + (s_s**2 - c**2).clamp(min=0).sqrt() * eps
    if float(s_s) > 0:
        out = out + c * randn_like(x, generator)
    return out


def sample_ddim(
    field: Field, x: torch.Tensor, ts, eta: float = 0.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""DDIM :cite:`song2021denoising`: :func:`ddim_step` along the grid.

    :math:`\eta = 0` is deterministic; :math:`\eta = 1` is :func:`sample_ddpm` in distribution.
    """
    if not 0 <= eta <= 1:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    ts = _grid(ts)
    for t, s in zip(ts[:-1], ts[1:], strict=True):
        eps, x0 = field.eps_x0(x, t)
        x = ddim_step(field, x, t, s, eps, x0, eta, generator)
    return x


def sample_ddim_as_euler(field: Field, x: torch.Tensor, ts) -> torch.Tensor:
    r"""The probability-flow ODE written as :math:`dy/d\rho = \hat\epsilon(\alpha y, t(\rho))`, solved by plain Euler.

    Here :math:`y = x/\alpha_t` and :math:`\rho = \sigma_t/\alpha_t = e^{-\lambda_t}`; :math:`t(\rho)` inverts the
    log-SNR. This is a separate route to the same numbers as ``sample_ddim(eta=0)`` (the identity checked in the chapter).
    """
    ts = _grid(ts)
    sch = field.schedule
    if float(sch.alpha(ts[0])) == 0.0:
        raise ValueError(f"y = x / alpha is infinite at t = {float(ts[0])}: start the grid where alpha > 0")
    if float(ts[-1]) == 0.0:
        raise ValueError("end the grid at t > 0: at rho = 0 (the data end) the log-SNR defines no t")
    rho = torch.exp(-sch.log_snr(ts))  # rho = sigma / alpha

    # dy/drho = eps_hat(alpha y, t(rho));
    # one Euler step is y_s = y_t + (rho_s - rho_t) eps_hat
    def drift(y, r):
        t = sch.t_of_log_snr(-torch.log(r))
        return field.eps(sch.alpha(t).to(y) * y, t)

    y = solvers.euler(drift, x / sch.alpha(ts[0]).to(x), rho)
    return sch.alpha(ts[-1]).to(x) * y


def sample_euler(field: Field, x: torch.Tensor, ts) -> torch.Tensor:
    r"""Euler on the probability-flow ODE in :math:`x`: one evaluation per step (this is *not* DDIM)."""
    ts = _grid(ts)
    return solvers.euler(field.velocity, x, ts)


def sample_heun(field: Field, x: torch.Tensor, ts) -> torch.Tensor:
    r"""Heun on the probability-flow ODE; the last step is Euler when it lands on :math:`t = 0`. :math:`2N` or :math:`2N - 1` evaluations."""
    ts = _grid(ts)
    return solvers.heun(field.velocity, x, ts, euler_last=float(ts[-1]) == 0.0)


def sample_dpm_solver_2(field: Field, x: torch.Tensor, ts) -> torch.Tensor:
    r"""DPM-Solver-2 (single step, midpoint in :math:`\lambda`), two evaluations per step :cite:`lu2022dpmsolver`.

    With :math:`h = \lambda_s - \lambda_t` and :math:`t_m` the time of :math:`\lambda_t + h/2`:
    :math:`u = \frac{\alpha_m}{\alpha_t}x - \sigma_m(e^{h/2} - 1)\hat\epsilon(x, t)`,
    :math:`x_s = \frac{\alpha_s}{\alpha_t}x - \sigma_s(e^{h} - 1)\hat\epsilon(u, t_m)`.
    A last step onto :math:`t = 0` is a DDIM step (first order, one evaluation).
    """
    ts = _grid(ts)
    sch = field.schedule
    for t, s in zip(ts[:-1], ts[1:], strict=True):
        if float(s) == 0.0:
            x = sample_ddim(field, x, torch.stack([t, s]))
            continue
        lam_t, lam_s = sch.log_snr(t), sch.log_snr(s)
        h = lam_s - lam_t
        m = sch.t_of_log_snr(lam_t + h / 2)
        a_t, a_m, a_s = sch.alpha(t), sch.alpha(m), sch.alpha(s)
        u = (a_m / a_t).to(x) * x - (sch.sigma(m) * torch.expm1(h / 2)).to(x) * field.eps(x, t)
        x = (a_s / a_t).to(x) * x - (sch.sigma(s) * torch.expm1(h)).to(x) * field.eps(u, m)
    return x


def sample_reverse_sde(field: Field, x: torch.Tensor, ts, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Euler–Maruyama on the reverse SDE :math:`dx = [f x - g^2 \nabla\log p_t]\,dt + g\,d\bar W`; no noise on the last step."""
    ts = _grid(ts)
    sch = field.schedule
    if float(sch.alpha(ts[0])) == 0.0:
        raise ValueError(
            f"the reverse SDE of {sch.name} is singular where alpha = 0: start the grid below t = {float(ts[0])}"
        )

    def drift(x, t):
        return sch.drift(t).to(x) * x - sch.g2(t).to(x) * field.score(x, t)

    return solvers.euler_maruyama(drift, lambda x, t: sch.g2(t).sqrt(), x, ts, generator=generator, noise_last=False)


Sampler = Callable[[Field, torch.Tensor, Any], torch.Tensor]
"""A sampler ``sampler(field, x, ts)``: from the states ``x`` at ``ts[0]`` to ``ts[-1]``."""

SAMPLERS: dict[str, Sampler] = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "euler": sample_euler,
    "heun": sample_heun,
    "dpm2": sample_dpm_solver_2,
    "sde": sample_reverse_sde,
}
STOCHASTIC = ("ddpm", "sde")


def sample(method: str, field: Field, x: torch.Tensor, ts, generator: torch.Generator | None = None) -> torch.Tensor:
    """Run the sampler named ``method`` (one of :data:`SAMPLERS`); ``generator`` feeds the stochastic ones."""
    check_choice("sampler", method, SAMPLERS)
    if method == "ddpm":
        return sample_ddpm(field, x, ts, generator=generator)
    if method == "sde":
        return sample_reverse_sde(field, x, ts, generator=generator)
    return SAMPLERS[method](field, x, ts)


def nfe(method: str, ts) -> int:
    """Number of function evaluations ``method`` spends on the grid ``ts``.

    >>> nfe("heun", [1.0, 0.5, 0.0]), nfe("ddim", [1.0, 0.5, 0.0])
    (3, 2)
    """
    check_choice("sampler", method, SAMPLERS)
    ts = _grid(ts)
    n = len(ts) - 1
    if method in ("heun", "dpm2"):
        return 2 * n - (1 if float(ts[-1]) == 0.0 else 0)
    return n


def steps_for_nfe(method: str, n_evals: int, ends_at_zero: bool = False) -> int:
    """The number of steps that spends ``n_evals`` evaluations (rounded down for the two-evaluation solvers)."""
    check_choice("sampler", method, SAMPLERS)
    if n_evals < 1:
        raise ValueError(f"n_evals must be positive, got {n_evals}")
    if method in ("heun", "dpm2"):
        return max(1, (n_evals + (1 if ends_at_zero else 0)) // 2)
    return n_evals
