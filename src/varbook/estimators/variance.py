r"""A harness for the bias and variance of gradient estimators against an exact gradient.

Draw :math:`R` independent estimates :math:`\hat g_r` at fixed parameters (float64), then
:func:`gradient_stats` compares them with the exact gradient :math:`g`:

* bias :math:`\bar g-g` with its standard error :math:`\hat\sigma_i/\sqrt R` per coordinate;
* :math:`z_i=(\bar g_i-g_i)/\mathrm{se}_i` (about :math:`\mathcal N(0,1)` for an unbiased estimator);
* trace variance :math:`\sum_i\hat\sigma_i^2` and single-sample MSE :math:`\mathbb E\lVert\hat g-g\rVert^2`;
* cosine between :math:`\bar g` and :math:`g`, and the signal-to-noise ratio
  :math:`\lVert\bar g\rVert/\sqrt{\mathrm{tr\,Var}}`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class GradientStats:
    """Summary of ``n`` single-sample gradient estimates against the exact gradient."""

    n: int
    mean: torch.Tensor
    bias: torch.Tensor
    bias_se: torch.Tensor
    trace_var: float
    mse: float
    cosine: float
    snr: float

    @property
    def z(self) -> torch.Tensor:
        """Bias in units of its standard error, per coordinate."""
        return self.bias / self.bias_se.clamp_min(torch.finfo(self.bias_se.dtype).tiny)

    @property
    def max_abs_z(self) -> float:
        return float(self.z.abs().max())

    def as_row(self) -> dict:
        return {
            "max |bias|/se": self.max_abs_z,
            "|bias|": float(self.bias.norm()),
            "tr Var": self.trace_var,
            "MSE": self.mse,
            "cos(mean, exact)": self.cosine,
            "SNR": self.snr,
        }


def gradient_stats(samples: torch.Tensor, exact: torch.Tensor) -> GradientStats:
    """Bias, variance, MSE, cosine and SNR of estimates ``samples`` ``(R, d)`` against ``exact`` ``(d,)``."""
    if samples.dim() != 2 or exact.dim() != 1 or samples.shape[1] != exact.shape[0]:
        raise ValueError(f"expected samples (R, d) and exact (d,), got {tuple(samples.shape)} and {tuple(exact.shape)}")
    r = samples.shape[0]
    if r < 2:
        raise ValueError("need at least two estimates")
    samples = samples.to(torch.float64)
    exact = exact.to(torch.float64)
    mean = samples.mean(0)
    var = samples.var(0, unbiased=True)
    bias = mean - exact
    mse = float(((samples - exact) ** 2).sum(1).mean())
    cosine = float(torch.nn.functional.cosine_similarity(mean, exact, dim=0))
    trace_var = float(var.sum())
    snr = float(mean.norm() / trace_var**0.5) if trace_var > 0 else float("inf")
    return GradientStats(r, mean, bias, (var / r).sqrt(), trace_var, mse, cosine, snr)


def mean_difference_z(x: GradientStats, y: GradientStats) -> float:
    r"""The largest :math:`|\bar g^x_i-\bar g^y_i|/\sqrt{\mathrm{se}^x_i{}^2+\mathrm{se}^y_i{}^2}` over coordinates.

    Two independent sets of estimates of the same quantity: about the largest of :math:`d`
    standard-normal magnitudes when both estimators have the same mean (compare with
    :func:`bonferroni_z`).
    """
    return float(((x.mean - y.mean) / (x.bias_se**2 + y.bias_se**2).sqrt()).abs().max())


def bonferroni_z(n_coordinates: int, alpha: float = 0.01) -> float:
    r"""The two-sided bound :math:`z_{1-\alpha/(2d)}` that :math:`\max_i|z_i|` of an unbiased estimator exceeds with probability at most :math:`\alpha`.

    Testing each of :math:`d` coordinates at a fixed 3 standard errors would flag a correct
    estimator with probability about :math:`1-0.9973^d` (2.7 % for :math:`d=10`); this bound
    keeps the family-wise false-alarm rate at ``alpha`` whatever :math:`d`.
    """
    from statistics import NormalDist

    if n_coordinates < 1 or not 0 < alpha < 1:
        raise ValueError("need n_coordinates >= 1 and 0 < alpha < 1")
    return NormalDist().inv_cdf(1 - alpha / (2 * n_coordinates))


@dataclass
class Trend:
    """A least-squares slope of a statistic against a covariate, with its standard error."""

    slope: float
    se: float
    resolution: float

    @property
    def z(self) -> float:
        """``slope / max(se, resolution)``: the slope in standard errors (about :math:`\\mathcal N(0,1)` without a trend)."""
        return self.slope / max(self.se, self.resolution)


def linear_trend(x: list[float], y: torch.Tensor, resolution: float = 1e-9) -> Trend:
    r"""The least-squares slope of ``y`` on ``x`` and its standard error, from independent groups.

    ``y`` is ``(k, n)``: ``n`` independent draws of the statistic at each of the ``k`` values
    ``x``. With group means :math:`\bar y_k` and weights :math:`w_k=(x_k-\bar x)/\sum_j(x_j-\bar x)^2`,
    the slope is :math:`\hat\beta=\sum_k w_k\bar y_k` (ordinary least squares on every draw) and
    its standard error :math:`\sqrt{\sum_k w_k^2 s_k^2/n}`, with :math:`s_k^2` the sample variance
    of group :math:`k` (no assumption that the groups have the same spread).
    ``resolution`` floors the standard error in :attr:`Trend.z`: a statistic computed exactly,
    constant up to rounding, has no trend rather than a trend of many rounding-sized errors.

    >>> t = linear_trend([1.0, 2.0, 3.0], torch.tensor([[1.0, 1.2], [0.9, 1.1], [0.8, 1.0]]))
    >>> round(t.slope, 6), round(t.se, 6)
    (-0.1, 0.070711)
    """
    if y.dim() != 2 or y.shape[0] != len(x) or y.shape[0] < 2 or y.shape[1] < 2:
        raise ValueError(f"need y of shape (k, n) with k = len(x) >= 2 and n >= 2, got {tuple(y.shape)}")
    y = y.to(torch.float64)
    xs = torch.as_tensor(x, dtype=torch.float64)
    dx = xs - xs.mean()
    if float((dx**2).sum()) == 0:
        raise ValueError("x must take at least two different values")
    w = dx / (dx**2).sum()
    slope = float((w * y.mean(1)).sum())
    se = float(((w**2) * y.var(1, unbiased=True) / y.shape[1]).sum().sqrt())
    return Trend(slope, se, resolution)
