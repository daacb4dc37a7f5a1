"""Tests of varbook.data.heavy_tailed: the synthetic heavy-tailed regression and the diabetes splits."""

from __future__ import annotations

import pytest
import torch

from varbook.data.heavy_tailed import diabetes_regression, synthetic_regression


def test_synthetic_shapes_standardisation_and_determinism():
    a = synthetic_regression("t", n_train=60, seed=3)
    b = synthetic_regression("t", n_train=60, seed=3)
    assert a.x_train.shape == (60, 1) and a.y_test.shape == (60,)
    assert torch.equal(a.y_train, b.y_train)
    assert abs(float(a.y_train.mean())) < 1e-12 and abs(float(a.y_train.std()) - 1) < 1e-12
    assert not torch.equal(a.y_train, synthetic_regression("t", n_train=60, seed=4).y_train)


def test_cauchy_noise_is_heavier_tailed_than_gaussian_noise():
    def largest(noise):  # largest standardised residual over many data sets
        return max(float(synthetic_regression(noise, 240, s).y_train.abs().max()) for s in range(10))

    assert largest("t") > 2 * largest("normal")


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
    with pytest.raises(ValueError, match="split"):
        diabetes_regression("random")
    with pytest.raises(ValueError, match="test_fraction"):
        diabetes_regression("iid", test_fraction=1.5)
