import pytest
import torch

from varbook.data import implicit_feedback
from varbook.recsys import (
    EASE,
    FitResult,
    MultDAE,
    MultVAE,
    Popularity,
    beta_at,
    ease_weights,
    evaluate,
    fit,
    fit_together,
    log_likelihood,
    strong_generalization_split,
)
from varbook.recsys.mult_vae import ClickDropout
from varbook.runtime import History, NonFiniteLossError


def test_multinomial_log_likelihood_against_direct_computation():
    logits = torch.tensor([[0.3, -1.0, 2.0, 0.5]], dtype=torch.float64)
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    pi = torch.exp(logits) / torch.exp(logits).sum()
    direct = sum(float(torch.log(pi[0, i])) for i in (0, 2, 3))
    assert log_likelihood(logits, x, "mult").item() == pytest.approx(direct)
    p = torch.sigmoid(logits)
    assert log_likelihood(logits, x, "logistic").item() == pytest.approx(
        float((x * p.log() + (1 - x) * (1 - p).log()).sum())
    )
    assert log_likelihood(logits, x, "gaussian").item() == pytest.approx(float(-0.5 * ((logits - x) ** 2).sum()))
    with pytest.raises(ValueError, match="unknown likelihood"):
        log_likelihood(logits, x, "poisson")


def test_split_is_disjoint_and_deterministic():
    clicks = implicit_feedback(n_users=300, n_items=50, seed=1)
    a = strong_generalization_split(clicks, 40, 30, seed=7)
    b = strong_generalization_split(clicks, 40, 30, seed=7)
    sets = [set(a.train_users.tolist()), set(a.validation.users.tolist()), set(a.test.users.tolist())]
    assert len(sets[1]) == 40 and len(sets[2]) == 30
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert torch.equal(a.test.users, b.test.users) and torch.equal(a.test.held_out, b.test.held_out)
    c = strong_generalization_split(clicks, 40, 30, seed=8)
    assert not torch.equal(a.test.users, c.test.users)
    # fold-in and held-out partition each held-out user's clicks, about 80/20
    original = clicks[a.test.users]
    assert torch.equal(a.test.fold_in + a.test.held_out, original)
    assert (a.test.fold_in * a.test.held_out).sum() == 0
    frac = a.test.held_out.sum() / original.sum()
    assert 0.15 < float(frac) < 0.25


def test_split_errors():
    with pytest.raises(ValueError, match="binary"):
        strong_generalization_split(torch.full((10, 5), 2.0), 2, 2)
    with pytest.raises(ValueError, match="no training users"):
        strong_generalization_split(torch.ones(10, 8), 5, 5)


def test_beta_schedule():
    assert beta_at(0, 100, 0.2) == 0.0
    assert beta_at(10, 100, 0.2) == pytest.approx(0.1)
    assert beta_at(500, 100, 0.2) == 0.2
    assert beta_at(3, 0, 1.0) == 1.0


def test_models_train_and_score():
    clicks = implicit_feedback(n_users=400, n_items=60, seed=2)
    split = strong_generalization_split(clicks, 50, 50, seed=0)
    torch.manual_seed(0)
    vae = MultVAE(60, hidden=(32,), latent=8)
    result = fit(vae, split.train, split.validation, epochs=3, batch_size=50, k=10)
    assert isinstance(result, History) and result.model is vae and result.users_per_second > 0
    assert len(result["val_ndcg"]) == len(result["beta"]) == len(result["loss"]) == 3
    assert result["val_ndcg"][result.best_epoch] == max(result["val_ndcg"])
    assert float(evaluate(vae, split.validation, 10).mean()) == pytest.approx(max(result["val_ndcg"]))
    ndcg = evaluate(vae, split.test, 10)
    assert ndcg.shape == (50,) and (ndcg >= 0).all() and (ndcg <= 1).all()
    dae = MultDAE(60, hidden=(32, 8))
    fit(dae, split.train, split.validation, epochs=2, batch_size=50, k=10)
    assert evaluate(dae, split.test, 10).shape == (50,)
    assert (
        evaluate(Popularity(split.train), split.test, 10).mean()
        < evaluate(EASE(split.train, 50.0), split.test, 10).mean()
    )
    with pytest.raises(ValueError, match="unknown likelihood"):
        MultVAE(60, likelihood="poisson")


