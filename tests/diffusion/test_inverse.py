import math

import pytest
import torch

from varbook.data import Split
from varbook.diffusion import DiscreteVP, Field, GaussianMixture, sample_ddim
from varbook.diffusion.inverse import (
    ORDERS,
    WEIGHTINGS,
    compare_restorations,
    dps,
    lam_sweep,
    learned_prior_comparison,
    misscaled_prior,
    noisy_measurements,
    posterior_mean,
    red_diff,
    red_diff_ablation,
    red_diff_gradient,
    red_diff_weight,
    step_indices,
    step_times,
    steps_sweep,
    with_controls,
)
from varbook.imaging import BatchInpainting, Inpainting, SuperResolution, psnr


def test_step_indices():
    k = step_indices(10, 1000)
    assert k.tolist() == list(range(900, -1, -100))
    assert step_indices(10, 1000, "ascending").tolist() == list(range(0, 1000, 100))
    r = step_indices(10, 1000, "random", torch.Generator().manual_seed(0))
    assert sorted(r.tolist()) == list(range(0, 1000, 100)) and r.tolist() != k.tolist()


@pytest.mark.parametrize("per_image_masks", [False, True])
def test_gradient_matches_autograd_of_the_stated_surrogate(per_image_masks):
    g = torch.Generator().manual_seed(0)
    op = BatchInpainting.random(3, 8, 0.5, g) if per_image_masks else SuperResolution(8, 2)
    mu = torch.randn(3, 64, dtype=torch.float64, generator=g, requires_grad=True)
    y = torch.randn(3, op.n_out, dtype=torch.float64, generator=g)
    eps_hat, eps = (
        torch.randn(3, 64, dtype=torch.float64, generator=g),
        torch.randn(3, 64, dtype=torch.float64, generator=g),
    )
    lam, w = 0.25, torch.tensor(1.7, dtype=torch.float64)
    surrogate = (0.5 * ((y - op(mu)) ** 2).mean(1) + lam * w * ((eps_hat - eps).detach() * mu).mean(1)).sum()
    (auto,) = torch.autograd.grad(surrogate, mu)
    torch.testing.assert_close(red_diff_gradient(mu.detach(), y, op, eps_hat, eps, lam, w), auto)


def test_weightings():
    a, s = torch.tensor(0.6, dtype=torch.float64), torch.tensor(0.8, dtype=torch.float64)
    assert float(red_diff_weight(a, s)) == pytest.approx(0.8 / 0.6)
    assert float(red_diff_weight(a, s, "constant")) == 1.0
    assert float(red_diff_weight(a, s, "clip")) == 1.0


def test_posterior_mean_uses_each_image_s_own_mask():
    g = torch.Generator().manual_seed(1)
    prior = GaussianMixture.ring(3, 1.0, 0.3, dim=64)
    x = prior.sample(4, g)
    op = BatchInpainting.random(4, 8, 0.5, g)
    assert len({tuple(r) for r in op.index.tolist()}) == 4  # four different masks
    y = noisy_measurements(op, x, 0.05, g)
    pm = posterior_mean(prior, op, y, 0.05)
    for i in range(4):  # each row is the closed-form posterior mean under that image's own mask
        single = Inpainting(op.masks[i])
        torch.testing.assert_close(pm[i : i + 1], prior.posterior_mean(single.matrix(), y[i : i + 1], 0.05))
    # the pitfall: reading every image through the first image's mask gives other means
    shared = prior.posterior_mean(op.image(0).matrix(), y, 0.05)
    assert (pm[1:] - shared[1:]).abs().max() > 1e-2
    sr = SuperResolution(8, 2)  # a single operator goes through the batched closed form unchanged
    ys = noisy_measurements(sr, x, 0.05, g)
    torch.testing.assert_close(posterior_mean(prior, sr, ys, 0.05), prior.posterior_mean(sr.matrix(), ys, 0.05))


class Zero(Field):
    kind = "eps"

    def __init__(self):
        self.schedule = DiscreteVP()

    def predict(self, x, t):
        return torch.zeros_like(x)


