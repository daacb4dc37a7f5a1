"""Gradient estimators through randomness, their baselines, and a bias/variance harness."""

from . import baselines, bernoulli, variance
from .baselines import ConstantBaseline, EMABaseline, PerUnitOptimalBaseline, leave_one_out, optimal_baseline
from .bernoulli import (
    ESTIMATORS,
    BinaryStack,
    BinaryStochastic,
    QuadraticToy,
    exact_gradient,
    exact_sts_gradient,
    gradient_samples,
    reinforce_moments,
)
from .variance import GradientStats, bonferroni_z, gradient_stats

__all__ = [
    "baselines",
    "bernoulli",
    "variance",
    "ConstantBaseline",
    "EMABaseline",
    "PerUnitOptimalBaseline",
    "leave_one_out",
    "optimal_baseline",
    "ESTIMATORS",
    "BinaryStack",
    "BinaryStochastic",
    "QuadraticToy",
    "exact_gradient",
    "exact_sts_gradient",
    "gradient_samples",
    "reinforce_moments",
    "GradientStats",
    "bonferroni_z",
    "bonferroni_z",
    "gradient_stats",
]
