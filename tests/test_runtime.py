import math

import pytest
import torch

from varbook import runtime


def test_profile_from_argument_and_environment(monkeypatch):
    monkeypatch.delenv("VARBOOK_PROFILE", raising=False)
    assert runtime.resolve_profile(None) == "smoke"
    assert runtime.resolve_profile("FULL") == "full"
    monkeypatch.setenv("VARBOOK_PROFILE", "full")
    assert runtime.resolve_profile(None) == "full"
    assert runtime.resolve_profile("smoke") == "smoke"


@pytest.mark.parametrize("bad", ["fast", "gpu", "smok"])
def test_unknown_profile_is_a_clear_error(bad, monkeypatch):
    with pytest.raises(ValueError, match="unknown profile.*smoke, full"):
        runtime.resolve_profile(bad)
    monkeypatch.setenv("VARBOOK_PROFILE", bad)
    with pytest.raises(ValueError, match="smoke, full"):
        runtime.resolve_profile(None)


def test_device_default_and_override(monkeypatch):
    monkeypatch.delenv("VARBOOK_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert runtime.device().type == expected
    monkeypatch.setenv("VARBOOK_DEVICE", "cpu")
    assert runtime.device().type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            runtime.device("cuda")


def test_seed_all_is_deterministic():
    g1 = runtime.seed_all(3)
    a = torch.rand(4), torch.rand(2, generator=g1)
    g2 = runtime.seed_all(3)
    b = torch.rand(4), torch.rand(2, generator=g2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError):
        runtime.seed_all(-1)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), torch.tensor(float("nan"))])
def test_nonfinite_loss_stops_with_message(value):
    with pytest.raises(runtime.NonFiniteLossError, match="at step 7"):
        runtime.check_finite(value, step=7)
    runtime.check_finite(torch.tensor(1.5), step=0)


def test_meter_measures_time_and_memory():
    with runtime.Meter(torch.device("cpu")) as m:
        torch.ones(1000).sum()
    assert m.seconds >= 0 and m.peak_bytes > 0
    assert math.isfinite(m.seconds)


def test_setup_prints_device(capsys):
    profile, seed, dev = runtime.setup("smoke", 1)
    assert (profile, seed) == ("smoke", 1)
    assert "profile: smoke" in capsys.readouterr().out


def test_progress_in_batch_mode_prints_only_start_and_end(monkeypatch, capsys):
    monkeypatch.setenv("VARBOOK_BATCH", "1")
    assert list(runtime.progress(range(50), desc="work")) == list(range(50))
    out = capsys.readouterr().out
    assert "work" in out and "50/50" in out and out.count("\r") <= 3


def test_device_name_and_peak_memory():
    assert runtime.device_name("cpu").startswith("CPU")
    assert runtime.peak_memory_bytes(torch.device("cpu")) > 0
