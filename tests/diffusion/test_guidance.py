import pytest
import torch
from torch import nn

from varbook.diffusion import Denoiser, GuidedField, VPLinear, guide


class Affine(nn.Module):
    """A class-conditional 'network' whose outputs are easy to write down."""

    def forward(self, x, t, c):
        return x * (1 + c[:, None].to(x)) + t[:, None]


@pytest.mark.parametrize("kind", ["eps", "x0", "v", "score"])
def test_guiding_any_kind_is_guiding_eps(kind):
    sch = VPLinear()
    net = Denoiser(Affine(), sch, kind)
    labels = torch.tensor([0, 1, 2, 1])
    x = torch.randn(4, 2, dtype=torch.float64)
    t = torch.tensor(0.4, dtype=torch.float64)
    w = 1.5
    guided = GuidedField(net, labels, null_label=3, w=w)
    expected = guide(net.with_cond(labels).eps(x, t), net.with_cond(torch.full_like(labels, 3)).eps(x, t), w)
    torch.testing.assert_close(guided.eps(x, t), expected)
    torch.testing.assert_close(GuidedField(net, labels, 3, 0.0).eps(x, t), net.with_cond(labels).eps(x, t))


def test_bad_input():
    net = Denoiser(Affine(), VPLinear())
    with pytest.raises(ValueError, match="non-negative"):
        GuidedField(net, torch.zeros(2, dtype=torch.long), 3, -1.0)
    with pytest.raises(ValueError, match="labels for a batch"):
        GuidedField(net, torch.zeros(2, dtype=torch.long), 3, 1.0).eps(torch.zeros(3, 2), 0.5)
    with pytest.raises(ValueError, match="shape"):
        guide(torch.zeros(2), torch.zeros(3), 1.0)
