r"""Mean-field Gaussian layers with the local reparameterisation trick and a sparsity mask :cite:`kingma2015variational,li2024training`.

Each weight has :math:`q(w_j)=\mathcal N(\mu_j,\sigma_j^2)`, :math:`\sigma=\mathrm{softplus}(\rho)`, or is
exactly 0 where the boolean ``mask`` is off. Instead of sampling weights, the layer samples its
pre-activations (local reparameterisation): for a linear layer

.. math:: b = x\mu^\top + \sqrt{x^2(\sigma^2)^\top + 10^{-8}}\;\epsilon,\qquad \epsilon\sim\mathcal N(0,I),

which has the same distribution per example and lower variance. The KL to the prior
:math:`\mathcal N(0,s^2)` is summed over active weights only (plus the dense bias).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ..runtime import randn, randn_like
from ..vi.kl import gaussian_kl


def inverse_softplus(x: torch.Tensor | float) -> torch.Tensor:
    r""":math:`\rho = \log(e^{\sigma} - 1)`, the parameter whose softplus is :math:`\sigma > 0`.

    >>> F.softplus(inverse_softplus(0.5))
    tensor(0.5000)
    """
    x = torch.as_tensor(x, dtype=torch.get_default_dtype())
    return x + torch.log(-torch.expm1(-x))


class MeanField(nn.Module):
    r"""Shared parameters and KL of mean-field layers; subclasses define the linear map ``_map(x, w, b)``.

    The base class of :class:`MeanFieldLinear` and :class:`MeanFieldConv2d`, and the type that
    :func:`mean_field_layers` collects. Pre-activation noise is drawn from ``generator`` (the argument
    of :meth:`forward`, else the attribute ``self.generator``, which :func:`sampling` sets; ``None``:
    torch's global generator).

    Initialisation: :math:`\mu_j\sim\mathcal N(0, 1/\text{fan-in})`; :math:`\sigma_j` is ``init_sigma`` for every
    weight, or with ``init_sigma_std > 0`` a draw :math:`|\mathcal N(m, s^2)|` per weight (``init_sigma`` :math:`m`,
    ``init_sigma_std`` :math:`s`), as in the official code of :cite:`li2024training` (:math:`m=6\cdot10^{-4}`,
    :math:`s=5\cdot10^{-4}`); both are drawn from the constructor's ``generator`` (``None``: torch's global one).
    With ``deterministic = True`` the layer returns the mean path only (a non-Bayesian baseline).
    """

    mask: torch.Tensor  # a boolean buffer with the shape of the weights: True where a weight is active

    def __init__(
        self,
        weight_shape: tuple[int, ...],
        fan_in: int,
        out: int,
        prior_std: float,
        init_sigma: float,
        bias: bool,
        init_sigma_std: float = 0.0,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if prior_std <= 0 or init_sigma <= 0 or init_sigma_std < 0:
            raise ValueError("prior_std and init_sigma must be positive, init_sigma_std non-negative")
        self.prior_std = prior_std
        self.mu = nn.Parameter(randn(weight_shape, generator=generator) / math.sqrt(fan_in))
        # sigma_j = |N(init_sigma, init_sigma_std^2)| per weight (the official code's draw), or one constant
        sigma0 = torch.full(weight_shape, float(init_sigma))
        if init_sigma_std > 0:
            sigma0 = (sigma0 + init_sigma_std * randn(weight_shape, generator=generator)).abs().clamp_min(1e-8)
        self.rho = nn.Parameter(inverse_softplus(sigma0))
        self.bias_mu = nn.Parameter(torch.zeros(out)) if bias else None
        self.bias_rho = nn.Parameter(torch.full((out,), float(inverse_softplus(init_sigma)))) if bias else None
        self.register_buffer("mask", torch.ones(weight_shape, dtype=torch.bool))
        self.force_sample = False
        self.keep_dense_grad = False
        self.deterministic = False  # True: the layer uses its mean weights only (a non-Bayesian baseline)
        self.weight_mean: torch.Tensor | None = None  # the masked mean of the last forward pass
        self.generator: torch.Generator | None = None

    @property
    def sigma(self) -> torch.Tensor:
        """The weights' standard deviations, exactly 0 where the mask is off."""
        return F.softplus(self.rho) * self.mask

    def active(self) -> int:
        return int(self.mask.sum())

    def kl(self) -> torch.Tensor:
        """:math:`\\sum_{j\\in\\gamma}\\mathrm{KL}(\\mathcal N(\\mu_j,\\sigma_j^2)\\|\\mathcal N(0,s^2))` plus the bias term."""
        log_prior_var = 2 * math.log(self.prior_std)
        sigma = F.softplus(self.rho)
        per_weight = gaussian_kl(self.mu.unsqueeze(-1), (2 * sigma.log()).unsqueeze(-1), 0.0, log_prior_var)
        total = (per_weight * self.mask).sum()
        if self.bias_mu is not None and self.bias_rho is not None:
            total = total + gaussian_kl(self.bias_mu, 2 * F.softplus(self.bias_rho).log(), 0.0, log_prior_var)
        return total

    def _moments(self):
        w_mean = self.mu * self.mask
        if self.keep_dense_grad and w_mean.requires_grad:
            w_mean.retain_grad()  # its gradient is the dense gradient that the grow step needs
        self.weight_mean = w_mean
        w_var = F.softplus(self.rho) ** 2 * self.mask
        b_mean = self.bias_mu
        b_var = F.softplus(self.bias_rho) ** 2 if self.bias_mu is not None else None
        return w_mean, w_var, b_mean, b_var

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        w_mean, w_var, b_mean, b_var = self._moments()
        mean = self._map(x, w_mean, b_mean)
        if self.deterministic or not (self.training or self.force_sample):
            return mean
        var = self._map(x**2, w_var, b_var)
        noise = randn_like(mean, generator if generator is not None else self.generator)
        return mean + (var + 1e-8).sqrt() * noise

    def _map(self, x, w, b):  # pragma: no cover - abstract
        raise NotImplementedError


