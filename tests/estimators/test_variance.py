import pytest
import torch

from varbook.estimators import bonferroni_z, gradient_stats


def test_gradient_stats_on_known_samples():
    samples = torch.tensor([[1.0, 0.0], [3.0, 0.0], [1.0, 2.0], [3.0, 2.0]], dtype=torch.float64)
    st = gradient_stats(samples, torch.tensor([2.0, 0.0], dtype=torch.float64))
    assert torch.allclose(st.mean, torch.tensor([2.0, 1.0], dtype=torch.float64))
    assert torch.allclose(st.bias, torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert st.trace_var == pytest.approx(4 / 3 + 4 / 3)
    assert st.mse == pytest.approx((1 + 1 + 5 + 5) / 4)
    assert st.cosine == pytest.approx(2 / 5**0.5)
    assert torch.allclose(st.bias_se, torch.full((2,), (4 / 3 / 4) ** 0.5, dtype=torch.float64))
    assert st.max_abs_z == pytest.approx(1 / (1 / 3) ** 0.5)
    assert set(st.as_row()) >= {"tr Var", "MSE", "SNR"}


def test_bad_shapes():
    with pytest.raises(ValueError):
        gradient_stats(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError):
        gradient_stats(torch.zeros(1, 3), torch.zeros(3))


def test_bonferroni_bound():
    assert bonferroni_z(1, 0.05) == pytest.approx(1.959964, abs=1e-5)
    assert bonferroni_z(10, 0.01) == pytest.approx(3.290527, abs=1e-5)
    with pytest.raises(ValueError):
        bonferroni_z(0)
