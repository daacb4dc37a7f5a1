"""The experiment functions of the stochastic-interpolants chapter (varbook.diffusion.interpolants)."""

import math

import pytest
import torch

from varbook.data import Split
from varbook.diffusion import GaussianMixture
from varbook.diffusion import interpolants as si
from varbook.diffusion.interpolants import Interpolant, InterpolantMixtureField
from varbook.sde import solvers

F64 = torch.float64
TWO_MODES = GaussianMixture(torch.ones(2), torch.tensor([[-2.0], [2.0]]), 0.3**2 * torch.ones(2, 1, 1))
STD_1D = GaussianMixture(torch.ones(1), torch.zeros(1, 1), torch.ones(1, 1, 1))
STD_2D = GaussianMixture(torch.ones(1), torch.zeros(1, 2), torch.eye(2)[None])
RING = GaussianMixture.ring(n_components=4, radius=2.0, std=0.4)


def test_as_field_takes_scalar_and_batched_times():
    def net(x, t):
        assert t.shape == (x.shape[0],)
        return x * t[:, None]

    f = si.as_field(net)
    x = torch.ones(3, 2)
    torch.testing.assert_close(f(x, 0.5), 0.5 * x)
    torch.testing.assert_close(f(x, torch.tensor([0.0, 1.0, 2.0])), x * torch.tensor([[0.0], [1.0], [2.0]]))


def test_w1_to_mixture_of_a_shift_is_the_shift():
    g = torch.Generator().manual_seed(0)
    x = TWO_MODES.sample(50000, g)
    assert si.w1_to_mixture(x, TWO_MODES) < 0.02  # sampling noise only
    assert si.w1_to_mixture(x + 0.5, TWO_MODES) == pytest.approx(0.5, abs=0.02)  # W1 of a translation is its length
    with pytest.raises(ValueError, match="one-dimensional"):
        si.w1_to_mixture(x, RING)


def test_w1_sweep_runs_the_ode_at_zero_and_keeps_paths():
    field = InterpolantMixtureField(Interpolant("one_sided_linear"), STD_1D, TWO_MODES)
    x = torch.randn(4000, 1, dtype=F64, generator=torch.Generator().manual_seed(1))
    ts = torch.linspace(0, 0.999, 101, dtype=F64)
    w1, paths = si.w1_sweep(
        field.b, field.score, x, ts, [0.0, 1.0], TWO_MODES, torch.Generator().manual_seed(2), keep=10
    )
    assert w1[0.0] == pytest.approx(si.w1_to_mixture(solvers.euler(field.b, x, ts), TWO_MODES))
    assert max(w1.values()) < 0.1  # exact fields reach the target at every level
    assert paths[1.0].shape == (101, 10, 1)
    _, none = si.w1_sweep(field.b, field.score, x, ts, [0.5], TWO_MODES, torch.Generator().manual_seed(2))
    assert none == {}


def test_mistaken_sdes_miss_the_target_that_the_right_one_reaches():
    field = InterpolantMixtureField(Interpolant("one_sided_linear"), STD_1D, TWO_MODES)
    x = torch.randn(20000, 1, dtype=F64, generator=torch.Generator().manual_seed(1))
    ts = torch.linspace(0, 0.999, 201, dtype=F64)
    right, _ = si.w1_sweep(field.b, field.score, x, ts, [1.0], TWO_MODES, torch.Generator().manual_seed(2))
    for mistake in si.SDE_MISTAKES:
        wrong = si.w1_mistaken(field.b, field.score, x, ts, TWO_MODES, mistake, 1.0, torch.Generator().manual_seed(2))
        assert wrong > 2 * right[1.0] + 0.03, mistake  # the controls of the chapter can fail
    g = torch.Generator().manual_seed(3)
    out = si.sample_sde_mistaken(field.b, field.score, x[:5], ts, 0.5, "noise √ε", generator=g)
    ref = solvers.euler_maruyama(
        lambda y, t: field.b(y, t) + 0.5 * field.score(y, t), lambda y, t: math.sqrt(0.5), x[:5], ts,
        generator=torch.Generator().manual_seed(3),
    )  # fmt: skip
    torch.testing.assert_close(out, ref)
    with pytest.raises(ValueError, match="SDE mistake"):
        si.sample_sde_mistaken(field.b, field.score, x, ts, 0.5, "no drift")
    with pytest.raises(ValueError, match="positive"):
        si.sample_sde_mistaken(field.b, field.score, x, ts, 0.0, "no score")


