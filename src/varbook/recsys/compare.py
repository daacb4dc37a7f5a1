r"""The comparison of the Mult-VAE chapter :cite:`liang2018variational`: models trained alike, ranked alike.

* :class:`Variant` and :func:`fit_variants`: Mult-VAEs with different likelihoods and β schedules,
  and the Mult-DAE, each trained by :func:`~varbook.recsys.mult_vae.fit` from the same seed;
* :func:`held_out_metrics`, :func:`summarise` and :func:`mean_ndcg`: per-user NDCG@k and
  Recall@r of held-out users, and their means with the standard error of the NDCG;
* :func:`ndcg_by_activity`: the NDCG of each activity group of test users (how many clicks they
  folded in);
* :func:`baselines`: EASE and popularity, which need no training;
* :func:`peak_beta` and :func:`retrain_at_peak`: the paper's recipe for β's cap (the β where validation NDCG
  peaks when annealing to 1, and the model retrained with that cap);
* the negative controls of the chapter's claims: two deliberately wrong Mult-VAEs
  (:class:`BetaOnLikelihoodVAE`, :class:`UserSoftmaxVAE`, named by :attr:`Variant.mistake`)
  and an evaluation whose fold-in rows are misaligned with the held-out ones (:func:`misaligned`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch
import torch.nn.functional as F

from .. import runtime
from ..vi.kl import gaussian_kl_standard
from .baselines import EASE, Popularity
from .metrics import ndcg_at_k, recall_at_k
from .mult_vae import FitResult, MultDAE, MultVAE, Scorer, fit, fit_together, log_likelihood, rank_scores
from .split import HeldOut, StrongSplit, strong_generalization_split


@dataclass(frozen=True)
class Variant:
    """One model of a comparison: a Mult-VAE with a ``likelihood`` and a β schedule, or the Mult-DAE.

    β rises linearly to ``cap`` over ``total_anneal_steps`` updates (``None``: the whole run;
    ``0``: constant β = ``cap``); the Mult-DAE (``dae=True``) has no KL term and ignores β.
    ``mistake`` names a deliberately wrong Mult-VAE of :data:`MISTAKES`, for negative controls.
    ``confidence`` :math:`(c_0,c_1)` weighs the Gaussian likelihood's unobserved and observed entries.
    """

    likelihood: str = "mult"
    cap: float = 0.2
    total_anneal_steps: int | None = None
    dae: bool = False
    mistake: str | None = None
    confidence: tuple[float, float] = (1.0, 1.0)


class BetaOnLikelihoodVAE(MultVAE):
    """A deliberate mistake (a negative control): the annealed weight β multiplies the log-likelihood, not the KL term.

    The loss is :math:`-\\beta\\sum_i x_i\\log\\pi_i(z)+\\mathrm{KL}`: early in an annealed run the
    clicks carry no weight, and at the cap 0.2 the KL weighs five times the likelihood.
    """

    def negative_elbo(
        self, x: torch.Tensor, logits: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor, beta: float
    ) -> torch.Tensor:
        return (-beta * log_likelihood(logits, x, self.likelihood) + gaussian_kl_standard(mu, log_var)).mean()


class UserSoftmaxVAE(MultVAE):
    """A deliberate mistake (a negative control): the multinomial's softmax runs over the users of the minibatch.

    ``log_softmax(logits, 0)`` instead of over the items (the last dimension): each item's
    probability is shared among users rather than each user's among items, so the loss no
    longer ranks items for a user (it cannot see an item's popularity, a constant per item).
    """

    def negative_elbo(
        self, x: torch.Tensor, logits: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor, beta: float
    ) -> torch.Tensor:
        log_lik = (F.log_softmax(logits, 0) * x).sum(-1)  # the wrong axis
        return (-log_lik + beta * gaussian_kl_standard(mu, log_var)).mean()


MISTAKES: dict[str, type[MultVAE]] = {
    "beta on the likelihood": BetaOnLikelihoodVAE,
    "softmax over users": UserSoftmaxVAE,
}
"""The deliberately wrong Mult-VAEs a :class:`Variant` can name (``mistake=``), for negative controls."""


def fit_variants(
    variants: dict[str, Variant],
    split: StrongSplit,
    *,
    hidden: Sequence[int],
    latent: int,
    dae_hidden: Sequence[int],
    epochs: int,
    batch_size: int,
    k: int,
    seed: int,
    device: torch.device | str | None = None,
    desc: str | None = None,
) -> dict[str, FitResult]:
    """Train every variant on ``split`` (validation NDCG@k picks the epoch), each from the same seed.

    Each model is built after seeding everything with ``seed``, so the VAEs
    ``[I, *hidden, latent, *reversed(hidden), I]`` all start from the same weights, and the
    minibatches are drawn with a fresh generator seeded with ``seed``: the variants differ only
    in what they name. The VAEs train together as one batched network
    (:func:`~varbook.recsys.mult_vae.fit_together`: the runs one
    :func:`~varbook.recsys.mult_vae.fit` each would give, in one pass), the DAE
    ``[I, *dae_hidden, I]`` on its own. Returns each :class:`~varbook.recsys.mult_vae.FitResult`
    (its ``model`` is the trained network), in the order of ``variants``.
    """
    for v in variants.values():
        if v.mistake is not None:
            runtime.check_choice("mistake", v.mistake, MISTAKES)
    fits: dict[str, FitResult] = {}
    vaes: dict[str, MultVAE] = {}
    for name, v in variants.items():
        if not v.dae:
            runtime.seed_all(seed)  # every VAE starts from the same weights
            cls = MultVAE if v.mistake is None else MISTAKES[v.mistake]
            vaes[name] = cls(
                split.n_items, hidden=hidden, latent=latent, likelihood=v.likelihood, confidence=v.confidence
            )
    if vaes:  # the global generator is now where each fit would start: seeded, then one model built
        runs = fit_together(
            [m.to(device) for m in vaes.values()],
            split.train,
            split.validation,
            epochs=epochs,
            batch_size=batch_size,
            caps=[variants[n].cap for n in vaes],
            total_anneal_steps=[variants[n].total_anneal_steps for n in vaes],
            k=k,
            generator=torch.Generator().manual_seed(seed),
            desc=desc,
        )
        fits |= dict(zip(vaes, runs, strict=True))
    for name, v in variants.items():
        if v.dae:
            runtime.seed_all(seed)
            dae = MultDAE(split.n_items, hidden=dae_hidden, likelihood=v.likelihood, confidence=v.confidence)
            fits[name] = fit(
                dae.to(device),
                split.train,
                split.validation,
                epochs=epochs,
                batch_size=batch_size,
                k=k,
                generator=torch.Generator().manual_seed(seed),
            )
    return {name: fits[name] for name in variants}


def peak_beta(history: FitResult) -> float:
    """The β of the epoch with the best validation NDCG in a run annealed towards 1 :cite:`liang2018variational`.

    The paper's recipe for the cap: anneal β from 0 to 1, read the β at which the validation
    metric peaks, and retrain with β capped there. ``history`` logs β at the end of each epoch.
    """
    if not history.get("val_ndcg"):
        raise ValueError("the run logged no epoch")
    return history["beta"][history["val_ndcg"].index(max(history["val_ndcg"]))]


def retrain_at_peak(
    run: FitResult,
    split: StrongSplit,
    *,
    epochs: int,
    batch_size: int,
    k: int,
    seed: int,
    device: torch.device | str | None = None,
) -> FitResult:
    """The paper's recipe :cite:`liang2018variational`: the Mult-VAE annealed to β = 1 in ``run``, retrained with β capped at its peak β*.

    ``run`` comes from :func:`fit_variants` (``Variant("mult", cap=1.0)``, with these arguments).
    Retrained from the same seed, the capped run is that run until the epoch of the peak, since
    β = t/T stays below β* there (:func:`~varbook.recsys.mult_vae.beta_at`): so it continues
    from ``run``'s checkpoint at that epoch (the same weights, Adam moments and random streams)
    with β held at β* (:func:`peak_beta`), instead of repeating those epochs.
    """
    retrained = copy.deepcopy(cast(MultVAE, run.model)).to(device)  # its weights come from the checkpoint
    return fit_together(
        [retrained],
        split.train,
        split.validation,
        epochs=epochs,
        batch_size=batch_size,
        caps=[peak_beta(run)],
        total_anneal_steps=[None],
        k=k,
        generator=torch.Generator().manual_seed(seed),
        resume=run,
    )[0]


def held_out_metrics(model: Scorer, held: HeldOut, k: int = 100, recall_at: Sequence[int] = (20, 50)) -> dict:
    """Per-user NDCG@k and Recall@r (each ``(users,)``) of the held-out users, ranking from their fold-in clicks."""
    scores = rank_scores(model, held.fold_in)
    out = {f"NDCG@{k}": ndcg_at_k(scores, held.held_out, k)}
    out |= {f"Recall@{r}": recall_at_k(scores, held.held_out, r) for r in recall_at}
    return out


def misaligned(held: HeldOut, seed: int = 0) -> HeldOut:
    """The held-out users with their fold-in rows shuffled among them: a deliberately wrong evaluation (a negative control).

    Each user's ranking is then computed from another user's clicks (a random permutation
    seeded with ``seed``), the mistake of building the fold-in and held-out matrices in two
    different user orders. A non-personal ranker (popularity) hardly changes; a personalised
    one loses what it learnt about the user.
    """
    order = runtime.randperm(len(held.users), generator=torch.Generator().manual_seed(seed))
    return HeldOut(held.users, held.fold_in[order.to(held.fold_in.device)], held.held_out)


def mean_ndcg(models: dict[str, Scorer], held: HeldOut, k: int) -> dict[str, float]:
    """Each model's mean NDCG@k over the users of ``held`` (:func:`held_out_metrics`)."""
    return {name: float(held_out_metrics(m, held, k, recall_at=())[f"NDCG@{k}"].mean()) for name, m in models.items()}


def summarise(per_user: dict[str, dict[str, torch.Tensor]]) -> dict[str, dict[str, float]]:
    r"""The mean of each metric per model, and the standard error :math:`\hat\sigma/\sqrt n` of the NDCG (the first metric)."""
    rows = {}
    for name, metrics in per_user.items():
        row = {metric: float(v.mean()) for metric, v in metrics.items()}
        ndcg = next(iter(metrics.values()))
        row["s.e. NDCG"] = float(ndcg.std() / len(ndcg) ** 0.5)
        rows[name] = row
    return rows


def ndcg_by_activity(
    per_user: dict[str, dict[str, torch.Tensor]], fold_in: torch.Tensor, groups: int = 5
) -> dict[str, list[float]]:
    """Each model's mean NDCG (its first metric) over the users of each of ``groups`` activity quantiles.

    A user's activity is their number of fold-in clicks; group 1 holds the least active users.
    """
    activity = fold_in.sum(1)
    edges = activity.quantile(torch.arange(1, groups, device=activity.device) / groups)  # 0.2, 0.4, ... for 5
    group = torch.bucketize(activity, edges)
    out = {}
    for name, metrics in per_user.items():
        ndcg = next(iter(metrics.values()))
        out[name] = [float(ndcg[group == q].mean()) for q in range(groups)]
    return out


def baselines(train: torch.Tensor, lam: float = 200.0) -> dict[str, Scorer]:
    """The two baselines that need no training: EASE (ridge ``lam``) :cite:`steck2019embarrassingly` and popularity."""
    return {f"EASE (λ = {lam:g})": EASE(train, lam), "popularity": Popularity(train)}


def paired_gap(per_user: dict[str, dict[str, torch.Tensor]], a: str, b: str) -> tuple[float, float]:
    r"""Mean difference of model ``a``'s and ``b``'s first metric over the same users, and its standard error.

    The standard error is :math:`\hat\sigma(d)/\sqrt n` of the per-user differences :math:`d`: the
    noise of the gap from the choice of test users (the two models rank the same users).
    """
    da, db = next(iter(per_user[a].values())), next(iter(per_user[b].values()))
    d = (da - db).double()
    return float(d.mean()), float(d.std() / len(d) ** 0.5)


@dataclass
class SplitsResult:
    """What :func:`compare_on_splits` returns, averaged over the random splits.

    ``table``: each model's mean metrics (:func:`summarise`); ``by_activity``: each model's NDCG
    per activity quintile (:func:`ndcg_by_activity`); ``curves``: the validation curve of each
    split's run annealed to β = 1; ``peaks``: the β* read from each curve (:func:`peak_beta`).
    """

    table: dict[str, dict[str, float]]
    by_activity: dict[str, list[float]]
    curves: list[FitResult] = field(default_factory=list)
    peaks: list[float] = field(default_factory=list)


RECIPE = "Mult-VAE (β annealed to β*)"
"""The name :func:`compare_on_splits` gives the Mult-VAE retrained with the cap read from the peak."""


def compare_on_splits(
    clicks: torch.Tensor,
    variants: dict[str, Variant],
    *,
    n_splits: int,
    n_held: int,
    k: int,
    seed: int,
    recall_at: Sequence[int] = (20, 50),
    anneal_to_one: str | None = None,
    baselines_for: Callable[[torch.Tensor], dict[str, Scorer]] = baselines,
    device: torch.device | str | None = None,
    desc: str | None = None,
    **architecture: Any,
) -> SplitsResult:
    """Train and rank every variant on ``n_splits`` strong-generalisation splits of ``clicks``, and average.

    Split ``s`` holds out ``n_held`` validation and ``n_held`` test users with seed ``seed + s``;
    ``architecture`` (``hidden``, ``latent``, ``dae_hidden``, ``epochs``, ``batch_size``) goes to
    :func:`fit_variants`; the table has NDCG@``k`` and Recall@``recall_at``. ``anneal_to_one`` names the variant annealed to β = 1: its run is kept
    as a curve, not ranked, and the paper's recipe retrains a Mult-VAE capped at its peak β*
    (:data:`RECIPE`). ``baselines_for`` builds the untrained baselines from the training clicks.
    """
    tables, groups, result = [], [], SplitsResult({}, {})
    for s in range(n_splits):
        sp = strong_generalization_split(clicks, n_held, n_held, seed=seed + s).to(device)
        label = None if desc is None else f"{desc} {s + 1}"
        fits = fit_variants(variants, sp, k=k, seed=seed + s, device=device, desc=label, **architecture)
        if anneal_to_one is not None:
            curve = fits.pop(anneal_to_one)
            result.curves.append(curve)
            result.peaks.append(peak_beta(curve))
            epochs, batch_size = architecture["epochs"], architecture["batch_size"]
            fits[RECIPE] = retrain_at_peak(
                curve, sp, epochs=epochs, batch_size=batch_size, k=k, seed=seed + s, device=device
            )
        models = {n: cast(Scorer, f.model) for n, f in fits.items()} | baselines_for(sp.train)
        per_user = {n: held_out_metrics(m, sp.test, k, recall_at) for n, m in models.items()}
        tables.append(summarise(per_user))
        groups.append(ndcg_by_activity(per_user, sp.test.fold_in))
    result.table = {n: {m: sum(t[n][m] for t in tables) / n_splits for m in tables[0][n]} for n in tables[0]}
    result.by_activity = {n: [sum(g[n][q] for g in groups) / n_splits for q in range(5)] for n in groups[0]}
    return result
