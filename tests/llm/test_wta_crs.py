import pytest
import torch

from varbook.estimators import bonferroni_z
from varbook.llm.wta_crs import (
    SAMPLERS,
    ApproxLinear,
    SavedBytes,
    approx_weight_grad,
    expected_error,
    optimal_probabilities,
    sample_rows,
    sample_size,
    set_sampler,
    winner_count,
)

F64 = torch.float64


def heavy_rows(n=60, d_in=5, d_out=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    scale = torch.exp(1.5 * torch.randn(n, 1, generator=g, dtype=F64))  # a few rows dominate, as in trained nets
    return scale * torch.randn(n, d_in, generator=g, dtype=F64), torch.randn(n, d_out, generator=g, dtype=F64)


def test_exact_path_gradcheck():
    layer = ApproxLinear(4, 3, sampler="exact").double()
    x = torch.randn(2, 5, 4, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: torch.nn.functional.linear(x, w, b), (x, layer.weight, layer.bias))

    def f(x, w, b):
        layer.weight, layer.bias = torch.nn.Parameter(w), torch.nn.Parameter(b)
        return layer(x)

    w = layer.weight.detach().clone().requires_grad_(True)
    b = layer.bias.detach().clone().requires_grad_(True)
    from varbook.llm.wta_crs import _ApproxLinearFunction

    assert torch.autograd.gradcheck(lambda x, w, b: _ApproxLinearFunction.apply(x, w, b, layer), (x, w, b))


@pytest.mark.parametrize("sampler", ["uniform", "crs", "wta_crs"])
def test_sampled_weight_gradients_are_unbiased(sampler):
    x, gy = heavy_rows()
    exact = gy.T @ x
    k = sample_size(60, 0.3)
    gen = torch.Generator().manual_seed(1)
    draws = torch.stack([approx_weight_grad(x, gy, k, sampler, generator=gen).flatten() for _ in range(8000)])
    z = (draws.mean(0) - exact.flatten()) / (draws.std(0) / draws.shape[0] ** 0.5)
    assert z.abs().max() < bonferroni_z(exact.numel(), alpha=0.001)
    # Monte Carlo error matches the closed form
    mc = ((draws - exact.flatten()) ** 2).sum(1).mean()
    assert float(mc) == pytest.approx(expected_error(x, gy, k, sampler), rel=0.1)


def test_topk_is_biased_and_wta_beats_crs():
    x, gy = heavy_rows()
    k = sample_size(60, 0.3)
    est = approx_weight_grad(x, gy, k, "topk")
    assert (est - gy.T @ x).abs().max() > 1e-6
    assert expected_error(x, gy, k, "wta_crs") <= expected_error(x, gy, k, "crs") <= expected_error(x, gy, k, "uniform")
    assert expected_error(x, gy, k, "exact") == 0.0


def test_sample_rows_and_winners():
    p = torch.tensor([0.5, 0.3, 0.1, 0.05, 0.05], dtype=F64)
    assert winner_count(p, 3) >= 1
    idx, w = sample_rows(p, 3, "wta_crs", torch.Generator().manual_seed(0))
    assert len(idx) == 3 and 0 in idx.tolist()
    idx, w = sample_rows(p, 5, "exact")
    assert torch.equal(w, torch.ones(5, dtype=F64))
    with pytest.raises(ValueError, match="unknown sampler"):
        sample_rows(p, 2, "gumbel")
    with pytest.raises(ValueError, match="ratio"):
        sample_size(10, 0.0)
    assert torch.allclose(optimal_probabilities(torch.ones(3, 2)).sum(), torch.tensor(1.0))


def test_saved_bytes_hand_counted():
    layer = ApproxLinear(8, 4, bias=False, sampler="exact")
    x = torch.randn(100, 8, requires_grad=True)
    with SavedBytes(layer.parameters()) as meter:
        layer(x).sum()
    assert meter.bytes == 100 * 8 * 4  # the full input, float32
    set_sampler(layer, "crs", 0.3)
    with SavedBytes(layer.parameters()) as meter:
        y = layer(x)
    assert meter.bytes == 30 * 8 * 4  # k = 30 kept rows (the sampled indices are not autograd-saved tensors)
    y.sum().backward()
    assert layer.weight.grad.shape == (4, 8)


def test_approx_layer_backward_and_cache():
    torch.manual_seed(0)
    layer = ApproxLinear(6, 3, sampler="wta_crs", ratio=0.3)
    layer.example_ids = torch.tensor([7, 9])
    x = torch.randn(2, 20, 6, requires_grad=True)
    layer(x).pow(2).sum().backward()
    assert x.grad.shape == x.shape and layer.bias.grad.shape == (3,)
    assert set(layer._cache) == {7, 9} and layer._cache[7].shape == (20,)
    assert layer.cached_grad_norms(40, "cpu").shape == (40,)
    with torch.no_grad():
        assert torch.allclose(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias))
    with pytest.raises(ValueError):
        ApproxLinear(2, 2, sampler="magic")
    assert set(SAMPLERS) >= {"exact", "crs", "wta_crs"}
