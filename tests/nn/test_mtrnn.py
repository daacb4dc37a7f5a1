import pytest
import torch

from varbook.nn.mtrnn import MTRNNCell, batched_linear


def test_leak_matches_hand_computation():
    torch.manual_seed(0)
    cell = MTRNNCell(hidden=3, extra=(2,), tau=4.0, n_models=2).double()
    h, d, z = torch.randn(2, 5, 3).double(), torch.randn(2, 5, 3).double(), torch.randn(2, 5, 2).double()
    h_new, d_new = cell(h, d, z)
    for m in range(2):
        drive = torch.cat((d[m], z[m]), -1) @ cell.weight[m].T + cell.bias[m]
        expected = 0.75 * h[m] + 0.25 * drive
        torch.testing.assert_close(h_new[m], expected)
        torch.testing.assert_close(d_new[m], torch.tanh(expected))


def test_tau_one_is_plain_rnn():
    cell = MTRNNCell(hidden=2, extra=(), tau=1.0).double()
    h, d = torch.randn(1, 3, 2).double(), torch.randn(1, 3, 2).double()
    h_new, _ = cell(h, d)
    torch.testing.assert_close(h_new, batched_linear(d, cell.weight, cell.bias))


def test_bad_input():
    with pytest.raises(ValueError, match="tau"):
        MTRNNCell(3, (1,), tau=0.5)
    with pytest.raises(ValueError, match="hidden"):
        MTRNNCell(0, (1,), tau=2.0)
    with pytest.raises(ValueError, match="batched_linear"):
        batched_linear(torch.ones(2, 3), torch.ones(2, 4, 3))