class MeanFieldLinear(MeanField):
    """A mean-field Gaussian ``Linear(in_features, out_features)`` with local reparameterisation and a mask."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        prior_std: float = 0.1,
        init_sigma: float = 1e-3,
        bias: bool = True,
        init_sigma_std: float = 0.0,
        generator: torch.Generator | None = None,
    ):
        shape = (out_features, in_features)
        super().__init__(shape, in_features, out_features, prior_std, init_sigma, bias, init_sigma_std, generator)
        self.in_features, self.out_features = in_features, out_features

    def _map(self, x, w, b):
        return F.linear(x, w, b)

    def mac_count(self) -> tuple[int, int]:
        """(active, dense) multiply-adds of the mean path per example."""
        return self.active(), self.mu.numel()


class MeanFieldConv2d(MeanField):
    """A mean-field Gaussian ``Conv2d`` (square kernel) with local reparameterisation and a mask."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        prior_std: float = 0.1,
        init_sigma: float = 1e-3,
        bias: bool = True,
        init_sigma_std: float = 0.0,
        generator: torch.Generator | None = None,
    ):
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        fan_in = in_channels * kernel_size**2
        super().__init__(shape, fan_in, out_channels, prior_std, init_sigma, bias, init_sigma_std, generator)
        self.stride, self.padding = stride, padding

    def _map(self, x, w, b):
        return F.conv2d(x, w, b, stride=self.stride, padding=self.padding)


def mean_field_layers(model: nn.Module) -> list[MeanField]:
    """Every :class:`MeanField` layer of ``model``, in module order."""
    return [m for m in model.modules() if isinstance(m, MeanField)]


def kl_divergence(model: nn.Module) -> torch.Tensor:
    """The total KL of every mean-field layer of ``model``."""
    layers = mean_field_layers(model)
    if not layers:
        raise ValueError("the model has no mean-field layers")
    return cast(torch.Tensor, sum(layer.kl() for layer in layers))


@contextmanager
def sampling(model: nn.Module, enabled: bool = True, generator: torch.Generator | None = None):
    """Within the block, mean-field layers sample even in evaluation mode (for Monte Carlo predictions).

    With a ``generator`` the layers draw their noise from it inside the block.
    """
    layers = mean_field_layers(model)
    before = [(layer.force_sample, layer.generator) for layer in layers]
    for layer in layers:
        layer.force_sample = enabled
        if generator is not None:
            layer.generator = generator
    try:
        yield model
    finally:
        for layer, (force, gen) in zip(layers, before, strict=True):
            layer.force_sample, layer.generator = force, gen


class BayesMLP(nn.Sequential):
    """Mean-field layers with ReLU in between: ``BayesMLP([64, 400, 400, 10])``."""

    def __init__(
        self,
        sizes: list[int],
        prior_std: float = 0.1,
        init_sigma: float = 1e-3,
        init_sigma_std: float = 0.0,
        generator: torch.Generator | None = None,
    ):
        if len(sizes) < 2:
            raise ValueError("sizes needs at least an input and an output width")
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
            layers.append(MeanFieldLinear(a, b, prior_std, init_sigma, True, init_sigma_std, generator))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        super().__init__(*layers)
