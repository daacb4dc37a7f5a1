"""Gradient estimators through randomness, their baselines, and a bias/variance harness."""

from . import baselines, bernoulli, peers, variance
from .baselines import (
    ConstantBaseline,
    EMABaseline,
    PerUnitOptimalBaseline,
    exact_optimal_baselines,
    exact_unnormalised_baseline,
    group_baseline_samples,
    leave_one_out,
    optimal_baseline,
)
from .bernoulli import (
    ESTIMATORS,
    BinaryStack,
    BinaryStochastic,
    QuadraticToy,
    concrete_samples,
    exact_gradient,
    exact_sts_gradient,
    gradient_samples,
    reinforce_moments,
    sample_estimators,
    st_depth_cosines,
)
from .variance import GradientStats, bonferroni_z, gradient_stats, mean_difference_z

__all__ = [
    "baselines",
    "bernoulli",
    "peers",
    "variance",
    "ConstantBaseline",
    "EMABaseline",
    "PerUnitOptimalBaseline",
    "exact_optimal_baselines",
    "exact_unnormalised_baseline",
    "group_baseline_samples",
    "leave_one_out",
    "optimal_baseline",
    "ESTIMATORS",
    "BinaryStack",
    "BinaryStochastic",
    "QuadraticToy",
    "concrete_samples",
    "exact_gradient",
    "exact_sts_gradient",
    "gradient_samples",
    "reinforce_moments",
    "sample_estimators",
    "st_depth_cosines",
    "GradientStats",
    "bonferroni_z",
    "gradient_stats",
    "mean_difference_z",
]
