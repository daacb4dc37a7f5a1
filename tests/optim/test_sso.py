import math

import pytest
import torch
from torch import nn

from varbook.optim import sso
from varbook.optim.linesearch import Armijo
from varbook.optim.schedules import schedule


def labels(name, n, k, gen):
    if name == "softmax_ce":
        return torch.randint(0, k, (n,), generator=gen)
    if name == "logistic":
        return torch.randint(0, 2, (n,), generator=gen)
    return torch.randn(n, k, generator=gen, dtype=torch.float64)


SHAPES = {"logistic": 1, "softmax_ce": 5, "squared": 3}


@pytest.mark.parametrize("name", ["logistic", "softmax_ce", "squared"])
def test_surrogate_is_an_upper_bound_with_the_tables_eta(name):
    """g(z) >= l(z) at random points for eta = eta_max (the smoothness table), with equality at z_t."""
    gen = torch.Generator().manual_seed(0)
    loss = sso.target_loss(name)
    n, k = 40, SHAPES[name]
    y = labels(name, n, k, gen)
    z_t = 2 * torch.randn(n, k, generator=gen, dtype=torch.float64)
    loss_t, grad_t = loss.value_and_grad(z_t, y)
    for scale in (0.01, 0.3, 3.0, 30.0):
        z = z_t + scale * torch.randn(2000, n, k, generator=gen, dtype=torch.float64)
        ell = torch.func.vmap(lambda zi: loss.value(zi, y))(z)
        gap = sso.surrogate(z, z_t, loss_t, grad_t, loss.eta_max) - ell
        assert gap.min() >= -1e-9, (name, scale, float(gap.min()))
    assert abs(float(sso.surrogate(z_t, z_t, loss_t, grad_t, loss.eta_max) - loss_t)) < 1e-12


@pytest.mark.parametrize("name", ["logistic", "softmax_ce", "squared"])
def test_a_larger_eta_than_allowed_breaks_the_bound_somewhere(name):
    """The control: at the point of largest curvature, twice eta_max is no longer an upper bound."""
    loss = sso.target_loss(name)
    n, k = 1, SHAPES[name]
    y = {"logistic": torch.tensor([1]), "softmax_ce": torch.tensor([0]), "squared": torch.zeros(1, k)}[name]
    z_t = torch.zeros(n, k, dtype=torch.float64)
    if name == "softmax_ce":  # two classes tied, the others far below: curvature 1/2 along e_0 - e_1
        z_t[0, 2:] = -30.0
    loss_t, grad_t = loss.value_and_grad(z_t, y)
    d = torch.zeros(n, k, dtype=torch.float64)
    d[0, 0] = 1.0
    if name == "softmax_ce":
        d[0, 1] = -1.0
    for h in (1e-3, 1e-2, 1e-1):
        z = z_t + h * d
        assert float(sso.surrogate(z, z_t, loss_t, grad_t, loss.eta_max) - loss.value(z, y)) >= -1e-15
        assert float(sso.surrogate(z, z_t, loss_t, grad_t, 2 * loss.eta_max) - loss.value(z, y)) < 0


def test_loss_gradients_match_autograd_and_closed_forms():
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (6,), generator=gen)
    value, grad = sso.target_loss("softmax_ce").value_and_grad(z, y)
    assert torch.allclose(value, nn.functional.cross_entropy(z, y, reduction="sum"))
    assert torch.allclose(grad, torch.softmax(z, -1) - nn.functional.one_hot(y, 4).double())
    zl = torch.randn(6, 1, generator=gen, dtype=torch.float64)
    yl = torch.randint(0, 2, (6,), generator=gen)
    _, gl = sso.target_loss("logistic").value_and_grad(zl, yl)
    assert torch.allclose(gl, torch.sigmoid(zl) - yl.double()[:, None])


