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


def _pair(seed=0):
    return torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_draws_on_cpu_are_the_plain_torch_stream(dtype):
    g1, g2 = _pair()
    assert torch.equal(runtime.randn(3, 4, generator=g1, dtype=dtype), torch.randn(3, 4, generator=g2, dtype=dtype))
    assert torch.equal(runtime.randn((5,), generator=g1, dtype=dtype), torch.randn(5, generator=g2, dtype=dtype))
    assert torch.equal(runtime.rand(7, generator=g1, dtype=dtype), torch.rand(7, generator=g2, dtype=dtype))
    assert torch.equal(runtime.randint(0, 5, (6,), generator=g1), torch.randint(0, 5, (6,), generator=g2))
    assert torch.equal(runtime.randperm(9, generator=g1), torch.randperm(9, generator=g2))
    p = torch.linspace(0.05, 0.95, 11, dtype=dtype)
    assert torch.equal(runtime.bernoulli(p, g1), torch.bernoulli(p, generator=g2))
    w = torch.tensor([0.2, 0.5, 0.3], dtype=dtype)
    assert torch.equal(runtime.multinomial(w, 8, True, g1), torch.multinomial(w, 8, True, generator=g2))
    x = torch.zeros(4, 3, dtype=dtype)
    assert torch.equal(runtime.randn_like(x, g1), torch.randn(x.shape, generator=g2, dtype=dtype))
    assert torch.equal(runtime.rand_like(x, g1), torch.rand(x.shape, generator=g2, dtype=dtype))
    # the state of both generators advanced identically
    assert torch.equal(g1.get_state(), g2.get_state())


def test_draws_without_generator_follow_the_global_stream():
    x = torch.zeros(5, 2, dtype=torch.float64)
    torch.manual_seed(1)
    a = runtime.randn_like(x), runtime.rand_like(x), runtime.randint(0, 3, (4,)), runtime.randperm(6)
    torch.manual_seed(1)
    b = torch.randn_like(x), torch.rand_like(x), torch.randint(0, 3, (4,)), torch.randperm(6)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


def test_cpu_generator_draws_on_its_device_then_moves():
    """A CPU generator with tensors elsewhere: the draw happens on the CPU, the result lands on ``device``.

    Without a GPU, the ``meta`` device stands in for it: the CPU generator must advance exactly as a
    CPU draw would, and the result must land on ``meta``.
    """
    g1, g2 = _pair()
    out = runtime.randn(3, generator=g1, device="meta")
    assert out.device.type == "meta" and out.shape == (3,)
    torch.randn(3, generator=g2)
    assert torch.equal(g1.get_state(), g2.get_state())  # the CPU generator did the drawing
    meta = torch.empty(2, 2, device="meta")
    assert runtime.randn_like(meta, g1).device.type == "meta"
    assert runtime.rand_like(meta, g1).device.type == "meta"
    assert runtime.randint(0, 4, (3,), g1, device="meta").device.type == "meta"
    assert runtime.randperm(5, g1, device="meta").device.type == "meta"
    assert runtime.draw_device(g1, "meta") == torch.device("cpu")
    assert runtime.draw_device(None, "meta") == torch.device("meta")
    cpu = runtime.randn(2, generator=g1, device="cpu")
    assert cpu.device.type == "cpu"
