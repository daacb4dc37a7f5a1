"""Shared neural-network modules."""

from .gated import GatedMLP, GateStats, evaluate_gated, train_gated
from .mlp import MLP

__all__ = ["MLP", "GatedMLP", "GateStats", "evaluate_gated", "train_gated"]
