import pytest
import torch

from varbook.data.pfsm import pfsm_sequences
from varbook.vi import pvrnn as pv


def small(n_models=2):
    torch.manual_seed(0)
    return pv.PVRNN(2, (8, 4), (2, 1), (2.0, 4.0), n_seq=4, length=12, n_models=n_models)


def test_batched_models_match_single_models():
    m = small(2)
    g = torch.Generator().manual_seed(0)
    m.init_bank_from_prior(g)
    out = m.unroll(m.bank(torch.arange(4)), m.initial_state(4), first=True, use_mean=True)
    one = pv.PVRNN(2, (8, 4), (2, 1), (2.0, 4.0), n_seq=4, length=12, n_models=1)
    with torch.no_grad():
        for p1, p in zip(one.parameters(), m.parameters(), strict=True):
            p1.copy_(p[1:2])
    out1 = one.unroll(one.bank(torch.arange(4)), one.initial_state(4), first=True, use_mean=True)
    torch.testing.assert_close(out["x_hat"][1:2], out1["x_hat"])
    torch.testing.assert_close(out["kl"][1:2], out1["kl"])


def test_bank_initialised_from_prior_has_small_kl():
    m = small()
    m.init_bank_from_prior(use_mean=True)
    # along the prior-mean path the prior was read on, q equals p at every step: KL = 0
    kl = m.unroll(m.bank(torch.arange(4)), m.initial_state(4), first=True, use_mean=True)["kl"]
    assert kl.abs().max() < 1e-6
    m.init_bank_from_prior(torch.Generator().manual_seed(0))  # a sampled path: q is near p, not equal
    assert m.unroll(m.bank(torch.arange(4)), m.initial_state(4), first=True, use_mean=True)["kl"].mean() < 0.5


def test_error_regression_lowers_error_and_zero_lr_is_prior():
    g = torch.Generator().manual_seed(0)
    data = pfsm_sequences(4, 12, generator=g)
    m = small(1)
    m.init_bank_from_prior(g)
    pv.train(m, data.x, 0.01, 0.01, iters=400, lr=1e-2, generator=g)
    test = pfsm_sequences(3, 12, generator=g)
    er = pv.error_regression(m, test.x, 0.01, 0.01, window=4, steps=15, lr=0.09, generator=g)
    off = pv.error_regression(m, test.x, 0.01, 0.01, window=4, steps=15, lr=0.0, generator=g)
    prior = pv.prior_predictions(m, 3, 12)
    torch.testing.assert_close(off[:, :, 1:], prior[:, :, 1:])
    err = ((er[:, :, 4:] - test.x[:, 4:]) ** 2).mean()
    assert err < 0.9 * ((prior[:, :, 4:] - test.x[:, 4:]) ** 2).mean()
    assert all(p.requires_grad for p in m.parameters())


def test_lyapunov_of_contracting_model_is_negative():
    m = small(1)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(0.1)
    assert pv.lyapunov_exponent(m, steps=100, burn_in=10).item() < 0


def test_bad_input():
    m = small()
    x = torch.zeros(4, 12, 2)
    with pytest.raises(ValueError, match=">= 0"):
        pv.train(m, x, [-1.0, 0.1], 0.1, iters=1)
    with pytest.raises(ValueError, match="one meta-prior weight per model"):
        pv.train(m, x, [0.1, 0.1, 0.1], 0.1, iters=1)
    with pytest.raises(ValueError, match="iters"):
        pv.train(m, x, 0.1, 0.1, iters=0)
    with pytest.raises(ValueError, match="x must be"):
        pv.train(m, torch.zeros(4, 11, 2), 0.1, 0.1, iters=1)
    with pytest.raises(ValueError, match="window"):
        pv.error_regression(m, x, 0.1, 0.1, window=12, steps=1, lr=0.1)
    with pytest.raises(ValueError, match="steps"):
        pv.error_regression(m, x, 0.1, 0.1, window=3, steps=0, lr=0.1)
    with pytest.raises(ValueError, match="one entry per layer"):
        pv.PVRNN(2, (8,), (2, 1), (2.0,), 1, 1)


def test_error_regression_horizon_places_predictions():
    m = small(1)
    x = pfsm_sequences(2, 10, generator=torch.Generator().manual_seed(3)).x
    p = pv.error_regression(m, x, 0.01, 0.01, window=3, steps=2, lr=0.05, horizon=3)
    assert p[:, :, :3].isnan().all() and not p[:, :, 3:].isnan().any()
    with pytest.raises(ValueError, match="horizon"):
        pv.error_regression(m, x, 0.01, 0.01, window=3, steps=2, lr=0.05, horizon=0)
