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
**DPS** runs the ancestral sampler and pushes each step down the gradient of
:math:`\|y - A\hat x_0(x_t)\|`, which back-propagates through the denoiser.
"""

from __future__ import annotations

import torch

from ..imaging.operators import LinearOperator
from ..runtime import progress
from .field import Field
from .samplers import ddim_step
from .schedules import expand

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
    """The DDPM indices a run of ``n_steps`` visits: multiples of ``T // n_steps`` below ``T``, in the given order."""
    if not 1 <= n_steps <= T:
        raise ValueError(f"n_steps must lie in [1, {T}], got {n_steps}")
    k = torch.arange(0, T, T // n_steps)[:n_steps]
    if order == "descending":
        return k.flip(0)
    if order == "ascending":
        return k
    if order == "random":
        return k[torch.randperm(len(k), generator=generator)]
    raise ValueError(f"unknown time order {order!r}: use one of {', '.join(ORDERS)}")


def red_diff_weight(alpha: torch.Tensor, sigma: torch.Tensor, weighting: str = "linear") -> torch.Tensor:
    r"""The weight :math:`w_t` as a function of :math:`\sigma_t/\alpha_t = \mathrm{SNR}^{-1/2}`."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}: use one of {', '.join(WEIGHTINGS)}")
    return WEIGHTINGS[weighting](sigma / alpha)


def red_diff_gradient(
    mu: torch.Tensor, y: torch.Tensor, op: LinearOperator, eps_hat: torch.Tensor, eps: torch.Tensor, lam: float, weight
) -> torch.Tensor:
    r"""Gradient of the RED-diff surrogate, summed over images, in closed form (no autograd through the denoiser):
    :math:`-A^\top(y - A\mu)/m + \lambda\,w_t\,(\hat\epsilon - \epsilon)/n` with :math:`m` measurements and :math:`n` pixels per image."""
    return -op.T(y - op(mu)) / op.n_out + lam * expand(weight, mu) * (eps_hat - eps) / mu.shape[1]


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
    show_progress: bool = False,
) -> torch.Tensor:
    r"""Restore images from measurements ``y (batch, m)``: Adam (betas 0.9, 0.99) on :math:`\mu`, started at :math:`A^\dagger y`.

    ``field`` is the prior's denoiser (only :math:`\hat\epsilon` is used, without gradients); its schedule
    gives :math:`\alpha_t, \sigma_t` at :math:`t = (k + 1)/T`.
    """
    if lam < 0 or lr <= 0:
        raise ValueError(f"need lam >= 0 and lr > 0, got {lam}, {lr}")
    sch = field.schedule
    ks = step_indices(n_steps, T, order, generator)
    mu = op.pseudo_inverse(y).detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([mu], lr=lr, betas=(0.9, 0.99))
    for k in progress(ks, desc="RED-diff", disable=not show_progress):
        t = torch.tensor((int(k) + 1) / T, dtype=torch.float64)
        a, s = sch.alpha(t), sch.sigma(t)
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
        with torch.no_grad():
            eps_hat = field.eps(a.to(mu) * mu + s.to(mu) * eps, t)
            mu.grad = red_diff_gradient(mu, y, op, eps_hat, eps, lam, red_diff_weight(a, s, weighting).to(mu))
        opt.step()
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
    show_progress: bool = False,
) -> torch.Tensor:
    r"""Diffusion posterior sampling: a DDIM(:math:`\eta`) step from :math:`(\hat\epsilon, \hat x_0)`, then
    :math:`x \leftarrow x - \zeta\,\nabla_{x_t}\|y - A\hat x_0(x_t)\|` (one backward pass through the denoiser per step).

    ``x`` is the starting noise at the first time (drawn from :math:`\mathcal N(0, \sigma^2 I)` when omitted); the last
    step lands on :math:`t = 0`, where the sample is :math:`\hat x_0`.
    """
    if zeta < 0 or not 0 <= eta <= 1:
        raise ValueError(f"need zeta >= 0 and eta in [0, 1], got {zeta}, {eta}")
    sch = field.schedule
    ks = step_indices(n_steps, T, "descending")
    ts = torch.cat([(ks.double() + 1) / T, torch.zeros(1, dtype=torch.float64)])
    if x is None:
        x = float(sch.sigma(ts[0])) * torch.randn((y.shape[0], op.n_in), generator=generator, dtype=y.dtype).to(
            y.device
        )
    for t, s in progress(list(zip(ts[:-1], ts[1:], strict=True)), desc="DPS", disable=not show_progress):
        x = x.detach().requires_grad_(True)
        eps, x0 = field.eps_x0(x, t)
        (grad,) = torch.autograd.grad((y - op(x0)).flatten(1).norm(dim=1).sum(), x)
        with torch.no_grad():
            x = ddim_step(field, x, t, s, eps, x0, eta, generator) - zeta * grad
    return x.detach()


def noisy_measurements(op: LinearOperator, x: torch.Tensor, noise_std: float, generator: torch.Generator | None = None):
    r""":math:`y = Ax + \sigma_y v`, :math:`v \sim \mathcal N(0, I)`."""
    if noise_std < 0:
        raise ValueError(f"noise_std must be non-negative, got {noise_std}")
    y = op(x)
    return y + noise_std * torch.randn(y.shape, generator=generator, dtype=y.dtype).to(y.device)


__all__ = ["WEIGHTINGS", "ORDERS", "step_indices", "red_diff_weight", "red_diff_gradient", "red_diff", "dps",
           "noisy_measurements"]  # fmt: skip
