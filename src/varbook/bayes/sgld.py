r"""Stochastic gradient Langevin dynamics :cite:`welling2011bayesian`, and a Gaussian fitted to its samples.

Textbook SGLD with step size :math:`\epsilon` draws

.. math::

    \theta_{t+1}=\theta_t+\frac\epsilon2\nabla_\theta\log p(\theta_t)+\sqrt\epsilon\,\xi_t,
    \qquad \xi_t\sim\mathcal N(0,I),

where :math:`\log p` may be a minibatch estimate (the likelihood of :math:`n` of :math:`N` data
scaled by :math:`N/n`, plus the log prior). For small :math:`\epsilon` the iterates sample
:math:`p` approximately. The sampler here is vectorised: ``theta0`` may hold many independent
chains (a leading batch dimension), as long as ``log_prob`` sums independent terms.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from varbook import runtime


def sgld(
    log_prob: Callable[[torch.Tensor], torch.Tensor],
    theta0: torch.Tensor,
    steps: int,
    step_size: float | torch.Tensor,
    *,
    burn_in: int = 0,
    thin: int = 1,
    generator: torch.Generator | None = None,
    keep_graph: bool = False,
) -> torch.Tensor:
    r"""Run ``steps`` SGLD iterations from ``theta0``; return the kept iterates, shape ``(n_kept, *theta0.shape)``.

    Iterates :math:`\theta_1,\dots,\theta_{\rm steps}` are numbered from 1; those after the first
    ``burn_in`` are kept, every ``thin``-th of them (so ``n_kept = ceil((steps - burn_in) / thin)``).
    ``log_prob(theta)`` returns log densities (any shape; they are summed). ``step_size`` is
    :math:`\epsilon` (a float, or a tensor broadcast against ``theta0`` for a diagonal
    preconditioner). Noise is drawn from ``generator``.

    By default the samples carry no autograd history (each step differentiates a fresh leaf).
    ``keep_graph=True`` differentiates through every step instead (``create_graph``), so the
    samples depend on ``theta0`` and on whatever ``log_prob`` closes over: the whole chain's
    graph stays in memory (the mistake NIW-Meta avoids; a negative control).

    A standard normal target: mean 0 and variance 1 (up to a bias of order :math:`\epsilon`).

    >>> g = torch.Generator().manual_seed(0)
    >>> s = sgld(lambda t: -0.5 * t**2, torch.zeros(2000), 600, 0.05, burn_in=100, generator=g)
    >>> s.shape
    torch.Size([500, 2000])
    >>> bool(s.mean().abs() < 0.05), round(float(s.var()), 1)
    (True, 1.0)
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"sgld needs an integer number of steps >= 1, got {steps!r}")
    if not isinstance(burn_in, int) or not 0 <= burn_in < steps:
        raise ValueError(f"burn_in must be an integer in [0, steps), got {burn_in!r} with steps={steps}")
    if not isinstance(thin, int) or thin < 1:
        raise ValueError(f"thin must be a positive integer, got {thin!r}")
    if not torch.is_tensor(theta0) or not theta0.is_floating_point():
        raise TypeError("theta0 must be a floating-point tensor")
    eps = torch.as_tensor(step_size, dtype=theta0.dtype, device=theta0.device)
    if not bool(torch.all(eps > 0)):
        raise ValueError("the step size must be positive")
    theta = theta0 if keep_graph else theta0.detach()
    if keep_graph and not theta.requires_grad:
        theta = theta.detach().requires_grad_(True)
    kept = []
    for t in range(1, steps + 1):
        leaf = theta if keep_graph else theta.detach().requires_grad_(True)
        with torch.enable_grad():
            lp = log_prob(leaf).sum()
            runtime.check_finite(lp, t, "SGLD log density")
            (grad,) = torch.autograd.grad(lp, leaf, create_graph=keep_graph)
        noise = runtime.randn(theta.shape, generator=generator, device=theta.device, dtype=theta.dtype)
        theta = leaf + 0.5 * eps * grad + eps.sqrt() * noise
        if not keep_graph:
            theta = theta.detach()
        if t > burn_in and (t - burn_in - 1) % thin == 0:
            kept.append(theta)
    return torch.stack(kept)


def gaussian_fit(
    samples: torch.Tensor,
    a_min: float = 1e-4,
    a_max: float = 1e3,
    fallback_precision: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Mean and clipped inverse variance of ``samples`` along dim 0: :math:`(\bar m,\bar A)`.

    :math:`\bar m=\frac1S\sum_s\theta_s` and
    :math:`\bar A=\mathrm{clip}\big(1/\widehat{\mathrm{Var}}(\theta),a_{\min},a_{\max}\big)` (unbiased
    variance), the quadratic approximation of a task's negative log-likelihood in NIW-Meta
    :cite:`kim2024hierarchical`. With one sample the variance is undefined and :math:`\bar A` is
    ``fallback_precision`` (default ``a_max``) everywhere.

    >>> m, a = gaussian_fit(torch.tensor([[0.0, 1.0], [2.0, 1.0]]))
    >>> m.tolist(), a.tolist()
    ([1.0, 1.0], [0.5, 1000.0])
    """
    if samples.dim() < 1 or samples.shape[0] < 1:
        raise ValueError("gaussian_fit needs samples of shape (S, ...) with S >= 1")
    if not 0 < a_min <= a_max:
        raise ValueError(f"need 0 < a_min <= a_max, got {a_min} and {a_max}")
    mean = samples.mean(0)
    if samples.shape[0] < 2:
        value = a_max if fallback_precision is None else fallback_precision
        return mean, torch.full_like(mean, float(value))
    return mean, (1.0 / samples.var(0)).clamp(a_min, a_max)  # 1 / 0 = inf clips to a_max


__all__ = ["gaussian_fit", "sgld"]
