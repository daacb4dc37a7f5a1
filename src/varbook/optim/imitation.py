r"""A small imitation-learning task for target-based surrogates: DAgger on a double integrator.

The environment is a batch of independent double integrators (position and velocity,
:math:`s_{t+1}=As_t+Ba_t` with time step ``dt``) with the quadratic cost
:math:`s^\top Qs+r\,a^2` per step; the expert is the infinite-horizon LQR controller
:math:`a^\star=-Ks`, from the discrete Riccati equation. In each DAgger round the current policy
is rolled out in every environment at once, the expert labels a sample of the visited states
(the expensive oracle: it needs the environment), and the policy takes one step on the
imitation loss :math:`\ell(z)=\tfrac12\lVert z-a^\star\rVert^2` of its actions :math:`z` on those
states: one gradient step (online gradient descent) or one outer step of
:class:`~varbook.optim.sso.TargetSurrogate` (SSO) :cite:`lavington2023target`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import runtime
from ..runtime import History
from .sso import StepFn, TargetSurrogate


@dataclass(frozen=True)
class DoubleIntegrator:
    """Double integrators with time step ``dt``, state cost ``q`` (times the identity) and action cost ``r``."""

    dt: float = 0.1
    q: float = 1.0
    r: float = 0.1
    max_action: float = 10.0  # actions are clipped, so a bad policy grows the state polynomially, not exponentially

    def __post_init__(self) -> None:
        if not (self.dt > 0 and self.q > 0 and self.r > 0 and self.max_action > 0):
            raise ValueError("dt, q, r and max_action must be positive")

    def matrices(self, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
        """:math:`A` (2 x 2) and :math:`B` (2 x 1)."""
        dt = self.dt
        return torch.tensor([[1.0, dt], [0.0, 1.0]], dtype=dtype), torch.tensor([[0.5 * dt**2], [dt]], dtype=dtype)

    def lqr_gain(self, iterations: int = 10_000, tol: float = 1e-12) -> torch.Tensor:
        r"""The expert's gain :math:`K` (1 x 2): iterate :math:`P\leftarrow Q+A^\top PA-A^\top PB(R+B^\top PB)^{-1}B^\top PA`."""
        A, B = self.matrices()
        Q, R = self.q * torch.eye(2, dtype=torch.float64), torch.tensor([[self.r]], dtype=torch.float64)
        P = Q.clone()
        for _ in range(iterations):
            K = torch.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)
            P_next = Q + A.T @ P @ (A - B @ K)
            if float((P_next - P).abs().max()) < tol:
                P = P_next
                break
            P = P_next
        return torch.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)

    def expert(self, device: torch.device | str | None = None) -> nn.Module:
        """The LQR expert :math:`a^\\star=-Ks` as a linear policy (float64, no gradients)."""
        policy = nn.Linear(2, 1, bias=False).to(device, torch.float64).requires_grad_(False)
        policy.weight.copy_(-self.lqr_gain())
        return policy

    @torch.no_grad()
    def rollout(
        self,
        policy: nn.Module,
        n_envs: int,
        horizon: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Roll ``policy`` out in ``n_envs`` environments at once from standard normal states.

        Returns the visited states ``(horizon * n_envs, 2)`` and the return of each environment
        (minus its summed cost), shape ``(n_envs,)``.
        """
        if n_envs < 1 or horizon < 1:
            raise ValueError(f"n_envs and horizon must be positive, got {n_envs}, {horizon}")
        A, B = (m.to(device) for m in self.matrices())
        s = runtime.randn(n_envs, 2, generator=generator, device=device, dtype=torch.float64)
        states, cost = [], torch.zeros(n_envs, dtype=torch.float64, device=device)
        for _ in range(horizon):
            states.append(s)
            a = policy(s).clamp(-self.max_action, self.max_action)
            cost += self.q * (s * s).sum(-1) + self.r * (a * a).sum(-1)
            s = s @ A.T + a @ B.T
        return torch.cat(states), -cost


def dagger(
    step: StepFn | TargetSurrogate,
    policy: nn.Module,
    env: DoubleIntegrator,
    rounds: int,
    n_envs: int = 256,
    horizon: int = 50,
    labels_per_round: int = 1024,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    desc: str | None = None,
    eval_seed: int = 12345,
) -> History:
    """DAgger: ``rounds`` rounds of roll-out, expert labels for ``labels_per_round`` visited states, one step.

    Each round costs one oracle call (the expert's labels of one batch of states) and
    ``n_envs * horizon`` environment interactions. Logs, before the first round and after each:
    ``round``, ``interactions`` and the mean ``return`` of the policy on ``n_envs`` evaluation
    roll-outs, from the same initial states every time (drawn with ``eval_seed``).
    """
    if rounds < 1 or labels_per_round < 1:
        raise ValueError(f"rounds and labels_per_round must be positive, got {rounds}, {labels_per_round}")
    gain = env.lqr_gain().to(device)
    step_fn = step.step if isinstance(step, TargetSurrogate) else step
    history = History()
    interactions = 0
    for t in runtime.progress(range(rounds + 1), desc=desc, disable=desc is None):
        evaluation = torch.Generator().manual_seed(eval_seed)
        _, returns = env.rollout(policy, n_envs, horizon, evaluation, device)
        history.log(round=t, interactions=interactions, **{"return": returns.mean()})
        if t == rounds:
            break
        states, _ = env.rollout(policy, n_envs, horizon, generator, device)
        interactions += n_envs * horizon
        pick = runtime.randint(0, len(states), (labels_per_round,), generator=generator, device=device)
        s = states[pick]
        value = step_fn(s, -(s @ gain.T))  # the expert's actions -K s are the labels
        runtime.check_finite(value, t, "imitation loss")
    return history


__all__ = ["DoubleIntegrator", "dagger"]
