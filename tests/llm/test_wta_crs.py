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
    assert crs["n ‖mean − ∇W‖² / closed form"] < 6.635 and crs["MC error / closed form"] == pytest.approx(1, abs=0.15)
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
    assert list(out) == ["exact", "wta_crs"] and all(0 <= run[0] <= 1 and run[1] > 0 for run in out.values())
    assert again["wta_crs"][0] == out["wta_crs"][0] and 0 <= wrong["wta_crs"][0] <= 1
    # 3 steps of 32 lines over 16 training lines: every later step reuses cached norms
    share_passes, share_rows = out["wta_crs"][2:]
    assert share_passes == pytest.approx(2 / 3) and 0 < share_rows < share_passes
    assert all(v != v for v in out["exact"][2:])  # nan: exact samples nothing
    assert all(torch.equal(p, q) for p, q in zip(before, backbone.parameters(), strict=True))


def test_without_replacement_is_the_biased_control():
    x, gy = heavy_rows()
    k = sample_size(60, 0.3)
    gen = torch.Generator().manual_seed(0)
    idx, _ = sample_rows(optimal_probabilities(x, gy), k, "crs", gen, replacement=False)
    assert len(set(idx.tolist())) == k  # distinct rows
    wrong = monte_carlo_check(x, gy, k, "crs", 3000, generator=gen, replacement=False)
    assert wrong["n ‖mean − ∇W‖² / closed form"] > 6.635 and abs(wrong["MC error / closed form"] - 1) > 0.15


@pytest.mark.parametrize("sampler", ["uniform", "crs", "wta_crs", "topk", "exact"])
@pytest.mark.parametrize("replacement", [True, False])
def test_draw_rows_matches_sample_rows(sampler, replacement):
    from varbook.llm.wta_crs import draw_rows

    x, gy = heavy_rows()
    p, k = optimal_probabilities(x, gy), sample_size(60, 0.3)
    weights = draw_rows(p, k, sampler, 4000, torch.Generator().manual_seed(0), replacement)
    one = torch.zeros(4000, 60, dtype=F64)
    gen = torch.Generator().manual_seed(1)
    for d in range(4000):
        idx, w = sample_rows(p, k, sampler, gen, replacement)
        one[d].index_add_(0, idx, w)
    # the same distribution of row weights: equal means per row, within Monte Carlo error
    se = (weights.var(0) / 4000 + one.var(0) / 4000).sqrt().clamp_min(1e-12)
    assert ((weights.mean(0) - one.mean(0)).abs() / se).max() < bonferroni_z(60, 0.001)
    kept = (weights > 0).sum(1)  # distinct kept rows per draw: all N, k, or at most k draws that may repeat
    assert bool((kept == 60).all()) if sampler == "exact" else int(kept.max()) <= k
    if not replacement and sampler in ("crs", "topk"):
        assert bool((kept == k).all())
    # the errors of the draws are the quadratic forms in the Gram matrix that monte_carlo_check uses
    exact = gy.T @ x
    direct = torch.stack([(gy.T @ (c[:, None] * x) - exact).pow(2).sum() for c in weights[:5]])
    dev = weights[:5] - 1
    assert torch.allclose(direct, ((dev @ ((gy @ gy.T) * (x @ x.T))) * dev).sum(1))


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


def _layer_backward_statistic(sampler, cache, n_calls=1000, misaligned=False, seed=0):
    """n ‖mean of the layer's sampled ∇W − ∇W‖² / closed-form error, over ``n_calls`` real ``.backward()`` calls."""
    g = torch.Generator().manual_seed(seed)
    b, length, d_in, d_out = 4, 15, 5, 3
    scale = torch.exp(1.2 * torch.randn(b, length, 1, generator=g, dtype=F64))  # heavy rows
    x = scale * torch.randn(b, length, d_in, generator=g, dtype=F64)
    c = torch.randn(b, length, d_out, generator=g, dtype=F64)  # the upstream gradient dY
    c[:, -3:] = 0  # padding-like tokens with no gradient
    layer = ApproxLinear(d_in, d_out, sampler=sampler, ratio=0.3, generator=g).double()
    layer.misaligned = misaligned
    layer.example_ids = torch.arange(b)
    flat_x, flat_c = x.reshape(-1, d_in), c.reshape(-1, d_out)
    exact = flat_c.T @ flat_x
    total = torch.zeros_like(exact)
    for _ in range(n_calls):
        layer._cache = dict(cache)  # the same cache before every call (backward overwrites it)
        layer.weight.grad = None
        (layer(x) * c).sum().backward()
        total += layer.weight.grad
    layer._cache = dict(cache)
    p = optimal_probabilities(flat_x, layer.cached_grad_norms(b * length, "cpu"))
    closed = expected_error(flat_x, flat_c, sample_size(b * length, 0.3), sampler, p)
    layer.winners = winner_count(p, sample_size(b * length, 0.3))
    return n_calls * float(((total / n_calls - exact) ** 2).sum()) / closed, layer


