r"""Kullback-Leibler divergences in closed form.

For diagonal Gaussians,

.. math:: \mathrm{KL}\big(\mathcal N(\mu_1,\sigma_1^2)\,\|\,\mathcal N(\mu_2,\sigma_2^2)\big)
   =\tfrac12\sum_j\Big[\log\frac{\sigma_{2j}^2}{\sigma_{1j}^2}+\frac{\sigma_{1j}^2+(\mu_{1j}-\mu_{2j})^2}{\sigma_{2j}^2}-1\Big].
"""

from __future__ import annotations

import torch


def gaussian_kl(
    mu1: torch.Tensor, log_var1: torch.Tensor, mu2: torch.Tensor | float = 0.0, log_var2: torch.Tensor | float = 0.0
) -> torch.Tensor:
    r"""KL between diagonal Gaussians given means and log-variances, summed over the last dimension.

    :math:`\mathrm{KL}(\mathcal N(1, 1)\,\|\,\mathcal N(0, 1)) = \tfrac12` and
    :math:`\mathrm{KL}(\mathcal N(0, 1)\,\|\,\mathcal N(0, e^2)) = \tfrac12(2 + e^{-2} - 1)`:

    >>> gaussian_kl(torch.tensor([1.0]), torch.tensor([0.0]))
    tensor(0.5000)
    >>> gaussian_kl(torch.tensor([0.0]), torch.tensor([0.0]), 0.0, 2.0)
    tensor(0.5677)
    """
    mu2 = torch.as_tensor(mu2, dtype=mu1.dtype, device=mu1.device)
    log_var2 = torch.as_tensor(log_var2, dtype=mu1.dtype, device=mu1.device)
    return 0.5 * (log_var2 - log_var1 + (log_var1.exp() + (mu1 - mu2) ** 2) / log_var2.exp() - 1).sum(-1)


def gaussian_kl_standard(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathrm{KL}(\mathcal N(\mu,\mathrm{diag}\,e^{\log\sigma^2})\,\|\,\mathcal N(0,I))=\frac12\sum_j(\mu_j^2+\sigma_j^2-\log\sigma_j^2-1)`.

    It is :func:`gaussian_kl` against the standard normal:

    >>> mu, log_var = torch.tensor([0.5, -1.0]), torch.tensor([0.2, -0.3])
    >>> gaussian_kl_standard(mu, log_var), gaussian_kl(mu, log_var)
    (tensor(0.6561), tensor(0.6561))
    """
    return 0.5 * (mu**2 + log_var.exp() - log_var - 1).sum(-1)


def inverse_gamma_kl(
    a1: torch.Tensor | float,
    b1: torch.Tensor | float,
    a2: torch.Tensor | float,
    b2: torch.Tensor | float,
) -> torch.Tensor:
    r""":math:`\mathrm{KL}(\mathrm{InvGamma}(a_1,b_1)\,\|\,\mathrm{InvGamma}(a_2,b_2))` (shapes :math:`a`, scales :math:`b`).

    The map :math:`\sigma^2\mapsto1/\sigma^2` sends both to Gamma laws with rates :math:`b`, and a
    KL is unchanged by a bijection, so it is the Gamma KL :cite:`lee2022scale`:

    .. math:: (a_1-a_2)\psi(a_1)-\ln\Gamma(a_1)+\ln\Gamma(a_2)+a_2\ln\frac{b_1}{b_2}+a_1\frac{b_2-b_1}{b_1}.

    Elementwise (broadcast); zero for equal arguments:

    >>> inverse_gamma_kl(2.0, 2.0, 2.0, 2.0)
    tensor(0.)
    """
    ts = [torch.as_tensor(v) for v in (a1, b1, a2, b2)]
    ts = [t.to(torch.result_type(t, 1.0)) for t in ts]
    p, s, p2, s2 = torch.broadcast_tensors(*ts)
    if not bool((torch.stack([p, s, p2, s2]) > 0).all()):
        raise ValueError("the shapes and scales of inverse-gamma laws must be positive (and not NaN)")
    kl = (p - p2) * torch.digamma(p) - torch.lgamma(p) + torch.lgamma(p2)
    return kl + p2 * (s.log() - s2.log()) + p * (s2 - s) / s
