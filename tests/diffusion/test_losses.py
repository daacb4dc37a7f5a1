import pytest
import torch
from torch import nn

from varbook.diffusion import KINDS, Denoiser, GaussianMixture, Linear, VPLinear, denoising_loss


class Exact(nn.Module):
    """The exact prediction of a Gaussian mixture, of a given kind, as a 'network'."""

    def __init__(self, field, kind, scale=1.0):
        super().__init__()
        self.field, self.kind, self.scale = field, kind, scale

    def forward(self, x, t):
        out = {"eps": self.field.eps, "x0": self.field.x0, "score": self.field.score, "v": self.field.velocity}[
            self.kind
        ](x, t)
        return self.scale * out


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sch", [VPLinear(), Linear()], ids=repr)
def test_the_exact_denoiser_minimises_the_loss(kind, sch):
    mix = GaussianMixture.ring(4, 1.5, 0.3)
    x0 = mix.sample(4096, torch.Generator().manual_seed(0))
    losses = {}
    for scale in (1.0, 0.9, 1.1):
        torch.manual_seed(1)  # common random numbers for t and eps
        losses[scale] = float(denoising_loss(Exact(mix.field(sch), kind, scale), x0, sch, kind, t_min=0.05, t_max=0.95))
    assert losses[1.0] < losses[0.9] and losses[1.0] < losses[1.1]


def test_flow_matching_target_on_the_linear_path():
    torch.manual_seed(0)
    x0 = torch.randn(16, 2)

    class Record(nn.Module):
        def forward(self, x, t):
            self.x, self.t = x, t
            return torch.zeros_like(x)

    net = Record()
    torch.manual_seed(5)
    loss = denoising_loss(net, x0, Linear(), "v")
    torch.manual_seed(5)
    t = 1e-3 + (1 - 1e-3) * torch.rand(16)
    eps = torch.randn_like(x0)
    torch.testing.assert_close(net.x, (1 - t[:, None]) * x0 + t[:, None] * eps)
    torch.testing.assert_close(loss, ((eps - x0) ** 2).mean())


def test_label_dropout_and_gradients():
    from varbook.nn import TimeMLP

    net = TimeMLP(2, 16, 2, n_classes=3)
    x0, c = torch.randn(32, 2), torch.randint(0, 3, (32,))
    loss = denoising_loss(net, x0, VPLinear(), "eps", cond=c, p_uncond=0.5, null_label=3)
    loss.backward()
    assert loss.dim() == 0 and all(p.grad is not None for p in net.parameters())
    d = Denoiser(net, VPLinear(), "eps", cond=c)
    assert d.eps(x0, 0.5).shape == x0.shape


def test_bad_input():
    net = Exact(GaussianMixture.ring().field(VPLinear()), "eps")
    with pytest.raises(ValueError, match="null_label"):
        denoising_loss(net, torch.zeros(4, 2), VPLinear(), cond=torch.zeros(4, dtype=torch.long), p_uncond=0.1)
    with pytest.raises(ValueError, match="unknown prediction kind"):
        denoising_loss(net, torch.zeros(4, 2), VPLinear(), "noise")
    with pytest.raises(ValueError, match="t_min"):
        denoising_loss(net, torch.zeros(4, 2), VPLinear(), t_min=0.5, t_max=0.2)
