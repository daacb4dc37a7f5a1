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
