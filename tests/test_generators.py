"""Every function that draws noise takes a ``generator``: the same seed gives the same draw, and a
generator leaves torch's global random state alone (so a chapter's numbers depend only on its seeds)."""

import pytest
import torch
from torch import nn

from varbook.bayes import BayesMLP, mc_predict, sampling
from varbook.diffusion import VPLinear, denoising_loss, meanflow_loss
from varbook.diffusion.interpolants import Interpolant, interpolant_losses
from varbook.nn import GatedMLP, TimeMLP
from varbook.recsys import MultVAE
from varbook.vi.models import GaussianVAE


class Twice(nn.Module):
    def forward(self, x, *times):
        return 2 * x


def _draws():
    x2 = torch.randn(16, 2, generator=torch.Generator().manual_seed(99))
    mlp = BayesMLP([2, 8, 3]).train()
    gated = GatedMLP(2, 3, n_blocks=4, block_size=2, gater_hidden=4).train()
    vae = GaussianVAE(d_x=6, hidden=8, n_latent=2)
    rec = MultVAE(6, hidden=(8,), latent=2, dropout=0.0).train()
    clicks = (torch.arange(24).reshape(4, 6) % 3 == 0).float()
    flow = TimeMLP(2, 8, 2, extra_times=1)
    return {
        "denoising_loss": lambda g: denoising_loss(Twice(), x2, VPLinear(), generator=g),
        "interpolant_losses": lambda g: interpolant_losses(Twice(), "b", Interpolant("linear"), x2, -x2, generator=g),
        "meanflow_loss": lambda g: meanflow_loss(flow, x2, generator=g),
        "MeanField.forward": lambda g: mlp[0](x2, generator=g),
        "sampling": lambda g: _in_sampling(mlp, x2, g),
        "mc_predict": lambda g: mc_predict(mlp, x2, 3, generator=g),
        "GatedMLP.gates": lambda g: gated.gates(x2, generator=g),
        "GaussianVAE.handwritten_elbo": lambda g: vae.handwritten_elbo(clicks, generator=g),
        "MultVAE.forward": lambda g: rec(clicks, generator=g)[0],
    }


def _in_sampling(model, x, g):
    with sampling(model.eval(), generator=g):
        out = model(x)
    model.train()
    return out


@pytest.mark.parametrize("name", list(_draws()))
def test_the_generator_decides_the_draw(name):
    draw = _draws()[name]
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    a = draw(torch.Generator().manual_seed(1))
    if name != "MultVAE.forward":  # its input dropout (p = 0 here) still goes through torch's global state
        assert torch.equal(torch.random.get_rng_state(), before)
    b = draw(torch.Generator().manual_seed(1))
    c = draw(torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_sampling_restores_the_layers_generator():
    model = BayesMLP([2, 3])
    g = torch.Generator()
    with sampling(model, generator=g):
        assert model[0].generator is g and model[0].force_sample
    assert model[0].generator is None and not model[0].force_sample
