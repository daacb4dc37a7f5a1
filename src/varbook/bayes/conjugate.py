r"""Conjugate Gaussian updates in closed form: known-precision Normal, diagonal Normal-Gamma.

Everything is elementwise over the last dimensions (a *diagonal* model), so a tensor of
parameters of any shape is one independent conjugate model per entry. The Gamma
distribution of a precision :math:`\lambda` uses the shape and *scale* of NIW-Meta
:cite:`kim2024hierarchical`,

.. math::

    \lambda\sim\mathrm{Gamma}\big(\tfrac{n_0}2,\ \text{scale }2\gamma_0\big),\qquad
    \mathbb E\lambda=n_0\gamma_0,\qquad
    \mathbb E\log\lambda=\psi(\tfrac{n_0}2)+\log 2\gamma_0,

and a diagonal Normal-Gamma adds :math:`\mu\mid\lambda\sim\mathcal N(m_0,(l_0\lambda)^{-1})`.
The same formulas serve Bayesian linear regression and any chapter that needs a Gaussian
posterior in closed form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def _positive(name: str, value: torch.Tensor | float) -> None:
    t = torch.as_tensor(value)
    if not bool(torch.all(t > 0)):
        raise ValueError(f"{name} must be positive everywhere, got min {float(t.min()):.3g}")


def _common(*values: torch.Tensor | float) -> list[torch.Tensor]:
    """The values as tensors of one floating dtype (the widest among the tensors given)."""
    dtypes = [v.dtype for v in values if isinstance(v, torch.Tensor) and v.is_floating_point()]
    dtype = dtypes[0] if dtypes else torch.get_default_dtype()
    for d in dtypes[1:]:
        dtype = torch.promote_types(dtype, d)
    return [torch.as_tensor(v, dtype=dtype) for v in values]


def normal_posterior(
    prior_mean: torch.Tensor | float,
    prior_precision: torch.Tensor | float,
    obs_mean: torch.Tensor | float,
    obs_precision: torch.Tensor | float,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Posterior of a Gaussian mean: prior :math:`\mathcal N(m_0,1/p_0)` times a Gaussian factor.

    .. math::

        p=p_0+a,\qquad m=\frac{p_0m_0+a\bar m}{p},

    where the factor is :math:`\exp(-\tfrac a2(\theta-\bar m)^2)` (a Gaussian likelihood of
    precision :math:`a` centred at :math:`\bar m`, e.g. :math:`n` observations of precision
    :math:`\tau` with mean :math:`\bar x`: :math:`a=n\tau`). Returns ``(mean, precision)``,
    elementwise and broadcast.

    >>> normal_posterior(0.0, 1.0, 2.0, 3.0)
    (tensor(1.5000), tensor(4.))
    """
    m0, p0, m_bar, a = _common(prior_mean, prior_precision, obs_mean, obs_precision)
    _positive("prior_precision", p0)
    if not bool(torch.all(a >= 0)):
        raise ValueError("obs_precision must be non-negative")
    precision = p0 + a
    mean = (p0 * m0 + a * m_bar) / precision
    return mean, precision