def test_without_the_prior_red_diff_fits_the_measurements():
    g = torch.Generator().manual_seed(1)
    op = Inpainting.random(8, 0.5, g)
    x = torch.randn(4, 64, dtype=torch.float64, generator=g)
    y = op(x)
    out = red_diff(Zero(), op, y, n_steps=200, lam=0.0, lr=0.05, generator=g)
    torch.testing.assert_close(op(out), y, atol=1e-3, rtol=0)
    torch.testing.assert_close(
        out[:, ~op.mask], torch.zeros_like(out[:, ~op.mask])
    )  # never-observed pixels stay at A+y


def test_red_diff_approaches_the_posterior_mean_of_a_gaussian_prior():
    g = torch.Generator().manual_seed(2)
    prior = GaussianMixture(torch.ones(1), torch.zeros(1, 16), (0.5 * torch.eye(16) + 0.3)[None])
    op = Inpainting.random(4, 0.5, g)
    x = prior.sample(200, g)
    y = noisy_measurements(op, x, 0.05, g)
    oracle = prior.posterior_mean(op.matrix(), y, 0.05)
    out = red_diff(prior.field(DiscreteVP()), op, y, n_steps=100, generator=g)
    zero_fill = op.pseudo_inverse(y)
    # the Dirac-limit fit is not the posterior mean, but the prior pulls it well towards it from A+y
    assert ((out - oracle) ** 2).mean() < 0.75 * ((zero_fill - oracle) ** 2).mean()
    assert ((out - x) ** 2).mean() < ((zero_fill - x) ** 2).mean()


def test_dps_without_guidance_is_ancestral_sampling():
    field = GaussianMixture.ring(4, 1.0, 0.3, dim=4).field(DiscreteVP())
    op = Inpainting(torch.tensor([1, 0, 1, 1], dtype=torch.bool))
    y = torch.zeros(5, 3, dtype=torch.float64)
    x = torch.randn(5, 4, dtype=torch.float64)
    ts = torch.cat([(step_indices(20).double() + 1) / 1000, torch.zeros(1, dtype=torch.float64)])
    a = dps(field, op, y, n_steps=20, zeta=0.0, x=x, generator=torch.Generator().manual_seed(3))
    b = sample_ddim(field, x, ts, eta=1.0, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)


def test_bad_input():
    with pytest.raises(ValueError, match="order"):
        step_indices(10, order="sideways")
    with pytest.raises(ValueError, match="weighting"):
        red_diff_weight(torch.tensor(1.0), torch.tensor(1.0), "cubic")
    with pytest.raises(ValueError, match="n_steps"):
        step_indices(0)
    with pytest.raises(ValueError, match="zeta"):
        dps(Zero(), SuperResolution(4, 2), torch.zeros(1, 4), zeta=-1.0)
    with pytest.raises(ValueError, match="lam"):
        red_diff(Zero(), SuperResolution(4, 2), torch.zeros(1, 4), lam=-1.0)
    with pytest.raises(ValueError, match="shape"):
        red_diff(Zero(), SuperResolution(4, 2), torch.zeros(1, 5))


def _small_problem(seed=4, n=6):
    # 8x8 images (the smallest side on which SSIM's 7x7 window fits), a fresh mask per image as in the chapter
    g = torch.Generator().manual_seed(seed)
    prior = GaussianMixture(torch.ones(1), torch.zeros(1, 64), (0.5 * torch.eye(64) + 0.3)[None])
    op = BatchInpainting.random(n, 8, 0.5, g)
    x = prior.sample(n, g)
    y = noisy_measurements(op, x, 0.05, g)
    return prior, prior.field(DiscreteVP()), op, x, y