def test_antithetic_pairs_cut_the_variance_near_the_singular_end():
    g = torch.Generator().manual_seed(3)
    it = Interpolant("one_sided_linear")
    field = InterpolantMixtureField(it, STD_1D, TWO_MODES)
    rows = si.antithetic_variances(field.score, it, STD_1D.sample(5000, g), TWO_MODES.sample(5000, g), [0.02, 0.98])
    assert [r["t"] for r in rows] == [0.02, 0.98]
    first, last = rows
    assert first["ratio / 2 (equal cost)"] == pytest.approx(0.5, abs=0.05)  # no gain where the latent term is small
    assert last["ratio / 2 (equal cost)"] > 5
    assert last["ratio / 2 (equal cost)"] == pytest.approx(
        last["variance, plain"] / last["variance, antithetic pair"] / 2
    )
    # the control, a pair of independent latents, only halves the variance: a ratio / 2 near 1 at every time
    assert all(r["ratio / 2, independent pair (control)"] == pytest.approx(1.0, abs=0.15) for r in rows)


def test_identity_holds_for_exact_fields():
    it = Interpolant("linear", "brownian")
    field = InterpolantMixtureField(it, RING, STD_2D)
    g = torch.Generator().manual_seed(4)
    fit = si.identity_discrepancy(
        field.b, field.v, field.score, it, RING.sample(500, g), STD_2D.sample(500, g), generator=g
    )
    assert list(fit) == [0.1, 0.3, 0.5, 0.7, 0.9]
    assert max(fit.values()) < 1e-6  # b = v - γγ's (float32 round-off only)
    flipped = si.identity_discrepancy(
        field.b, field.v, field.score, it, RING.sample(500, g), STD_2D.sample(500, g), generator=g, wrong_sign=True
    )
    assert min(flipped[t] for t in (0.1, 0.3, 0.7, 0.9)) > 1e-3 and flipped[0.5] < 1e-6  # γγ' = 0 at t = 1/2 only


def test_transport_with_exact_fields_and_distances():
    it = Interpolant("one_sided_linear")
    field = InterpolantMixtureField(it, STD_2D, RING)
    g = torch.Generator().manual_seed(5)
    x = STD_2D.sample(400, g)
    out = si.transport(field.b, field.score, x, ode_steps=50, sde_steps=100, eps_values=(0.5,), generator=g)
    assert list(out) == ["ODE", "SDE ε=0.5"] and all(v.shape == x.shape for v in out.values())
    target = RING.sample(400, g)
    d = si.transport_distances({"source": x, **out}, target, bandwidth=0.5)
    assert set(d["ODE"]) == {"MMD", "energy distance"}
    assert d["ODE"]["MMD"] < 0.3 * d["source"]["MMD"] and d["SDE ε=0.5"]["MMD"] < 0.3 * d["source"]["MMD"]


def test_train_interpolant_fields_is_seeded_and_returns_fields():
    g = torch.Generator().manual_seed(6)
    x0, x1 = STD_2D.sample(64, g).float(), RING.sample(64, g).float()
    kw = dict(hidden=8, depth=1, steps=3, batch_size=16, seed=7)
    a = si.train_interpolant_fields(Interpolant("linear"), x0, x1, kinds=("b", "eta"), **kw)
    b = si.train_interpolant_fields(Interpolant("linear"), x0, x1, kinds=("b", "eta"), **kw)
    assert list(a) == ["b", "eta"]
    x = torch.randn(5, 2, generator=g)
    assert a["b"](x, 0.3).shape == (5, 2)
    torch.testing.assert_close(a["eta"](x, 0.3), b["eta"](x, 0.3))


