"""Recommender systems: Mult-VAE/Mult-DAE, ranking metrics, the strong-generalisation split, baselines."""

from .baselines import EASE, Popularity, ease_weights
from .metrics import ndcg_at_k, recall_at_k
from .mult_vae import LIKELIHOODS, FitResult, MultDAE, MultVAE, beta_at, evaluate, fit, fit_together, log_likelihood
from .split import HeldOut, StrongSplit, strong_generalization_split

__all__ = [
    "EASE",
    "Popularity",
    "ease_weights",
    "ndcg_at_k",
    "recall_at_k",
    "LIKELIHOODS",
    "FitResult",
    "MultDAE",
    "MultVAE",
    "beta_at",
    "evaluate",
    "fit",
    "fit_together",
    "log_likelihood",
    "HeldOut",
    "StrongSplit",
    "strong_generalization_split",
]
