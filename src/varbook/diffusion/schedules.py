r"""Gaussian forward processes :math:`x_t = \alpha_t x_0 + \sigma_t \epsilon`, one time convention for the library.

Time runs over :math:`t \in [0, 1]` with :math:`t = 0` the data and :math:`t = 1` the noise, as in
:cite:`lai2025principles`. A schedule gives :math:`\alpha_t`, :math:`\sigma_t`, their time derivatives,
the log signal-to-noise ratio :math:`\lambda_t = \log(\alpha_t / \sigma_t)` and the drift and diffusion of
the forward SDE :math:`dx = f(t)\,x\,dt + g(t)\,dW` that has these marginals:

.. math::
    f = \frac{\dot\alpha}{\alpha}, \qquad g^2 = 2\sigma\dot\sigma - 2 f \sigma^2 .

DDPM's discrete indices :math:`i = 0..T` map to :math:`t = i / T` (:func:`ddpm_alpha_bar`).
"""

from __future__ import annotations

import math

import torch

from ..runtime import check_choice

SPACINGS = ("uniform", "log_snr")
r"""The time grids :func:`time_grid` builds: uniform in :math:`t`, or uniform in the log-SNR :math:`\lambda_t`."""


def as_time(t, like: torch.Tensor | None = None, ends: str = "0 = data, 1 = noise") -> torch.Tensor:
    """``t`` as a tensor (float64, or the dtype and device of ``like``), checked to lie in [0, 1].

    The one time validator of :mod:`varbook.diffusion`; ``ends`` names the convention in the error
    message (the interpolants pass ``"0 = base, 1 = target"``).

    >>> as_time(0.25)
    tensor(0.2500, dtype=torch.float64)
    >>> as_time(1.5)
    Traceback (most recent call last):
    ...
    ValueError: time must lie in [0, 1] (0 = data, 1 = noise), got values in [1.5, 1.5]
    """
    t = torch.as_tensor(t, dtype=torch.float64 if like is None else like.dtype)
    if like is not None:
        t = t.to(like.device)
    if torch.isnan(t).any():
        raise ValueError("time contains NaN")
    if (t < 0).any() or (t > 1).any():
        raise ValueError(f"time must lie in [0, 1] ({ends}), got values in [{float(t.min())}, {float(t.max())}]")
    return t