@pytest.mark.parametrize("sampler", ["crs", "wta_crs"])
@pytest.mark.parametrize("cached", ["none", "all", "some"])
def test_layer_backward_is_unbiased_over_many_calls(sampler, cached):
    """The layer's own backward (not a helper) averages to ∇W, with no cache, a full one, or a partial one."""
    g = torch.Generator().manual_seed(5)
    stale = {i: (torch.rand(15, generator=g, dtype=F64) + 0.1) for i in range(4)}  # stale, wrong-ish norms
    for row in stale.values():
        row[-3:] = 0
    cache = {"none": {}, "all": stale, "some": {i: stale[i] for i in (0, 2)}}[cached]
    stat, layer = _layer_backward_statistic(sampler, cache)
    # its expectation is 1; above 6.635 (the 99 % point of chi2_1) at most 1 % of the time when unbiased
    assert stat < 6.635
    assert sampler == "crs" or layer.winners > 0  # WTA-CRS keeps some rows exactly here: it is not CRS
    assert layer.usage["passes"] == 1001 and layer.usage["with_norms"] == (0 if cached == "none" else 1001)


def test_layer_backward_statistic_rejects_the_misaligned_backward():
    stat, _ = _layer_backward_statistic("wta_crs", {}, n_calls=1000, misaligned=True)
    assert stat > 100 * 6.635


def test_cached_norms_fall_back_per_example():
    layer = ApproxLinear(3, 2, sampler="wta_crs")
    layer.example_ids = torch.tensor([0, 1, 2])
    assert layer.cached_grad_norms(12, "cpu") is None  # nothing cached: input norms only
    layer._cache = {1: torch.tensor([2.0, 4.0, 0.0, 0.0])}
    norms = layer.cached_grad_norms(12, "cpu")
    # example 1 keeps its own norms; 0 and 2 get the mean of the non-zero cached norms, 3
    assert norms.tolist() == [3.0] * 4 + [2.0, 4.0, 0.0, 0.0] + [3.0] * 4
    assert layer.usage == {"passes": 2, "with_norms": 1, "rows": 24, "rows_cached": 4}
    assert layer.cached_grad_norms(10, "cpu") is None  # rows do not split into the examples


@pytest.mark.parametrize("sampler", ["crs", "wta_crs"])
def test_sample_batched_rows_are_unbiased_with_the_closed_form_error(sampler):
    from varbook.llm.wta_crs import sample_batched

    rows = [heavy_rows(40, seed=s) for s in range(3)]
    p = torch.stack([optimal_probabilities(x, gy) for x, gy in rows])
    k = sample_size(40, 0.3)
    gen = torch.Generator().manual_seed(0)
    n_draws = 3000
    sq = torch.zeros(3, dtype=F64)
    if sampler == "wta_crs":
        assert all(winner_count(p[r], k) > 0 for r in range(3))  # heavy rows: some winners
    totals = [torch.zeros(4, 5, dtype=F64) for _ in rows]
    for _ in range(n_draws):
        idx, w = sample_batched(p, k, sampler, gen)
        assert idx.shape == w.shape == (3, k)
        for r, (x, gy) in enumerate(rows):
            est = (gy[idx[r]] * w[r, :, None]).T @ x[idx[r]]
            totals[r] += est
            sq[r] += ((est - gy.T @ x) ** 2).sum()
    for r, (x, gy) in enumerate(rows):
        closed = expected_error(x, gy, k, sampler, p[r])
        assert float(sq[r]) / n_draws == pytest.approx(closed, rel=0.1)
        stat = n_draws * float(((totals[r] / n_draws - gy.T @ x) ** 2).sum()) / closed
        assert stat < 6.635
    if sampler == "wta_crs":  # the winners come first, with weight 1, as many as winner_count says
        idx, w = sample_batched(p, k, sampler, gen)
        for r in range(3):
            c = winner_count(p[r], k)
            assert torch.equal(idx[r, :c], p[r].topk(c).indices) and bool((w[r, :c] == 1).all())


