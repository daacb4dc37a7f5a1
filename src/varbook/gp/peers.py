r"""GPyTorch as a peer of :mod:`varbook.gp.exact`: its exact GP with our NNGP kernel :cite:`gardner2018gpytorch`.

GPyTorch is optional (the ``peers`` extra); this module imports it only inside its functions,
so that ``varbook.gp`` works without it. The model is :math:`y\sim\mathcal N(0,s^2(K+\epsilon I))`
as in :func:`varbook.gp.exact.gp_log_marginal`: GPyTorch's covariance is :math:`s^2K`, and a
fixed Gaussian noise :math:`s^2\epsilon` plays the jitter.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from .exact import Hyper, gp_log_marginal, log_marginal, predict, solve_terms
from .kernels import nngp_relu, nngp_relu_diag


def nngp_kernel_class() -> type:
    """A ``gpytorch.kernels.Kernel`` subclass that evaluates :func:`~varbook.gp.kernels.nngp_relu` (fixed hyperparameters)."""
    import gpytorch

    class NNGPKernel(gpytorch.kernels.Kernel):
        """The ReLU NNGP kernel of ``depth`` hidden layers, times an output scale ``scale_sq``."""

        def __init__(self, depth: int = 4, w_std: float = 1.0, b_std: float = 1e-8, scale_sq: float = 1.0):
            super().__init__()
            self.depth, self.w_std, self.b_std, self.scale_sq = depth, w_std, b_std, scale_sq

        def forward(self, x1: torch.Tensor, x2: torch.Tensor, diag: bool = False, **params: Any) -> torch.Tensor:
            kw: dict[str, Any] = dict(depth=self.depth, w_std=self.w_std, b_std=self.b_std)
            if diag:
                return self.scale_sq * nngp_relu_diag(x1, **kw)
            return self.scale_sq * nngp_relu(x1, x2, **kw)

    return NNGPKernel


def _require_float64(**tensors: torch.Tensor) -> None:
    for name, t in tensors.items():
        if t.dtype != torch.float64:
            raise TypeError(
                f"{name} must be float64 (the NNGP kernel is nearly singular, and the peer comparison "
                f"checks agreement to 1e-6), got {t.dtype}"
            )


def gpytorch_exact_gp(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    jitter: float,
    scale_sq: float,
    depth: int = 4,
    w_std: float = 1.0,
    b_std: float = 1e-8,
) -> dict[str, Any]:
    r"""GPyTorch's ``ExactGP`` with the NNGP kernel and fixed hyperparameters.

    Returns the log marginal likelihood :math:`\log\mathcal N(y;0,s^2(K+\epsilon I))` (GPyTorch's
    ``ExactMarginalLogLikelihood`` divides it by :math:`n`; this is multiplied back), the
    predictive mean of the latent function at ``x_test`` and the seconds both took.
    """
    import gpytorch

    _require_float64(x_train=x_train, y_train=y_train, x_test=x_test)
    if x_train.ndim != 2 or y_train.shape != x_train.shape[:1] or x_test.ndim != 2:
        raise ValueError(
            f"need x_train (n, d), y_train (n,), x_test (m, d); got {tuple(x_train.shape)}, "
            f"{tuple(y_train.shape)}, {tuple(x_test.shape)}"
        )
    if jitter <= 0 or scale_sq <= 0:
        raise ValueError(f"jitter and scale_sq must be positive, got {jitter}, {scale_sq}")
    n = len(y_train)
    kernel = nngp_kernel_class()(depth, w_std, b_std, scale_sq)
    noise = torch.full((n,), scale_sq * jitter, dtype=y_train.dtype, device=y_train.device)
    likelihood = gpytorch.likelihoods.FixedNoiseGaussianLikelihood(noise=noise)

    class Model(gpytorch.models.ExactGP):
        def __init__(self) -> None:
            super().__init__(x_train, y_train, likelihood)
            self.mean_module = gpytorch.means.ZeroMean()
            self.covar_module = kernel

        def forward(self, x: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
            return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))

    model = Model().to(y_train.dtype)
    start = time.perf_counter()
    with gpytorch.settings.fast_computations(False, False, False), torch.no_grad():
        model.train()
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
        log_marginal = float(mll(model(x_train), y_train)) * n
        model.eval()
        mean = model(x_test).mean
    return {"log_marginal": log_marginal, "mean": mean, "seconds": time.perf_counter() - start}


def compare_with_gpytorch(
    h: Hyper, x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor
) -> dict[str, Any]:
    r"""Our GP (:mod:`varbook.gp.exact`) and GPyTorch's at the hyperparameters ``h`` (a GP fit).

    The gap is the larger of :math:`|\Delta\log p(y)|/n` and the largest difference of the
    predictive means. ``control_gap`` is the same gap for our GP with the jitter counted twice
    (in the kernel and again as noise), a mistake the comparison must see. ``seconds`` times one
    marginal likelihood and one predictive mean for each library, kernels included. Inputs must
    be float64 (``TypeError`` otherwise): in float32 the two libraries differ by up to 0.2 on
    near-duplicate inputs.
    """
    _require_float64(x_train=x_train, y_train=y_train, x_test=x_test)
    if h.kind != "gp":
        raise ValueError(f"GPyTorch's exact GP is compared with a GP fit, got kind {h.kind!r}")
    n = len(y_train)
    start = time.perf_counter()
    ml = float(log_marginal(h, x_train, y_train))
    mean = h.predictive(x_train, y_train, x_test).loc
    ours_s = time.perf_counter() - start
    k, kx, kd = h.kernels(x_train, x_test)
    scale_sq = float(solve_terms(k, y_train, h.jitter)[2]) / n
    peer = gpytorch_exact_gp(x_train, y_train, x_test, h.jitter, scale_sq, h.depth, h.w_std, h.b_std)

    def gap(ml_: float, mean_: torch.Tensor) -> float:
        return max(abs(ml_ - peer["log_marginal"]) / n, float((mean_ - peer["mean"]).abs().max()))

    twice = 2 * h.jitter
    wrong_ml = float(gp_log_marginal(k, y_train, twice, scale_sq=scale_sq))
    wrong_mean = predict("gp", k, kx, kd, y_train, twice).loc
    return {
        "gap": gap(ml, mean),
        "control_gap": gap(wrong_ml, wrong_mean),
        "log_marginal": {"varbook": ml, "gpytorch": peer["log_marginal"]},
        "seconds": {"varbook": ours_s, "gpytorch": peer["seconds"]},
    }


__all__ = ["compare_with_gpytorch", "gpytorch_exact_gp", "nngp_kernel_class"]
