"""Tests of varbook.data.heavy_tailed: the synthetic heavy-tailed regression and the diabetes splits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from varbook.data.heavy_tailed import _draw, diabetes_regression, synthetic_regression


@pytest.mark.parametrize("protocol", ["official", "fresh"])
def test_synthetic_shapes_standardisation_and_determinism(protocol):
    a = synthetic_regression("t", n_train=60, seed=3, protocol=protocol)
    b = synthetic_regression("t", n_train=60, seed=3, protocol=protocol)
    assert a.x_train.shape == (60, 1) and a.y_test.shape == (60,)
    assert torch.equal(a.y_train, b.y_train)
    assert abs(float(a.y_train.mean())) < 1e-12 and abs(float(a.y_train.std()) - 1) < 1e-12
    assert not torch.equal(a.y_train, synthetic_regression("t", n_train=60, seed=4, protocol=protocol).y_train)


def _official_code(name, seed):
    """experiments/regression/data.py of the official code (get_dataset, permute_dataset), transcribed."""
    num, rs = (100, np.random.RandomState(829)) if name == "syn-normal" else (300, np.random.RandomState(761))
    x = np.linspace(-num / 2, num / 2, num)[:, None]
    cov = np.exp(-0.5 * (x - x.T) ** 2)
    y = rs.multivariate_normal(mean=np.zeros(num), cov=cov, size=1).flatten()
    y = y + (rs.standard_normal(size=num) * 0.2 if name == "syn-normal" else rs.standard_t(df=1, size=num) * 0.8)
    return x, y, np.random.RandomState(seed).permutation(num)


@pytest.mark.parametrize(("noise", "n_train", "n_test"), [("t", 30, 60), ("normal", 60, 20)])
def test_official_protocol_is_the_official_fixed_draw_and_the_seed_draws_the_split(noise, n_train, n_test):
    for seed in (0, 7):
        x, y, perm = _official_code(f"syn-{noise}", seed)
        train, test = perm[n_test : n_test + n_train], perm[:n_test]
        ym, ys = y[train].mean(), y[train].std(ddof=1)
        s = synthetic_regression(noise, n_train=n_train, seed=seed)
        assert s.y_test.shape == (n_test,)
        np.testing.assert_allclose(s.y_train.numpy(), (y[train] - ym) / ys, rtol=0, atol=1e-12)
        np.testing.assert_allclose(s.y_test.numpy(), (y[test] - ym) / ys, rtol=0, atol=1e-12)
        xm, xs = x[train, 0].mean(), x[train, 0].std(ddof=1)
        np.testing.assert_allclose(s.x_test[:, 0].numpy(), (x[test, 0] - xm) / xs, rtol=0, atol=1e-12)


def test_noise_scales_and_latent_correlation():
    # official: one fixed draw (100 Gaussian residuals, 300 Cauchy ones); fresh: 10 draws of 300.
    # Tolerances are 4 standard errors: std of 0.2 N(0,1) noise, 0.2/sqrt(2n); median |0.8 Cauchy| = 0.8,
    # whose sample median has standard error 0.8 * pi / (4 sqrt(n)) (the half-Cauchy density at 1 is 1/pi)
    g = torch.Generator().manual_seed(0)
    x, latent, y = _draw("normal", "official", 100, g)
    assert x.shape == (100, 1) and float(x[-1, 0]) == 50.0
    assert abs(float((y - latent).std()) - 0.2) < 4 * 0.2 / math.sqrt(200)
    x, latent, y = _draw("t", "official", 300, g)
    assert abs(float((y - latent).abs().median()) - 0.8) < 4 * 0.8 * math.pi / (4 * math.sqrt(300))
    # adjacent latent values 300/299 apart have RBF correlation exp(-0.5 * 1.0033^2) = 0.6045
    rho = math.exp(-0.5 * float(x[1, 0] - x[0, 0]) ** 2)
    assert abs(float(torch.corrcoef(torch.stack([latent[:-1], latent[1:]]))[0, 1]) - rho) < 0.1
    draws = {
        noise: [_draw(noise, "fresh", 300, torch.Generator().manual_seed(s)) for s in range(10)]
        for noise in ("normal", "t")
    }
    gauss = torch.cat([y - lat for _, lat, y in draws["normal"]])
    cauchy = torch.cat([y - lat for _, lat, y in draws["t"]])
    assert abs(float(gauss.std()) - 0.2) < 4 * 0.2 / math.sqrt(2 * 3000)
    assert abs(float(cauchy.abs().median()) - 0.8) < 4 * 0.8 * math.pi / (4 * math.sqrt(3000))
    corr = [float(torch.corrcoef(torch.stack([lat[:-1], lat[1:]]))[0, 1]) for _, lat, _ in draws["t"]]
    assert abs(float(np.mean(corr)) - rho) < 0.04


def test_diabetes_splits():
    iid = diabetes_regression("iid", n_train=100, seed=0)
    shift = diabetes_regression("shift", n_train=100, seed=0)
    assert iid.x_train.shape == (100, 10) and iid.x_test.shape == (88, 10)
    # the shift split tests on the highest BMI (column 2), in training units
    assert float(shift.x_test[:, 2].min()) >= float(shift.x_train[:, 2].max())
    assert float(iid.x_test[:, 2].min()) < float(iid.x_train[:, 2].max())


def test_bad_input():
    with pytest.raises(ValueError, match="noise"):
        synthetic_regression("cauchy")
    with pytest.raises(ValueError, match="n_train"):
        synthetic_regression("t", n_train=241)
    with pytest.raises(ValueError, match="n_train"):
        synthetic_regression("normal", n_train=81)  # the official syn-normal has 100 points, 20 for testing
    with pytest.raises(ValueError, match="protocol"):
        synthetic_regression("t", protocol="random")
    with pytest.raises(ValueError, match="official syn-t has 300 points"):
        synthetic_regression("t", n_points=200)
    with pytest.raises(ValueError, match="n_test"):
        synthetic_regression("t", n_test=0)
    with pytest.raises(ValueError, match="split"):
        diabetes_regression("random")
    with pytest.raises(ValueError, match="test_fraction"):
        diabetes_regression("iid", test_fraction=1.5)
