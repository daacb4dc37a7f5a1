import math

import pytest
import torch

from varbook.recsys import ndcg_at_k, recall_at_k


def test_ndcg_hand_computed():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.1], [0.1, 0.2, 0.3, 0.4]])
    held = torch.tensor([[0, 1, 0, 1], [1, 0, 0, 0]])
    # user 0: top-3 = items 0,1,2 -> hit at rank 2 -> DCG = 1/log2(3); ideal (2 held, k=3) = 1 + 1/log2(3)
    # user 1: top-3 = items 3,2,1 -> no hit
    out = ndcg_at_k(scores, held, 3)
    assert out[0].item() == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert out[1].item() == 0.0
    assert ndcg_at_k(scores, torch.tensor([[1, 1, 0, 0], [0, 0, 0, 1]]), 2).tolist() == [1.0, 1.0]


def test_recall_is_normalised_by_min_k_and_held_out():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.1, 0.0]])
    held = torch.tensor([[1, 0, 1, 1, 1]])
    assert recall_at_k(scores, held, 2).item() == pytest.approx(1 / 2)  # one hit of min(2, 4)
    assert recall_at_k(scores, held, 5).item() == pytest.approx(4 / 4)
    assert recall_at_k(scores, held, 3).item() == pytest.approx(2 / 3)


def test_excluded_items_are_never_ranked():
    scores = torch.tensor([[float("-inf"), 0.5, 0.1]])
    held = torch.tensor([[1, 0, 1]])
    assert recall_at_k(scores, held, 1).item() == 0.0


def test_metric_errors():
    with pytest.raises(ValueError, match="same shape"):
        ndcg_at_k(torch.zeros(2, 3), torch.zeros(2, 4), 1)
    with pytest.raises(ValueError, match="k must be"):
        recall_at_k(torch.zeros(2, 3), torch.ones(2, 3), 4)
    with pytest.raises(ValueError, match="at least one held-out item"):
        ndcg_at_k(torch.zeros(2, 3), torch.tensor([[1, 0, 0], [0, 0, 0]]), 2)
