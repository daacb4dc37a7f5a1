import pytest
import torch

from varbook.estimators import bonferroni_z
from varbook.llm.wta_crs import (
    SAMPLERS,
    ApproxLinear,
    SavedBytes,
    approx_weight_grad,
    batch_ratio_under_budget,
    capture_linear_io,
    expected_error,
    fine_tune,
    monte_carlo_check,
    optimal_probabilities,
    relative_errors,
    sample_rows,
    sample_size,
    saved_bytes,
    set_sampler,
    winner_count,
    wta_gain,
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


def test_capture_linear_io_gives_the_weight_gradient():
    torch.manual_seed(0)
    model = torch.nn.Sequential(ApproxLinear(5, 4, sampler="exact"), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    x = torch.randn(3, 7, 5)
    X, GY = capture_linear_io(model[0], lambda: model(x).pow(2).sum())
    assert X.shape == (21, 5) and GY.shape == (21, 4) and X.dtype == F64
    assert torch.allclose(GY.T @ X, model[0].weight.grad.double(), atol=1e-5)
    assert not model[0]._forward_hooks  # the hook is removed


def test_relative_errors_rows():
    x, gy = heavy_rows()
    rows = relative_errors(x, gy, ["crs", "wta_crs", "topk"], [0.2, 0.5])
    assert [(r["ratio"], r["sampler"]) for r in rows][:3] == [(0.2, "crs"), (0.2, "wta_crs"), (0.2, "topk")]
    k = sample_size(60, 0.5)
    assert rows[3]["oracle norms"] == pytest.approx(expected_error(x, gy, k, "crs") / (gy.T @ x).pow(2).sum())
    p_x = optimal_probabilities(x)
    assert rows[4]["input norms only"] == pytest.approx(
        expected_error(x, gy, k, "wta_crs", p_x) / (gy.T @ x).pow(2).sum()
    )


def test_monte_carlo_check_on_unbiased_and_biased_samplers():
    x, gy = heavy_rows()
    k = sample_size(60, 0.3)
    crs = monte_carlo_check(x, gy, k, "crs", 3000, generator=torch.Generator().manual_seed(0))
    assert crs["entries within 3 s.e."] >= 0.95 and crs["MC error / closed form"] == pytest.approx(1, abs=0.15)
    # uniform sampling with the oracle's name: the closed form still applies (it ignores p)
    uni = monte_carlo_check(x, gy, k, "uniform", 3000, generator=torch.Generator().manual_seed(0))
    assert uni["MC error / closed form"] == pytest.approx(1, abs=0.15)


def test_saved_bytes_restores_the_samplers():
    model = torch.nn.Sequential(ApproxLinear(8, 4, bias=False, sampler="exact"), ApproxLinear(4, 2, sampler="crs"))
    x = torch.randn(100, 8, requires_grad=True)
    exact = saved_bytes(model, "exact", 1.0, x)
    sampled = saved_bytes(model, "wta_crs", 0.3, x)
    assert sampled < exact and exact >= 100 * 8 * 4
    assert [(m.sampler, m.ratio) for m in model] == [("exact", 0.3), ("crs", 0.3)]


def test_fine_tune_history_and_cache():
    from varbook.llm.charlm import LineTask

    torch.manual_seed(0)
    tokens = torch.randint(2, 6, (12, 5))
    task = LineTask(tokens, torch.ones_like(tokens, dtype=torch.bool), tokens[:, 0] % 2, torch.arange(12), ["a", "b"])

    class Bag(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(6, 8)
            self.out = ApproxLinear(8, 2, sampler="crs", ratio=0.5)

        def forward(self, tokens, mask):
            return self.out(self.embed(tokens)).mean(1)

    model = Bag()
    history = fine_tune(model, task, 5, batch_size=4, lr=1e-2, generator=torch.Generator().manual_seed(0))
    assert len(history["loss"]) == 5 and model.out.example_ids is None
    assert model.out._cache and set(model.out._cache) <= set(range(12))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="measures CUDA memory")
def test_batch_ratio_under_budget_on_a_gpu():
    from varbook.llm.charlm import LineClassifier, LineTask
    from varbook.llm.wta_crs import approx_linear_factory
    from varbook.nn.transformer import TinyTransformer

    tokens = torch.randint(2, 20, (64, 32))
    task = LineTask(tokens, torch.ones_like(tokens, dtype=torch.bool), tokens[:, 0] % 4, torch.arange(64), list("abcd"))

    def make():
        backbone = TinyTransformer(20, 32, 1, 4, max_len=32, linear_factory=approx_linear_factory("exact", 0.3))
        return LineClassifier(backbone, 32, 4).cuda()

    out = batch_ratio_under_budget(make, task, batches=(64, 256))
    assert out["batch ratio"] > 1 and out["MiB per line, exact"] > out["MiB per line, wta_crs@0.3"] > 0


def test_batch_ratio_under_budget_needs_cuda():
    with pytest.raises(ValueError, match="CUDA"):
        batch_ratio_under_budget(lambda: ApproxLinear(2, 2), None)


def test_fine_tune_samplers_is_reproducible_and_leaves_the_backbone_alone():
    from varbook.llm.charlm import LineTask
    from varbook.llm.wta_crs import approx_linear_factory, fine_tune_samplers
    from varbook.nn.transformer import TinyTransformer

    torch.manual_seed(0)
    tokens = torch.randint(2, 12, (24, 10))
    task = LineTask(tokens, torch.ones_like(tokens, dtype=torch.bool), tokens[:, 0] % 2, torch.arange(24), ["a", "b"])
    train, test = task.holdout(8)
    backbone = TinyTransformer(12, 16, 1, 2, max_len=10, linear_factory=approx_linear_factory("exact", 0.3))
    before = [p.clone() for p in backbone.parameters()]
    out = fine_tune_samplers(backbone, train, test, ["exact", "wta_crs"], steps=3, seed=1)
    again = fine_tune_samplers(backbone, train, test, ["wta_crs"], steps=3, seed=1)
    wrong = fine_tune_samplers(backbone, train, test, ["wta_crs"], steps=3, seed=1, misaligned=True)
    assert list(out) == ["exact", "wta_crs"] and all(0 <= acc <= 1 and ms > 0 for acc, ms in out.values())
    assert again["wta_crs"][0] == out["wta_crs"][0] and 0 <= wrong["wta_crs"][0] <= 1
    assert all(torch.equal(p, q) for p, q in zip(before, backbone.parameters(), strict=True))


def test_without_replacement_is_the_biased_control():
    x, gy = heavy_rows()
    k = sample_size(60, 0.3)
    gen = torch.Generator().manual_seed(0)
    idx, _ = sample_rows(optimal_probabilities(x, gy), k, "crs", gen, replacement=False)
    assert len(set(idx.tolist())) == k  # distinct rows
    wrong = monte_carlo_check(x, gy, k, "crs", 3000, generator=gen, replacement=False)
    assert wrong["entries within 3 s.e."] < 0.9 and abs(wrong["MC error / closed form"] - 1) > 0.15


def test_wta_gain_adaptive_never_worse_fixed_can_be():
    g = torch.Generator().manual_seed(0)
    x, gy = torch.randn(200, 5, generator=g, dtype=F64), torch.randn(200, 4, generator=g, dtype=F64)  # flat norms
    ratios = [0.05, 0.1, 0.3]
    adaptive = wta_gain(x, gy, ratios)
    assert all(v <= 1 + 1e-9 for v in adaptive)
    k = sample_size(200, 0.1)
    p = optimal_probabilities(x, gy)
    assert adaptive[1] == pytest.approx(expected_error(x, gy, k, "wta_crs", p) / expected_error(x, gy, k, "crs", p))
    assert max(wta_gain(x, gy, ratios, winners_fraction=0.5)) > 1  # a fixed winner set does worse here
    assert expected_error(x, gy, k, "wta_crs", p, winners=0) == pytest.approx(expected_error(x, gy, k, "crs", p))


def test_misaligned_backward_pairs_rows_wrongly():
    torch.manual_seed(0)
    layer = ApproxLinear(6, 3, sampler="wta_crs", ratio=0.5).double()
    x = torch.randn(40, 6, dtype=F64)
    grads = []
    for misaligned in (False, True):
        layer.misaligned = misaligned
        layer.weight.grad = None
        torch.manual_seed(1)  # the same rows kept
        (layer(x) ** 2).sum().backward()
        grads.append(layer.weight.grad.clone())
    assert not torch.allclose(grads[0], grads[1])
    layer.misaligned, layer.sampler = True, "exact"  # nothing to misalign when every row is kept
    layer.weight.grad = None
    (layer(x) ** 2).sum().backward()
    exact = 2 * (x @ layer.weight.T + layer.bias).detach().T @ x
    assert torch.allclose(layer.weight.grad, exact)


def test_squared_error_of_the_mean_is_about_one_for_unbiased_samplers():
    x, gy = heavy_rows()
    k = sample_size(60, 0.3)
    gen = torch.Generator().manual_seed(3)
    key = "n ‖mean − ∇W‖² / closed form"
    values = [monte_carlo_check(x, gy, k, "wta_crs", 500, generator=gen)[key] for _ in range(20)]
    assert 0.5 < sum(values) / len(values) < 1.5  # its expectation is 1
    assert monte_carlo_check(x, gy, k, "crs", 500, generator=gen, replacement=False)[key] > 6.635