@pytest.mark.parametrize("sample_a", [True, False])
def test_approx_matmul_backward_is_unbiased_and_stores_less(sample_a):
    from varbook.llm.wta_crs import ApproxMatmul

    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 12, 5, dtype=F64, generator=g) * torch.exp(torch.randn(3, 12, 1, dtype=F64, generator=g))
    b = torch.randn(3, 5, 14, dtype=F64, generator=g)
    c = torch.randn(3, 12, 14, dtype=F64, generator=g)  # the upstream gradient
    exact_a, exact_b = c @ b.transpose(1, 2), a.transpose(1, 2) @ c
    mod = ApproxMatmul("wta_crs", 0.3, generator=g, sample_a=sample_a)
    a_, b_ = a.clone().requires_grad_(), b.clone().requires_grad_()
    n = 2000
    sums = [torch.zeros_like(a), torch.zeros_like(b)]
    squares = [torch.zeros_like(a), torch.zeros_like(b)]
    for _ in range(n):
        a_.grad = b_.grad = None
        out = mod(a_, b_)
        (out * c).sum().backward()
        for s, q, grad in zip(sums, squares, (a_.grad, b_.grad), strict=True):
            s += grad
            q += grad**2
    assert torch.allclose(out, a @ b)  # the forward pass is exact
    for s, q, exact in zip(sums, squares, (exact_a, exact_b), strict=True):
        mean, var = s / n, (q / n - (s / n) ** 2).clamp_min(0)
        if bool((var < 1e-20).all()):  # not sampled: exact every time
            assert torch.allclose(mean, exact)
            continue
        z = (mean - exact) / (var / n).sqrt().clamp_min(1e-12)
        assert z.abs().max() < bonferroni_z(exact.numel(), alpha=0.001)
    assert sample_a or torch.allclose(sums[1] / n, exact_b)  # A stored whole: grad B exact
    with SavedBytes() as meter:
        mod(a_, b_)
    with SavedBytes() as whole:
        a_ @ b_
    assert meter.bytes < whole.bytes
    mod.sampler = "exact"
    a_.grad = b_.grad = None
    (mod(a_, b_) * c).sum().backward()
    assert torch.allclose(a_.grad, exact_a) and torch.allclose(b_.grad, exact_b)


def test_checkpointing_keeps_outputs_and_gradients_and_stores_less():
    from varbook.llm.charlm import fresh_classifier
    from varbook.llm.wta_crs import approx_linear_factory, approx_matmul_factory, with_checkpointing
    from varbook.nn.transformer import TinyTransformer

    torch.manual_seed(0)
    lm = TinyTransformer(
        12,
        16,
        2,
        2,
        max_len=10,
        linear_factory=approx_linear_factory("exact", 0.3),
        matmul_factory=approx_matmul_factory("exact", 0.3),
    )
    model = fresh_classifier(lm, 3)
    ckpt = with_checkpointing(model)
    x = torch.randint(2, 12, (4, 10))
    mask = torch.ones_like(x, dtype=torch.bool)
    assert torch.allclose(model(x, mask), ckpt(x, mask))
    for m in (model, ckpt):
        m.zero_grad()
        m(x, mask).pow(2).sum().backward()
    for p, q in zip(model.parameters(), ckpt.parameters(), strict=True):
        assert (p.grad is None and q.grad is None) or torch.allclose(p.grad, q.grad, atol=1e-6)
    assert saved_bytes(ckpt, "exact", 1.0, x, mask) < saved_bytes(model, "exact", 1.0, x, mask) / 3


def test_lora_saved_bytes_with_peft():
    pytest.importorskip("peft")
    from varbook.llm.charlm import fresh_classifier
    from varbook.llm.wta_crs import approx_linear_factory, lora_saved_bytes
    from varbook.nn.transformer import TinyTransformer

    torch.manual_seed(0)
    lm = TinyTransformer(12, 16, 1, 2, max_len=20, linear_factory=approx_linear_factory("exact", 0.3))
    model = fresh_classifier(lm, 3)
    x = torch.randint(2, 12, (8, 20))
    out = lora_saved_bytes(model, (x, torch.ones_like(x, dtype=torch.bool)), rank=2)
    lora, lora_wta = out.values()
    assert lora_wta < 0.8 * lora  # the adapters' inputs are sampled
    assert all(p.grad is None for p in model.parameters())  # the model itself is untouched


def test_memory_comparison_rows_and_the_explicit_baseline():
    from varbook.llm.charlm import fresh_classifier
    from varbook.llm.wta_crs import ApproxMatmul, approx_linear_factory, approx_matmul_factory, memory_comparison
    from varbook.nn.transformer import TinyTransformer

    torch.manual_seed(0)
    lm = TinyTransformer(
        12,
        16,
        1,
        2,
        max_len=40,
        linear_factory=approx_linear_factory("exact", 0.3),
        matmul_factory=approx_matmul_factory("exact", 0.3),
    )
    model = fresh_classifier(lm, 3)
    x = torch.randint(2, 12, (8, 40))
    memory = memory_comparison(model, (x, torch.ones_like(x, dtype=torch.bool)), lora_rank=2)
    explicit = memory["exact, attention weights stored"]
    assert explicit > memory["exact @ 1.0"]  # the fused kernel keeps no attention weights
    assert memory["wta_crs @ 0.1"] < memory["wta_crs @ 0.3"] < explicit
    # linear layers only: the attention stays on the fused kernel, which keeps no attention weights
    assert memory["wta_crs @ 0.3, linear layers only"] < memory["exact @ 1.0"]
    assert memory["exact, checkpointed blocks"] < min(
        memory["wta_crs @ 0.1"], memory["wta_crs @ 0.3, linear layers only"]
    )
    assert all(m.fused_when_exact and m.sampler == "exact" for m in model.modules() if isinstance(m, ApproxMatmul))