def niw_local_posterior(
    m_bar: torch.Tensor,
    a_bar: torch.Tensor,
    m0: torch.Tensor,
    gamma0: torch.Tensor,
    n0: torch.Tensor | float,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""NIW-Meta's one-time local solution :cite:`kim2024hierarchical` (diagonal case).

    With the task's negative log-likelihood approximated by
    :math:`\tfrac12\sum_k\bar A_k(\theta_k-\bar m_k)^2` and the prior precision's mean
    :math:`n_0\gamma_0`, the Gaussian :math:`q^*=\mathcal N(m^*,\mathrm{diag}(1/\gamma^*))` with

    .. math::

        \gamma^*=\bar A+n_0\gamma_0,\qquad m^*=\frac{\bar A\bar m+n_0\gamma_0m_0}{\gamma^*}

    minimises :math:`\tfrac12\sum_k\bar A_k\big((m_k-\bar m_k)^2+1/\gamma_k\big)+g` (``g`` from
    :func:`expected_kl`). It is :func:`normal_posterior` with prior precision
    :math:`n_0\gamma_0`. Returns ``(m_star, gamma_star)``; gradients flow to ``m0``, ``gamma0``
    and ``n0`` (detach ``m_bar`` and ``a_bar`` before the call).
    """
    _positive("n0", n0)
    _positive("gamma0", gamma0)
    return normal_posterior(m0, torch.as_tensor(n0) * gamma0, m_bar, a_bar)


def expected_kl(
    m: torch.Tensor,
    gamma: torch.Tensor,
    m0: torch.Tensor,
    gamma0: torch.Tensor,
    n0: torch.Tensor | float,
) -> torch.Tensor:
    r"""The expected KL term :math:`g` of NIW-Meta :cite:`kim2024hierarchical`, summed over the last dim.

    For :math:`q=\mathcal N(m,1/\gamma)` and :math:`p=\mathcal N(m_0,1/\lambda)` with
    :math:`\lambda\sim\mathrm{Gamma}(n_0/2,\text{scale }2\gamma_0)` (the Normal-Gamma with
    :math:`l_0\to\infty`),

    .. math::

        g=\mathbb E_\lambda\,\mathrm{KL}(q\,\|\,p)=\tfrac12\sum_k\Big[\log\gamma_k-\log\gamma_{0k}
        -\psi(\tfrac{n_0}2)-\log2+\frac{n_0\gamma_{0k}}{\gamma_k}
        +n_0\gamma_{0k}(m_k-m_{0k})^2-1\Big].

    >>> m, g = torch.zeros(3), torch.ones(3)
    >>> float(expected_kl(m, g, m, g, 2.0)) > 0  # E log λ < log E λ (Jensen)
    True
    """
    _positive("gamma", gamma)
    _positive("gamma0", gamma0)
    _positive("n0", n0)
    n0 = torch.as_tensor(n0, dtype=gamma.dtype, device=gamma.device)
    prec = n0 * gamma0
    terms = (
        gamma.log()
        - gamma0.log()
        - torch.special.digamma(n0 / 2)
        - math.log(2.0)
        + prec / gamma
        + prec * (m - m0) ** 2
        - 1.0
    )
    return 0.5 * terms.sum(-1)


def gamma_kl(
    n_q: torch.Tensor | float, gamma_q: torch.Tensor, n_p: torch.Tensor | float, gamma_p: torch.Tensor | float
) -> torch.Tensor:
    r"""Elementwise :math:`\mathrm{KL}(\mathrm{Gamma}(n_q/2,\text{scale }2\gamma_q)\,\|\,\mathrm{Gamma}(n_p/2,\text{scale }2\gamma_p))`.

    The hyperprior term of NIW-Meta's objective for the precisions :cite:`kim2024hierarchical`
    (``torch.distributions``' closed form, in this module's shape and scale).
    """
    for name, v in (("n_q", n_q), ("gamma_q", gamma_q), ("n_p", n_p), ("gamma_p", gamma_p)):
        _positive(name, v)
    gamma_q = torch.as_tensor(gamma_q)
    dtype, device = gamma_q.dtype, gamma_q.device
    q = torch.distributions.Gamma(torch.as_tensor(n_q, dtype=dtype, device=device) / 2, 1 / (2 * gamma_q))
    p = torch.distributions.Gamma(
        torch.as_tensor(n_p, dtype=dtype, device=device) / 2,
        1 / (2 * torch.as_tensor(gamma_p, dtype=dtype, device=device)),
    )
    return torch.distributions.kl_divergence(q, p)


@dataclass(frozen=True)
class NormalGamma:
    r"""A diagonal Normal-Gamma: :math:`\lambda\sim\mathrm{Gamma}(n/2,\text{scale }2\gamma)`,
    :math:`\mu\mid\lambda\sim\mathcal N(m,(\ell\lambda)^{-1})`, elementwise.

    ``n`` and ``ell`` broadcast against ``m`` and ``gamma``.
    """

    m: torch.Tensor
    ell: torch.Tensor | float
    n: torch.Tensor | float
    gamma: torch.Tensor

    def __post_init__(self) -> None:
        for name in ("ell", "n", "gamma"):
            _positive(name, getattr(self, name))

    @property
    def rate(self) -> torch.Tensor:
        """The Gamma rate :math:`1/(2\\gamma)` (shape ``n/2``)."""
        return 1.0 / (2.0 * self.gamma)

    def update(self, x: torch.Tensor) -> NormalGamma:
        r"""The posterior after observations ``x`` of shape ``(N, *shape)``, :math:`x_j\sim\mathcal N(\mu,1/\lambda)`.

        .. math::

            \ell'=\ell+N,\quad m'=\frac{\ell m+N\bar x}{\ell'},\quad n'=n+N,\quad
            \frac1{2\gamma'}=\frac1{2\gamma}+\frac12\sum_j(x_j-\bar x)^2
            +\frac{\ell N(\bar x-m)^2}{2\ell'} .
        """
        if x.dim() < 1 or x.shape[0] < 1:
            raise ValueError("update needs observations of shape (N, ...) with N >= 1")
        n_obs = x.shape[0]
        x_bar = x.mean(0)
        l_new = torch.as_tensor(self.ell) + n_obs
        m_new = (torch.as_tensor(self.ell) * self.m + n_obs * x_bar) / l_new
        ss = ((x - x_bar) ** 2).sum(0)
        rate = self.rate + 0.5 * ss + torch.as_tensor(self.ell) * n_obs * (x_bar - self.m) ** 2 / (2 * l_new)
        return NormalGamma(m_new, l_new, torch.as_tensor(self.n) + n_obs, 1.0 / (2.0 * rate))

    def kl(self, other: NormalGamma) -> torch.Tensor:
        r"""KL(self ‖ other), summed over all entries.

        .. math::

            \mathrm{KL}=\mathrm{KL}_\Gamma+\tfrac12\Big(\frac{\ell_p}{\ell_q}-1-\log\frac{\ell_p}{\ell_q}
            +\ell_p\,\mathbb E_q[\lambda](m_q-m_p)^2\Big).
        """
        kl_g = gamma_kl(self.n, self.gamma, other.n, other.gamma)
        ratio = torch.as_tensor(other.ell) / torch.as_tensor(self.ell)
        e_lam = torch.as_tensor(self.n) * self.gamma
        kl_n = 0.5 * (ratio - 1 - ratio.log() + torch.as_tensor(other.ell) * e_lam * (self.m - other.m) ** 2)
        return (kl_g + kl_n).sum()


__all__ = ["NormalGamma", "expected_kl", "gamma_kl", "niw_local_posterior", "normal_posterior"]
