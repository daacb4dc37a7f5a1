"""NIW-Meta, MAML, ProtoNet and the saved-tensor meter of varbook.bayes.meta."""

from __future__ import annotations

import math

import pytest
import torch

from varbook import memory, runtime
from varbook.bayes import meta as M
from varbook.bayes.conjugate import niw_local_posterior
from varbook.data.fewshot import sineline
from varbook.nn import MLP

D = dict(dtype=torch.float64)


def tiny(seed: int = 0, hidden=(3,)) -> M.FunctionalNet:
    torch.manual_seed(seed)
    return M.FunctionalNet(MLP(1, list(hidden), 1, activation=torch.nn.Tanh).double())


def tasks(n: int = 3, seed: int = 0):
    return sineline(n, 4, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_functional_net_is_the_module_with_each_tasks_parameters():
    net = tiny(hidden=(5, 4))
    x = torch.randn(2, 7, 1, **D)
    theta = net.flat()
    assert torch.allclose(net(theta, x), net.module(x))
    other = theta + 0.1
    both = net(torch.stack([theta, other]), x)
    assert torch.allclose(both[0], net.module(x[0])) and not torch.allclose(both[1], net.module(x[1]))
    with pytest.raises(ValueError, match="shape"):
        net(theta[:-1], x)


def test_linear_fast_path_equals_vmap_to_second_order():
    net = tiny(hidden=(6, 5))
    slow = M.FunctionalNet(net.module)
    slow._linear_stack = False  # force vmap over functional_call
    assert net._linear_stack and not M.FunctionalNet(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3)))._linear_stack
    theta = torch.randn(4, net.n_params, **D, requires_grad=True)
    x = torch.randn(4, 7, 1, **D)
    grads = []
    for f in (net, slow):
        (g,) = torch.autograd.grad(f(theta, x).pow(2).sum(), theta, create_graph=True)
        (h,) = torch.autograd.grad(g.pow(2).sum(), theta)
        grads.append((f(theta, x), g, h))
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    assert torch.allclose(net(theta[0].detach(), x), slow(theta[0].detach(), x))


def test_likelihoods_match_torch_distributions():
    pred, y = torch.randn(3, 5, 1, **D), torch.randn(3, 5, 1, **D)
    ref = -torch.distributions.Normal(pred, 0.3).log_prob(y).sum((1, 2))
    assert torch.allclose(M.gaussian_nll(0.3)(pred, y), ref)
    logits, labels = torch.randn(3, 5, 4, **D), torch.randint(0, 4, (3, 5))
    ref = -torch.distributions.Categorical(logits=logits).log_prob(labels).sum(1)
    assert torch.allclose(M.categorical_nll(logits, labels), ref)
    with pytest.raises(ValueError, match="noise"):
        M.gaussian_nll(0.0)
    with pytest.raises(ValueError, match="logits"):
        M.categorical_nll(logits[0], labels)


def maml_objective(net, theta, t, second_order=True, steps=2, lr=0.05):
    nll = M.gaussian_nll(0.5)
    return M.maml_loss(net, nll, theta, t.x_support, t.y_support, t.x_query, t.y_query, steps, lr, second_order)


def test_second_order_maml_meta_gradient_matches_finite_differences():
    net, t = tiny(), tasks()
    theta = net.flat().requires_grad_(True)
    (grad,) = torch.autograd.grad(maml_objective(net, theta, t), theta)
    g = torch.Generator().manual_seed(1)
    h = 1e-6
    for _ in range(4):
        v = torch.randn(theta.shape, generator=g, **D)
        with torch.no_grad():
            plus = maml_objective(net, theta + h * v, t)
            minus = maml_objective(net, theta - h * v, t)
        fd = (plus - minus) / (2 * h)
        assert float(grad @ v) == pytest.approx(float(fd), rel=1e-6, abs=1e-8)


