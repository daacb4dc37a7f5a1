r"""The experiments of programmable VI :cite:`becker2024probabilistic`, as small functions.

* the cone model of Table 4: five objectives (ELBO, IWELBO(5), HVI, IWHVI(5), DIWHVI(5, 5))
  trained by SGD and evaluated against the exact evidence (:func:`cone_objectives`,
  :func:`fit_cone`), and two deliberately wrong variants of them (:func:`cone_controls`);
* a VAE with Bernoulli latents trained with one program and several gradient strategies
  (:func:`fit_discrete_vae`), the bias and variance of single gradient estimates at a fixed
  point against enumeration (:func:`gradient_draws`, :func:`variance_rows`), the draws of an
  estimator that forgets the chain rule (:func:`wrt_probs`), and the cost of an estimate of
  each strategy at equal batch (:func:`estimate_ms`);
* the cost of one gradient step, timed interleaved (:func:`sgd_step`, :func:`median_step_ms`).

The deliberately wrong variants are the chapter's negative controls: each must fail the test
its claim passes.

The Pyro side of the peer comparison is in :mod:`varbook.vi.pyro_peer`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable

import torch
from torch import distributions as D
from torch import nn
from torch.nn import functional as F

from .. import runtime
from ..estimators import gradient_stats
from .models import BernoulliVAE, ConeRingFamily, MeanFieldNormal, cone_log_joint
from .objectives import elbo, iwelbo, marginal_sir
from .programmable import Strategy, estimate, maximise

CONE_TABLE4 = {"ELBO": -8.08, "IWELBO(5)": -7.79, "HVI": -9.75, "IWHVI(5)": -8.18, "DIWHVI(5,5)": -7.33}
"""genjax.vi's values of the five cone objectives in Table 4 (read from the paper's artifact)."""
TABLE4_TOLERANCE = {"ELBO": 0.15, "IWELBO(5)": 0.15, "HVI": 0.3, "IWHVI(5)": 0.3, "DIWHVI(5,5)": 0.3}
"""How far (nats) our value of each cone objective may lie from :data:`CONE_TABLE4` and still match it."""

ConeObjective = tuple[Callable[[int], Callable], nn.Module, int]
"""A program factory taking ``particles``, the module holding its parameters, particles per step."""


def cone_objectives(n_seeds: int = 1) -> dict[str, ConeObjective]:
    r"""The five objectives of the cone experiment, each with ``n_seeds`` independent copies stacked.

    A mean-field Gaussian for the ELBO (from :math:`\mu=0`) and IWELBO(5) (from :math:`\mu=(3,0)`,
    one estimate per step), and the ring family :class:`~varbook.vi.models.ConeRingFamily` for
    HVI, IWHVI(5) and DIWHVI(5, 5) (:func:`~varbook.vi.objectives.marginal_sir`), 64 estimates
    per step otherwise.
    """
    mf = MeanFieldNormal(torch.zeros(n_seeds, 2), torch.ones(n_seeds, 2))
    mf_iw = MeanFieldNormal(torch.tensor([3.0, 0.0]).repeat(n_seeds, 1), torch.ones(n_seeds, 2))
    rings = {k: ConeRingFamily(log_sigma=torch.zeros(n_seeds, 2)) for k in ("hvi", "iwhvi", "diwhvi")}

    def ring(fam: ConeRingFamily, n: int, m: int) -> Callable[[int], Callable]:
        return lambda p: marginal_sir(cone_log_joint, fam.prior_u, fam.conditional, n=n, m=m, particles=p)

    return {
        "ELBO": (lambda p: elbo(cone_log_joint, mf, particles=p), mf, 64),
        "IWELBO(5)": (lambda p: iwelbo(cone_log_joint, mf_iw, 5, particles=p), mf_iw, 1),
        "HVI": (ring(rings["hvi"], 1, 1), rings["hvi"], 64),
        "IWHVI(5)": (ring(rings["iwhvi"], 1, 5), rings["iwhvi"], 64),
        "DIWHVI(5,5)": (ring(rings["diwhvi"], 5, 5), rings["diwhvi"], 64),
    }


def fit_cone(
    objectives: dict[str, ConeObjective],
    steps: int | dict[str, int],
    log_evidence: float,
    *,
    lr: float = 1e-3,
    eval_particles: int = 5000,
    record_every: int = 10,
    desc: str | None = None,
) -> tuple[dict[str, dict[str, float | bool]], dict[str, runtime.History]]:
    r"""Train each cone objective by SGD ascent, then evaluate it with ``eval_particles`` estimates.

    The objectives are trained together with :func:`~varbook.vi.programmable.maximise` (learning
    rate ``lr``), as in Table 4 of :cite:`becker2024probabilistic`: each step maximises the sum
    of every objective's surrogate (:func:`~varbook.vi.programmable.estimate`), summed over the
    stacked seeds too. Their parameters are disjoint, so the sum's gradient holds each one's own
    gradient and one SGD step on it is one step of each, with its own step size, at the cost of
    one backward pass and one optimiser step for all. ``steps`` may give each objective its own
    number of steps (a mapping by name): all train together up to the smallest count, then the
    others go on alone. Returns one row per objective (the paper's value, ours
    averaged over seeds, the largest standard error, the spread over seeds, and whether every
    seed lies three standard errors below :math:`\log p(z=5)`) and the training histories.
    """
    counts = dict(steps) if isinstance(steps, dict) else dict.fromkeys(objectives, steps)
    if set(counts) != set(objectives) or any(not isinstance(n, int) or n < 1 for n in counts.values()):
        raise ValueError(f"steps must be a positive int, or one for each of {sorted(objectives)}: got {steps!r}")
    programs = {name: make(particles) for name, (make, _, particles) in objectives.items()}
    latest: dict[str, torch.Tensor] = {}
    active: list[str] = []

    def joint(_t) -> torch.Tensor:  # every active objective's own surrogate, one entry each
        parts = []
        for name in active:
            estimates = estimate(programs[name])  # (particles, n_seeds)
            latest[name] = estimates.detach()
            parts.append(estimates.mean(0).sum())  # one SGD step per stacked seed
        return torch.stack(parts)

    histories = {name: runtime.History() for name in objectives}
    done = 0

    def record(step: int) -> None:
        if (done + step) % record_every == 0:
            for name in active:
                histories[name].log(step=done + step, objective=latest[name].mean())

    for stop in sorted(set(counts.values())):  # train together, then the longer ones alone
        active[:] = [name for name in objectives if counts[name] >= stop]
        params = [p for name in active for p in objectives[name][1].parameters()]
        maximise(joint, params, stop - done, lr=lr, record_every=stop, desc=desc, reduce=torch.sum, callback=record)
        done = stop
    rows: dict[str, dict[str, float | bool]] = {}
    for name, (make, _, _) in objectives.items():
        rows[name] = {"paper (Table 4)": CONE_TABLE4.get(name, math.nan)}
        rows[name] |= evaluate_cone(make(eval_particles), log_evidence)
    return rows, histories


def evaluate_cone(program: Callable, log_evidence: float) -> dict[str, float | bool]:
    r"""Evaluate a cone program whose value is ``(particles, n_seeds)`` estimates, without gradients.

    Returns our value (the per-seed means, averaged over seeds), the largest standard error of a
    seed's mean, the spread over seeds, and whether every seed lies three standard errors below
    :math:`\log p(z=5)`.
    """
    with torch.no_grad():
        final = estimate(program)  # (particles, n_seeds)
    n = final.shape[0]
    per_seed, se = final.mean(0), final.std(0) / math.sqrt(n)
    return {
        "ours": float(per_seed.mean()),
        f"s.e. ({n} samples)": float(se.max()),
        "spread over seeds": float(per_seed.max() - per_seed.min()),
        "below log p(z=5)": bool((per_seed + 3 * se < log_evidence).all()),
    }


def cone_controls(
    objectives: dict[str, ConeObjective], log_evidence: float, *, eval_particles: int = 5000
) -> dict[tuple[str, str], dict[str, float | bool]]:
    r"""Two deliberately wrong variants of the trained cone objectives: the chapter's negative controls.

    Each is evaluated like :func:`fit_cone` (``eval_particles`` estimates, :func:`evaluate_cone`)
    at the parameters the correct objective reached:

    * ``"u0 left out"`` (HVI, IWHVI(5), DIWHVI(5,5)): the inner estimate of
      :math:`\log q(z)` uses fresh draws of :math:`u` only and leaves out the :math:`u_0` that
      generated :math:`z` (``marginal_sir(..., include_u0=False)``); it is biased low, so the
      objective is no longer a lower bound on :math:`\log p(z=5)`;
    * ``"one particle"`` (IWELBO(5), IWHVI(5), DIWHVI(5,5)): the count each adds over the
      objective before it silently dropped to one (K = 1, m = 1, n = 1), i.e. the ELBO, HVI and IWHVI(5) programs run at the
      richer objective's parameters; the importance weighting, and its gain, are gone.

    The rows are keyed by ``(mistake, objective)``, so ``pd.DataFrame(rows).T`` has a two-level index.
    """
    out: dict[tuple[str, str], dict[str, float | bool]] = {}
    p = eval_particles
    for name, (n, m) in {"HVI": (1, 1), "IWHVI(5)": (1, 5), "DIWHVI(5,5)": (5, 5)}.items():
        fam = objectives[name][1]
        assert isinstance(fam, ConeRingFamily)
        wrong = marginal_sir(cone_log_joint, fam.prior_u, fam.conditional, n=n, m=m, particles=p, include_u0=False)
        out["u0 left out", name] = evaluate_cone(wrong, log_evidence)
    one = {
        "IWELBO(5)": lambda q: elbo(cone_log_joint, q, particles=p),
        "IWHVI(5)": lambda f: marginal_sir(cone_log_joint, f.prior_u, f.conditional, n=1, m=1, particles=p),
        "DIWHVI(5,5)": lambda f: marginal_sir(cone_log_joint, f.prior_u, f.conditional, n=1, m=5, particles=p),
    }
    for name, make in one.items():
        out["one particle", name] = evaluate_cone(make(objectives[name][1]), log_evidence)
    return out


def cone_gaps(values: dict[str, float]) -> dict[str, float]:
    """The gaps between cone objectives that Table 4 orders (nats), from each objective's value.

    Keys: ``iwhvi_gain`` (IWHVI(5) − HVI), ``diwhvi_gain`` (DIWHVI(5,5) − IWHVI(5)),
    ``iwelbo_gain`` (IWELBO(5) − ELBO) and ``elbo_over_iwhvi`` (ELBO − IWHVI(5)).
    """
    v = {name: float(x) for name, x in values.items()}
    return {
        "iwhvi_gain": v["IWHVI(5)"] - v["HVI"],
        "diwhvi_gain": v["DIWHVI(5,5)"] - v["IWHVI(5)"],
        "iwelbo_gain": v["IWELBO(5)"] - v["ELBO"],
        "elbo_over_iwhvi": v["ELBO"] - v["IWHVI(5)"],
    }


def cone_gap_se(se: dict[str, float]) -> dict[str, float]:
    """The standard error of each gap of :func:`cone_gaps`, from the objectives' independent standard errors."""
    s2 = {name: float(x) ** 2 for name, x in se.items()}
    return {
        "iwhvi_gain": math.sqrt(s2["IWHVI(5)"] + s2["HVI"]),
        "diwhvi_gain": math.sqrt(s2["DIWHVI(5,5)"] + s2["IWHVI(5)"]),
        "iwelbo_gain": math.sqrt(s2["IWELBO(5)"] + s2["ELBO"]),
        "elbo_over_iwhvi": math.sqrt(s2["ELBO"] + s2["IWHVI(5)"]),
    }


