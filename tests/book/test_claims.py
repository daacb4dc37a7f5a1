import json

import pytest
import torch

from varbook.book import ClaimFailed, Report, summarise


def make(profile="smoke"):
    return Report("demo", profile, 0, torch.device("cpu"))


def test_check_compares_every_value():
    r = make()
    assert r.check("a", [1.0, 2.0], "<", 3.0, tier="robust").holds
    assert not r.check("b", [1.0, 4.0], "<", 3.0, tier="robust").holds
    assert not r.check("c", float("nan"), "<", 3.0, tier="robust").holds
    assert r.check("d", torch.tensor([5.0]), ">=", 5.0, tier="exploratory").holds


def test_bad_tier_and_comparison():
    r = make()
    with pytest.raises(ValueError, match="unknown tier"):
        r.check("a", 1.0, "<", 2.0, tier="sometimes")
    with pytest.raises(ValueError, match="unknown comparison"):
        r.check("a", 1.0, "~", 2.0, tier="robust")
    with pytest.raises(ValueError, match="unknown profile"):
        Report("x", "fast", 0)


def test_finish_writes_record_and_raises_on_robust_failure(tmp_path):
    r = make()
    r.check("ok", 1.0, "<", 2.0, tier="robust", paper="2", source="Table 1")
    r.check("full only", 3.0, "<", 2.0, tier="full")
    r.check("explore", 3.0, "<", 2.0, tier="exploratory")
    r.finish(tmp_path)  # the failing full claim is not asserted in smoke
    rec = json.loads((tmp_path / "smoke" / "demo.json").read_text())
    assert rec["slug"] == "demo" and rec["profile"] == "smoke" and rec["seed"] == 0
    assert [c["holds"] for c in rec["claims"]] == [True, False, False]
    assert [c["asserted"] for c in rec["claims"]] == [True, False, False]
    assert rec["torch"] == torch.__version__ and rec["peak_memory_bytes"] > 0 and "date" in rec
    r.check("broken", 3.0, "<", 2.0, tier="robust")
    with pytest.raises(ClaimFailed, match="broken"):
        r.finish(tmp_path)


def test_full_claims_are_asserted_in_full_profile(tmp_path):
    r = make("full")
    r.check("full only", 3.0, "<", 2.0, tier="full")
    with pytest.raises(ClaimFailed):
        r.finish(tmp_path)


def test_html_table_and_summary():
    r = make()
    r.check_true("ordered <b>", True, tier="robust", ours=[1, 2], comparison="ordered")
    html = r.to_html()
    assert 'class="varbook-claims"' in html and "&lt;b&gt;" in html and "holds" in html
    counts = summarise([r.record()])
    assert counts["robust"] == {"holds": 1, "total": 1}


def test_skip_marks_claims_not_run_and_refuses_asserted_ones(tmp_path):
    r = make("smoke")
    c = r.skip("sweep", "full profile only", tier="full")
    assert c.holds is None and "not run here" in r.to_html()
    with pytest.raises(ValueError, match="cannot be skipped"):
        r.skip("core", "no", tier="robust")
    r.finish(tmp_path)
    assert summarise([r.record()])["full"] == {"holds": 0, "total": 0}
