import pytest
import torch

from varbook.data.pfsm import pfsm_sequences
from varbook.vi import pvrnn as pv
from varbook.vi.latent_seq import gaussian_from


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
    # the chapter's control: the same ER climbing the window's free energy predicts worse
    up = pv.error_regression(m, test.x, 0.01, 0.01, window=4, steps=15, lr=0.09, maximize=True, generator=g)
    assert ((up[:, :, 4:] - test.x[:, 4:]) ** 2).mean() > ((prior[:, :, 4:] - test.x[:, 4:]) ** 2).mean()
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
    with pytest.raises(ValueError, match="x must be"):
        pv.error_regression(m, torch.zeros(4, 12, 3), 0.1, 0.1, window=3, steps=1, lr=0.1)
    with pytest.raises(ValueError, match="iters"):
        pv.train(m, x, 0.1, 0.1, iters=True)
    with pytest.raises(ValueError, match="steps"):
        pv.lyapunov_exponent(m, steps=0)


def test_error_regression_horizon_places_predictions():
    m = small(1)
    x = pfsm_sequences(2, 10, generator=torch.Generator().manual_seed(3)).x
    p = pv.error_regression(m, x, 0.01, 0.01, window=3, steps=2, lr=0.05, horizon=3)
    assert p[:, :, :3].isnan().all() and not p[:, :, 3:].isnan().any()
    with pytest.raises(ValueError, match="horizon"):
        pv.error_regression(m, x, 0.01, 0.01, window=3, steps=2, lr=0.05, horizon=0)


def test_unroll_matches_a_step_by_step_reference():
    # the chapter's path (z drawn up front, priors and KL after the loop) against LatentCell.kl per step
    m = small(2).double()
    g = torch.Generator().manual_seed(1)
    m.init_bank_from_prior(g)
    pre = [a.detach()[:, :3] + 0.3 * torch.randn(a[:, :3].shape, generator=g, dtype=a.dtype) for a in m.A]
    kls, xs, states = [], [], []
    state = m.initial_state(3)
    for t in range(12):
        kl = 0.0
        for k, cell in enumerate(m.latent_cells):
            kl = kl + cell.kl(pre[k][:, :, t], None if t == 0 else state[k][1]) / m.z_sizes[k]
        state = m.step(state, [gaussian_from(p[:, :, t])[0] for p in pre])
        kls.append(kl), xs.append(m.output(state[0][1])), states.append(state)
    out = m.unroll(pre, m.initial_state(3), first=True, use_mean=True)
    torch.testing.assert_close(out["kl"], torch.stack(kls, 2))
    torch.testing.assert_close(out["x_hat"], torch.stack(xs, 2))
    # a window that starts later, from the carried state: its first prior is p(z | d_{t-1}), not N(0, I)
    late = m.unroll([p[:, :, 5:] for p in pre], states[4], first=False, use_mean=True)
    torch.testing.assert_close(late["kl"], torch.stack(kls[5:], 2))


def test_free_energy_weights_the_first_step_by_w_first():
    x, x_hat = torch.zeros(1, 3, 2), torch.ones(2, 1, 3, 2)
    kl = torch.ones(2, 1, 3)
    rec, wkl = pv.free_energy(x, x_hat, kl, [0.1, 0.2], [1.0, 2.0], first=True)
    torch.testing.assert_close(rec, torch.full((2, 1), 3.0))  # sum over t of the MSE per output dimension
    torch.testing.assert_close(wkl, torch.tensor([[1.2], [2.4]]))
    _, wkl = pv.free_energy(x, x_hat, kl, [0.1, 0.2], [1.0, 2.0], first=False)
    torch.testing.assert_close(wkl, torch.tensor([[0.3], [0.6]]))


def test_share_seed_gives_a_group_the_same_start_and_noise():
    m = small(4)
    m.share_seed([5, 5, 7, 7])
    for p in m.parameters():
        assert torch.equal(p[0], p[1]) and torch.equal(p[2], p[3])
    assert not torch.equal(m.out_weight[0], m.out_weight[2])  # random weights differ between groups
    g = torch.Generator().manual_seed(0)
    m.init_bank_from_prior(g)  # sampled bank, shared noise: equal within a group
    assert torch.equal(m.A[0][0], m.A[0][1]) and not torch.equal(m.A[0][0], m.A[0][2])
    x = pfsm_sequences(4, 12, generator=g).x
    pv.train(m, x, [0.01, 0.01, 0.01, 0.1], 0.01, iters=5, lr=1e-2, generator=g)
    w_out = m.out_weight
    assert torch.equal(w_out[0], w_out[1]) and not torch.equal(w_out[2], w_out[3])  # only w differs
    with pytest.raises(ValueError, match="share_seed"):
        m.share_seed([0, 1])


def test_lyapunov_matches_the_linear_regime_in_closed_form():
    # all weights 0 but W_dd = a I: the orbit stays at h = 0, where the map's Jacobian is
    # (1 - 1/tau) I + (a / tau) I per layer, so lambda = max_l log(1 - 1/tau_l + a_l / tau_l)
    m = pv.PVRNN(2, (3, 2), (1, 1), (2.0, 4.0), n_seq=1, length=1, n_models=2)
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        for k, (d, a) in enumerate(zip((3, 2), ((1.5, 0.2), (0.0, 0.4)), strict=True)):
            for j, a_j in enumerate(a):
                m.cells[k].weight[j, :, :d] = a_j * torch.eye(d)
    lam = pv.lyapunov_exponent(m, steps=500, burn_in=0)
    expected = torch.tensor([torch.tensor(1.25).log(), torch.tensor(0.85).log()], dtype=torch.float64)
    assert lam.dtype == torch.float64
    torch.testing.assert_close(lam, expected, atol=2e-3, rtol=0)


def test_lyapunov_runs_in_float64_whatever_the_model_dtype():
    m = small(1)
    torch.testing.assert_close(pv.lyapunov_exponent(m, steps=50), pv.lyapunov_exponent(m.double(), steps=50))
