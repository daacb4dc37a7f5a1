r"""Sparse variational GP and Student-t process classification :cite:`hensman2015scalable,lee2022scale`.

One latent function :math:`f_c` per class, each a GP with the NNGP kernel :math:`K`
(:func:`~varbook.gp.kernels.nngp_relu`), summarised by its values :math:`u_c=f_c(Z)` at
:math:`M` trainable inducing inputs :math:`Z` shared by the classes. The variational
distribution is :math:`q(u_c)=\mathcal N(m_c,\mathrm{diag}\,s_c)` (:math:`s_c` is the variance
itself), so that at inputs :math:`X`, with :math:`A=K_{XZ}K_{ZZ}^{-1}`, the marginals are

.. math::
   q(f_c(x_i))=\mathcal N\big(\mu_{ci},\,v_{ci}\big),\qquad \mu_c=Am_c,\qquad
   v_{ci}=k_{ii}-[AK_{ZX}]_{ii}+[A\,\mathrm{diag}(s_c)A^\top]_{ii}.

* **SVGP**: samples :math:`f=\mu+\sqrt v\,\varepsilon`, and
  :math:`\mathrm{KL}=\sum_c\mathrm{KL}(\mathcal N(m_c,\mathrm{diag}\,s_c)\,\|\,\mathcal N(0,K_{ZZ}))`.
* **SVTP**: a shared output scale :math:`\sigma^2` with prior :math:`\mathrm{InvGamma}(2,2)` and
  :math:`q(\sigma^2)=\mathrm{InvGamma}(a,b)` scales the whole predictive covariance,
  :math:`f=\mu+\sigma\sqrt v\,\varepsilon` with :math:`\sigma^2\sim q(\sigma^2)`, one
  :math:`\sigma^2` per function sample shared by the classes and the points, i.e.
  :math:`f\sim\mathrm{MVT}(2a,\mu,(b/a)\,v)`, the multivariate t the brief describes; the KL adds
  :math:`\mathrm{KL}(q(\sigma^2)\,\|\,\mathrm{InvGamma}(2,2))`
  (:func:`~varbook.vi.kl.inverse_gamma_kl`). Two differences from the official code: it draws
  *independent* univariate t variates for every class, point and sample (``utils.multivariate_t``
  and ``sample_f_iid``), not one shared scale; and its KL of :math:`q(u_c)` multiplies the
  Mahalanobis term :math:`m_c^\top K_{ZZ}^{-1}m_c` by :math:`a/b=\mathbb E_q[1/\sigma^2]`, which ours
  does not. Neither is the exact conditional structure :math:`q(u\mid\sigma^2)`.

The loss per example is :math:`-\frac1S\sum_s\log\mathrm{softmax}(f^{(s)}_i)_{y_i}+\mathrm{KL}/N`
and the predictive averages probabilities over :math:`S` samples.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..bayes.metrics import accuracy, ece, nll
from ..data import Split, minibatches
from ..data.shifts import shift_tests
from ..runtime import History, check_choice, descend, draw_device, progress, randn, randperm
from ..vi.kl import inverse_gamma_kl
from .kernels import nngp_relu, nngp_relu_diag

SPARSE_KINDS = ("gp", "tp")
"""The two sparse classifiers: SVGP (``"gp"``) and SVTP (``"tp"``)."""


def inverse_gamma_rsample(
    a: torch.Tensor, b: torch.Tensor, n: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    r""":math:`n` draws of :math:`\sigma^2\sim\mathrm{InvGamma}(a,b)`, reparameterised: :math:`\sigma^2=b/G`, :math:`G\sim\mathrm{Gamma}(a,1)`.

    The gamma draw is differentiable in :math:`a` (implicit reparameterisation of
    ``torch._standard_gamma``) and comes from ``generator`` on its device.
    """
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    if bool((a <= 0).any()) or bool((b <= 0).any()):
        raise ValueError("the shape and scale of an inverse-gamma law must be positive")
    where = draw_device(generator, a.device)
    g = torch._standard_gamma(a.to(where).expand(n), generator=generator).to(a.device)
    return b / g.clamp_min(torch.finfo(g.dtype).tiny)


class SparseClassifier(nn.Module):
    r"""SVGP (``kind="gp"``) or SVTP (``kind="tp"``) classifier with an NNGP kernel (the module docstring).

    ``z`` (``(M, d)``) initialises the inducing inputs; the kernel hyperparameters
    (``depth``, ``w_std``, ``b_std``, ``last_w_std``) are fixed. :math:`K_{ZZ}` gets the jitter
    ``jitter`` times its mean diagonal. :math:`m_c` starts at zero, :math:`s_c` at the prior
    variances :math:`\mathrm{diag}\,K_{ZZ}`, and :math:`q(\sigma^2)` at the prior ``prior``.
    """

    def __init__(
        self,
        z: torch.Tensor,
        n_classes: int,
        kind: str = "gp",
        depth: int = 4,
        w_std: float = 1.0,
        b_std: float = 1e-8,
        last_w_std: float = 1.0,
        prior: tuple[float, float] = (2.0, 2.0),
        jitter: float = 1e-6,
    ) -> None:
        super().__init__()
        self.kind = check_choice("kind", kind, SPARSE_KINDS)
        if z.ndim != 2 or not z.is_floating_point():
            raise ValueError(f"z must be a floating (M, d) tensor, got {tuple(z.shape)} {z.dtype}")
        if n_classes < 2:
            raise ValueError(f"n_classes must be at least 2, got {n_classes}")
        if min(prior) <= 0 or jitter <= 0:
            raise ValueError(f"prior and jitter must be positive, got {prior}, {jitter}")
        self.kernel_args: dict[str, Any] = dict(depth=depth, w_std=w_std, b_std=b_std, last_w_std=last_w_std)
        self.prior, self.jitter = prior, jitter
        self.z = nn.Parameter(z.clone())
        self.m = nn.Parameter(torch.zeros(n_classes, len(z), dtype=z.dtype, device=z.device))
        diag = nngp_relu_diag(z, **self.kernel_args).detach()
        self.log_s = nn.Parameter(diag.log().expand(n_classes, -1).clone())
        if self.kind == "tp":
            self.log_a = nn.Parameter(torch.tensor(math.log(prior[0]), dtype=z.dtype, device=z.device))
            self.log_b = nn.Parameter(torch.tensor(math.log(prior[1]), dtype=z.dtype, device=z.device))

    def _chol_zz(self) -> torch.Tensor:
        k = nngp_relu(self.z, **self.kernel_args)
        eye = torch.eye(len(k), dtype=k.dtype, device=k.device)
        return torch.linalg.cholesky(k + self.jitter * k.diagonal().mean().detach() * eye)

    def marginals(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Means :math:`\mu` and variances :math:`v` of :math:`q(f_c(x_i))`, each ``(C, N)``."""
        if x.ndim != 2 or x.shape[1] != self.z.shape[1]:
            raise ValueError(f"x must be (N, {self.z.shape[1]}), got {tuple(x.shape)}")
        chol = self._chol_zz()
        a = torch.linalg.solve_triangular(chol, nngp_relu(self.z, x, **self.kernel_args), upper=False)
        proj = torch.linalg.solve_triangular(chol.T, a, upper=True)  # K_ZZ^{-1} K_ZX, (M, N)
        mean = self.m @ proj
        s = self.log_s.exp()
        var = nngp_relu_diag(x, **self.kernel_args) - (a * a).sum(0) + s @ (proj * proj)
        return mean, var.clamp_min(1e-12)

    def scale_posterior(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The SVTP's :math:`(a, b)` of :math:`q(\\sigma^2)`."""
        if self.kind != "tp":
            raise ValueError("only an SVTP has a scale posterior")
        return self.log_a.exp(), self.log_b.exp()

    def kl(self) -> torch.Tensor:
        r""":math:`\sum_c\mathrm{KL}(\mathcal N(m_c,\mathrm{diag}\,s_c)\|\mathcal N(0,K_{ZZ}))` (+ the InvGamma KL for an SVTP).

        Each term is :math:`\frac12\big[\mathrm{tr}(K_{ZZ}^{-1}\mathrm{diag}\,s_c)+m_c^\top K_{ZZ}^{-1}m_c-M
        +\ln|K_{ZZ}|-\sum_j\ln s_{cj}\big]`.
        """
        chol = self._chol_zz()
        eye = torch.eye(len(chol), dtype=chol.dtype, device=chol.device)
        inv_l = torch.linalg.solve_triangular(chol, eye, upper=False)  # L^{-1}
        k_inv_diag = (inv_l * inv_l).sum(0)
        maha = (torch.linalg.solve_triangular(chol, self.m.T, upper=False) ** 2).sum(0)  # (C,)
        logdet = 2 * chol.diagonal().log().sum()
        s = self.log_s.exp()
        kl = 0.5 * ((s * k_inv_diag).sum(1) + maha - len(chol) + logdet - self.log_s.sum(1))
        total = kl.sum()
        if self.kind == "tp":
            a, b = self.scale_posterior()
            total = total + inverse_gamma_kl(a, b, *self.prior)
        return total

    def sample_f(self, x: torch.Tensor, n_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        r"""Function samples at ``x``, ``(S, N, C)``: Gaussian (SVGP) or multivariate t with :math:`2a` degrees of freedom (SVTP)."""
        if n_samples < 1:
            raise ValueError(f"n_samples must be positive, got {n_samples}")
        mean, var = self.marginals(x)
        eps = randn(n_samples, *mean.shape, generator=generator, device=x.device, dtype=mean.dtype)
        std = var.sqrt()[None]
        if self.kind == "tp":
            scale_sq = inverse_gamma_rsample(*self.scale_posterior(), n_samples, generator)
            std = std * scale_sq.sqrt()[:, None, None]
        return (mean[None] + std * eps).transpose(1, 2)

    def loss(self, x: torch.Tensor, y: torch.Tensor, n_data: int, n_samples: int, generator=None) -> torch.Tensor:
        r"""Negative ELBO per example: :math:`-\frac1{|B|S}\sum_{i,s}\log\mathrm{softmax}(f^{(s)}_i)_{y_i}+\mathrm{KL}/N`."""
        if y.shape != x.shape[:1] or n_data < 1:
            raise ValueError(f"need labels (N,) for x (N, d) and n_data >= 1, got {tuple(y.shape)}, {n_data}")
        logp = torch.log_softmax(self.sample_f(x, n_samples, generator), -1)  # (S, N, C)
        expected = logp.gather(-1, y.expand(n_samples, -1)[..., None]).mean()
        return -expected + self.kl() / n_data

    @torch.no_grad()
    def predict_proba(
        self, x: torch.Tensor, n_samples: int = 100, generator: torch.Generator | None = None, chunk: int = 500
    ) -> torch.Tensor:
        r"""Predictive class probabilities :math:`\frac1S\sum_s\mathrm{softmax}(f^{(s)})`, ``(N, C)``."""
        parts = [torch.softmax(self.sample_f(xb, n_samples, generator), -1).mean(0) for xb in x.split(chunk)]
        return torch.cat(parts)


def train_sparse(
    model: SparseClassifier,
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    batch_size: int = 100,
    lr: float = 1e-2,
    n_samples: int = 100,
    generator: torch.Generator | None = None,
    desc: str | None = None,
) -> History:
    """Adam on :meth:`SparseClassifier.loss` over shuffled minibatches (the official settings are the defaults)."""
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"epochs, batch_size and lr must be positive, got {epochs}, {batch_size}, {lr}")
    if y.shape != x.shape[:1]:
        raise ValueError(f"labels must be (N,) for x (N, d), got {tuple(y.shape)} and {tuple(x.shape)}")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = History()
    step = 0
    for _ in progress(range(epochs), desc=desc, disable=desc is None):
        for idx in minibatches(len(x), batch_size, generator=generator, device=x.device):
            loss = model.loss(x[idx], y[idx], len(x), n_samples, generator)
            descend(opt, loss, step, "negative ELBO")
            step += 1
        history.log(loss=loss.detach())
    return history


def inducing_init(x: torch.Tensor, m: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``m`` training inputs drawn without replacement, to initialise the inducing inputs."""
    if not 0 < m <= len(x):
        raise ValueError(f"m must be between 1 and {len(x)}, got {m}")
    return x[randperm(len(x), generator=generator, device=x.device)[:m]].clone()


def shift_benchmark(
    split: Split,
    held_out: tuple[int, ...] = (1, 4, 8),
    n_inducing: int = 100,
    epochs: int = 50,
    n_samples: int = 100,
    batch_size: int = 100,
    lr: float = 1e-2,
    strength: float = 0.5,
    prior_var: float = 10.0,
    eval_samples: int = 100,
    generator: torch.Generator | None = None,
    desc: str | None = None,
    **kernel: Any,
) -> list[dict[str, Any]]:
    r"""Train an SVGP and an SVTP without the classes ``held_out`` and test both under shift.

    Inputs are float64 on the split's device. The readout scale ``last_w_std`` makes the prior
    variance :math:`K(x,x)` equal ``prior_var`` on average over the training inputs (unless
    ``kernel`` gives it);
    both models start from the same inducing inputs. The test sets are the clean test images
    of the kept classes and their three corruptions (:func:`~varbook.data.shifts.shift_tests`
    with ``strength``, drawn once and shared; they are the first draws from ``generator``). Returns one row per model and test set: test NLL of
    the probability-averaged predictive, accuracy and ECE, and for the held-out classes
    (``"held-out classes"``) the mean predictive entropy.
    """
    if prior_var <= 0:
        raise ValueError(f"prior_var must be positive, got {prior_var}")
    kept, ood, tests = shift_tests(split, held_out, strength, generator)
    x, y = kept.x_train.double(), kept.y_train
    kernel = {"last_w_std": (prior_var / float(nngp_relu_diag(x, **kernel).mean())) ** 0.5, **kernel}
    z = inducing_init(x, n_inducing, generator)
    rows: list[dict[str, Any]] = []
    for kind in SPARSE_KINDS:
        model = SparseClassifier(z, kept.n_classes, kind, **kernel)
        label = None if desc is None else f"{desc}: SV{kind.upper()}"
        train_sparse(model, x, y, epochs, batch_size, lr, n_samples, generator, label)
        for name, xt in tests.items():
            probs = model.predict_proba(xt, eval_samples, generator)
            row = {"nll": nll(probs, kept.y_test), "accuracy": accuracy(probs, kept.y_test)}
            rows.append({"model": f"SV{kind.upper()}", "test": name, **row, "ece": ece(probs, kept.y_test)})
        probs = model.predict_proba(ood.double(), eval_samples, generator)
        entropy = float(-(probs * probs.clamp_min(1e-12).log()).sum(1).mean())
        rows.append({"model": f"SV{kind.upper()}", "test": "held-out classes", "entropy": entropy})
    return rows


__all__ = [
    "SPARSE_KINDS",
    "SparseClassifier",
    "inducing_init",
    "inverse_gamma_rsample",
    "shift_benchmark",
    "train_sparse",
]