def table4_deviations(values: dict[str, float]) -> list[float]:
    """:math:`|\\text{ours}-\\text{paper}|/\\text{tolerance}` per objective of :data:`CONE_TABLE4` (:data:`TABLE4_TOLERANCE`)."""
    return [abs(float(values[n]) - CONE_TABLE4[n]) / TABLE4_TOLERANCE[n] for n in CONE_TABLE4]


def fit_discrete_vae(
    make_program: Callable[[BernoulliVAE], Callable],
    x_train: torch.Tensor,
    x_test: torch.Tensor,
    steps: int,
    *,
    seed: int = 0,
    batch: int = 64,
    lr: float = 3e-3,
    eval_every: int = 10,
) -> tuple[BernoulliVAE, runtime.History, float]:
    r"""Train a :class:`~varbook.vi.models.BernoulliVAE` (8 latents, 64 hidden units) with Adam on ``make_program(vae)``.

    Seeds everything with ``seed`` first, so every strategy starts from the same network and
    sees the same minibatches (a fixed permutation of ``x_train``, cycled). Returns the model,
    the exact test ELBO :math:`\frac1B\sum_x\sum_z q(z\mid x)\,[\log p(x,z)-\log q(z\mid x)]`
    (:func:`exact_elbo`) every ``eval_every`` steps and at the last (``step``, ``test_elbo``), and the milliseconds per
    step (evaluation included).
    """
    runtime.seed_all(seed)
    vae = BernoulliVAE(x_train.shape[1], n_latent=8, hidden=64).to(x_train.dtype)
    order = runtime.randperm(len(x_train), generator=torch.Generator().manual_seed(seed))
    curve = runtime.History()

    def record(step: int) -> None:
        if step % eval_every == 0 or step == steps - 1:
            with torch.no_grad():
                curve.log(step=step, test_elbo=exact_elbo(vae, x_test).mean())

    def minibatch(step: int) -> tuple[torch.Tensor]:
        return (x_train[order[(step * batch) % len(x_train) :][:batch]],)

    start = time.perf_counter()
    maximise(make_program(vae), vae.parameters(), steps, lr=lr, optimizer="adam", args_fn=minibatch, callback=record)
    return vae, curve, 1e3 * (time.perf_counter() - start) / steps


