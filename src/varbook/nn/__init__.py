"""Shared neural-network modules."""

from .fit import fit_classifier, train_steps
from .gated import GatedMLP, GateStats, evaluate_gated, fit_gated, sweep_gated, train_gated
from .mlp import MLP
from .time import SmallUNet, TimeMLP, sinusoidal_embedding

__all__ = [
    "MLP",
    "GatedMLP",
    "GateStats",
    "evaluate_gated",
    "train_gated",
    "fit_gated",
    "sweep_gated",
    "TimeMLP",
    "SmallUNet",
    "sinusoidal_embedding",
    "train_steps",
    "fit_classifier",
]