def test_linear_sso_step_equals_the_least_squares_projection():
    """Minimising the surrogate of a linear model exactly (L-BFGS, many steps) gives the projection formula."""
    gen = torch.Generator().manual_seed(2)
    n, d, k, eta = 30, 5, 3, 2.0
    x = torch.randn(n, d, generator=gen, dtype=torch.float64) * torch.logspace(0, 2, d, dtype=torch.float64)
    y = torch.randint(0, k, (n,), generator=gen)
    model = nn.Linear(d, k, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(0.1 * torch.randn(k, d, generator=gen, dtype=torch.float64))
    theta_t = model.weight.detach().T.clone()
    _, grad_t = sso.target_loss("softmax_ce").value_and_grad(x @ theta_t, y)
    expected = sso.linear_projection_step(x, theta_t, grad_t, eta)
    opt = sso.TargetSurrogate(model, "softmax_ce", eta=eta, inner="lbfgs", m=60)
    opt.step(x, y)
    assert torch.allclose(model.weight.detach().T, expected, rtol=1e-6, atol=1e-8)
    # the control: the same step without the preconditioner (X^T X)^+ is a different point
    plain = theta_t - eta * x.T @ grad_t
    assert not torch.allclose(plain, expected, rtol=1e-2)


def test_armijo_inner_solver_approaches_the_projection():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(50, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (50,), generator=gen)
    model = nn.Linear(4, 3, bias=False).double()
    theta_t = model.weight.detach().T.clone()
    _, grad_t = sso.target_loss("softmax_ce").value_and_grad(x @ theta_t, y)
    expected = sso.linear_projection_step(x, theta_t, grad_t, 2.0)
    sso.TargetSurrogate(model, "softmax_ce", inner="armijo", m=300).step(x, y)
    assert torch.allclose(model.weight.detach().T, expected, atol=1e-4)


def test_oracle_calls_are_counted_apart_from_model_passes():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(64, 3, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 2, (64,), generator=gen)
    for inner, m in (("sgd", 7), ("armijo", 4), ("lbfgs", 3)):
        model = nn.Linear(3, 1).double()
        opt = sso.TargetSurrogate(model, "logistic", inner=inner, m=m, inner_lr=0.01 if inner == "sgd" else None)
        h = sso.train(opt, model, x, y, "logistic", oracle_calls=5, batch_size=16, generator=gen, eval_every=1)
        assert opt.counts.oracle_calls == 5 and h["oracle_calls"] == [0, 1, 2, 3, 4, 5]
        if inner == "sgd":  # per outer step: targets, m surrogate passes, the final surrogate value
            assert opt.counts.forward == 5 * (m + 2) and opt.counts.backward == 5 * m
        if inner == "armijo":  # every step size tried is one more forward pass, never an oracle call
            ls = opt.line_search
            assert opt.counts.backward == 5 * m == ls.gradients
            assert opt.counts.forward == 5 * (m + 2) + ls.evaluations
        assert opt.counts.loss_evaluations == 0
    counts = sso.Counts()
    model = nn.Linear(3, 1).double()
    step = sso.gradient_step(model, torch.optim.SGD(model.parameters(), lr=0.1), "logistic", counts)
    sso.train(step, model, x, y, "logistic", 6, 16, counts=counts, generator=gen)
    assert counts.as_dict() == dict(oracle_calls=6, loss_evaluations=0, forward=6, backward=6)


def test_sls_counts_every_step_size_tried_as_a_loss_evaluation(monkeypatch):
    made = []

    class Recording(Armijo):  # the SLS baseline's own line search, to compare its counters with ours
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(sso, "Armijo", Recording)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(64, 3, generator=gen, dtype=torch.float64) * torch.tensor([1.0, 10.0, 100.0], dtype=torch.float64)
    y = torch.randint(0, 2, (64,), generator=gen)
    model, counts = nn.Linear(3, 1).double(), sso.Counts()
    step = sso.sls_step(model, "logistic", counts)
    sso.train(step, model, x, y, "logistic", 6, 16, counts=counts, generator=gen)
    (ls,) = made
    assert counts.oracle_calls == 6 == ls.gradients
    assert counts.loss_evaluations == ls.evaluations and ls.evaluations > 6  # the scaled columns force backtracks
    assert counts.forward == counts.oracle_calls + counts.loss_evaluations


def test_full_batch_mm_never_increases_the_loss_and_a_too_large_eta_does():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(100, 4, generator=gen, dtype=torch.float64)
    y = (x[:, 0] + 0.5 * torch.randn(100, generator=gen, dtype=torch.float64) > 0).long()
    for eta, monotone in ((4.0, True), (4.0 * 100, False)):
        torch.manual_seed(0)
        model = nn.Linear(4, 1).double()
        opt = sso.TargetSurrogate(model, "logistic", eta=eta, m=10)
        h = sso.train(opt, model, x, y, "logistic", 10, None, eval_every=1)
        steps = torch.tensor(h["loss"]).diff()
        assert bool((steps <= 1e-12).all()) is monotone


def test_mm_sandwich_holds_with_the_tables_eta_and_breaks_at_twice_it():
    """The left half of the MM inequality, l(f(theta_{t+1})) <= g_t(theta_{t+1}), along the trajectory.

    Monotone descent cannot see a factor 2 in eta here; the sandwich can (the chapter's mm_sandwich).
    """
    from varbook.data.tables import Table
    from varbook.optim import experiments as ex

    gen = torch.Generator().manual_seed(5)
    x = torch.randn(100, 4, generator=gen, dtype=torch.float64)
    y = (x[:, 0] + 0.5 * torch.randn(100, generator=gen, dtype=torch.float64) > 0).long()
    tab = Table(x, y, 2, "toy")
    good = ex.mm_run(tab, "logistic", 4.0, 10, seed=0, m=10)
    bad = ex.mm_run(tab, "logistic", 8.0, 10, seed=0, m=10)
    assert len(good["sandwich"]) == 10 and len(good["loss"]) == 11
    assert min(good["sandwich"]) >= -1e-10
    assert ex.largest_rise(bad["loss"]) <= 1e-12  # twice the eta still descends monotonically ...
    assert min(bad["sandwich"]) < 0  # ... but the surrogate no longer lies above the loss it reached
    with pytest.raises(ValueError, match="steps"):
        ex.mm_run(tab, "logistic", 4.0, 0, seed=0)


def test_target_armijo_satisfies_its_condition():
    gen = torch.Generator().manual_seed(6)
    loss = sso.target_loss("softmax_ce")
    z = torch.randn(20, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (20,), generator=gen)
    value, grad = loss.value_and_grad(z, y)
    eta = sso.target_armijo(loss, z, y, value, grad, start=1e3)
    assert float(loss.value(z - eta * grad, y)) <= float(value) - 0.1 * eta * float((grad**2).sum())
    assert eta < 1e3


@pytest.mark.parametrize("bounds", [(1e-4, 1e4), (1e-4, 0.3), (5.0, 1e4)])
def test_sso_sls_outer_line_search_through_step(bounds):
    """Through TargetSurrogate.step: eta_t starts from eta_{t-1} * grow, is the first start * beta^j
    that meets Armijo's condition in target space, and is clipped to the bounds."""
    gen = torch.Generator().manual_seed(10)
    x = torch.randn(60, 5, generator=gen, dtype=torch.float64) * torch.logspace(0, 1, 5, dtype=torch.float64)
    y = torch.randint(0, 4, (60,), generator=gen)
    model = nn.Linear(5, 4).double()
    grow, beta, c = 2.0, 0.9, 0.1
    opt = sso.TargetSurrogate(model, "softmax_ce", eta="armijo", m=2, outer={"grow": grow, "bounds": bounds})
    loss, lo, hi = sso.target_loss("softmax_ce"), *bounds
    previous = loss.eta_max  # the search starts from eta_max * grow at the first step

    def armijo_holds(z, g, value, eta):
        return float(loss.value(z - eta * g, y)) <= float(value) - c * eta * float((g * g).sum())

    for _ in range(5):
        with torch.no_grad():
            z_t = model(x)
        value, g = loss.value_and_grad(z_t, y)
        opt.step(x, y)
        eta = opt.last["eta"]
        start = min(max(previous * grow, lo), hi)
        j = round(math.log(eta / start) / math.log(beta))
        assert lo <= eta <= hi
        if eta > lo:  # not stopped by the lower bound: the first trial that passes
            assert eta == pytest.approx(start * beta**j, rel=1e-9) and j >= 0
            assert armijo_holds(z_t, g, value, eta)
            assert j == 0 or not armijo_holds(z_t, g, value, eta / beta)
        previous = eta
    if bounds[1] == 0.3:
        assert eta == 0.3  # clipped from above: every accepted step would be larger
    if bounds[0] == 5.0:
        assert eta >= 5.0


def test_armijo_satisfies_its_condition_and_resets():
    w = nn.Parameter(torch.tensor([4.0, -2.0], dtype=torch.float64))
    scale = torch.tensor([10.0, 0.1], dtype=torch.float64)

    def f(backward=True):
        loss = (scale * w**2).sum()
        if backward:
            loss.backward()
        return loss

    opt = Armijo([w], init_step=10.0, c=0.1, beta=0.9)
    for i in range(5):
        before = w.detach().clone()
        opt.step(f)
        last = opt.last
        assert last.accepted and (last.backtracks > 0 or i > 0)  # from 10, the first search must backtrack
        assert last.loss_next <= last.loss - 0.1 * last.step_size * last.grad_norm_sq + 1e-12
        grad = 2 * scale * before
        assert torch.allclose(w.detach(), before - last.step_size * grad)
    assert opt.step_size < 10.0
    opt.reset()
    assert opt.step_size == 10.0
    # without reset the next search starts from the last accepted step, so it needs no backtrack
    opt.step(f)
    small = opt.step_size
    opt.step(f)
    assert opt.last.backtracks == 0 and opt.step_size == small


def test_armijo_that_finds_no_step_leaves_the_parameters():
    w = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))

    def f(backward=True):
        loss = 1e8 * (w**2).sum()
        if backward:
            loss.backward()
        return loss

    opt = Armijo([w], init_step=10.0, max_backtracks=3)
    opt.step(f)
    assert not opt.last.accepted and float(w.detach()) == 1.0