def test_compare_restorations_draws_in_order_and_picks_the_best_step_size():
    prior, field, op, x, y = _small_problem()
    zetas = (0.05, 0.5, 2.0)
    res = compare_restorations(
        field, op, y, x, posterior_mean(prior, op, y, 0.05), n_steps=10, zetas=zetas,
        generator=torch.Generator().manual_seed(5),
    )  # fmt: skip
    g = torch.Generator().manual_seed(5)  # the same draws by hand: RED-diff, then DPS at each step size
    red = red_diff(field, op, y, 10, generator=g)
    runs = {z: dps(field, op, y, 10, zeta=z, generator=g) for z in zetas}
    torch.testing.assert_close(res.images["RED-diff"], red)
    torch.testing.assert_close(res.images["DPS (best ζ)"], runs[res.best_zeta])
    dps_psnr = {z: float(psnr(v, x).mean()) for z, v in runs.items()}
    assert res.best_zeta == max(dps_psnr, key=dps_psnr.get)
    assert list(res.scores)[:3] == [f"DPS ζ={z}" for z in zetas]
    assert res.scores["DPS (best ζ)"] == res.scores[f"DPS ζ={res.best_zeta}"]
    assert res.gap("RED-diff", "zero-fill (A⁺y)") == pytest.approx(
        res.scores["RED-diff"]["PSNR"] - float(psnr(op.pseudo_inverse(y), x).mean())
    )
    assert res.gap("posterior mean (exact)", "RED-diff") > 0  # the exact posterior mean is the best in mean square
    assert set(res.ms_per_image) == {"RED-diff", "DPS"} and min(res.ms_per_image.values()) > 0


def test_ablation_and_sweeps_are_runs_of_red_diff_and_dps():
    _, field, op, x, y = _small_problem()
    abl = red_diff_ablation(field, op, y, x, n_steps=10, generator=torch.Generator().manual_seed(6))
    assert list(abl) == [f"order: {o}" for o in ORDERS] + [f"weighting: {w}" for w in WEIGHTINGS if w != "linear"]
    first = red_diff(field, op, y, 10, generator=torch.Generator().manual_seed(6))  # the first run: the defaults
    assert abl["order: descending"] == pytest.approx(float(psnr(first, x).mean()))
    # the random arm averages its own permutations: the same draws by hand
    abl4 = red_diff_ablation(field, op, y, x, n_steps=10, generator=torch.Generator().manual_seed(6), random_orders=3)
    g = torch.Generator().manual_seed(6)
    red_diff(field, op, y, 10, generator=g)  # the descending run comes first
    by_hand = [float(psnr(red_diff(field, op, y, 10, order="random", generator=g), x).mean()) for _ in range(3)]
    assert len(set(by_hand)) == 3 and abl4["order: random"] == pytest.approx(sum(by_hand) / 3)
    with pytest.raises(ValueError, match="random_orders"):
        red_diff_ablation(field, op, y, x, n_steps=10, random_orders=0)
    lams = lam_sweep(field, op, y, x, [0.0, 0.25], n_steps=10, generator=torch.Generator().manual_seed(7))
    no_prior = red_diff(field, op, y, 10, lam=0.0, generator=torch.Generator().manual_seed(7))
    assert list(lams) == [0.0, 0.25] and lams[0.0] == pytest.approx(float(psnr(no_prior, x).mean()))
    rows = steps_sweep(field, op, y, x, [5, 10], zeta=0.5, generator=torch.Generator().manual_seed(8))
    assert [r["steps"] for r in rows] == [5, 10] and set(rows[0]) == {"steps", "RED-diff", "DPS ζ=0.5"}
    g = torch.Generator().manual_seed(8)
    red5 = red_diff(field, op, y, 5, generator=g)
    dps5 = dps(field, op, y, 5, zeta=0.5, generator=g)
    assert rows[0]["RED-diff"] == pytest.approx(float(psnr(red5, x).mean()))
    assert rows[0]["DPS ζ=0.5"] == pytest.approx(float(psnr(dps5, x).mean()))


def test_misscaled_prior_is_the_prior_of_the_data_mapped_to_the_unit_interval():
    prior = GaussianMixture.ring(3, 1.0, 0.3, dim=4)
    x = prior.sample(50, torch.Generator().manual_seed(0))
    x01 = misscaled_prior(prior).sample(50, torch.Generator().manual_seed(0))
    torch.testing.assert_close(x01, (x + 1) / 2)  # the same draws, read through x -> (x + 1) / 2