def test_first_order_maml_is_the_query_gradient_at_the_adapted_parameters():
    net, t = tiny(), tasks()
    nll = M.gaussian_nll(0.5)
    theta = net.flat().requires_grad_(True)
    (first,) = torch.autograd.grad(maml_objective(net, theta, t, second_order=False), theta)
    adapted = M.maml_adapt(net, nll, theta, t.x_support, t.y_support, 2, 0.05, second_order=False).detach()
    adapted.requires_grad_(True)
    (q,) = torch.autograd.grad(nll(net(adapted, t.x_query), t.y_query).mean(), adapted)
    assert torch.allclose(first, q.sum(0))
    (second,) = torch.autograd.grad(maml_objective(net, theta, t), theta)
    assert not torch.allclose(first, second, rtol=1e-3)  # the Hessian terms matter here
    with pytest.raises(ValueError, match="steps"):
        M.maml_adapt(net, nll, theta, t.x_support, t.y_support, -1, 0.1)


def test_niw_meta_gradient_flows_through_the_closed_form_only():
    net, t = tiny(), tasks()
    niw = M.NIWMeta(net, M.gaussian_nll(0.5), gamma0=2.0, n0=1.5, sgld_steps=4, step_size=1e-3).double()
    fit = dict(generator=torch.Generator().manual_seed(3))
    m_bar, a_bar = niw.local_fit(t.x_all, t.y_all, **fit)
    assert not m_bar.requires_grad and not a_bar.requires_grad
    m_star, g_star = niw.local_posterior(t.x_all, t.y_all, generator=torch.Generator().manual_seed(3))
    ref = niw_local_posterior(m_bar, a_bar, niw.m0, niw.gamma0, niw.n0)
    assert torch.allclose(m_star, ref[0]) and torch.allclose(g_star, ref[1])
    # the quadratic surrogate's gradient in m0 is the closed form's: d/dm0 of the objective
    loss, parts = niw.meta_loss(t.x_all, t.y_all, surrogate=True, generator=torch.Generator().manual_seed(3))
    (dm0,) = torch.autograd.grad(loss, niw.m0)
    m0 = niw.m0.detach().clone().requires_grad_(True)
    ms, gs = niw_local_posterior(m_bar, a_bar, m0, niw.gamma0.detach(), niw.n0.detach())
    f = 0.5 * (a_bar * ((ms - m_bar) ** 2 + 1 / gs)).sum(-1)
    from varbook.bayes.conjugate import expected_kl

    g = expected_kl(ms, gs, m0, niw.gamma0.detach(), niw.n0.detach())
    (ref_dm0,) = torch.autograd.grad((f + g).mean(), m0)
    assert torch.allclose(dm0, ref_dm0)
    assert set(parts) == {"f", "g", "hyper"}


