r"""The four prediction targets of a Gaussian path and the exact conversions between them :cite:`lai2025principles`.

With :math:`x_t = \alpha_t x_0 + \sigma_t\epsilon`, a model may predict the noise :math:`\hat\epsilon`,
the clean data :math:`\hat x_0 = \mathbb E[x_0 \mid x_t]`, the score :math:`s = \nabla\log p_t(x_t)` or the
velocity :math:`v = \dot\alpha_t\hat x_0 + \dot\sigma_t\hat\epsilon` of the probability-flow ODE:

.. math::
    \hat x_0 = \frac{x_t - \sigma_t\hat\epsilon}{\alpha_t}, \qquad
    s = -\frac{\hat\epsilon}{\sigma_t}, \qquad
    \hat x_0 = \frac{x_t + \sigma_t^2 s}{\alpha_t}\ \text{(Tweedie)}, \qquad
    \hat\epsilon = \frac{\alpha_t v - \dot\alpha_t x_t}{\alpha_t\dot\sigma_t - \dot\alpha_t\sigma_t}.

Every conversion goes through :math:`\hat\epsilon` except the velocity ones, which use the
formulas that stay finite at :math:`\alpha_t = 0` (the noise end of the flow-matching path).
"""

from __future__ import annotations

import torch

from ..runtime import check_choice
from .schedules import Schedule, as_time, expand

KINDS = ("eps", "x0", "score", "v")
r"""The prediction kinds: noise, clean data, score and probability-flow velocity."""

Coefficients = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
r""":math:`(\alpha_t, \sigma_t, \dot\alpha_t, \dot\sigma_t)`, each broadcast against a batch (:func:`coefficients`)."""


def check_kind(kind: str) -> str:
    """Return ``kind`` if it is one of :data:`KINDS`, else raise a :class:`ValueError` naming them.

    >>> check_kind("v")
    'v'
    """
    return check_choice("prediction kind", kind, KINDS)


def coefficients(schedule: Schedule, t, x: torch.Tensor) -> Coefficients:
    r""":math:`(\alpha, \sigma, \dot\alpha, \dot\sigma)` at ``t``, broadcast against ``x``."""
    t = as_time(t, x)
    a, s, da, ds = (expand(fn(t), x) for fn in (schedule.alpha, schedule.sigma, schedule.d_alpha, schedule.d_sigma))
    return a, s, da, ds


def to_eps_with(pred: torch.Tensor, kind: str, x: torch.Tensor, coef: Coefficients) -> torch.Tensor:
    r""":func:`to_eps` with the schedule's :func:`coefficients` already evaluated (no checks): for callers that
    convert several predictions at the same :math:`(x_t, t)`."""
    if kind == "eps":
        return pred
    a, s, da, ds = coef
    if kind == "x0":
        return (x - a * pred) / s
    if kind == "score":
        return -s * pred
    return (a * pred - da * x) / (a * ds - da * s)


def from_eps_with(eps: torch.Tensor, kind: str, x: torch.Tensor, coef: Coefficients) -> torch.Tensor:
    r""":func:`from_eps` with the schedule's :func:`coefficients` already evaluated (no checks)."""
    if kind == "eps":
        return eps
    a, s, da, ds = coef
    if kind == "x0":
        return (x - s * eps) / a
    if kind == "score":
        return -eps / s
    return (da * x + (a * ds - da * s) * eps) / a


def _check_shape(pred: torch.Tensor, x: torch.Tensor, what: str) -> None:
    if pred.shape != x.shape:
        raise ValueError(f"{what} of shape {tuple(pred.shape)} for x of shape {tuple(x.shape)}")


def to_eps(pred: torch.Tensor, kind: str, x: torch.Tensor, t, schedule: Schedule) -> torch.Tensor:
    r"""Convert a prediction of kind ``kind`` at :math:`(x_t, t)` to :math:`\hat\epsilon`."""
    check_kind(kind)
    _check_shape(pred, x, "prediction")
    return pred if kind == "eps" else to_eps_with(pred, kind, x, coefficients(schedule, t, x))


def from_eps(eps: torch.Tensor, kind: str, x: torch.Tensor, t, schedule: Schedule) -> torch.Tensor:
    r"""Convert :math:`\hat\epsilon` at :math:`(x_t, t)` to a prediction of kind ``kind``."""
    check_kind(kind)
    _check_shape(eps, x, "eps")
    return eps if kind == "eps" else from_eps_with(eps, kind, x, coefficients(schedule, t, x))


def convert(pred: torch.Tensor, src: str, dst: str, x: torch.Tensor, t, schedule: Schedule) -> torch.Tensor:
    r"""Convert a prediction between any two of ``eps``, ``x0``, ``score`` and ``v`` (finite at alpha = 0 for v <-> x0).

    The schedule's coefficients are evaluated once per call. On the flow-matching path at
    :math:`t = 1/2` the noise and the data are :math:`\hat\epsilon = x + v/2` and :math:`\hat x_0 = x - v/2`:

    >>> from .schedules import Linear
    >>> x, v = torch.tensor([[1.0, 2.0]]), torch.tensor([[2.0, -2.0]])
    >>> convert(v, "v", "eps", x, 0.5, Linear())
    tensor([[2., 1.]])
    >>> convert(v, "v", "x0", x, 0.5, Linear())
    tensor([[0., 3.]])
    >>> torch.allclose(convert(convert(v, "v", "score", x, 0.5, Linear()), "score", "v", x, 0.5, Linear()), v)
    True
    """
    check_kind(src)
    check_kind(dst)
    _check_shape(pred, x, "prediction")
    if src == dst:
        return pred
    coef = coefficients(schedule, t, x)
    if {src, dst} == {"v", "x0"}:
        a, s, da, ds = coef
        if src == "v":
            return (ds * x - s * pred) / (a * ds - s * da)
        return da * pred + ds * (x - a * pred) / s
    return from_eps_with(to_eps_with(pred, src, x, coef), dst, x, coef)


def tweedie(x: torch.Tensor, score: torch.Tensor, t, schedule: Schedule) -> torch.Tensor:
    r"""Tweedie's formula :math:`\mathbb E[x_0 \mid x_t] = (x_t + \sigma_t^2\nabla\log p_t(x_t)) / \alpha_t` :cite:`efron2011tweedie`."""
    a, s, _, _ = coefficients(schedule, t, x)
    return (x + s**2 * score) / a