def exact_elbo(vae: BernoulliVAE, x: torch.Tensor) -> torch.Tensor:
    r"""The ELBO of each image of ``x`` ``(B, D)`` exactly, by summing over the :math:`2^L` latent states.

    The same number as :meth:`~varbook.vi.models.BernoulliVAE.exact_elbo`, computed with the
    decoder run once per latent state rather than once per state and image: both log-densities
    are linear in the binary vectors, :math:`\log\mathrm{Bern}(x;\sigma(\ell))=
    x\cdot\log\sigma(\ell)+(1-x)\cdot\log\sigma(-\ell)`, so :math:`\log p(x\mid z_s)` and
    :math:`\log q(z_s\mid x)` for every image and state are two matrix products.
    """
    from ..estimators.bernoulli import enumerate_binary

    states = enumerate_binary(vae.n_latent, x.dtype, x.device)  # (S, L)
    logits = vae.decoder(states)  # (S, D)
    log_lik = x @ F.logsigmoid(logits).T + (1 - x) @ F.logsigmoid(-logits).T  # (B, S)
    a = vae.encoder(x)  # (B, L)
    log_q = F.logsigmoid(a) @ states.T + F.logsigmoid(-a) @ (1 - states).T  # (B, S)
    log_joint = log_lik - vae.n_latent * math.log(2.0)
    return (log_q.exp() * (log_joint - log_q)).sum(-1)