def test_the_surrogate_uses_the_inner_schedule():
    model = nn.Linear(2, 1).double()
    opt = sso.TargetSurrogate(model, "squared", eta=1.0, schedule="inverse_sqrt", inner="sgd", inner_lr=0.1, m=1)
    x, y = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    for _ in range(4):
        opt.step(x, y)
    assert opt.last["eta"] == pytest.approx(0.5)
    assert schedule("exponential", 2.0, rate=0.5)(3) == pytest.approx(0.5)


def test_surrogate_gaps_are_vectorised_and_nonnegative():
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(30, 3, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (30,), generator=gen)
    model = nn.Linear(3, 3).double()
    gaps = sso.surrogate_gaps(model, x, y, "softmax_ce", 2.0, n_points=120, radius=0.5, generator=gen, chunk=50)
    assert gaps.shape == (120,) and float(gaps.min()) >= -1e-10
    bad = sso.surrogate_gaps(model, x, y, "softmax_ce", 2.0 * 30 * 3, n_points=120, radius=0.5, generator=gen)
    assert float(bad.min()) < 0


def test_bad_input_gets_clear_errors():
    model = nn.Linear(2, 1).double()
    with pytest.raises(ValueError, match="eta must be a positive"):
        sso.TargetSurrogate(model, "logistic", eta=0.0)
    with pytest.raises(ValueError, match="eta must be a positive"):
        sso.TargetSurrogate(model, "logistic", eta=-1.0)
    with pytest.raises(ValueError, match="inner steps m"):
        sso.TargetSurrogate(model, "logistic", m=0)
    with pytest.raises(ValueError, match="unknown inner optimiser 'adam'"):
        sso.TargetSurrogate(model, "logistic", inner="adam")
    with pytest.raises(ValueError, match="unknown schedule 'cosine'"):
        sso.TargetSurrogate(model, "logistic", schedule="cosine")
    with pytest.raises(ValueError, match="unknown target loss 'hinge'"):
        sso.target_loss("hinge")
    with pytest.raises(ValueError, match="needs a positive inner_lr"):
        sso.TargetSurrogate(model, "logistic", inner="sgd")
    with pytest.raises(ValueError, match="'armijo'"):
        sso.TargetSurrogate(model, "logistic", eta="wolfe")
    with pytest.raises(ValueError, match="unknown options"):
        sso.TargetSurrogate(model, "logistic", eta="armijo", outer={"gamma": 2})
    with pytest.raises(ValueError, match="labels"):
        sso.target_loss("logistic").value(torch.zeros(3, 1), torch.zeros(4))
    with pytest.raises(ValueError, match="do not match"):
        sso.surrogate(torch.zeros(3, 2), torch.zeros(3, 1), 0.0, torch.zeros(3, 1), 1.0)
    with pytest.raises(ValueError, match="need x"):
        sso.linear_projection_step(torch.zeros(3, 2), torch.zeros(3, 1), torch.zeros(3, 1), 1.0)
    with pytest.raises(ValueError, match="batch_size"):
        sso.train(sso.TargetSurrogate(model, "logistic"), model, torch.zeros(4, 2), torch.zeros(4), "logistic", 2, 9)
    with pytest.raises(ValueError, match="step numbers start at 1"):
        schedule("constant", 1.0)(0)
    with pytest.raises(ValueError, match="eta0 must be a positive"):
        schedule("inverse_sqrt", 0.0)
    with pytest.raises(ValueError, match="c must be in"):
        Armijo(model.parameters(), c=1.5)
    with pytest.raises(ValueError, match="needs a closure"):
        Armijo(model.parameters()).step()


