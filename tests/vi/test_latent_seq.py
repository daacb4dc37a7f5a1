import pytest
import torch

from varbook.vi.kl import gaussian_kl
from varbook.vi.latent_seq import LOG_SIGMA_RANGE, LatentCell, gaussian_from, sample


def test_kl_matches_gaussian_kl_and_monte_carlo():
    torch.manual_seed(0)
    cell = LatentCell(hidden=4, z_dim=2, n_models=1).double()
    d_prev = torch.randn(1, 3, 4).double()
    post = 0.5 * torch.randn(1, 3, 4).double()
    kl = cell.kl(post, d_prev)
    mu_q, ls_q = gaussian_from(post)
    mu_p, ls_p = cell.prior(d_prev)
    torch.testing.assert_close(kl, gaussian_kl(mu_q, 2 * ls_q, mu_p, 2 * ls_p))
    # Monte Carlo through the cell's own sampler: E_q[log q - log p], within 4 standard errors
    g = torch.Generator().manual_seed(1)
    n = 200_000
    z = sample(mu_q.expand(n, 3, 2), ls_q.expand(n, 3, 2), g)
    q = torch.distributions.Normal(mu_q, ls_q.exp())
    p = torch.distributions.Normal(mu_p, ls_p.exp())
    terms = (q.log_prob(z) - p.log_prob(z)).sum(-1)
    se = terms.std(0) / n**0.5
    assert ((terms.mean(0) - kl[0]).abs() < 4 * se).all()


def test_first_step_prior_is_standard_normal():
    cell = LatentCell(hidden=2, z_dim=3).double()
    post = torch.randn(1, 4, 6).double()
    mu, ls = gaussian_from(post)
    torch.testing.assert_close(cell.kl(post, None), gaussian_kl(mu, 2 * ls))


def test_log_sigma_is_clamped():
    _, ls = gaussian_from(torch.tensor([0.0, 0.0, 50.0, -50.0]))
    assert ls.tolist() == [LOG_SIGMA_RANGE[1], LOG_SIGMA_RANGE[0]]


def test_bad_input():
    with pytest.raises(ValueError, match="even"):
        gaussian_from(torch.zeros(3))
    with pytest.raises(ValueError, match="positive"):
        LatentCell(0, 2)


def test_groups_share_the_noise_and_bad_groups_raise():
    g = torch.Generator().manual_seed(0)
    mu, ls = torch.zeros(4, 3, 2), torch.zeros(4, 3, 2)
    e = sample(mu, ls, g, groups=torch.tensor([0, 1, 0, 1]))
    assert torch.equal(e[0], e[2]) and torch.equal(e[1], e[3]) and not torch.equal(e[0], e[1])
    e = sample(mu, ls, torch.Generator().manual_seed(0))  # no groups: every model its own draw
    assert not torch.equal(e[0], e[2])
    with pytest.raises(ValueError, match="groups"):
        sample(mu, ls, groups=torch.tensor([0.0, 1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="groups"):
        sample(mu, ls, groups=torch.tensor([0, 1]))