def test_stacked_training_equals_training_each_network_alone():
    from varbook.nn import TimeMLP, train_steps

    g = torch.Generator().manual_seed(9)
    x0, x1 = STD_2D.sample(256, g).float(), RING.sample(256, g).float()
    it = Interpolant("linear", "brownian")
    kw = dict(hidden=16, depth=2, steps=5, batch_size=32, lr=1e-2, seed=3)
    fields = si.train_interpolant_fields(it, x0, x1, kinds=("b", "v", "eta"), **kw)
    x = torch.randn(7, 2, generator=g)
    for kind in ("b", "v", "eta"):
        torch.manual_seed(3)
        net = TimeMLP(2, 16, 2)
        train_steps(
            net,
            lambda a, c, net=net, kind=kind: si.interpolant_losses(net, kind, it, a[torch.randperm(len(a))], c).mean(),
            (x0, x1), 5, 32, lr=1e-2,
        )  # fmt: skip
        torch.testing.assert_close(fields[kind](x, 0.3), net(x, torch.full((7,), 0.3)), rtol=1e-5, atol=1e-6)


def test_stacked_losses_are_the_losses_of_each_network():
    from varbook.nn import TimeMLP

    g = torch.Generator().manual_seed(10)
    x0, x1 = STD_2D.sample(64, g).float(), RING.sample(64, g).float()
    nets = [TimeMLP(2, 8, 2) for _ in range(2)]
    stacked = si.StackedNets(nets)
    it = Interpolant("linear", "brownian")
    both = si.interpolant_losses(stacked, ("b", "eta"), it, x0, x1, generator=torch.Generator().manual_seed(1))
    assert both.shape == (2, 64)
    for row, net, kind in zip(both, nets, ("b", "eta"), strict=True):
        alone = si.interpolant_losses(net, kind, it, x0, x1, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(row, alone)
    assert [type(m) for m in stacked.unstack()] == [TimeMLP, TimeMLP]
    with pytest.raises(ValueError, match="returned shape"):
        si.interpolant_losses(stacked, ("b", "v", "eta"), it, x0, x1)


def test_full_profile_experiments_run_at_toy_scale():
    g = torch.Generator().manual_seed(8)
    rows, floor = si.checkerboard_variants(
        n_train=256, eval_n=64, steps=(1, 1, 1), ode_steps=2, sde_steps=2, generator=g
    )
    assert len(rows) == 3 and floor > 0
    first = next(iter(rows.values()))
    assert set(first) == {
        "ODE energy distance (V)", "ODE, time reversed (control)", "SDE ε=0.5 energy distance (V)",
        "SDE ε=0.5, no score (control)", "ratio to two data samples",
    }  # fmt: skip
    assert "SDE ε=0.5, no score (control)" not in list(rows.values())[1]  # two-sided: the ODE only
    assert first["ratio to two data samples"] == pytest.approx(first["ODE energy distance (V)"] / floor)
    with pytest.raises(ValueError, match="one training length per variant"):
        si.checkerboard_variants(steps=(2,))
    mnist = Split(torch.rand(64, 784, generator=g), torch.arange(64) % 10, torch.rand(32, 784, generator=g),
                  torch.arange(32) % 10, (28, 28))  # fmt: skip
    fd, samples = si.digits_transport(
        steps=1, unet_base=8, n_samples=12, ode_steps=2, sde_steps=2, judge_steps=1, mnist=mnist, generator=g
    )
    assert set(fd) == set(samples) == {"ODE (Heun, 2 steps)", "SDE ε=0.5 (2 steps)"}
    assert all(math.isfinite(v) for v in fd.values())
    assert samples["ODE (Heun, 2 steps)"].shape == (12, 1, 32, 32)
