"""varbook: the tested library behind an executable book of papers on variational inference,
diffusion and flows, stochastic gradient estimators and Bayesian deep learning."""

__version__ = "0.1.0"
