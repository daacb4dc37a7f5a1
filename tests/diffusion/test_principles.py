import math

import pytest
import torch

from varbook.diffusion import Denoiser, Field, GaussianMixture, Linear, VPLinear, energy_distance, sample, time_grid
from varbook.diffusion import principles as dp
from varbook.nn import MLP, TimeMLP, train_steps
from varbook.runtime import History

F64 = torch.float64
MU, S2 = torch.tensor([[0.5, -1.0]], dtype=F64), 0.3


def gaussian(sch=None):
    return GaussianMixture(torch.ones(1), MU, S2 * torch.eye(2, dtype=F64)[None]).field(sch or VPLinear())


def exact_flow(sch, x, t0, t1):
    """The probability-flow ODE of a Gaussian keeps the standardised state fixed."""
    t0, t1 = torch.tensor(t0, dtype=F64), torch.tensor(t1, dtype=F64)
    sd = lambda t: torch.sqrt(sch.alpha(t) ** 2 * S2 + sch.sigma(t) ** 2)  # noqa: E731
    return sch.alpha(t1) * MU + sd(t1) * (x - sch.alpha(t0) * MU) / sd(t0)


class ScaledScore(Field):
    """A deliberately inconsistent field: its score is twice what its noise prediction implies."""

    def __init__(self, field):
        self.field, self.schedule, self.kind = field, field.schedule, field.kind

    def predict(self, x, t):
        return self.field.predict(x, t)

    def score(self, x, t):
        return 2 * self.field.score(x, t)


def test_settings_are_complete_copies_and_reject_unknown_profiles():
    smoke, full = dp.settings("smoke"), dp.settings("full")
    assert set(smoke) - {"hidden"} == set(full) - {"unet_base"}
    smoke["order_n"] = -1
    assert dp.SETTINGS["smoke"]["order_n"] == 500
    with pytest.raises(ValueError, match="unknown profile 'gpu'"):
        dp.settings("gpu")


def test_conversions_and_score_are_exact_for_a_mixture_and_catch_an_inconsistent_field():
    g = torch.Generator().manual_seed(0)
    field = GaussianMixture.ring(4, 2.0, 0.3).field(VPLinear())
    x = torch.randn(64, 2, dtype=F64, generator=g)
    t = 0.05 + 0.9 * torch.rand(64, dtype=F64, generator=g)
    assert set(dp.predictions(field, x, t)) == {"eps", "x0", "score", "v"}
    assert dp.conversion_error(field, x, t) < 1e-12
    assert dp.score_autograd_error(field, x, t) < 1e-10
    assert dp.conversion_error(ScaledScore(field), x, t) > 0.1


