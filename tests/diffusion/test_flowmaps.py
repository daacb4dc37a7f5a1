import pytest
import torch
from torch import nn

from varbook.diffusion import meanflow_loss, sample_meanflow
from varbook.nn import TimeMLP

MU = torch.tensor([0.7, -1.2])


class ExactMean(nn.Module):
    """For data at a single point mu the paths are straight lines and u(z, r, t) = (z - mu) / t exactly."""

    def forward(self, z, t, r):
        return (z - MU) / t[:, None]


def test_exact_average_velocity_has_zero_loss_and_jumps_in_one_step():
    torch.manual_seed(0)
    x0 = MU.expand(256, 2).clone()
    assert float(meanflow_loss(ExactMean(), x0, p_mean=1.0)) < 1e-10
    out = sample_meanflow(ExactMean(), torch.randn(10, 2), n_steps=1)
    torch.testing.assert_close(out, MU.expand(10, 2))


def test_trains_a_network():
    net = TimeMLP(2, 16, 2, extra_times=1)
    loss = meanflow_loss(net, torch.randn(64, 2))
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in net.parameters())
    assert sample_meanflow(net, torch.randn(5, 2), 3).shape == (5, 2)


def test_bad_input():
    with pytest.raises(ValueError, match="p_mean"):
        meanflow_loss(ExactMean(), torch.zeros(4, 2), p_mean=1.5)
    with pytest.raises(ValueError, match="n_steps"):
        sample_meanflow(ExactMean(), torch.zeros(4, 2), 0)
