import pytest
import torch

from varbook import data
from varbook.data import tables


def test_breast_cancer_and_digits_tables():
    bc = data.tables.breast_cancer()
    assert bc.x.shape == (569, 30) and bc.x.dtype == torch.float64 and bc.n_classes == 2
    assert set(bc.y.unique().tolist()) == {0, 1}
    dig = tables.digits_table()
    assert dig.x.shape == (1797, 64) and dig.n_classes == 10 and float(dig.x.max()) == 1.0
    split = data.digits(n_test=1, seed=0)  # the same pixels as the image loader, as one table
    assert torch.allclose(
        torch.sort(dig.x.sum(1)).values[-3:].float(),
        torch.sort(torch.cat([split.x_train, split.x_test]).sum(1)).values[-3:],
        atol=1e-4,
    )
    raw = tables.digits_table(scale=1.0, dtype=torch.float32)
    assert float(raw.x.max()) == 16.0 and raw.x.dtype == torch.float32


def test_standardising_and_conditioning():
    dig = tables.digits_table()
    std = dig.standardised()
    assert torch.allclose(std.x.mean(0), torch.zeros(64, dtype=torch.float64), atol=1e-12)
    live = dig.x.std(0) > 0
    assert torch.allclose(std.x.std(0)[live], torch.ones(int(live.sum()), dtype=torch.float64))
    assert (std.x[:, ~live] == 0).all()  # the always-blank pixels stay 0
    # a common factor hardly changes the conditioning (only against the intercept); standardising improves it a lot
    assert tables.digits_table(scale=1.0).condition_number() == pytest.approx(dig.condition_number(), rel=0.1)
    assert std.condition_number() < dig.condition_number() / 10


def test_ill_conditioned_classification():
    t = tables.ill_conditioned_classification(n=400, d=10, decades=3.0, seed=1)
    assert t.x.shape == (400, 10) and t.n_classes == 2
    spread = t.x.std(0)
    assert 300 < float(spread[0] / spread[-1]) < 3000  # three decades, up to make_classification's own spread
    flat = tables.ill_conditioned_classification(n=400, d=10, decades=0.0, seed=1)
    assert t.condition_number() > 20 * flat.condition_number()
    assert torch.equal(t.y, flat.y) and torch.equal(t.x, tables.ill_conditioned_classification(n=400, d=10, seed=1).x)
    three = tables.ill_conditioned_classification(n=300, d=6, n_classes=3, seed=0)
    assert three.n_classes == 3


def test_split_and_to():
    t = tables.breast_cancer()
    train, test = t.split(100, seed=0)
    assert len(train) == 469 and len(test) == 100
    assert torch.equal(test.y, t.split(100, seed=0)[1].y)
    assert t.to(dtype=torch.float32).x.dtype == torch.float32


def test_bad_input():
    with pytest.raises(ValueError, match="n_test"):
        tables.breast_cancer().split(0)
    with pytest.raises(ValueError, match="scale"):
        tables.digits_table(scale=0)
    with pytest.raises(ValueError, match="decades"):
        tables.ill_conditioned_classification(decades=-1)
    with pytest.raises(ValueError, match="n_classes"):
        tables.ill_conditioned_classification(n=3)
    with pytest.raises(ValueError, match="shape"):
        tables.Table(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long), 2, "bad")
