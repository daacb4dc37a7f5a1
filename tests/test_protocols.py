import pytest
import torch

from varbook.diffusion import GaussianMixture, VPLinear
from varbook.estimators import ConstantBaseline, EMABaseline, PerUnitOptimalBaseline
from varbook.protocols import Baseline, Control, Diffusion, Drift, Score
from varbook.sde.fbm import BridgeControl


def test_the_library_callables_fit_their_protocols():
    field = GaussianMixture.ring(4).field(VPLinear())
    assert isinstance(field.velocity, Drift) and isinstance(field.score, Score)
    assert isinstance(lambda x, t: 1.0, Diffusion)
    assert isinstance(BridgeControl(3, 4), Control)
    for baseline in (ConstantBaseline(0.5), EMABaseline(), PerUnitOptimalBaseline()):
        assert isinstance(baseline, Baseline)
    assert not isinstance(0.5, Baseline) and not isinstance(torch.zeros(2), Baseline)


def test_a_baseline_without_scores_says_so():
    EMABaseline().update(None, torch.ones(3))
    with pytest.raises(ValueError, match="needs the score"):
        PerUnitOptimalBaseline().update(None, torch.ones(3))
