import pytest
import torch

from varbook.data import implicit_feedback
from varbook.recsys import EASE, MultDAE, MultVAE, Popularity, strong_generalization_split
from varbook.recsys import compare as mv
from varbook.recsys.split import HeldOut


@pytest.fixture(scope="module")
def split():
    return strong_generalization_split(implicit_feedback(n_users=300, n_items=40, seed=4), 40, 40, seed=0)


def test_fit_variants_start_every_model_alike(split):
    variants = {
        "a": mv.Variant("mult", cap=1.0),
        "b": mv.Variant("mult", cap=1.0),
        "constant": mv.Variant("gaussian", cap=1.0, total_anneal_steps=0),
        "dae": mv.Variant(dae=True),
    }
    fits = mv.fit_variants(
        variants, split, hidden=(16,), latent=4, dae_hidden=(8,), epochs=2, batch_size=50, k=10, seed=3
    )
    assert isinstance(fits["a"].model, MultVAE) and isinstance(fits["dae"].model, MultDAE)
    assert fits["constant"].model.likelihood == "gaussian"
    # the same variant from the same seed gives the same run
    assert fits["a"]["val_ndcg"] == fits["b"]["val_ndcg"]
    for p, q in zip(fits["a"].model.parameters(), fits["b"].model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert fits["constant"]["beta"] == [1.0, 1.0]
    assert 0 < fits["a"]["beta"][0] < fits["a"]["beta"][1] < 1.0  # annealed over the whole run


class Oracle:
    """Scores the held-out items highest: a perfect ranking."""

    def __init__(self, held_out: torch.Tensor):
        self.held_out = held_out

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.held_out + 0.0 * x


def test_held_out_metrics_and_summarise():
    fold_in = torch.tensor([[1.0, 0, 0, 0, 1, 0], [0, 1, 0, 0, 0, 0], [1, 1, 0, 1, 0, 0]])
    held_out = torch.tensor([[0.0, 1, 0, 0, 0, 1], [1, 0, 1, 0, 0, 0], [0, 0, 0, 0, 1, 0]])
    held = HeldOut(torch.arange(3), fold_in, held_out)
    perfect = mv.held_out_metrics(Oracle(held_out), held, k=2, recall_at=(1, 3))
    assert set(perfect) == {"NDCG@2", "Recall@1", "Recall@3"}
    assert all(torch.allclose(v, torch.ones(3, dtype=v.dtype)) for v in perfect.values())
    reverse = mv.held_out_metrics(Oracle(-held_out), held, k=2, recall_at=(1, 3))
    assert float(reverse["NDCG@2"].max()) == 0.0  # the relevant items are ranked last
    assert mv.mean_ndcg({"perfect": Oracle(held_out), "reverse": Oracle(-held_out)}, held, 2) == {
        "perfect": 1.0,
        "reverse": 0.0,
    }
    rows = mv.summarise({"perfect": perfect, "reverse": reverse})
    assert rows["perfect"] == {"NDCG@2": 1.0, "Recall@1": 1.0, "Recall@3": 1.0, "s.e. NDCG": 0.0}
    assert rows["reverse"]["NDCG@2"] == 0.0 and rows["reverse"]["Recall@1"] == 0.0


def test_ndcg_by_activity_groups_users_by_fold_in_clicks():
    activity = torch.arange(1, 11)  # users with 1 to 10 fold-in clicks
    fold_in = (torch.arange(12)[None, :] < activity[:, None]).float()
    per_user = {"m": {"NDCG@5": activity.double()}}
    groups = mv.ndcg_by_activity(per_user, fold_in, groups=5)["m"]
    assert len(groups) == 5 and groups == sorted(groups)
    assert groups[0] < 3 and groups[-1] > 8  # group 1: least active users


def test_baselines(split):
    models = mv.baselines(split.train, lam=50.0)
    assert list(models) == ["EASE (λ = 50)", "popularity"]
    assert isinstance(models["EASE (λ = 50)"], EASE) and isinstance(models["popularity"], Popularity)
    ndcg = {n: mv.held_out_metrics(m, split.test, 10, recall_at=(10,))["NDCG@10"].mean() for n, m in models.items()}
    assert ndcg["EASE (λ = 50)"] > ndcg["popularity"]


def test_mistaken_variants_train_the_wrong_models(split):
    variants = {
        "beta": mv.Variant("mult", mistake="beta on the likelihood"),
        "users": mv.Variant("mult", mistake="softmax over users"),
    }
    fits = mv.fit_variants(
        variants, split, hidden=(16,), latent=4, dae_hidden=(8,), epochs=1, batch_size=50, k=10, seed=0
    )
    assert isinstance(fits["beta"].model, mv.BetaOnLikelihoodVAE)
    assert isinstance(fits["users"].model, mv.UserSoftmaxVAE)
    with pytest.raises(ValueError, match="mistake"):
        mv.fit_variants({"x": mv.Variant(mistake="typo")}, split, hidden=(4,), latent=2, dae_hidden=(4,), epochs=1,
                        batch_size=50, k=10, seed=0)  # fmt: skip


def test_the_mistaken_losses():
    x = (torch.rand(6, 10, generator=torch.Generator().manual_seed(0)) > 0.6).float()
    torch.manual_seed(0)
    right = MultVAE(10, hidden=(8,), latent=3)
    beta_lik = mv.BetaOnLikelihoodVAE(10, hidden=(8,), latent=3)
    users = mv.UserSoftmaxVAE(10, hidden=(8,), latent=3)
    beta_lik.load_state_dict(right.state_dict())
    users.load_state_dict(right.state_dict())
    for m in (right, beta_lik, users):
        m.eval()  # z = mu and no dropout: the three see the same logits
        m.requires_grad_(False)
    logits, mu, log_var = right(x)
    kl = (0.5 * (mu**2 + log_var.exp() - log_var - 1).sum(-1)).mean()
    assert float(beta_lik.loss(x, 0.0)) == pytest.approx(float(kl), rel=1e-5)  # β = 0: only the KL term is left
    assert float(beta_lik.loss(x, 1.0)) == pytest.approx(float(right.loss(x, 1.0)), rel=1e-5)  # β = 1: no difference
    wrong_lik = (torch.log_softmax(logits, 0) * x).sum(-1).mean()
    assert float(users.loss(x, 0.0)) == pytest.approx(-float(wrong_lik), rel=1e-5)
    assert float(users.loss(x, 0.0)) != pytest.approx(float(right.loss(x, 0.0)), rel=1e-3)


def test_misaligned_shuffles_the_fold_in_rows_only(split):
    bad = mv.misaligned(split.test, seed=1)
    assert torch.equal(bad.held_out, split.test.held_out) and torch.equal(bad.users, split.test.users)
    assert not torch.equal(bad.fold_in, split.test.fold_in)
    rows = {tuple(r.tolist()) for r in split.test.fold_in}
    assert all(tuple(r.tolist()) in rows for r in bad.fold_in)  # the same rows, in another order
    assert torch.equal(mv.misaligned(split.test, seed=1).fold_in, bad.fold_in)  # seeded


def test_peak_beta_reads_the_beta_of_the_best_validation_epoch(split):
    h = mv.FitResult(model=None)
    for beta, ndcg in [(0.1, 0.3), (0.2, 0.5), (0.3, 0.45), (0.4, 0.2)]:
        h.log(beta=beta, val_ndcg=ndcg)
    assert mv.peak_beta(h) == 0.2
    with pytest.raises(ValueError, match="no epoch"):
        mv.peak_beta(mv.FitResult(model=None))
    # on a real run annealed to 1: the β logged at the epoch the fit kept
    fits = mv.fit_variants({"to 1": mv.Variant("mult", cap=1.0)}, split, hidden=(16,), latent=4, dae_hidden=(8,),
                           epochs=4, batch_size=50, k=10, seed=0)  # fmt: skip
    run = fits["to 1"]
    assert mv.peak_beta(run) == run["beta"][run.best_epoch]
    assert 0 < mv.peak_beta(run) <= 1.0


def test_wmf_folds_in_a_user_by_weighted_least_squares(split):
    pytest.importorskip("implicit")
    from varbook.recsys.baselines import WMF

    lam, alpha = 2.0, 5.0
    wmf = WMF(split.train, factors=6, regularization=lam, alpha=alpha, iterations=5, seed=0)
    q = torch.as_tensor(wmf.model.item_factors, dtype=torch.float64)
    x = split.test.fold_in[:3].double()
    # p_u = (Q^T C_u Q + λ I)^{-1} Q^T C_u x_u with c = α on a click and 1 elsewhere
    expected = []
    for row in x:
        c = 1.0 + (alpha - 1.0) * row
        p = torch.linalg.solve(q.T @ (c[:, None] * q) + lam * torch.eye(6, dtype=torch.float64), q.T @ (c * row))
        expected.append(q @ p)
    assert torch.allclose(wmf.scores(split.test.fold_in[:3]), torch.stack(expected), atol=1e-3)
    ndcg = mv.mean_ndcg({"wmf": wmf, "pop": Popularity(split.train)}, split.test, 10)
    assert ndcg["wmf"] > ndcg["pop"]


def test_compare_on_splits_runs_the_full_profile_path_at_small_size():
    """The MovieLens loop of the full profile: several splits, the β recipe, averaged tables."""
    clicks = implicit_feedback(n_users=200, n_items=30, seed=5)
    variants = {
        "cap": mv.Variant("mult", cap=0.2),
        "to 1": mv.Variant("mult", cap=1.0),
        "dae": mv.Variant(dae=True),
    }
    out = mv.compare_on_splits(clicks, variants, n_splits=2, n_held=20, k=10, seed=0, recall_at=(5,), anneal_to_one="to 1",
                               hidden=(8,), latent=3, dae_hidden=(8,), epochs=2, batch_size=50)  # fmt: skip
    assert len(out.curves) == len(out.peaks) == 2
    assert all(p == c["beta"][c.best_epoch] for p, c in zip(out.peaks, out.curves, strict=True))
    assert set(out.table) == {"cap", "dae", mv.RECIPE, "EASE (λ = 200)", "popularity"}  # the curve is not ranked
    assert set(out.by_activity) == set(out.table) and all(len(v) == 5 for v in out.by_activity.values())
    # the table is the mean over the splits of each split's table
    one = [mv.compare_on_splits(clicks, {"cap": variants["cap"]}, n_splits=1, n_held=20, k=10, seed=s, recall_at=(5,),
                                hidden=(8,), latent=3, dae_hidden=(8,), epochs=2, batch_size=50)
           for s in (0, 1)]  # fmt: skip
    mean = (one[0].table["cap"]["NDCG@10"] + one[1].table["cap"]["NDCG@10"]) / 2
    assert out.table["cap"]["NDCG@10"] == pytest.approx(mean, abs=1e-12)


def test_paired_gap_is_the_mean_difference_with_its_standard_error():
    a = torch.tensor([0.5, 0.7, 0.9, 0.4], dtype=torch.float64)
    b = torch.tensor([0.4, 0.7, 0.6, 0.5], dtype=torch.float64)
    gap, se = mv.paired_gap({"a": {"NDCG@5": a}, "b": {"NDCG@5": b}}, "a", "b")
    d = a - b
    assert gap == pytest.approx(float(d.mean()))
    assert se == pytest.approx(float(d.std()) / 2)  # sqrt(4 users)


def test_wmf_without_the_peer_library_says_what_to_install(monkeypatch, split):
    from varbook.recsys import baselines

    monkeypatch.setattr(baselines, "has_implicit", lambda: False)
    with pytest.raises(ImportError, match="pip install implicit"):
        baselines.WMF(split.train)


def test_retrain_at_peak_is_the_capped_run_from_scratch(split):
    """The recipe continues the run annealed to 1 from its peak: the same run as retraining with that cap."""
    kw = dict(hidden=(16,), latent=4, dae_hidden=(8,), epochs=4, batch_size=50, k=10, seed=2)
    run = mv.fit_variants({"to 1": mv.Variant("mult", cap=1.0)}, split, **kw)["to 1"]
    recipe = mv.retrain_at_peak(run, split, epochs=4, batch_size=50, k=10, seed=2)
    scratch = mv.fit_variants({"capped": mv.Variant("mult", cap=mv.peak_beta(run))}, split, **kw)["capped"]
    assert recipe["val_ndcg"] == pytest.approx(scratch["val_ndcg"], abs=1e-6)
    assert recipe["beta"] == scratch["beta"] and recipe.best_epoch == scratch.best_epoch
    for p, q in zip(recipe.model.parameters(), scratch.model.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-5)
