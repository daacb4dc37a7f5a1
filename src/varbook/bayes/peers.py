r"""Our mean-field layer side by side with bayesian-torch's ``LinearReparameterization``.

bayesian-torch samples the weights themselves; :class:`~varbook.bayes.MeanFieldLinear` samples the
pre-activations (local reparameterisation). Given the same means and raw scales both must have the same
output distribution and the same KL to the prior, up to two conventions of bayesian-torch: its argument
``prior_variance`` is used as a standard deviation, and its KL is the *mean* over the entries of each
tensor, not the sum. The peer comes from the ``peers`` extra (installed with ``--no-deps``); a reader
without it gets an :class:`ImportError` that names the package.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from ..vi.kl import gaussian_kl
from .layers import MeanFieldLinear


def _linear_reparameterization():
    try:
        from bayesian_torch.layers import LinearReparameterization
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the bayesian-torch comparison needs the package bayesian-torch (pip install --no-deps bayesian-torch)"
        ) from err
    return LinearReparameterization


def bayesian_torch_linear(
    seed: int = 0,
    in_features: int = 20,
    out_features: int = 5,
    prior_std: float = 0.1,
    init_sigma: float = 0.05,
    n_samples: int = 20000,
) -> dict[str, float]:
    r"""Compare one :class:`~varbook.bayes.MeanFieldLinear` with a ``LinearReparameterization`` holding the same
    means and raw scales :math:`\rho`, on one random input.

    Returns our KL (summed over the weights), our KL averaged over each tensor's entries as bayesian-torch
    does, bayesian-torch's KL, and, over ``n_samples`` outputs of bayesian-torch's layer, the largest
    :math:`|\text{mean difference}|/\text{s.e.}` and relative variance difference against our closed-form
    moments :math:`x\mu^\top + b_\mu` and :math:`x^2(\sigma^2)^\top + \sigma_b^2`. The layers and the input
    are drawn after ``torch.manual_seed(seed)``, without moving the global generator.
    """
    LinearReparameterization = _linear_reparameterization()
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        ours = MeanFieldLinear(in_features, out_features, prior_std=prior_std, init_sigma=init_sigma)
        theirs = LinearReparameterization(in_features, out_features, prior_mean=0.0, prior_variance=prior_std)
        theirs.mu_weight.copy_(ours.mu)
        theirs.rho_weight.copy_(ours.rho)
        theirs.mu_bias.copy_(ours.bias_mu)
        theirs.rho_bias.copy_(ours.bias_rho)
        x = torch.randn(1, in_features)
        samples = torch.stack([theirs(x)[0][0] for _ in range(n_samples)])
        _, kl_theirs = theirs(x)
        assert ours.bias_mu is not None and ours.bias_rho is not None
        mean_ours = ours.mu @ x[0] + ours.bias_mu
        var_ours = ours.sigma**2 @ x[0] ** 2 + F.softplus(ours.bias_rho) ** 2
        z_mean = (samples.mean(0) - mean_ours) / (samples.std(0) / n_samples**0.5)
        log_prior_var = 2 * math.log(prior_std)
        kl_w = gaussian_kl(ours.mu.unsqueeze(-1), 2 * ours.sigma.log().unsqueeze(-1), 0.0, log_prior_var)
        kl_b = gaussian_kl(
            ours.bias_mu.unsqueeze(-1), 2 * F.softplus(ours.bias_rho).log().unsqueeze(-1), 0.0, log_prior_var
        )
        return {
            "KL ours (sum over weights)": float(ours.kl()),
            "KL ours, averaged per tensor": float(kl_w.mean() + kl_b.mean()),
            "KL bayesian-torch": float(kl_theirs),
            "max |mean difference|/s.e.": float(z_mean.abs().max()),
            "max relative variance difference": float((samples.var(0) / var_ours - 1).abs().max()),
        }
