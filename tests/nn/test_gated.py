import pytest
import torch

from varbook.data import Split
from varbook.estimators import PerUnitOptimalBaseline
from varbook.nn import MLP, GatedMLP, evaluate_gated, train_gated
from varbook.runtime import NonFiniteLossError


def tiny_split(n=64, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g)
    y = (x[:, 0] > 0.5).long()
    return Split(x[:48], y[:48], x[48:], y[48:], (2, 4), n_classes=2)


def test_mlp_shapes():
    m = MLP(4, [8, 8], 3)
    assert m(torch.zeros(5, 4)).shape == (5, 3)
    assert len([x for x in m if isinstance(x, torch.nn.Linear)]) == 3


@pytest.mark.parametrize("estimator", [None, "reinforce", "st_id", "st_sigmoid", "sts", "noisy_relu"])
def test_forward_shapes_and_gates(estimator):
    m = GatedMLP(8, 2, n_blocks=4, block_size=3, gater_hidden=5, estimator=estimator)
    logits, a = m(torch.rand(7, 8))
    assert logits.shape == (7, 2)
    assert (a is None) == (estimator is None)
    m.eval()
    gates = m.gates(torch.rand(7, 8))
    assert gates.shape == (7, 4)


def test_multiply_adds_are_counted_per_active_block():
    m = GatedMLP(8, 2, n_blocks=4, block_size=3, gater_hidden=5, estimator="st_sigmoid")
    gates = torch.tensor([[1.0, 0, 0, 0], [1.0, 1, 0, 0]])
    macs = m.multiply_adds(gates)
    block = 8 * 3 + 3 * 2
    assert macs["main_dense"] == 4 * block
    assert macs["main_performed"] == pytest.approx(1.5 * block)
    assert macs["gater"] == 8 * 5 + 5 * 4


@pytest.mark.parametrize("estimator", [None, "reinforce", "st_sigmoid", "sts", "noisy_relu"])
def test_training_runs_and_skipped_fraction_matches_gate_rate(estimator):
    split = tiny_split()
    torch.manual_seed(0)
    m = GatedMLP(8, 2, n_blocks=4, block_size=3, gater_hidden=5, estimator=estimator)
    hist = train_gated(
        m, split, epochs=2, batch_size=16, baseline=PerUnitOptimalBaseline() if estimator == "reinforce" else None
    )
    assert len(hist["train_ce"]) == 2
    stats = evaluate_gated(m, split.x_test, split.y_test)
    assert 0 <= stats.accuracy <= 1
    assert stats.skipped_main == pytest.approx(1 - stats.gate_rate, abs=1e-12)


def test_nan_loss_stops_training():
    split = tiny_split()
    split.x_train[0, 0] = float("nan")
    m = GatedMLP(8, 2, n_blocks=4, block_size=3, gater_hidden=5, estimator="st_sigmoid")
    with pytest.raises(NonFiniteLossError, match="training loss became nan"):
        train_gated(m, split, epochs=1, batch_size=48)
