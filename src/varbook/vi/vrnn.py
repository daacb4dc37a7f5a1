r"""A variational RNN (VRNN) on PV-RNN's cells: the baseline of :cite:`ahmadi2019novel`.

The same multi-layer MTRNN and prior net as :class:`varbook.vi.pvrnn.PVRNN`, with an amortised
encoder in place of the adaptive vectors (Chung et al.'s VRNN):

.. math:: q(z^l_t\mid x_t,d^l_{t-1})=\mathcal N\big(\tanh a^\mu,\ e^{2a^\sigma}\big),\qquad
   [a^\mu,a^\sigma]=W^l_2\tanh(W^l_1[x_t,d^l_{t-1}]+b^l_1),

trained on the loss of :func:`varbook.vi.pvrnn.free_energy`. It predicts by filtering the
observations with the encoder and then running the prior mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from varbook import runtime
from varbook.nn.mtrnn import batched_linear, init_weight
from varbook.vi import pvrnn as pv
from varbook.vi.latent_seq import sample


class VRNN(nn.Module):
    """A batch of ``n_models`` VRNNs: the cells of a :class:`~varbook.vi.pvrnn.PVRNN` plus one encoder per layer.

    >>> m = VRNN(2, (8, 4), (2, 1), (2.0, 4.0), n_models=3)
    >>> out = m.unroll(torch.zeros(5, 7, 2), m.core.initial_state(5), first=True)
    >>> out["x_hat"].shape, out["kl"].shape
    (torch.Size([3, 5, 7, 2]), torch.Size([3, 5, 7]))
    """

    def __init__(
        self,
        x_dim: int,
        d_sizes: Sequence[int],
        z_sizes: Sequence[int],
        taus: Sequence[float],
        n_models: int = 1,
        enc_hidden: int = 32,
    ) -> None:
        super().__init__()
        if enc_hidden < 1:
            raise ValueError(f"enc_hidden must be >= 1, got {enc_hidden}")
        self.core = pv.PVRNN(x_dim, d_sizes, z_sizes, taus, n_seq=1, length=1, n_models=n_models)
        self.core.A.requires_grad_(False)  # no adaptive vectors in a VRNN
        self.enc1 = nn.ParameterList(init_weight(n_models, enc_hidden, x_dim + d) for d in d_sizes)
        self.enc1_bias = nn.ParameterList(nn.Parameter(torch.zeros(n_models, enc_hidden)) for _ in d_sizes)
        self.enc2 = nn.ParameterList(init_weight(n_models, 2 * z, enc_hidden) for z in z_sizes)

    def encode(self, k: int, x_t: torch.Tensor, d_prev: torch.Tensor) -> torch.Tensor:
        """Posterior pre-activations of layer ``k`` from the observation and the layer's previous output."""
        hidden = torch.tanh(batched_linear(torch.cat((x_t, d_prev), -1), self.enc1[k], self.enc1_bias[k]))
        return batched_linear(hidden, self.enc2[k])

    def unroll(
        self, x: torch.Tensor, state: pv.State, *, first: bool, generator: torch.Generator | None = None,
        use_mean: bool = False,
    ) -> dict:  # fmt: skip
        """Filter ``x`` (B, T, D_x): per step, encode, sample, step. Returns ``x_hat``, ``kl`` and ``state``."""
        M = self.core.n_models
        xs = x.unsqueeze(0).expand(M, *x.shape)
        x_hat, kls = [], []
        for t in range(x.shape[1]):
            z = []
            kl = x.new_zeros(M, x.shape[0])
            for k, cell in enumerate(self.core.latent_cells):
                pre = self.encode(k, xs[:, :, t], state[k][1])
                mu, ls = pv.gaussian_from(pre)
                z.append(mu if use_mean else sample(mu, ls, generator))
                kl = kl + cell.kl(pre, None if (first and t == 0) else state[k][1]) / self.core.z_sizes[k]
            state = self.core.step(state, z)
            x_hat.append(self.core.output(state[0][1]))
            kls.append(kl)
        return {"x_hat": torch.stack(x_hat, 2), "kl": torch.stack(kls, 2), "state": state}


def train_vrnn(
    model: VRNN,
    x: torch.Tensor,
    w,
    w_first,
    *,
    iters: int,
    lr: float = 1e-3,
    generator: torch.Generator | None = None,
    desc: str | None = None,
) -> runtime.History:
    """Full-batch Adam on the VRNN's loss (:func:`varbook.vi.pvrnn.free_energy`), every model at once."""
    pv.check_count("iters", iters)
    pv.check_sequences(x, model.core.x_dim)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    history = runtime.History()
    for it in runtime.progress(range(iters), desc=desc, disable=desc is None):
        out = model.unroll(x, model.core.initial_state(x.shape[0]), first=True, generator=generator)
        rec, wkl = pv.free_energy(x, out["x_hat"], out["kl"], w, w_first, first=True)
        loss = (rec + wkl).mean(1).sum()
        runtime.descend(opt, loss, it)
        if it % 10 == 0 or it == iters - 1:
            history.log(loss=loss.detach())
    return history


@torch.no_grad()
def predict_vrnn(model: VRNN, x: torch.Tensor, *, start: int, horizon: int) -> torch.Tensor:
    """Predictions of :math:`x_{t+h-1}` from :math:`x_{<t}` for every :math:`t\\ge` ``start``: (M, B, T, D_x), NaN elsewhere.

    The encoder filters the observations (posterior means), then the prior mean runs ``horizon`` steps.
    """
    pv.check_sequences(x, model.core.x_dim)
    pv.check_count("the horizon", horizon)
    B, T, _ = x.shape
    if not 1 <= start < T:
        raise ValueError(f"predict_vrnn needs 1 <= start < T = {T}, got {start}")
    core = model.core
    preds = torch.full((core.n_models, B, T, core.x_dim), float("nan"), dtype=x.dtype, device=x.device)
    state = model.unroll(x[:, :start], core.initial_state(B), first=True, use_mean=True)["state"]
    for t in range(start, T - horizon + 1):
        out = core.generate(B, horizon, use_mean=True, state=state, first=False)
        preds[:, :, t + horizon - 1] = out["x"][:, :, -1]
        state = model.unroll(x[:, t : t + 1], state, first=False, use_mean=True)["state"]
    return preds