def test_a_diverging_run_stops_with_a_message():
    model = nn.Linear(2, 1).double()
    x = torch.tensor([[1.0, 2.0]], dtype=torch.float64).repeat(8, 1)
    y = torch.full((8,), math.inf, dtype=torch.float64)
    opt = sso.TargetSurrogate(model, "squared")
    with pytest.raises(FloatingPointError, match="not finite|became"):
        sso.train(opt, model, x, y, "squared", 2, 4)


def test_double_integrator_expert_and_dagger():
    from varbook.optim.imitation import DoubleIntegrator, dagger

    env = DoubleIntegrator()
    K = env.lqr_gain()
    A, B = env.matrices()
    assert torch.linalg.eigvals(A - B @ K).abs().max() < 1  # the LQR expert stabilises the system
    expert = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        expert.weight.copy_(-K)
    gen = torch.Generator().manual_seed(0)
    states, ret = env.rollout(expert, 64, 30, gen)
    assert states.shape == (64 * 30, 2) and ret.shape == (64,)
    perturbed = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        perturbed.weight.copy_(-1.3 * K)
    _, worse = env.rollout(perturbed, 64, 30, torch.Generator().manual_seed(0))
    _, best = env.rollout(expert, 64, 30, torch.Generator().manual_seed(0))
    assert best.mean() > worse.mean()  # the LQR gain is optimal for the quadratic cost
    policy = nn.Linear(2, 1, bias=False).double()
    nn.init.zeros_(policy.weight)
    opt = sso.TargetSurrogate(policy, "squared", m=20)
    h = dagger(opt, policy, env, rounds=3, n_envs=32, horizon=20, labels_per_round=128, generator=gen)
    assert h["interactions"] == [0, 640, 1280, 1920] and opt.counts.oracle_calls == 3
    assert h["return"][-1] > h["return"][0]
    assert torch.allclose(policy.weight.detach(), -K, atol=0.05)  # a linear expert is matched exactly
    with pytest.raises(ValueError, match="positive"):
        DoubleIntegrator(dt=0.0)
    with pytest.raises(ValueError, match="positive"):
        dagger(opt, policy, env, rounds=0)