def test_monte_carlo_meta_gradient_in_m0_is_the_chain_rule_through_m_star():
    # The chapter trains with the Monte Carlo f_i (surrogate=False). With θ = m* + γ*^(-1/2) ε and
    # ∂m*/∂m0 = n0γ0/γ* (γ* does not depend on m0), ∇_m0 f = mean_i (n0γ0/γ*_i) ⊙ ∇_θ nll_i(θ_i).
    net, t = tiny(hidden=(4,)), tasks(3)
    niw = M.NIWMeta(net, M.gaussian_nll(0.5), sgld_steps=3, step_size=1e-3, gamma0=2.0).double()
    loss, _ = niw.meta_loss(t.x_all, t.y_all, generator=torch.Generator().manual_seed(5))
    (dm0,) = torch.autograd.grad(loss, niw.m0)
    g = torch.Generator().manual_seed(5)  # the same draws, in the same order
    m_bar, a_bar = niw.local_fit(t.x_all, t.y_all, generator=g)
    prior = (niw.n0 * niw.gamma0).detach()
    m0 = niw.m0.detach().clone().requires_grad_(True)
    m_star, g_star = niw_local_posterior(m_bar, a_bar, m0, niw.gamma0.detach(), niw.n0.detach())
    theta = (m_star + g_star.rsqrt() * runtime.randn_like(m_star, g)).detach().requires_grad_(True)
    (d_theta,) = torch.autograd.grad(niw.nll(net(theta, t.x_all), t.y_all).mean(), theta)
    from varbook.bayes.conjugate import expected_kl

    (d_g,) = torch.autograd.grad(expected_kl(m_star, g_star, m0, niw.gamma0.detach(), niw.n0.detach()).mean(), m0)
    ref = (prior / g_star.detach() * d_theta).sum(0) + d_g
    assert torch.allclose(dm0, ref, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(dm0, d_theta.sum(0) + d_g)  # without the factor n0γ0/γ* it differs


def test_niw_meta_memory_is_flat_in_the_sgld_steps_and_maml_grows():
    net, t = tiny(hidden=(8,)), tasks(4)
    niw = M.NIWMeta(net, M.gaussian_nll(0.5), sgld_steps=3, step_size=1e-3).double()
    g = torch.Generator().manual_seed(0)

    def niw_cost(k, stop=True):
        fn = lambda: niw.meta_loss(t.x_all, t.y_all, steps=k, generator=g, stop_gradient=stop)[0]  # noqa: E731
        return M.step_cost(fn, list(niw.parameters()), reps=1)["saved_bytes"]

    assert niw_cost(2) == niw_cost(8)
    assert niw_cost(8, stop=False) > 2 * niw_cost(2, stop=False)
    theta = net.flat().requires_grad_(True)

    def maml_cost(k, so=True):
        fn = lambda: maml_objective(net, theta, t, so, steps=k)  # noqa: E731
        return M.step_cost(fn, [theta], reps=1)["saved_bytes"]

    assert maml_cost(8) > 3 * maml_cost(1)
    assert maml_cost(8, so=False) == maml_cost(1, so=False)


def test_niw_meta_training_lowers_the_loss_and_predicts():
    net, g = tiny(hidden=(16,)), torch.Generator().manual_seed(0)
    niw = M.NIWMeta(net, M.gaussian_nll(0.3), sgld_steps=3, step_size=5e-4).double()
    fixed = tasks(8, seed=9)

    def loss(step):
        t = sineline(4, generator=g, dtype=torch.float64)
        return niw.meta_loss(t.x_all, t.y_all, generator=g)[0]

    before = niw.meta_loss(fixed.x_all, fixed.y_all, generator=torch.Generator().manual_seed(1))[0]
    hist = M.meta_train(loss, niw.parameters(), 150, 3e-3)
    after = niw.meta_loss(fixed.x_all, fixed.y_all, generator=torch.Generator().manual_seed(1))[0]
    assert len(hist["loss"]) == 150 and float(after.detach()) < float(before.detach())
    out = niw.predict(fixed.x_support, fixed.y_support, fixed.x_query, n_samples=3, generator=g)
    assert out.shape == (3, 8, 3, 1)
    assert niw.predict(fixed.x_support, fixed.y_support, fixed.x_query, n_samples=0).shape == (1, 8, 3, 1)


def test_meta_train_clips_monitors_and_stops_on_divergence():
    w = torch.zeros(3, requires_grad=True)
    h = M.meta_train(lambda s: 1e6 * w.sum(), [w], 4, 0.1, max_grad_norm=1.0,
                     monitor=lambda: {"w": float(w.detach()[0])}, every=2)  # fmt: skip
    assert h["eval_step"] == [2.0, 4.0] and len(h["w"]) == 2 and torch.allclose(w, torch.full((3,), -0.4))
    v = torch.ones(1, requires_grad=True)
    loss = lambda s: (v * (float("nan") if s == 2 else 1.0)).sum()  # noqa: E731
    with pytest.raises(runtime.NonFiniteLossError):
        M.meta_train(loss, [v], 5, 0.1)
    h = M.meta_train(loss, [v], 5, 0.1, stop_on_nonfinite=True)
    assert h["diverged_at"] == [2.0] and len(h["loss"]) == 2
    with pytest.raises(ValueError, match="max_grad_norm"):
        M.meta_train(loss, [v], 5, 0.1, max_grad_norm=0.0)


def test_protonet_prototypes_and_logits():
    z = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [0.0, 6.0]]], **D)
    y = torch.tensor([[0, 0, 1, 1]])
    protos = M.prototypes(z, y, 2)
    assert protos.tolist() == [[[1.0, 0.0], [0.0, 5.0]]]
    q = torch.tensor([[[1.0, 1.0], [0.0, 5.0]]], **D)
    logits = M.protonet_logits(z, y, q, 2)
    assert logits.argmax(-1).tolist() == [[0, 1]]
    assert float(logits[0, 0, 1]) == pytest.approx(-(1 + 16))
    with pytest.raises(ValueError, match="at least one"):
        M.prototypes(z, torch.zeros_like(y), 2)


