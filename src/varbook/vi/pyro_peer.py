r"""The peer side of the programmable-VI chapter: the same models and objectives written in Pyro.

Importing this module needs ``pyro-ppl`` (the ``peers`` extra of varbook); a chapter that lacks
it catches the :class:`ImportError` and skips its peer comparison. Pyro minimises the negative
objective, so its losses are negated here. :cite:`becker2024probabilistic` compares genjax.vi
with Pyro on the cone model (Table 4) and on a VAE's step time (Table 1).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from functools import partial

import pyro
import pyro.distributions as pdist
import torch
from pyro.infer import SVI, RenyiELBO, Trace_ELBO

from .benchmarks import CONE_TABLE4
from .models import PRIOR_STD, GaussianVAE, MeanFieldNormal, cone_log_joint
from .objectives import elbo, iwelbo
from .programmable import estimate


def _quiet() -> None:
    logging.getLogger("pyro").setLevel(logging.WARNING)


def cone_model(z_obs: float = 5.0) -> None:
    r"""The cone model in Pyro: :math:`x,y\sim\mathcal N(0,10^2)`, :math:`z\sim\mathcal N(s,(0.1+s/100)^2)`, :math:`s=x^2+y^2`."""
    zero = torch.zeros((), dtype=torch.float64)
    x = pyro.sample("x", pdist.Normal(zero, 10.0))
    y = pyro.sample("y", pdist.Normal(zero, 10.0))
    s = x**2 + y**2
    pyro.sample("z", pdist.Normal(s, 0.1 + s / 100), obs=zero + z_obs)


def mean_field_guide(q: MeanFieldNormal) -> Callable[[], None]:
    """Pyro's guide for a two-dimensional :class:`~varbook.vi.models.MeanFieldNormal` (one seed)."""

    def guide(*_) -> None:
        pyro.sample("x", pdist.Normal(q.mu[0], q.log_sigma[0].exp()))
        pyro.sample("y", pdist.Normal(q.mu[1], q.log_sigma[1].exp()))

    return guide


def compare_cone(q: MeanFieldNormal, particles: int = 100_000, repeats: int = 2000) -> dict[str, dict[str, float]]:
    r"""Our ELBO and IWELBO(5) against Pyro's ``Trace_ELBO`` and ``RenyiELBO(alpha=0, num_particles=5)`` at ``q``.

    Ours: ``particles`` estimates of each. Pyro: one ``Trace_ELBO`` with ``particles`` vectorised
    particles, and ``repeats`` IWELBO(5) estimates. Each row holds both means, the paper's value
    (the same in all systems) and the standard error of the difference, and a negative control:
    our estimate on a wrong model whose prior has the variance :math:`10^2` passed as its scale
    (standard deviation 100 instead of 10), with the same draws of :math:`q`.
    """
    _quiet()
    guide = mean_field_guide(q)
    wrong = partial(cone_log_joint, prior_std=PRIOR_STD**2)
    with torch.no_grad():
        seed = int(torch.randint(2**62, ()))
        torch.manual_seed(seed)
        ours_elbo = estimate(elbo(cone_log_joint, q, particles=particles))
        ours_iw = estimate(iwelbo(cone_log_joint, q, 5, particles=particles))
        torch.manual_seed(seed)  # the control sees the same draws
        wrong_elbo = estimate(elbo(wrong, q, particles=particles))
        wrong_iw = estimate(iwelbo(wrong, q, 5, particles=particles))
        pyro_elbo = -Trace_ELBO(num_particles=particles, vectorize_particles=True).loss(cone_model, guide)
        renyi = RenyiELBO(alpha=0, num_particles=5, vectorize_particles=True)
        pyro_iw = torch.tensor([-renyi.loss(cone_model, guide) for _ in range(repeats)])
    return {
        "ELBO": {
            "ours": float(ours_elbo.mean()),
            "Pyro": pyro_elbo,
            "paper (all systems)": CONE_TABLE4["ELBO"],
            "s.e. of the difference": float(ours_elbo.std() / math.sqrt(len(ours_elbo))),
            "control: prior std 100": float(wrong_elbo.mean()),
        },
        "IWELBO(5)": {
            "ours": float(ours_iw.mean()),
            "Pyro": float(pyro_iw.mean()),
            "paper (all systems)": CONE_TABLE4["IWELBO(5)"],
            "s.e. of the difference": float((ours_iw.var() / len(ours_iw) + pyro_iw.var() / len(pyro_iw)).sqrt()),
            "control: prior std 100": float(wrong_iw.mean()),
        },
    }


def vae_svi_step(vae: GaussianVAE, lr: float) -> Callable[[torch.Tensor], float]:
    """One step of Pyro's ``SVI`` with ``Trace_ELBO`` and plain SGD on ``vae`` per call (the Table 1 peer).

    The model and guide wrap ``vae``'s decoder and encoder (``pyro.module``), so Pyro trains the
    same parameters; the call returns Pyro's loss (the negative ELBO estimate).
    """
    _quiet()
    pyro.clear_param_store()

    def model(xb: torch.Tensor) -> None:
        pyro.module("decoder", vae.decoder)
        with pyro.plate("data", xb.shape[0]):
            prior = pdist.Normal(torch.zeros(xb.shape[0], vae.n_latent, device=xb.device), 1.0)
            z = pyro.sample("z", prior.to_event(1))
            pyro.sample("x", pdist.Bernoulli(logits=vae.decoder(z)).to_event(1), obs=xb)

    def guide(xb: torch.Tensor) -> None:
        pyro.module("encoder", vae.encoder)
        with pyro.plate("data", xb.shape[0]):
            mu, log_sigma = vae.encoder(xb).chunk(2, -1)
            pyro.sample("z", pdist.Normal(mu, log_sigma.exp()).to_event(1))

    optimizer = pyro.optim.SGD({"lr": lr})  # type: ignore[attr-defined]  # pyro.optim wraps torch.optim at import
    svi = SVI(model, guide, optimizer, Trace_ELBO())
    return svi.step