@pytest.mark.parametrize("reset_step", ["targets", 10.0])
def test_the_surrogate_restarts_its_inner_line_search_at_every_outer_step(reset_step):
    """Through TargetSurrogate.step (the chapter's path): each outer step's first inner search starts at the reset value."""
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(40, 6, generator=gen, dtype=torch.float64) * torch.logspace(0, 1.5, 6, dtype=torch.float64)
    y = torch.randint(0, 4, (40,), generator=gen)
    model = nn.Linear(6, 4).double()
    opt = sso.TargetSurrogate(model, "softmax_ce", eta="armijo", m=3, reset_step=reset_step)
    ls, starts, accepted = opt.line_search, [], []
    step = ls.step

    def recording_step(closure):  # the step size each inner search starts from, and the one it accepts
        starts.append(ls.step_size)
        out = step(closure)
        accepted.append(ls.step_size)
        return out

    ls.step = recording_step
    etas = []
    for _ in range(4):
        opt.step(x, y)
        etas.append(opt.last["eta"])
    n_targets = 40 * 4
    for t in range(4):
        expected = 20.0 * etas[t] / n_targets if reset_step == "targets" else 10.0
        assert starts[3 * t] == pytest.approx(expected, rel=1e-12)
        assert starts[3 * t + 1] == accepted[3 * t]  # within an outer step the search carries over
    assert any(a < s for a, s in zip(accepted[::3], starts[::3], strict=True))  # it did backtrack
    # the control: without the reset, the next outer step starts where the last one ended
    ls.reset = lambda step=None: None
    before = ls.step_size
    opt.step(x, y)
    assert starts[-3] == before and before != pytest.approx(20.0 * opt.last["eta"] / n_targets)