def loss_program(loss: Callable[[torch.Tensor], torch.Tensor], strategy: str | Strategy) -> Callable:
    """The program ``program(t, logits)``: draw :math:`h\\sim` :func:`bernoulli_guide` with ``strategy``, return :math:`-\\mathrm{loss}(h)`."""

    def program(t, logits: torch.Tensor) -> torch.Tensor:
        return -loss(t.sample("h", bernoulli_guide(logits), strategy))

    return program


def bernoulli_guide(logits: torch.Tensor) -> D.Distribution:
    """:math:`q(z)=\\prod_j\\mathrm{Bern}(z_j;\\sigma(\\ell_j))`, with the last dimension of ``logits`` as the event."""
    return D.Independent(D.Bernoulli(logits=logits), 1)


def gradient_draws(program: Callable, logits: torch.Tensor, n: int) -> tuple[torch.Tensor, float]:
    r"""``n`` independent gradient estimates of ``program(t, logits)`` with respect to ``logits``.

    The program runs once on ``n`` stacked copies of ``logits``; the gradient of the surrogate's
    sum gives one estimate :math:`\hat g_r` per copy. Returns the estimates ``(n, logits.numel())``
    and the milliseconds per estimate (on a GPU, the device is synchronised around the run).
    """
    leaf = logits.detach().expand(n, *logits.shape).clone().requires_grad_(True)
    cuda = leaf.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    (grad,) = torch.autograd.grad(estimate(program, leaf).sum(), leaf)
    if cuda:
        torch.cuda.synchronize()
    return grad.reshape(n, -1), 1e3 * (time.perf_counter() - start) / n