def test_saved_tensor_meter_counts_and_releases():
    a = torch.randn(100, **D, requires_grad=True)
    with memory.SavedTensors() as meter:
        out = (a * a.exp()).sum()
        assert meter.live >= 2 * 100 * 8
        peak = meter.peak
        out.backward()  # backward releases the saved tensors
    assert meter.live == 0 and meter.peak == peak and meter.bytes == peak


def test_saved_tensor_meter_dedupes_storages_and_excludes_parameters():
    w = torch.randn(50, **D, requires_grad=True)
    x = torch.randn(50, **D, requires_grad=True)
    meters = memory.SavedTensors(), memory.SavedTensors(exclude=[w], dedupe=True)
    for meter in meters:
        with meter:
            out = (x * w).sum() + (x * x).sum()  # x is saved three times, w once
        del out
    every, distinct = meters
    assert every.peak == 4 * 50 * 8 and distinct.peak == 50 * 8  # x's storage once, w excluded
    assert every.live == distinct.live == 0
    assert every.bytes == 4 * 50 * 8 and distinct.bytes == 50 * 8  # totals survive the release


def test_bad_input_is_refused():
    net = tiny()
    with pytest.raises(ValueError, match="gamma0"):
        M.NIWMeta(net, M.gaussian_nll(1.0), gamma0=0.0)
    with pytest.raises(ValueError, match="iterations"):
        M.meta_train(lambda s: torch.zeros(()), [torch.zeros(1, requires_grad=True)], 0, 0.1)
    with pytest.raises(ValueError, match="reps"):
        M.step_cost(lambda: torch.zeros(()), [], reps=0)
    with pytest.raises(ValueError, match="no parameters"):
        M.FunctionalNet(torch.nn.ReLU())
    nll = M.gaussian_nll(1.0)
    for bad, match in [
        (dict(sgld_steps=0), "sgld_steps"),
        (dict(sgld_steps=3, burn_in=3), "burn_in"),
        (dict(step_size=0.0), "step_size"),
        (dict(a_min=2.0, a_max=1.0), "a_min"),
    ]:
        with pytest.raises(ValueError, match=match):
            M.NIWMeta(net, nll, **bad)
    niw, t = M.NIWMeta(net, nll).double(), tasks()
    with pytest.raises(ValueError, match="n_mc"):
        niw.meta_loss(t.x_all, t.y_all, n_mc=0)
    with pytest.raises(ValueError, match="n_samples"):
        niw.predict(t.x_support, t.y_support, t.x_query, n_samples=-1)
    with pytest.raises(ValueError, match="learning rate"):
        M.maml_adapt(net, nll, net.flat(), t.x_support, t.y_support, 2, 0.0)
    assert math.isfinite(float(M.gaussian_nll(1.0)(torch.zeros(1, 1, 1), torch.ones(1, 1, 1))[0]))