def test_ddim_equals_euler_in_rescaled_variables_for_an_exact_field():
    x = torch.randn(32, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    assert dp.ddim_euler_gap(gaussian(), x, time_grid(VPLinear(), 10)) < 1e-12


def test_one_ddim_step_matches_diffusers():
    pytest.importorskip("diffusers")
    torch.manual_seed(0)
    net = TimeMLP(2, 16, 2).double()
    x = torch.randn(8, 2, dtype=F64)
    rows = dp.ddim_step_vs_diffusers(net, x, n_inference=10, positions=(0, -1))
    assert [r["diffusers timestep"] for r in rows] == [900, 0]
    assert all(r["same ᾱ (max |diff|)"] < 1e-6 and r["our float64 ᾱ (max |diff|)"] < 1e-5 for r in rows)
    assert all(r["control: timestep + 1"] > 1e-4 for r in rows)  # a timestep off by one misses


def test_dopri5_reference_follows_the_exact_flow_of_a_gaussian():
    pytest.importorskip("torchdiffeq")
    x = torch.randn(16, 2, dtype=F64, generator=torch.Generator().manual_seed(2))
    x_ref, seconds = dp.dopri5_reference(gaussian(), x, t_end=1e-2, tol=1e-9)
    assert seconds >= 0
    torch.testing.assert_close(x_ref, exact_flow(VPLinear(), x, 1.0, 1e-2), atol=1e-6, rtol=0)


def test_fitted_orders_recover_power_laws_exactly():
    rows = [{"sampler": m, "NFE": n, "error": 3.0 * n**-p} for m, p in (("b", 2.0), ("a", 1.0)) for n in (10, 20, 40)]
    rows.append({"sampler": "a", "NFE": 10, "error": 1e3})  # below min_nfe: ignored
    orders = dp.fitted_orders(rows[:3] + rows[4:], min_nfe=20)
    assert list(orders) == ["a", "b"]
    assert orders["a"] == pytest.approx(1.0, abs=1e-9) and orders["b"] == pytest.approx(2.0, abs=1e-9)


def test_solver_errors_show_first_and_second_order_on_an_exact_field():
    field, sch = gaussian(), VPLinear()
    x = torch.randn(64, 2, dtype=F64, generator=torch.Generator().manual_seed(3))
    x_ref = exact_flow(sch, x, sch.t_max, 1e-3)
    rows = dp.solver_errors(field, x, x_ref, [20, 40, 80], methods=("euler", "heun"))
    assert [(r["sampler"], r["NFE"]) for r in rows] == [(m, n) for m in ("euler", "heun") for n in (20, 40, 80)]
    orders = dp.fitted_orders(rows)
    assert 0.8 < orders["euler"] < 1.2 and 1.7 < orders["heun"] < 2.3


def test_closed_form_inverse_of_the_log_snr_matches_bisection():
    closed, bisect = dp.VPLinearClosedForm(), VPLinear()
    t = torch.linspace(1e-3, 1.0, 101, dtype=F64)
    lam = bisect.log_snr(t)
    torch.testing.assert_close(closed.t_of_log_snr(lam), bisect.t_of_log_snr(lam), rtol=0, atol=1e-12)
    torch.testing.assert_close(closed.t_of_log_snr(lam), t, rtol=0, atol=1e-12)
    torch.testing.assert_close(time_grid(closed, 7), time_grid(bisect, 7), rtol=0, atol=1e-12)


def test_fit_denoiser_is_train_steps_on_the_denoising_loss():
    from varbook.diffusion import denoising_loss

    x = torch.randn(256, 2)

    def run_ours():
        torch.manual_seed(0)
        net = TimeMLP(2, 16, 2)
        return dp.fit_denoiser(net, Linear(), "v", (x,), steps=20, batch_size=32, lr=1e-2)

    model, history = run_ours()
    torch.manual_seed(0)
    net = TimeMLP(2, 16, 2)
    by_hand = train_steps(net, lambda a: denoising_loss(net, a, Linear(), "v"), (x,), 20, 32, lr=1e-2)
    assert isinstance(model, Denoiser) and model.kind == "v" and isinstance(history, History)
    assert history["loss"] == by_hand["loss"]


@pytest.mark.parametrize("kind", ["eps", "x0", "v"])
def test_denoising_pair_gives_the_denoising_loss(kind):
    from varbook.diffusion import denoising_loss

    x0, net = torch.randn(64, 2, dtype=F64), TimeMLP(2, 8, 2).double()
    loss = denoising_loss(net, x0, VPLinear(), kind, generator=torch.Generator().manual_seed(3))
    xt, t, target = dp.denoising_pair(x0, VPLinear(), kind, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(((net(xt, t) - target) ** 2).mean(), loss)
    with pytest.raises(ValueError, match="prediction kind"):
        dp.denoising_pair(x0, VPLinear(), "score")


def test_fit_denoisers_trains_one_network_as_fit_denoiser_does():
    x = torch.randn(256, 2)
    torch.manual_seed(0)
    (alone,), history = dp.fit_denoisers([TimeMLP(2, 16, 2)], [(Linear(), "v")], x, 20, 32, lr=1e-2)
    torch.manual_seed(0)
    ref, ref_history = dp.fit_denoiser(TimeMLP(2, 16, 2), Linear(), "v", (x,), 20, 32, lr=1e-2)
    torch.testing.assert_close(torch.tensor(history["loss"]), torch.tensor(ref_history["loss"]))
    for p, q in zip(alone.net.parameters(), ref.net.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_fit_denoisers_keeps_the_networks_apart():
    torch.manual_seed(0)
    nets = [TimeMLP(2, 16, 2) for _ in range(3)]
    stacked = dp.StackedNets(nets)
    x, t = torch.randn(3, 10, 2), torch.rand(3, 10)
    for m, net in enumerate(nets):  # slice m of the stacked forward pass is network m
        torch.testing.assert_close(stacked(x, t)[m], net(x[m], t[m]))
    frozen = [p.clone() for p in nets[1].parameters()]
    targets = [(VPLinear(), "eps"), (VPLinear(), "v"), (Linear(), "v")]
    fields, history = dp.fit_denoisers(nets, targets, torch.randn(128, 2), 5, 16, lr=1e-2)
    assert [(f.kind, type(f.schedule)) for f in fields] == [(k, type(s)) for s, k in targets]
    assert len(history["loss"]) == 5 and all(f.net is n for f, n in zip(fields, nets, strict=True))
    assert all(not torch.equal(p, q) for p, q in zip(nets[1].parameters(), frozen, strict=True))
    with pytest.raises(ValueError, match="2 networks for 3 targets"):
        dp.fit_denoisers(nets[:2], targets, torch.randn(8, 2), 1, 4)


def test_fit_denoiser_passes_labels_and_label_dropout():
    torch.manual_seed(0)
    x, y = torch.randn(128, 4), torch.randint(0, 3, (128,))
    net = TimeMLP(4, 16, 2, n_classes=3)
    model, history = dp.fit_denoiser(net, VPLinear(), "eps", (x, y), 10, 16, p_uncond=0.5, null_label=3)
    assert len(history["loss"]) == 10
    assert model.with_cond(y[:5]).eps(x[:5], torch.full((5,), 0.5)).shape == (5, 4)


def test_sample_from_noise_scales_the_start_and_returns_cpu_samples():
    field, z = gaussian(), torch.randn(20, 2, dtype=F64, generator=torch.Generator().manual_seed(4))
    out = dp.sample_from_noise("heun", field, z, 10)
    ts = time_grid(field.schedule, 10, t_min=1e-3, spacing="uniform")
    torch.testing.assert_close(out, sample("heun", field, z * float(field.schedule.sigma(ts[0])), ts))
    assert out.device.type == "cpu"


def test_ode_and_sde_of_an_exact_field_both_sample_its_law():
    g = torch.Generator().manual_seed(5)
    ring = GaussianMixture.ring(4, 2.0, 0.3)
    reference = ring.sample(400, g)
    rows = dp.ode_vs_sde(
        {"ring": ring.field(VPLinear())}, torch.randn(400, 2, dtype=F64, generator=g), 100, reference, g
    )
    (row,) = rows
    assert row["model"] == "ring"
    assert (
        abs(row["ODE (Heun)"]) < 0.03
        and abs(row["SDE (Euler–Maruyama)"]) < 0.03
        and abs(row["ODE vs SDE samples"]) < 0.03
    )


def test_image_layout_round_trips_and_pads_with_the_background():
    x = torch.rand(3, 16) * 2 - 1
    flat, image = dp.ImageLayout(4), dp.ImageLayout(4, pad=2, image=True)
    assert flat.to_net(x) is x and flat.to_flat(x) is x
    net_in = image.to_net(x)
    assert net_in.shape == (3, 1, 8, 8) and (net_in[:, :, 0] == -1).all()
    torch.testing.assert_close(image.to_flat(net_in), x)


def test_within_class_distance_is_the_mean_of_class_means():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    labels = torch.tensor([0, 0, 1, 1, 1])
    # class 0: one pair at distance 5; class 1: distances 1, 2 and sqrt(5)
    expected = (5.0 + (1.0 + 2.0 + math.sqrt(5.0)) / 3) / 2
    assert dp.within_class_distance(x, labels, n_classes=2) == pytest.approx(expected)


def test_judge_scores_accuracy_diversity_and_frechet_distance():
    torch.manual_seed(0)
    x, labels = torch.randn(60, 5), torch.arange(10).repeat(6)
    clf = MLP(5, [8], 10)
    judge = dp.Judge(clf, reference=x)
    verdict = judge(x, labels)
    assert verdict["class accuracy"] == pytest.approx(float((clf(x).argmax(1) == labels).float().mean()))
    assert verdict["within-class distance"] == pytest.approx(dp.within_class_distance(x, labels))
    assert abs(verdict["Fréchet (digits)"]) < 1e-6  # the reference against itself
    assert judge.flat(3 * x).abs().max() <= 1


def test_guidance_and_sampler_sweeps_agree_without_guidance():
    torch.manual_seed(0)
    model = Denoiser(TimeMLP(4, 16, 2, n_classes=10), VPLinear(), "eps")
    labels, z = torch.arange(10).repeat(2), torch.randn(20, 4)
    judge = dp.Judge(MLP(4, [8], 10), reference=torch.randn(30, 4))
    rows, imgs = dp.guidance_sweep(model, labels, z, [0.0, 2.0], 5, judge, torch.Generator().manual_seed(1))
    assert [r["w"] for r in rows] == [0.0, 2.0] and imgs[2.0].shape == (20, 4)
    assert not torch.equal(imgs[0.0], imgs[2.0])
    (plain,) = dp.sampler_sweep(model, labels, z, ["ddpm"], [5], judge, torch.Generator().manual_seed(1))
    assert plain["NFE"] == 5 and plain["ms per image"] > 0
    assert plain["Fréchet (digits)"] == rows[0]["Fréchet (digits)"]  # same draws, same samples


def test_fit_meanflow_trains_a_flow_map():
    torch.manual_seed(0)
    net = TimeMLP(2, 16, 2, extra_times=1)
    history = dp.fit_meanflow(net, torch.randn(128, 2), steps=5, batch_size=16)
    assert len(history["loss"]) == 5 and all(math.isfinite(v) for v in history["loss"])


# --- negative controls ------------------------------------------------------------------------


def test_flipped_score_convert_breaks_only_the_score_conversions():
    g = torch.Generator().manual_seed(6)
    field = GaussianMixture.ring(4, 2.0, 0.3).field(VPLinear())
    x = torch.randn(32, 2, dtype=F64, generator=g)
    t = 0.05 + 0.9 * torch.rand(32, dtype=F64, generator=g)
    preds = dp.predictions(field, x, t)
    sch = field.schedule
    torch.testing.assert_close(dp.flipped_score_convert(preds["eps"], "eps", "v", x, t, sch), preds["v"])
    torch.testing.assert_close(dp.flipped_score_convert(preds["eps"], "eps", "score", x, t, sch), -preds["score"])
    assert dp.conversion_error(field, x, t, conv=dp.flipped_score_convert) > 0.1


def test_ddim_is_not_euler_in_x():
    x = torch.randn(32, 2, dtype=F64, generator=torch.Generator().manual_seed(7))
    ts = time_grid(VPLinear(), 10)
    assert dp.ddim_euler_gap(gaussian(), x, ts, in_x=True) > 1e-3


def test_lagged_second_stages_drop_to_first_order_and_squared_errors_double_the_order():
    field, sch = gaussian(), VPLinear()
    x = torch.randn(64, 2, dtype=F64, generator=torch.Generator().manual_seed(8))
    x_ref = exact_flow(sch, x, sch.t_max, 1e-3)
    methods = ("heun", "heun (lagged)", "dpm2 (lagged)")
    rows = dp.solver_errors(field, x, x_ref, [20, 40, 80], methods=methods)
    assert [r["NFE"] for r in rows] == [20, 40, 80] * 3
    orders, squared = dp.fitted_orders(rows), dp.fitted_orders(rows, error="squared error")
    assert orders["heun"] > 1.7 and orders["heun (lagged)"] < 1.3 and orders["dpm2 (lagged)"] < 1.3
    assert squared["heun"] > 3.4


def test_order_controls_fail_the_order_bounds():
    field, sch = gaussian(), VPLinear()
    x = torch.randn(64, 2, dtype=F64, generator=torch.Generator().manual_seed(11))
    x_ref = exact_flow(sch, x, sch.t_max, 1e-3)
    doubled, lagged, lag_rows = dp.order_controls(field, x, x_ref, [20, 40, 80])
    assert set(doubled) == {"euler", "ddim"} and set(lagged) == {"heun", "dpm2"}
    assert max(doubled.values()) < 0.8 and max(lagged.values()) < 1.3
    assert {r["sampler"] for r in lag_rows} == {"heun", "dpm2"} and len(lag_rows) == 6


def test_scaled_score_scales_the_score_and_moves_the_factor_of_the_ode_drift():
    field, sch = gaussian(), VPLinear()
    x, t = torch.randn(16, 2, dtype=F64, generator=torch.Generator().manual_seed(9)), torch.tensor(0.4, dtype=F64)
    doubled = dp.ScaledScore(field, 2.0)
    torch.testing.assert_close(doubled.score(x, t), 2 * field.score(x, t))
    # factor 2: the probability-flow ODE with the reverse SDE's drift f x - g^2 s
    torch.testing.assert_close(doubled.velocity(x, t), sch.drift(t) * x - sch.g2(t) * field.score(x, t))


def test_half_factor_controls_miss_the_law_that_the_right_samplers_reach():
    g = torch.Generator().manual_seed(12)
    ring = GaussianMixture.ring(4, 2.0, 0.3)
    reference, x = ring.sample(400, g), torch.randn(400, 2, dtype=F64, generator=g)
    ctrl = dp.half_factor_controls(
        ring.field(VPLinear()), x, time_grid(VPLinear(), 100, spacing="uniform"), reference, g
    )
    assert len(ctrl) == 2 and min(ctrl) > 0.03  # the right samplers stay below 0.03 (test_ode_and_sde_...)


def test_energy_null_is_centred_at_zero():
    null = dp.energy_null(GaussianMixture.ring(4, 2.0, 0.3), 200, 20, torch.Generator().manual_seed(10))
    assert null.shape == (20,) and abs(float(null.mean())) < 3 * float(null.std())


def test_energy_null_v_statistic_floor_is_two_mean_distances_over_n():
    # E[V] for two samples of n points of one law is E|X - X'| (1/n + 1/n) exactly; for N(0, 1) E|X - X'| = 2/sqrt(pi)
    class Normal1d:
        def sample(self, n, generator):
            return torch.randn(n, 1, dtype=F64, generator=generator)

    n, pairs = 50, 400
    null = dp.energy_null(Normal1d(), n, pairs, torch.Generator().manual_seed(3), unbiased=False, dtype=torch.float32)
    expected = 2 / math.sqrt(math.pi) * 2 / n
    se = float(null.std()) / math.sqrt(pairs)
    assert (null >= 0).all() and abs(float(null.mean()) - expected) < 4 * se


def test_ring_criterion_relative_to_the_floor_passes_exact_samples_and_fails_the_half_factor_slip():
    # the chapter's test: V-statistic of a sampler / mean V of two data samples <= 5
    g = torch.Generator().manual_seed(21)
    ring = GaussianMixture.ring(4, 2.0, 0.3)
    n = 600
    floor = float(dp.energy_null(ring, n, 20, g, unbiased=False).mean())
    reference = ring.sample(n, g)
    exact = float(energy_distance(ring.sample(n, g), reference, unbiased=False)) / floor
    x = ring.noised(VPLinear(), 1.0).sample(n, g)
    ctrl = dp.half_factor_controls(
        ring.field(VPLinear()), x, time_grid(VPLinear(), 100, spacing="uniform"), reference, g, unbiased=False
    )
    assert exact <= 5 and min(c / floor for c in ctrl) > 5


def test_reversed_time_queries_the_network_at_one_minus_t():
    torch.manual_seed(0)
    net = TimeMLP(2, 8, 1)
    fm_model = Denoiser(net, Linear(), "v")
    wrong = dp.reversed_time(fm_model)
    assert wrong.schedule is fm_model.schedule and wrong.kind == "v" and wrong.net.net is net
    x, t = torch.randn(5, 2), torch.full((5,), 0.3)
    torch.testing.assert_close(wrong.predict(x, t), net(x, 1 - t))
    z, ref = torch.randn(50, 2), torch.randn(60, 2)
    (d,) = dp.reversed_time_distances({"fm": fm_model}, z, 5, ref)
    assert d == pytest.approx(float(energy_distance(dp.sample_from_noise("heun", wrong, z, 5), ref)))


def test_swapped_guidance_guides_away_from_the_class():
    from varbook.diffusion import guide

    torch.manual_seed(0)
    model = Denoiser(TimeMLP(4, 16, 2, n_classes=10), VPLinear(), "eps")
    labels, x, t = torch.arange(10), torch.randn(10, 4), torch.full((10,), 0.5)
    cond = model.with_cond(labels).predict(x, t)
    uncond = model.with_cond(torch.full_like(labels, 10)).predict(x, t)
    swapped = dp.SwappedGuidance(model, labels, null_label=10, w=2.0)
    torch.testing.assert_close(swapped.predict(x, t), guide(uncond, cond, 2.0))
    judge = dp.Judge(MLP(4, [8], 10), reference=torch.randn(30, 4))
    rows, _ = dp.guidance_sweep(model, labels, x, [2.0], 5, judge, torch.Generator().manual_seed(1), swapped=True)
    plain, _ = dp.guidance_sweep(model, labels, x, [2.0], 5, judge, torch.Generator().manual_seed(1))
    assert rows[0]["Fréchet (digits)"] != plain[0]["Fréchet (digits)"]


def test_meanflow_same_times_is_one_step_of_the_instantaneous_velocity():
    torch.manual_seed(0)
    net = TimeMLP(2, 16, 2, extra_times=1)
    z = torch.randn(8, 2)
    torch.testing.assert_close(dp.meanflow_same_times(net, z), z - net(z, torch.ones(8), torch.ones(8)))


def test_stacked_networks_each_get_the_gradient_of_their_own_target():
    """A mix-up of targets between the stacked networks (reversed, or all on one) would fail here."""
    from varbook import diffusion as dm
    from varbook.nn import TimeMLP

    torch.manual_seed(0)
    nets = [TimeMLP(2, 32, 3) for _ in range(3)]
    targets = [(dm.VPLinear(), "eps"), (dm.VPLinear(), "v"), (dm.Linear(), "v")]
    stacked = dp.StackedNets(nets)
    x = torch.randn(64, 2)
    torch.manual_seed(5)
    pairs = [dp.denoising_pair(x, s, k) for s, k in targets]
    xt, t, target = (torch.stack(v) for v in zip(*pairs, strict=True))
    ((stacked(xt, t) - target) ** 2).flatten(1).mean(1).sum().backward()
    for m, net in enumerate(nets):
        net.zero_grad()
        a, b, c = pairs[m]
        ((net(a, b) - c) ** 2).mean().backward()
        for name, p in zip(stacked.names, stacked.stacked, strict=True):
            assert torch.allclose(p.grad[m], net.get_parameter(name).grad, atol=1e-6), (m, name)
    gaps = [(pairs[m][2] - pairs[j][2]).abs().mean() for m in range(3) for j in range(3) if j != m]
    assert min(gaps) > 0.1  # the three targets differ, so a mix-up changes the gradients
