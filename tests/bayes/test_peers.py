import pytest
import torch

pytest.importorskip("bayesian_torch")

from varbook.bayes import peers  # noqa: E402


def test_bayesian_torch_layer_has_our_distribution_and_kl():
    state = torch.get_rng_state()
    out = peers.bayesian_torch_linear(seed=1, n_samples=2000)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator did not move
    kl_rel = abs(out["KL ours, averaged per tensor"] / out["KL bayesian-torch"] - 1)
    assert kl_rel < 1e-5
    assert out["KL ours (sum over weights)"] > out["KL bayesian-torch"]  # a sum over 105 entries, not a mean
    assert out["max |mean difference|/s.e."] < 4.5 and out["max relative variance difference"] < 0.15
    assert out == peers.bayesian_torch_linear(seed=1, n_samples=2000)
