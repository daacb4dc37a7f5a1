import pytest
import torch

from varbook.data.pfsm import pfsm_sequences
from varbook.vi import pvrnn as pv
from varbook.vi.vrnn import VRNN, predict_vrnn, train_vrnn


def test_first_step_kl_is_against_standard_normal_and_training_lowers_the_loss():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    data = pfsm_sequences(4, 16, generator=g)
    m = VRNN(2, (8, 4), (2, 1), (2.0, 4.0), n_models=2)
    out = m.unroll(data.x, m.core.initial_state(4), first=True, use_mean=True)
    pre = m.encode(0, data.x[:, 0].expand(2, 4, 2), torch.zeros(2, 4, 8))
    mu, ls = pv.gaussian_from(pre)
    kl0 = (0.5 * (mu**2 + (2 * ls).exp() - 2 * ls - 1)).sum(-1) / 2
    assert (out["kl"][:, :, 0] >= kl0 - 1e-6).all()  # layer 0's share of the first step's KL
    hist = train_vrnn(m, data.x, 0.01, 0.01, iters=100, lr=1e-2, generator=g)
    assert hist["loss"][-1] < 0.5 * hist["loss"][0]
    assert not m.core.A[0].requires_grad


def test_predictions_land_at_their_horizon():
    m = VRNN(2, (8,), (1,), (2.0,))
    x = torch.randn(3, 10, 2, generator=torch.Generator().manual_seed(0))
    p = predict_vrnn(m, x, start=4, horizon=3)
    assert p[:, :, :6].isnan().all() and not p[:, :, 6:].isnan().any()
    p1 = predict_vrnn(m, x, start=4, horizon=1)
    assert p1[:, :, :4].isnan().all() and not p1[:, :, 4:].isnan().any()


def test_bad_input():
    m = VRNN(2, (8,), (1,), (2.0,))
    with pytest.raises(ValueError, match="horizon"):
        predict_vrnn(m, torch.zeros(1, 5, 2), start=2, horizon=0)
    with pytest.raises(ValueError, match="iters"):
        train_vrnn(m, torch.zeros(1, 5, 2), 0.1, 0.1, iters=0)
    with pytest.raises(ValueError, match="x must be"):
        train_vrnn(m, torch.zeros(1, 5, 3), 0.1, 0.1, iters=1)
    with pytest.raises(ValueError, match="start"):
        predict_vrnn(m, torch.zeros(1, 5, 2), start=5, horizon=1)
    with pytest.raises(ValueError, match="enc_hidden"):
        VRNN(2, (8,), (1,), (2.0,), enc_hidden=0)