def wrt_probs(grads: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    r"""The draws of a deliberately wrong estimator: the gradient with respect to the probabilities, used as if it were the logits'.

    For a program that depends on the logits :math:`a` only through :math:`p=\sigma(a)` (a
    Bernoulli guide), :math:`\nabla_p F=\nabla_a F/\sigma'(a)` with :math:`\sigma'(a)=p(1-p)`: this
    is what an estimator returns when it differentiates with respect to :math:`p` and forgets
    the chain-rule factor. ``grads`` are draws ``(n, logits.numel())`` from :func:`gradient_draws`;
    the result has the same shape (biased, and with a larger variance).
    """
    p = torch.sigmoid(logits.detach()).reshape(-1)
    return grads / (p * (1 - p))


MIXED_THETA = (0.3, -0.4, 0.8, 0.6, 0.2, -0.7)
r"""The parameters :math:`(\mu, a, w, c, d, e)` at which :func:`mixed_program` is checked."""
MIXED_STRATEGIES = {"z": "reparam", "b1": "enum", "b2": "mvd", "b3": "reinforce", "k": "enum"}
"""One strategy per choice of :func:`mixed_program`: four kinds over five dependent choices."""


def _mixed_value(z, b1, b2, b3, k):
    return torch.tanh(z) * (1 + b1) + (b2 - 0.5) * z**2 / 4 + b3 * k - 0.3 * k**2 + torch.sin(z) * b1 * b2


def _mixed_conditionals(theta: torch.Tensor, z, b1, b2, b3):
    mu, a, w, c, d, e = theta.unbind(-1)
    logits_k = torch.stack([0 * (b3 + mu), e * b3 - 0.5, a * (1 - b3) + 0.2], -1)
    return a + w * z, c * (2 * b1 - 1) + 0.3 * z, d + e * b2 - 0.2 * b1, logits_k


def mixed_program(strategies: dict[str, str | Strategy] | None = None) -> Callable:
    r"""A program of five dependent choices, each with its own gradient strategy (:data:`MIXED_STRATEGIES`).

    :math:`z\sim\mathcal N(\mu,1)`, :math:`b_1\sim\mathrm{Bern}(\sigma(a+wz))`,
    :math:`b_2\sim\mathrm{Bern}(\sigma(c(2b_1-1)+0.3z))`, :math:`b_3\sim\mathrm{Bern}(\sigma(d+eb_2-0.2b_1))`,
    :math:`k\sim\mathrm{Cat}(\mathrm{softmax}(0,\,eb_3-0.5,\,a(1-b_3)+0.2))`, and a smooth value
    :math:`l(z,b_1,b_2,b_3,k)`. ``program(t, theta)`` takes ``theta`` of shape ``(n, 6)``: one copy
    of :math:`(\mu,a,w,c,d,e)` per estimate, so :func:`gradient_draws` gives ``n`` independent
    gradient estimates. The soundness claim of :cite:`becker2024probabilistic` is that any mix
    of strategies is unbiased; :func:`mixed_exact` is the expectation to check against.
    """
    s = MIXED_STRATEGIES | (strategies or {})

    def program(t, theta: torch.Tensor) -> torch.Tensor:
        mu = theta[..., 0]
        z = t.sample("z", D.Normal(mu, torch.ones_like(mu)), s["z"])
        l1, _, _, _ = _mixed_conditionals(theta, z, 0, 0, 0)
        b1 = t.sample("b1", D.Bernoulli(logits=l1), s["b1"])
        _, l2, _, _ = _mixed_conditionals(theta, z, b1, 0, 0)
        b2 = t.sample("b2", D.Bernoulli(logits=l2), s["b2"])
        _, _, l3, _ = _mixed_conditionals(theta, z, b1, b2, 0)
        b3 = t.sample("b3", D.Bernoulli(logits=l3), s["b3"])
        k = t.sample("k", D.Categorical(logits=_mixed_conditionals(theta, z, b1, b2, b3)[3]), s["k"])
        return _mixed_value(z, b1, b2, b3, k)

    return program


def mixed_exact(theta: torch.Tensor, nodes: int = 80) -> torch.Tensor:
    r"""The expectation of :func:`mixed_program` at ``theta`` (shape ``(6,)``), differentiable.

    Exact sums over :math:`b_1,b_2,b_3,k` and Gauss-Hermite quadrature over :math:`z` with
    ``nodes`` nodes (exact to float64 round-off for this smooth integrand).
    """
    import numpy as np

    x, w = (torch.tensor(v, dtype=theta.dtype) for v in np.polynomial.hermite_e.hermegauss(nodes))
    z = theta[0] + x
    total = torch.zeros_like(z)
    for b1 in (0.0, 1.0):
        for b2 in (0.0, 1.0):
            for b3 in (0.0, 1.0):
                l1, l2, l3, lk = _mixed_conditionals(theta, z, b1, b2, b3)
                p = (
                    torch.sigmoid((2 * b1 - 1) * l1)
                    * torch.sigmoid((2 * b2 - 1) * l2)
                    * torch.sigmoid((2 * b3 - 1) * l3)
                )
                pk = torch.softmax(lk, -1)
                inner = sum(pk[..., k] * _mixed_value(z, b1, b2, b3, torch.tensor(float(k))) for k in range(3))
                total = total + p * inner
    return (w * total).sum() / math.sqrt(2 * math.pi)


def variance_rows(
    make_program: Callable[[str | Strategy], Callable],
    logits: torch.Tensor,
    exact: torch.Tensor,
    runs: Iterable[tuple],
) -> dict[str, dict[str, float]]:
    r"""For each ``(name, strategy, n)``: ``n`` gradient draws of ``make_program(strategy)`` against ``exact``.

    A run may carry a fourth element, a function ``(draws, logits) -> draws`` applied to the
    draws first (e.g. :func:`wrt_probs`, a deliberately wrong estimator for a negative control).

    Each row holds the trace variance of one estimate, the largest bias over its standard
    error (0 for an estimator without variance, up to float64 round-off) and the norm of the bias
    (:func:`~varbook.estimators.gradient_stats`). The runs differ in their number of draws, so
    their costs are not compared here: :func:`estimate_ms` times strategies at equal batch.
    """
    rows = {}
    for name, strategy, n, *transform in runs:
        grads, _ = gradient_draws(make_program(strategy), logits, n)
        for f in transform:
            grads = f(grads, logits)
        st = gradient_stats(grads, exact.flatten())
        round_off = 1e-20 * max(1.0, float(exact.pow(2).sum()))  # draws that agree to float64 round-off
        rows[name] = {
            "tr Var": st.trace_var,
            "max |bias|/se": st.max_abs_z if st.trace_var > round_off else 0.0,
            "|bias|": float(st.bias.norm()),
        }
    return rows


def estimate_ms(
    make_program: Callable[[str | Strategy], Callable],
    logits: torch.Tensor,
    strategies: dict[str, str | Strategy],
    n: int,
    reps: int,
    *,
    warmup: int = 1,
) -> dict[str, float]:
    """Median milliseconds per gradient estimate of each strategy, every one timed at the same batch of ``n`` estimates.

    Each repetition runs :func:`gradient_draws` once per strategy, in turn (interleaved, so a
    change of machine load affects all alike); the first ``warmup`` repetitions are not timed.
    """
    timings: dict[str, list[float]] = {name: [] for name in strategies}
    for rep in range(reps + warmup):
        for name, strategy in strategies.items():
            _, ms = gradient_draws(make_program(strategy), logits, n)
            if rep >= warmup:
                timings[name].append(ms)
    return {name: float(torch.tensor(t).median()) for name, t in timings.items()}


def sgd_step(loss_fn: Callable[[torch.Tensor], torch.Tensor], parameters, lr: float) -> Callable[[torch.Tensor], None]:
    """One plain SGD step on ``loss_fn(xb)`` per call, as a function of the minibatch ``xb`` (for timing)."""
    opt = torch.optim.SGD(list(parameters), lr=lr)

    def step(xb: torch.Tensor) -> None:
        loss = loss_fn(xb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def median_step_ms(
    steppers: dict[str, Callable[[torch.Tensor], object]],
    x: torch.Tensor,
    reps: int,
    *,
    generator: torch.Generator,
    batch: int = 64,
    warmup: int = 10,
) -> dict[str, float]:
    """Median milliseconds per call of each stepper on the same random minibatches, interleaved.

    Every repetition draws one minibatch of ``x`` (with ``generator``) and runs every stepper
    on it in turn; the first ``warmup`` repetitions are not timed. On a GPU the device is
    synchronised around each call.
    """
    cuda = x.device.type == "cuda"
    timings: dict[str, list[float]] = {name: [] for name in steppers}
    for rep in range(reps + warmup):
        xb = x[runtime.randint(0, len(x), (batch,), generator=generator, device=x.device)]
        for name, step in steppers.items():
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            step(xb)
            if cuda:
                torch.cuda.synchronize()
            if rep >= warmup:
                timings[name].append(1e3 * (time.perf_counter() - start))
    return {name: float(torch.tensor(t).median()) for name, t in timings.items()}
