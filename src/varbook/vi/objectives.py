r"""Variational objectives written as programs for :func:`varbook.vi.programmable.estimate`.

With :math:`w(z)=\log p(x,z)-\log q(z)`:

* ELBO :math:`\mathbb E_q[w(z)]`;
* IWELBO(K) :math:`\mathbb E\big[\log\frac1K\sum_k e^{w(z_k)}\big]` :cite:`burda2016importance`;
* for a marginal family :math:`q(z)=\int q(u)q(z\mid u)\,du`, the intractable :math:`\log q(z)` is
  replaced by :math:`\log\hat q_m(z)=\log\frac1m\big[q(z\mid u_0)+\sum_{i=1}^{m-1}q(z\mid u_i)\big]`,
  :math:`u_i\sim q(u)`, with :math:`u_0` the draw that generated :math:`z`: HVI (:math:`m=1`),
  IWHVI(m), and DIWHVI(n, m) with an outer IWELBO over :math:`n` draws :cite:`sobolev2019importance`;
* VIMCO(K): the IWELBO with multi-sample REINFORCE and leave-one-out baselines :cite:`mnih2016variational`.

Every factory returns a program ``program(t, *args)``; ``guide(*args)`` returns the
variational distribution (a torch ``Distribution`` whose batch shape is that of the data) and
``log_joint(z, *args)`` the model's :math:`\log p(x,z)` with the same batch shape. The program's
value has shape ``(particles, *batch)``: ``particles`` independent estimates.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..estimators.baselines import leave_one_out
from .programmable import Strategy


def log_mean_exp(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """:math:`\\log\\frac1n\\sum_i e^{x_i}` along ``dim``, computed stably.

    >>> log_mean_exp(torch.tensor([1.0, 3.0]).log())  # log of the mean of 1 and 3
    tensor(0.6931)
    >>> log_mean_exp(torch.tensor([1000.0, 1000.0]))  # no overflow
    tensor(1000.)
    """
    return torch.logsumexp(x, dim) - math.log(x.shape[dim])


def _check_count(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def elbo(log_joint: Callable, guide: Callable, strategy: str | Strategy = "reparam", particles: int = 1) -> Callable:
    """The ELBO program: one estimate :math:`w(z)`, :math:`z\\sim q`, per particle."""
    _check_count("particles", particles)

    def program(t, *args):
        q = guide(*args)
        z = t.sample("z", q.expand((particles, *q.batch_shape)), strategy)
        return log_joint(z, *args) - q.log_prob(z)

    program.__name__ = "elbo"
    return program


def iwelbo(
    log_joint: Callable, guide: Callable, K: int, strategy: str | Strategy = "reparam", particles: int = 1
) -> Callable:
    """The IWELBO(K) program; K = 1 is the ELBO."""
    _check_count("K", K)
    _check_count("particles", particles)

    def program(t, *args):
        q = guide(*args)
        z = t.sample("z", q.expand((K, particles, *q.batch_shape)), strategy)
        return log_mean_exp(log_joint(z, *args) - q.log_prob(z), 0)

    program.__name__ = f"iwelbo({K})"
    return program


def marginal_sir(
    log_joint: Callable,
    prior_u: Callable,
    conditional: Callable,
    n: int = 1,
    m: int = 1,
    strategy_u: str | Strategy = "reparam",
    strategy_z: str | Strategy = "reparam",
    particles: int = 1,
    include_u0: bool = True,
) -> Callable:
    """HVI (n = m = 1), IWHVI(m) (n = 1) and DIWHVI(n, m) for a marginal family :math:`q(z)=\\int q(u)q(z\\mid u)du`.

    ``prior_u(*args)`` is :math:`q(u)` (also the reverse proposal) and ``conditional(u, *args)``
    is :math:`q(z\\mid u)`, whose batch shape follows that of ``u``. ``include_u0=False`` is a
    deliberate mistake, for negative controls: the inner average uses ``m`` fresh draws of
    :math:`u` and leaves out the :math:`u_0` that generated :math:`z`, an estimate of
    :math:`\\log q(z)` biased low, so the objective is no longer a lower bound.
    """
    _check_count("n", n)
    _check_count("m", m)
    _check_count("particles", particles)

    def program(t, *args):
        pu = prior_u(*args)
        u0 = t.sample("u0", pu.expand((n, particles, *pu.batch_shape)), strategy_u)
        qz = conditional(u0, *args)
        z = t.sample("z", qz, strategy_z)
        log_q = qz.log_prob(z)  # (n, particles, *batch)
        if not include_u0:  # the mistake: m fresh draws, u0 left out
            u_new = t.sample("u_rest", pu.expand((m, n, particles, *pu.batch_shape)), strategy_u)
            log_q = log_mean_exp(conditional(u_new, *args).log_prob(z.unsqueeze(0)), 0)
        elif m > 1:
            u_rest = t.sample("u_rest", pu.expand((m - 1, n, particles, *pu.batch_shape)), strategy_u)
            log_q_rest = conditional(u_rest, *args).log_prob(z.unsqueeze(0))
            log_q = log_mean_exp(torch.cat([log_q.unsqueeze(0), log_q_rest]), 0)
        return log_mean_exp(log_joint(z, *args) - log_q, 0)

    program.__name__ = "hvi" if n == m == 1 else (f"iwhvi({m})" if n == 1 else f"diwhvi({n},{m})")
    return program


def vimco(log_joint: Callable, guide: Callable, K: int, particles: int = 1) -> Callable:
    r"""The IWELBO(K) with the VIMCO estimator :cite:`mnih2016variational`.

    The samples carry no pathwise gradient; each gets the learning signal
    :math:`\hat L-\hat L_{-k}`, where :math:`\hat L_{-k}` replaces :math:`w_k` by the mean of the
    other log-weights (a leave-one-out baseline).
    """
    if not isinstance(K, int) or K < 2:
        raise ValueError(f"VIMCO needs K >= 2 samples, got {K!r}")
    _check_count("particles", particles)

    def program(t, *args):
        q = guide(*args)
        z = t.sample("z", q.expand((K, particles, *q.batch_shape)), "none")
        log_q = q.log_prob(z)
        w = log_joint(z, *args) - log_q
        value = log_mean_exp(w, 0)
        w_d = w.detach()
        others = leave_one_out(w_d, dim=0)  # mean of the other log-weights
        loo = torch.stack([log_mean_exp(torch.cat([w_d[:k], others[k : k + 1], w_d[k + 1 :]]), 0) for k in range(K)])
        signal = value.detach() - loo
        return value + (signal * (log_q - log_q.detach())).sum(0)

    program.__name__ = f"vimco({K})"
    return program
