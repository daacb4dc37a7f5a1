import pytest
import torch

from varbook.data.pfsm import (
    LENGTHS,
    TRANSITIONS,
    classify_points,
    pfsm_sequences,
    primitive,
    primitive_runs,
    transition_counts,
    transition_tv,
)


def test_empirical_transitions_match_probabilities():
    d = pfsm_sequences(400, 200, jitter=0.0, generator=torch.Generator().manual_seed(0))
    counts = transition_counts([primitive_runs(lab, min_len=1) for lab in d.labels])
    for i in range(3):
        n = counts[i].sum()
        p_hat = counts[i] / n
        se = (TRANSITIONS[i] * (1 - TRANSITIONS[i]) / n).sqrt()
        assert ((p_hat - TRANSITIONS[i]).abs() <= 4 * se + 1e-12).all(), (i, p_hat)


def test_paths_are_continuous_and_classified():
    for k in range(3):
        p = primitive(k)
        assert p.shape == (LENGTHS[k], 2) and p[-1].abs().max() < 1e-12
        assert (classify_points(p[2:-2]) == k).all()
    d = pfsm_sequences(3, 50, jitter=0.0, generator=torch.Generator().manual_seed(1))
    assert (d.x[:, 1:] - d.x[:, :-1]).norm(dim=-1).max() < 0.45


def test_true_machine_has_small_tv_and_wrong_machine_large():
    d = pfsm_sequences(200, 200, generator=torch.Generator().manual_seed(2))
    runs = [primitive_runs(classify_points(x)) for x in d.x]
    assert transition_tv(transition_counts(runs)) < 0.05
    assert transition_tv(transition_counts(runs), TRANSITIONS[[1, 2, 0]]) > 0.5


def test_bad_input():
    with pytest.raises(ValueError, match="n_seq"):
        pfsm_sequences(0, 10)
    with pytest.raises(ValueError, match="jitter"):
        pfsm_sequences(1, 10, jitter=-1.0)
    with pytest.raises(ValueError, match="row-stochastic"):
        pfsm_sequences(1, 10, transitions=torch.ones(3, 3))
    with pytest.raises(ValueError, match="primitive"):
        primitive(3)