def test_eval_uses_the_mean_and_no_dropout():
    vae = MultVAE(20, hidden=(8,), latent=4)
    x = (torch.rand(5, 20) > 0.5).float()
    assert torch.equal(vae.scores(x), vae.scores(x))
    assert vae.training  # scores() restores the mode


def test_nan_loss_stops_training():
    clicks = implicit_feedback(n_users=200, n_items=30, seed=3)
    split = strong_generalization_split(clicks, 20, 20, seed=0)
    vae = MultVAE(30, hidden=(8,), latent=4)
    with torch.no_grad():
        vae.decoder[0].weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError):
        fit(vae, split.train, split.validation, epochs=1, batch_size=50, k=5)
    with pytest.raises(ValueError, match="epochs must be positive"):
        fit(vae, split.train, split.validation, epochs=0, batch_size=50, k=5)


def test_ease_closed_form():
    x = (torch.rand(30, 6, generator=torch.Generator().manual_seed(0)) > 0.5).double()
    lam = 3.0
    b = ease_weights(x, lam)
    assert torch.allclose(b.diagonal(), torch.zeros(6, dtype=torch.float64))
    # each column solves a ridge regression of item j on the other items
    for j in range(6):
        others = [i for i in range(6) if i != j]
        a = x[:, others]
        w = torch.linalg.solve(a.T @ a + lam * torch.eye(5, dtype=torch.float64), a.T @ x[:, j])
        assert torch.allclose(b[others, j], w, atol=1e-8)
    with pytest.raises(ValueError):
        ease_weights(x, 0.0)