def test_targets_reset_matches_the_official_mean_reduced_surrogate():
    """Armijo on the sum with the start 20 eta / N tries the same points as Armijo on the code's mean surrogate from 10."""
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(30, 5, generator=gen, dtype=torch.float64) * torch.logspace(0, 1, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (30,), generator=gen)
    eta = 7.0
    ours = nn.Linear(5, 3).double()
    theirs = nn.Linear(5, 3).double()
    theirs.load_state_dict(ours.state_dict())
    opt = sso.TargetSurrogate(ours, "softmax_ce", eta=eta, m=4)
    z_t = theirs(x).detach()
    _, g = sso.target_loss("softmax_ce").value_and_grad(z_t, y)
    ls = Armijo(theirs.parameters(), init_step=10.0)

    def mean_surrogate(backward=True):  # the official code, its 1/eta = our 2 eta: mean(2 eta g f + (f - z_t)^2)
        f = theirs(x)
        value = (2 * eta * g * f + (f - z_t) ** 2).mean()
        if backward:
            value.backward()
        return value

    for _ in range(4):
        ls.step(mean_surrogate)
    opt.step(x, y)
    assert torch.allclose(ours.weight, theirs.weight, rtol=1e-9, atol=1e-12)


def test_arguments_that_would_be_ignored_raise():
    model = nn.Linear(2, 1).double()
    with pytest.raises(ValueError, match="callable schedule"):
        sso.TargetSurrogate(model, "logistic", eta=2.0, schedule=lambda t: 1.0)
    sso.TargetSurrogate(model, "logistic", eta="armijo", schedule=lambda t: 1.0)  # a multiplier: allowed
    with pytest.raises(ValueError, match="total_steps"):
        sso.TargetSurrogate(model, "logistic", schedule=lambda t: 1.0, total_steps=10)
    with pytest.raises(ValueError, match="inner_lr is the step of inner='sgd' only"):
        sso.TargetSurrogate(model, "logistic", inner="armijo", inner_lr=0.1)
    with pytest.raises(ValueError, match="inner_lr is the step of inner='sgd' only"):
        sso.TargetSurrogate(model, "logistic", inner="lbfgs", inner_lr=0.1)
    with pytest.raises(ValueError, match="armijo options"):
        sso.TargetSurrogate(model, "logistic", inner="lbfgs", armijo={"c": 0.2})
    with pytest.raises(ValueError, match="need eta='armijo'"):
        sso.TargetSurrogate(model, "logistic", eta=2.0, outer={"grow": 2.0})
    with pytest.raises(ValueError, match="reset_step"):
        sso.TargetSurrogate(model, "logistic", reset_step=0.0)
    with pytest.raises(ValueError, match="reset_step is for inner='armijo'"):
        sso.TargetSurrogate(model, "logistic", inner="sgd", inner_lr=0.1, reset_step=10.0)
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="eta must be a positive"):
            sso.surrogate(torch.zeros(3, 1), torch.zeros(3, 1), 0.0, torch.zeros(3, 1), bad)
    opt = sso.TargetSurrogate(model, "squared", schedule=lambda t: 1.0 - t, inner="sgd", inner_lr=0.1)
    with pytest.raises(ValueError, match="must be positive"):
        opt.step(torch.zeros(4, 2, dtype=torch.float64), torch.zeros(4, dtype=torch.float64))
    x, y = torch.zeros(4, 2, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    with pytest.raises(ValueError, match="own Counts"):
        sso.train(sso.TargetSurrogate(model, "logistic"), model, x, y, "logistic", 2, counts=sso.Counts())
    with pytest.raises(ValueError, match="'exponential' only"):
        schedule("constant", 1.0, total_steps=10)
    with pytest.raises(ValueError, match="'exponential' only"):
        schedule("inverse_sqrt", 1.0, rate=0.5)
    with pytest.raises(ValueError, match="not both"):
        schedule("exponential", 1.0, total_steps=10, rate=0.5)
    with pytest.raises(ValueError, match="chunk"):
        sso.surrogate_gaps(model, x, y, "logistic", 1.0, chunk=0)
    with pytest.raises(ValueError, match="positive step"):
        Armijo(model.parameters()).reset(0.0)


def test_more_bad_input_gets_clear_errors():
    logistic = sso.target_loss("logistic")
    z = torch.zeros(3, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"labels in \{0, 1\}"):
        logistic.value(z, torch.tensor([-1, 1, 1]))  # libsvm's labels
    with pytest.raises(ValueError, match=r"labels in \{0, 1\}"):
        logistic.value_and_grad(z, torch.tensor([0, 2, 1]))
    assert float(logistic.value(z, torch.tensor([0, 1, 1]))) == pytest.approx(3 * math.log(2))
    model = nn.Linear(2, 1).double()
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="max_step must be positive"):
            Armijo(model.parameters(), max_step=bad)
    with pytest.raises(ValueError, match="grow must be"):
        Armijo(model.parameters(), grow=math.inf)
    g = torch.ones(3, 1, dtype=torch.float64)
    for bounds in ((10.0, 1.0), (0.0, 1.0), (1.0, math.inf)):
        with pytest.raises(ValueError, match="bounds"):
            sso.target_armijo(logistic, z, torch.tensor([0, 1, 1]), 2.0, g, 1.0, bounds=bounds)
    for outer in (
        {"c": 2.0},
        {"grow": -1.0},
        {"grow": 0.5},
        {"beta": 1.0},
        {"bounds": (10.0, 1.0)},
        {"max_backtracks": 0},
    ):
        with pytest.raises(ValueError, match="outer line search|bounds"):
            sso.TargetSurrogate(model, "logistic", eta="armijo", outer=outer)  # at construction, not at the first step
    with pytest.raises(ValueError, match="positive finite"):
        sso.linear_projection_step(torch.ones(3, 2), torch.zeros(2, 1), torch.ones(3, 1), math.inf)
