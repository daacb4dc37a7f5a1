"""Bayesian deep learning: mean-field layers, sparse subspace VI, predictive metrics."""

from .layers import (
    BayesMLP,
    MeanField,
    MeanFieldConv2d,
    MeanFieldLinear,
    kl_divergence,
    mean_field_layers,
    sampling,
)
from .metrics import accuracy, brier, ece, mc_predict, nll, reliability
from .sparse import (
    CRITERIA,
    BNNRun,
    DropGrowScheduler,
    drop_agreement,
    drop_score,
    random_masks,
    train_bnn,
    training_flops,
)

__all__ = [
    "BayesMLP",
    "MeanField",
    "MeanFieldConv2d",
    "MeanFieldLinear",
    "kl_divergence",
    "mean_field_layers",
    "sampling",
    "accuracy",
    "brier",
    "ece",
    "mc_predict",
    "nll",
    "reliability",
    "CRITERIA",
    "BNNRun",
    "DropGrowScheduler",
    "drop_agreement",
    "drop_score",
    "random_masks",
    "train_bnn",
    "training_flops",
]