def test_gaussian_likelihood_weighs_observed_and_unobserved_entries():
    f = torch.tensor([[0.3, -1.0, 2.0, 0.5]], dtype=torch.float64)
    x = torch.tensor([[1.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    c0, c1 = 0.5, 7.0
    # -Σ_i c_{x_i}/2 (x_i - f_i)^2 with c_1 on the clicks, c_0 elsewhere; f is not squashed
    direct = -(c1 / 2 * (0.7**2 + 1.0**2) + c0 / 2 * (1.0**2 + 0.5**2))
    assert log_likelihood(f, x, "gaussian", confidence=(c0, c1)).item() == pytest.approx(direct)
    # equal weights: the plain squared error; raising c_1 changes only the clicked entries' terms
    assert log_likelihood(f, x, "gaussian").item() == pytest.approx(-0.5 * float(((x - f) ** 2).sum()))
    f2 = f.clone()
    f2[0, 1] = 3.0  # an unclicked entry moves: the change is weighted by c_0 alone
    change = log_likelihood(f2, x, "gaussian", (c0, c1)) - log_likelihood(f, x, "gaussian", (c0, c1))
    assert change.item() == pytest.approx(-c0 / 2 * (3.0**2 - 1.0**2))
    with pytest.raises(ValueError, match="confidence"):
        log_likelihood(f, x, "gaussian", confidence=(0.0, 1.0))


def test_models_train_with_the_weighted_gaussian_likelihood():
    x = (torch.rand(6, 12, generator=torch.Generator().manual_seed(1)) > 0.6).float()
    torch.manual_seed(0)
    vae = MultVAE(12, hidden=(8,), latent=3, likelihood="gaussian", confidence=(1.0, 10.0))
    vae.eval()  # z = mu, no dropout: the loss is a function of the logits only
    with torch.no_grad():
        logits, mu, log_var = vae(x)
        kl = 0.5 * (mu**2 + log_var.exp() - log_var - 1).sum(-1)
        weight = 1.0 + 9.0 * x
        direct = (0.5 * (weight * (x - logits) ** 2).sum(-1) + 0.3 * kl).mean()
        assert float(vae.loss(x, 0.3)) == pytest.approx(float(direct), rel=1e-5)
    dae = MultDAE(12, hidden=(8, 4), likelihood="gaussian", confidence=(1.0, 10.0))
    dae.eval()
    unweighted = MultDAE(12, hidden=(8, 4), likelihood="gaussian")
    unweighted.load_state_dict(dae.state_dict())
    unweighted.eval()
    with torch.no_grad():
        assert float(dae.loss(x)) > float(unweighted.loss(x))  # the clicks' errors count ten times


def _tiny_split():
    return strong_generalization_split(implicit_feedback(n_users=300, n_items=40, seed=6), 40, 40, seed=0)


def test_fit_together_gives_each_model_the_run_fit_gives_it():
    """Stacked along a model axis, each Mult-VAE follows its own run of fit from the same seed."""
    split = _tiny_split()
    settings = [("mult", 0.2, None), ("gaussian", 1.0, 0), ("logistic", 0.5, None)]

    def build(likelihood):
        torch.manual_seed(0)
        return MultVAE(40, hidden=(16,), latent=4, likelihood=likelihood)

    alone = []
    for likelihood, cap, total in settings:
        model = build(likelihood)
        alone.append(fit(model, split.train, split.validation, epochs=3, batch_size=50, cap=cap,
                         total_anneal_steps=total, k=10, generator=torch.Generator().manual_seed(1)))  # fmt: skip
    models = [build(likelihood) for likelihood, _, _ in settings]
    together = fit_together(models, split.train, split.validation, epochs=3, batch_size=50, k=10,
                            caps=[c for _, c, _ in settings], total_anneal_steps=[t for _, _, t in settings],
                            generator=torch.Generator().manual_seed(1))  # fmt: skip
    for a, b in zip(alone, together, strict=True):
        assert b["val_ndcg"] == pytest.approx(a["val_ndcg"], abs=1e-4)
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4) and b["beta"] == a["beta"]
        assert b.best_epoch == a.best_epoch and b.checkpoint.epoch == b.best_epoch
        for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
            assert torch.allclose(p, q, atol=1e-4)
    with pytest.raises(ValueError, match="one architecture"):
        fit_together([MultVAE(40, hidden=(16,), latent=4), MultVAE(40, hidden=(8,), latent=4)], split.train,
                     split.validation, epochs=1, caps=[0.2, 0.2], total_anneal_steps=[None, None])  # fmt: skip
    with pytest.raises(ValueError, match="one cap"):
        fit_together(models, split.train, split.validation, epochs=1, caps=[0.2], total_anneal_steps=[None])


def test_fit_together_resumes_a_run_exactly():
    """Continued from its checkpoint at epoch 1, a run with β capped there is the run retrained from scratch."""
    split = _tiny_split()

    def run(cap, epochs, total=None, resume=None):
        torch.manual_seed(0)
        model = MultVAE(40, hidden=(16,), latent=4)
        return fit_together([model], split.train, split.validation, epochs=epochs, batch_size=50, k=10, caps=[cap],
                            total_anneal_steps=[total], generator=torch.Generator().manual_seed(1), resume=resume)[0]  # fmt: skip

    steps = -(-split.train.shape[0] // 50) * 5  # updates in 5 epochs of batches of 50
    head = run(1.0, 2, total=steps)  # the first two epochs of a 5-epoch run annealed to 1
    cap = head["beta"][head.best_epoch]
    scratch, resumed = run(cap, 5), run(cap, 5, resume=head)
    assert resumed["val_ndcg"] == scratch["val_ndcg"] and resumed["loss"] == scratch["loss"]
    for p, q in zip(scratch.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match="resume"):
        run(cap, 5, resume=FitResult(model=None))  # a result of fit, without a checkpoint


def test_click_dropout_keeps_zeros_and_the_mean():
    x = (torch.rand(400, 50, generator=torch.Generator().manual_seed(0)) < 0.2).float()
    drop = ClickDropout(0.5)
    torch.manual_seed(0)
    out = drop(x)
    assert set(out[x > 0].unique().tolist()) <= {0.0, 2.0} and (out[x == 0] == 0).all()
    kept = float((out[x > 0] > 0).double().mean())
    assert kept == pytest.approx(0.5, abs=4 * 0.5 / int((x > 0).sum()) ** 0.5)  # 4 standard errors
    assert torch.equal(drop.eval()(x), x)
