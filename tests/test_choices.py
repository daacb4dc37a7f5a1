"""Every choice among named options fails the same way: ``unknown <what> <value>: use one of <choices>``."""

import pytest
import torch

from varbook.bayes import DropGrowScheduler, drop_score
from varbook.data import toy2d
from varbook.diffusion import Linear, nfe, sample, steps_for_nfe, time_grid, to_eps
from varbook.diffusion.interpolants import Interpolant, interpolant_losses, sample_ode
from varbook.diffusion.inverse import red_diff_weight, step_indices
from varbook.estimators.bernoulli import BinaryStochastic, fire_probability, straight_through
from varbook.llm.wta_crs import expected_error, sample_rows
from varbook.nn.transformer import TinyTransformer
from varbook.recsys.mult_vae import log_likelihood
from varbook.sde import ode_log_likelihood
from varbook.sde.fbm import mafbm_paths, optimal_omega
from varbook.vi.programmable import Strategy, maximise

X = torch.zeros(2, 2)


CASES = {
    "spacing": (lambda: time_grid(Linear(), 4, spacing="cosine"), "uniform, log_snr"),
    "prediction kind": (lambda: to_eps(X, "noise", X, 0.5, Linear()), "eps, x0, score, v"),
    "sampler": (lambda: sample("rk4", None, X, [1.0, 0.0]), "ddpm, ddim"),
    "sampler ": (lambda: nfe("rk4", [1.0, 0.0]), "heun"),
    "sampler  ": (lambda: steps_for_nfe("rk4", 4), "dpm2"),
    "path": (lambda: Interpolant("spiral"), "linear, trig"),
    "gamma": (lambda: Interpolant("linear", "cubic"), "brownian"),
    "field": (lambda: interpolant_losses(None, "u", Interpolant(), X, X), "b, v, s, eta"),
    "ODE method": (lambda: sample_ode(lambda x, t: x, X, [0.0, 1.0], method="rk4"), "euler, heun"),
    "time order": (lambda: step_indices(4, order="shuffled"), "descending, random, ascending"),
    "weighting": (lambda: red_diff_weight(torch.ones(1), torch.ones(1), "cubic"), "linear, sqrt"),
    "fBM type": (lambda: optimal_omega(0.3, torch.ones(2), kind="III"), "I, II"),
    "fBM type ": (lambda: mafbm_paths(torch.ones(2), torch.zeros(3, 1, 2), kind="III"), "I, II"),
    "method": (lambda: ode_log_likelihood(lambda x, t: x, X, [1.0, 0.0], lambda x: x[:, 0], "rk4"), "euler, heun"),
    "straight-through variant": (lambda: straight_through(X, "st_tanh"), "st_id, st_sigmoid"),
    "estimator": (lambda: BinaryStochastic("gumbel"), "reinforce, st_id"),
    "estimator ": (lambda: fire_probability(X, "gumbel"), "noisy_relu"),
    "gradient strategy": (lambda: Strategy("score"), "reparam, reinforce"),
    "optimizer": (lambda: maximise(lambda t: X, [], 1, optimizer="lbfgs"), "sgd, adam"),
    "drop criterion": (lambda: drop_score(X, X + 1, "random"), "mean, snr"),
    "drop criterion ": (lambda: DropGrowScheduler([], 0.5, 1, 2, criterion="random"), "snr_mean_abs"),
    "toy density": (lambda: toy2d("spiral", 8), "moons, checkerboard, rings"),
    "likelihood": (lambda: log_likelihood(X, X, "poisson"), "mult, gaussian, logistic"),
    "positional encoding": (lambda: TinyTransformer(10, 8, 2, 1, positional="rotary"), "learned, sinusoidal, none"),
    "sampler   ": (lambda: sample_rows(torch.ones(4) / 4, 2, "gumbel"), "exact, uniform"),
    "sampler    ": (lambda: expected_error(X, X, 1, "gumbel"), "wta_crs"),
}


@pytest.mark.parametrize("what", list(CASES))
def test_unknown_choice_names_the_allowed_values(what):
    call, listed = CASES[what]
    with pytest.raises(ValueError, match=f"unknown {what.strip()} .*: use one of .*{listed}"):
        call()
