"""Bad input to the sklearn tables of varbook.data.tables gets a clear error."""

import math

import pytest
import torch

from varbook.data import tables


def test_table_needs_integer_labels_and_float_features():
    with pytest.raises(TypeError, match="integer class labels"):
        tables.Table(torch.zeros(3, 2), torch.zeros(3), 2, "float labels")
    with pytest.raises(TypeError, match="floating-point x"):
        tables.Table(torch.zeros(3, 2, dtype=torch.long), torch.zeros(3, dtype=torch.long), 2, "integer x")
    tables.Table(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), 2, "fine")


@pytest.mark.parametrize("scale", [0.0, -1.0, math.inf, math.nan])
def test_digits_table_scale_must_be_positive_and_finite(scale):
    with pytest.raises(ValueError, match="scale"):
        tables.digits_table(scale=scale)


@pytest.mark.parametrize("decades", [-1.0, math.inf, math.nan])
def test_ill_conditioned_decades_must_be_finite(decades):
    with pytest.raises(ValueError, match="decades"):
        tables.ill_conditioned_classification(100, 4, decades=decades)