class Schedule:
    r"""A Gaussian path :math:`x_t = \alpha_t x_0 + \sigma_t \epsilon`; subclasses define ``alpha`` and ``sigma``.

    Derivatives default to a central finite difference in float64; the closed forms below override it.
    ``t_max`` is the largest time a sampler should start from (where :math:`\alpha > 0`).
    """

    name = "schedule"
    t_max = 1.0

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def d_alpha(self, t: torch.Tensor) -> torch.Tensor:
        return self._diff(self.alpha, t)

    def d_sigma(self, t: torch.Tensor) -> torch.Tensor:
        return self._diff(self.sigma, t)

    @staticmethod
    def _diff(fn, t: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
        t64 = t.double()
        lo, hi = (t64 - h).clamp(min=0.0), (t64 + h).clamp(max=1.0)
        return ((fn(hi) - fn(lo)) / (hi - lo)).to(t.dtype)

    def __call__(self, t) -> tuple[torch.Tensor, torch.Tensor]:
        """``(alpha_t, sigma_t)`` at ``t``."""
        t = as_time(t)
        return self.alpha(t), self.sigma(t)

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        r""":math:`\lambda_t = \log\alpha_t - \log\sigma_t` (half the log SNR)."""
        return torch.log(self.alpha(t)) - torch.log(self.sigma(t))

    def t_of_log_snr(self, lam: torch.Tensor, iters: int = 100) -> torch.Tensor:
        r"""Inverse of :meth:`log_snr` by bisection on :math:`[0, t_{max}]` (it is decreasing in :math:`t`)."""
        lam = torch.as_tensor(lam, dtype=torch.float64)
        lo = torch.zeros_like(lam)
        hi = torch.full_like(lam, self.t_max)
        for _ in range(iters):
            mid = (lo + hi) / 2
            above = self.log_snr(mid) > lam
            lo = torch.where(above, mid, lo)
            hi = torch.where(above, hi, mid)
        return (lo + hi) / 2

    def drift(self, t: torch.Tensor) -> torch.Tensor:
        r""":math:`f(t) = \dot\alpha_t / \alpha_t`."""
        return self.d_alpha(t) / self.alpha(t)

    def g2(self, t: torch.Tensor) -> torch.Tensor:
        r""":math:`g(t)^2 = 2\sigma\dot\sigma - 2 f \sigma^2`, the squared diffusion of the forward SDE."""
        s = self.sigma(t)
        return 2 * s * self.d_sigma(t) - 2 * self.drift(t) * s**2

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        r""":math:`x_t = \alpha_t x_0 + \sigma_t\epsilon` with ``t`` of shape ``(batch,)`` or a scalar."""
        if x0.shape != eps.shape:
            raise ValueError(f"x0 and eps must have the same shape, got {tuple(x0.shape)} and {tuple(eps.shape)}")
        a, s = expand(self.alpha(t), x0), expand(self.sigma(t), x0)
        return a * x0 + s * eps

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def expand(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-sample (or scalar) coefficient against a batch ``like`` of shape ``(batch, ...)``."""
    v = torch.as_tensor(v, dtype=like.dtype, device=like.device)
    if v.dim() == 0:
        return v
    if v.shape[0] != like.shape[0]:
        raise ValueError(f"{v.shape[0]} times for a batch of {like.shape[0]}")
    return v.reshape(-1, *([1] * (like.dim() - 1)))


class VPLinear(Schedule):
    r"""Variance preserving with linear :math:`\beta(t) = \beta_{min} + t(\beta_{max} - \beta_{min})` :cite:`ho2020denoising,song2021scorebased`.

    :math:`\log\alpha_t = -\tfrac14 t^2 (\beta_{max} - \beta_{min}) - \tfrac12 t \beta_{min}`,
    :math:`\sigma_t = \sqrt{1 - \alpha_t^2}`. The defaults 0.1 and 20 are the continuous limit of DDPM's
    :math:`\beta_i` from 1e-4 to 0.02 over :math:`T = 1000` steps.
    """

    name = "VP linear"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        if not 0 <= beta_min < beta_max:
            raise ValueError(f"need 0 <= beta_min < beta_max, got {beta_min}, {beta_max}")
        self.beta_min, self.beta_max = beta_min, beta_max

    def _log_alpha(self, t):
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def beta(self, t):
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def alpha(self, t):
        return torch.exp(self._log_alpha(t))

    def sigma(self, t):
        return torch.sqrt(-torch.expm1(2 * self._log_alpha(t)))

    def d_alpha(self, t):
        return -0.5 * self.beta(t) * self.alpha(t)

    def d_sigma(self, t):
        a = self.alpha(t)
        return 0.5 * self.beta(t) * a**2 / self.sigma(t)

    def drift(self, t):
        return -0.5 * self.beta(t)

    def g2(self, t):
        return self.beta(t) + 0 * t

    def __repr__(self):
        return f"VPLinear(beta_min={self.beta_min}, beta_max={self.beta_max})"


class VPCosine(Schedule):
    r"""Variance preserving with :math:`\bar\alpha_t = \cos^2\!\big(\tfrac{t + s}{1 + s}\tfrac\pi2\big) / \cos^2\!\big(\tfrac{s}{1+s}\tfrac\pi2\big)` :cite:`nichol2021improved`.

    :math:`\alpha_t = \sqrt{\bar\alpha_t}` vanishes at :math:`t = 1`, so samplers start at ``t_max = 0.9946``
    (as DPM-Solver does).
    """

    name = "VP cosine"
    t_max = 0.9946

    def __init__(self, s: float = 0.008):
        if s <= 0:
            raise ValueError(f"offset s must be positive, got {s}")
        self.s = s
        self._c0 = math.cos(s / (1 + s) * math.pi / 2)

    def _phase(self, t):
        return (t + self.s) / (1 + self.s) * math.pi / 2

    def alpha(self, t):
        return torch.cos(self._phase(t)) / self._c0

    def sigma(self, t):
        return torch.sqrt((1 - self.alpha(t) ** 2).clamp(min=0.0))

    def d_alpha(self, t):
        return -torch.sin(self._phase(t)) / self._c0 * math.pi / (2 * (1 + self.s))

    def d_sigma(self, t):
        return -self.alpha(t) * self.d_alpha(t) / self.sigma(t)

    def __repr__(self):
        return f"VPCosine(s={self.s})"


class VE(Schedule):
    r"""Variance exploding: :math:`\alpha_t = 1`, :math:`\sigma_t = \sigma_{min}(\sigma_{max}/\sigma_{min})^t` :cite:`song2021scorebased`."""

    name = "VE"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0):
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self._log_ratio = math.log(sigma_max / sigma_min)

    def alpha(self, t):
        return torch.ones_like(t)

    def sigma(self, t):
        return self.sigma_min * torch.exp(t * self._log_ratio)

    def d_alpha(self, t):
        return torch.zeros_like(t)

    def d_sigma(self, t):
        return self.sigma(t) * self._log_ratio

    def __repr__(self):
        return f"VE(sigma_min={self.sigma_min}, sigma_max={self.sigma_max})"


class Linear(Schedule):
    r"""The flow-matching (rectified-flow) path :math:`\alpha_t = 1 - t`, :math:`\sigma_t = t` :cite:`lipman2023flow,liu2023flow`.

    Its conditional velocity is :math:`\dot\alpha x_0 + \dot\sigma\epsilon = \epsilon - x_0`.

    >>> Linear()(0.25)
    (tensor(0.7500, dtype=torch.float64), tensor(0.2500, dtype=torch.float64))
    """

    name = "linear (flow matching)"

    def alpha(self, t):
        return 1 - t

    def sigma(self, t):
        return t + 0 * t

    def d_alpha(self, t):
        return -torch.ones_like(t)

    def d_sigma(self, t):
        return torch.ones_like(t)

    def t_of_log_snr(self, lam, iters: int = 0):
        return torch.sigmoid(-torch.as_tensor(lam, dtype=torch.float64))


class DiscreteVP(Schedule):
    r"""DDPM's discrete schedule read as a continuous one: :math:`\alpha_{i/T} = \sqrt{\bar\alpha_i}` on the grid.

    Between grid points :math:`\log\bar\alpha` is interpolated linearly, so any sampler can run on it and
    a step between grid times uses exactly DDPM's :math:`\bar\alpha` values. ``alpha_bar`` has shape
    ``(T + 1,)`` with ``alpha_bar[0] = 1`` (:func:`ddpm_alpha_bar`). In diffusers' indexing, timestep ``k``
    is :math:`t = (k + 1)/T`.
    """

    name = "VP discrete (DDPM)"

    def __init__(self, alpha_bar: torch.Tensor | None = None):
        alpha_bar = ddpm_alpha_bar() if alpha_bar is None else torch.as_tensor(alpha_bar, dtype=torch.float64)
        if alpha_bar.dim() != 1 or alpha_bar.numel() < 2 or float(alpha_bar[0]) != 1.0:
            raise ValueError("alpha_bar must be a 1-D tensor of T + 1 values starting with 1")
        if not ((alpha_bar > 0).all() and (alpha_bar.diff() < 0).all()):
            raise ValueError("alpha_bar must be positive and strictly decreasing")
        self.alpha_bar, self.T = alpha_bar, alpha_bar.numel() - 1
        self._log = torch.log(alpha_bar)

    def _log_alpha_bar(self, t):
        pos = t.double() * self.T
        i = pos.floor().clamp(0, self.T - 1).long()
        frac = pos - i
        log = self._log.to(t.device)
        return ((1 - frac) * log[i] + frac * log[i + 1]).to(t.dtype)

    def alpha(self, t):
        return torch.exp(0.5 * self._log_alpha_bar(t))

    def sigma(self, t):
        return torch.sqrt(-torch.expm1(self._log_alpha_bar(t)))

    def __repr__(self):
        return f"DiscreteVP(T={self.T})"


def ddpm_alpha_bar(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    r"""DDPM's discrete :math:`\bar\alpha_i = \prod_{j \le i}(1 - \beta_j)` for :math:`i = 0..T`, with a leading 1 (:math:`i = 0` is the data).

    Float64, shape ``(T + 1,)``. :math:`\alpha = \sqrt{\bar\alpha}` and :math:`\sigma = \sqrt{1 - \bar\alpha}`.
    """
    if T < 1:
        raise ValueError(f"T must be at least 1, got {T}")
    betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])


def time_grid(
    schedule: Schedule, n_steps: int, t_min: float = 1e-3, t_max: float | None = None, spacing: str = "log_snr"
) -> torch.Tensor:
    r"""A decreasing grid of ``n_steps + 1`` times from ``t_max`` to ``t_min`` (float64).

    ``spacing``: ``"uniform"`` in :math:`t`, or ``"log_snr"``, uniform in :math:`\lambda_t` (DPM-Solver's choice).

    >>> time_grid(Linear(), 4, t_min=0.0, spacing="uniform")
    tensor([1.0000, 0.7500, 0.5000, 0.2500, 0.0000], dtype=torch.float64)
    """
    check_choice("spacing", spacing, SPACINGS)
    if n_steps < 1:
        raise ValueError(f"n_steps must be at least 1, got {n_steps}")
    t_max = schedule.t_max if t_max is None else t_max
    if not 0 <= t_min < t_max <= 1:
        raise ValueError(f"need 0 <= t_min < t_max <= 1, got {t_min}, {t_max}")
    if spacing == "log_snr":
        if t_min == 0:
            raise ValueError("a log-SNR grid needs t_min > 0 (lambda is infinite at t = 0)")
        ends = schedule.log_snr(torch.tensor([t_max, t_min], dtype=torch.float64))
        ts = schedule.t_of_log_snr(torch.linspace(float(ends[0]), float(ends[1]), n_steps + 1, dtype=torch.float64))
        ts[0], ts[-1] = t_max, t_min
        return ts
    return torch.linspace(t_max, t_min, n_steps + 1, dtype=torch.float64)  # "uniform"