def test_with_controls_adds_the_wrong_variants_from_a_generator_of_its_own():
    prior, field, op, x, y = _small_problem()
    exact = posterior_mean(prior, op, y, 0.05)
    res = compare_restorations(field, op, y, x, exact, 10, zetas=(0.5,), generator=torch.Generator().manual_seed(5))
    out = with_controls(res, prior, DiscreteVP(), op, y, x, 0.05, n_steps=10, seed=3)
    added = ["RED-diff, times reversed", "RED-diff, prior on [0, 1]", "posterior mean, prior on [0, 1]"]
    assert list(out.scores) == list(res.scores) + added and "RED-diff, times reversed" not in res.scores
    g = torch.Generator().manual_seed(3)  # the same draws by hand
    reversed_ = red_diff(field, op, y, 10, order="ascending", generator=g)
    wrong = red_diff(misscaled_prior(prior).field(DiscreteVP()), op, y, 10, generator=g)
    torch.testing.assert_close(out.images["RED-diff, times reversed"], reversed_)
    torch.testing.assert_close(out.images["RED-diff, prior on [0, 1]"], wrong)
    assert out.gap("RED-diff", "RED-diff, times reversed") == pytest.approx(
        res.scores["RED-diff"]["PSNR"] - float(psnr(reversed_, x).mean())
    )
    wrong_mean = posterior_mean(misscaled_prior(prior), op, y, 0.05)
    torch.testing.assert_close(out.images["posterior mean, prior on [0, 1]"], wrong_mean)


def test_step_times():
    _, field, op, _, y = _small_problem()
    state = torch.get_rng_state()
    timing = step_times(field, op, y, n_steps=5, repeats=3, warmup=1)
    assert list(timing.ms_per_step) == ["RED-diff", "DPS", "RED-diff, again"] and min(timing.ms_per_step.values()) > 0
    assert timing.speedup > 0 and timing.control > 0
    assert torch.equal(torch.get_rng_state(), state)  # the runs draw from a generator of their own
    with pytest.raises(ValueError, match="repeats"):
        step_times(field, op, y, repeats=0)


def test_learned_prior_comparison_runs_at_toy_scale():
    g = torch.Generator().manual_seed(0)
    digits = torch.rand(32, 64, generator=g) * 2 - 1
    op = BatchInpainting.random(3, 8, 0.5, g)  # the chapter's task: a mask per digit
    x = torch.rand(3, 64, generator=g) * 2 - 1
    y = noisy_measurements(op, x, 0.05, g)
    mnist = Split(torch.rand(8, 784, generator=g), torch.zeros(8, dtype=torch.long),
                  torch.rand(4, 784, generator=g), torch.zeros(4, dtype=torch.long), (28, 28))  # fmt: skip
    out = learned_prior_comparison(
        digits, op, y, x, DiscreteVP(), g, mnist=mnist, mnist_test=2, n_steps=2, zetas=(0.1, 0.5),
        mlp_steps=2, unet_steps=2, unet_base=8,
    )  # fmt: skip
    assert set(out.mlp) == {"RED-diff", "RED-diff, random order", "DPS (best ζ)", "RED-diff, times reversed"}
    assert list(out.unet_gaps) == ["inpainting 50 %", "super-resolution 4×", "Gaussian blur σ=2"]
    assert list(out.unet_control_gaps) == list(out.unet_gaps)
    assert len(out.rows) == 4 + 3 * 3
    assert all(math.isfinite(r["PSNR"]) for r in out.rows)


def test_a_progress_label_does_not_change_the_run(capsys):
    _, field, op, _, y = _small_problem()
    silent = red_diff(field, op, y, 5, generator=torch.Generator().manual_seed(9))
    shown = red_diff(field, op, y, 5, generator=torch.Generator().manual_seed(9), desc="RED-diff")
    torch.testing.assert_close(silent, shown)
    a = dps(field, op, y, 5, generator=torch.Generator().manual_seed(9))
    b = dps(field, op, y, 5, generator=torch.Generator().manual_seed(9), desc="DPS")
    torch.testing.assert_close(a, b)
    printed = capsys.readouterr()
    assert "RED-diff" in printed.out + printed.err  # the bar is drawn only when labelled
