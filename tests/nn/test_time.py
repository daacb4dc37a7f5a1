import pytest
import torch

from varbook.nn import SmallUNet, TimeMLP, sinusoidal_embedding


def test_sinusoidal_embedding():
    e = sinusoidal_embedding(torch.tensor([0.0, 0.5]), 8)
    assert e.shape == (2, 8)
    torch.testing.assert_close(e[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    with pytest.raises(ValueError, match="even"):
        sinusoidal_embedding(torch.zeros(2), 7)


def test_time_mlp_shapes_and_conditioning():
    x, t = torch.randn(5, 3), torch.rand(5)
    assert TimeMLP(3, 16, 2)(x, t).shape == (5, 3)
    cond = TimeMLP(3, 16, 2, n_classes=4)
    assert cond(x, t, torch.tensor([0, 1, 2, 3, 4])).shape == (5, 3)
    assert TimeMLP(3, 16, 2, extra_times=1)(x, t, t / 2).shape == (5, 3)
    with pytest.raises(ValueError, match="class-conditional"):
        cond(x, t)
    with pytest.raises(ValueError, match="labels must lie"):
        cond(x, t, torch.full((5,), 5))
    with pytest.raises(ValueError, match="without classes"):
        TimeMLP(3, 16, 2)(x, t, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        TimeMLP(3, 16, 2)(torch.randn(5, 4), t)


def test_small_unet():
    net = SmallUNet(1, 16, n_classes=10)
    out = net(torch.randn(2, 1, 32, 32), torch.rand(2), torch.tensor([3, 10]))
    assert out.shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.randn(2, 1, 30, 30), torch.rand(2), torch.tensor([3, 10]))
