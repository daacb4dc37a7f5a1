import pytest
import torch
from torch import nn

from varbook.diffusion import KINDS, Denoiser, GaussianMixture, Linear, VPLinear


class FromExact(nn.Module):
    """A 'network' that returns the exact mixture prediction of one kind."""

    def __init__(self, field, kind):
        super().__init__()
        self.field, self.kind = field, kind

    def forward(self, x, t):
        return {"eps": self.field.eps, "x0": self.field.x0, "score": self.field.score, "v": self.field.velocity}[
            self.kind
        ](x, t)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sch", [VPLinear(), Linear()], ids=repr)
def test_a_denoiser_of_any_kind_answers_all_four(kind, sch):
    exact = GaussianMixture.ring(4, 1.0, 0.4).field(sch)
    model = Denoiser(FromExact(exact, kind), sch, kind)
    x = torch.randn(32, 2, dtype=torch.float64)
    t = torch.tensor(0.35, dtype=torch.float64)
    for method in ("eps", "x0", "score", "velocity"):
        torch.testing.assert_close(getattr(model, method)(x, t), getattr(exact, method)(x, t))
    eps, x0 = model.eps_x0(x, t)
    torch.testing.assert_close(eps, exact.eps(x, t))
    torch.testing.assert_close(x0, exact.x0(x, t))


def test_times_reach_the_network_per_sample_and_conditioning_is_shared():
    seen = {}

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(()))

        def forward(self, x, t, c=None):
            seen["t"], seen["c"] = t, c
            return self.w * x

    model = Denoiser(Net(), VPLinear())
    model.eps(torch.zeros(3, 2), 0.5)
    assert seen["t"].shape == (3,) and seen["t"].dtype == torch.float32 and seen["c"] is None
    labels = torch.tensor([1, 2, 0])
    conditioned = model.with_cond(labels)
    conditioned.eps(torch.zeros(3, 2), 0.5)
    assert seen["c"] is labels and conditioned.net is model.net


def test_bad_input():
    with pytest.raises(ValueError, match="unknown prediction kind"):
        Denoiser(nn.Identity(), VPLinear(), "velocity")
    model = Denoiser(FromExact(GaussianMixture.ring().field(VPLinear()), "eps"), VPLinear())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.eps(torch.zeros(2, 2, dtype=torch.float64), 1.5)
