import json

import pytest
import torch

from varbook.book import ClaimFailed, Report, load_specs, summarise
from varbook.book.claims import tally


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
    r.check("ok", 1.0, "<", 2.0, tier="robust", paper="2", source="Table 1", control=3.0)
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
    assert html.index("<th>verdict</th>") < html.index("<th>claim</th>")  # the verdict first
    assert "varbook-legend" in html and "negative control" in html
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


def test_control_that_passes_means_the_claim_cannot_discriminate(tmp_path):
    r = make()
    good = r.check("bias", 0.5, "<", 3.0, tier="robust", control=10.0)
    assert good.holds and good.discriminates is True and good.verdict(True) == "holds"
    bad = r.check("weak", 0.5, "<", 3.0, tier="robust", control=[1.0, 2.0])
    assert bad.holds and bad.discriminates is False and bad.verdict(True) == "cannot discriminate"
    assert "cannot discriminate" in r.to_html()
    with pytest.raises(ClaimFailed, match="weak.*control passes"):
        r.finish(tmp_path)
    rec = json.loads((tmp_path / "smoke" / "demo.json").read_text())
    assert rec["claims"][0]["control"] == 10.0 and rec["claims"][0]["control_holds"] is False
    assert rec["claims"][1]["control"] == [1.0, 2.0] and rec["claims"][1]["verdict"] == "cannot discriminate"


def test_exploratory_control_that_passes_is_reported_not_raised(tmp_path):
    r = make()
    c = r.check("loose", 0.5, "<", 3.0, tier="exploratory", control=1.0)
    assert c.verdict(False) == "cannot discriminate"
    r.finish(tmp_path)  # not asserted: reported only


def test_sanity_checks_never_count_as_reproduced(tmp_path):
    r = make()
    r.check("identity", 1e-12, "<", 1e-9, tier="robust", kind="sanity")
    r.check("claim", 1.0, "<", 2.0, tier="robust", control=5.0)
    r.check_true("ordered", True, tier="robust", control_holds=False)
    counts = tally(r.record()["claims"])
    assert counts == {"reproduced": 2, "controlled": 2, "sanity": 1, "not reproduced": 0, "not run": 0}
    assert summarise([r.record()])["sanity"] == {"holds": 1, "total": 1}
    assert summarise([r.record()])["robust"] == {"holds": 2, "total": 2}
    r.check("broken identity", 1.0, "<", 1e-9, tier="exploratory", kind="sanity")
    with pytest.raises(ClaimFailed, match="broken identity"):  # a sanity check is always asserted
        r.finish(tmp_path)


def test_claims_by_key_from_a_specs_file(tmp_path):
    specs = tmp_path / "demo.claims.yml"
    specs.write_text(
        "fast:\n  statement: 'ratio at rate {rate}'\n  tier: robust\n  op: '>='\n  threshold: 2\n"
        "  paper: '3x'\n  source: Table 1\n  threshold_from: 'calibrated: 2.4 on a pilot run'\n"
        "order:\n  statement: ordered\n  tier: exploratory\n  comparison: increasing\n"
    )
    r = Report("demo", "smoke", 0, torch.device("cpu"), specs=load_specs(specs))
    c = r.check("fast", 2.5, fmt={"rate": 0.1})
    assert c.statement == "ratio at rate 0.1" and c.comparison == ">= 2" and c.holds and c.key == "fast"
    assert c.paper == "3x" and c.source == "Table 1" and c.threshold_from.startswith("calibrated")
    assert "calibrated: 2.4 on a pilot run" in r.to_html() and "threshold from" in r.to_html()
    assert not r.check("fast", 2.5, threshold=3.0, fmt={"rate": 0.2}).holds  # a threshold computed at run time
    assert r.check_true("order", False).comparison == "increasing"
    with pytest.raises(ValueError, match="no tier"):
        r.check("unknown key", 1.0, "<", 2.0)
    specs.write_text("bad:\n  statement: s\n  tier: sometimes\n")
    with pytest.raises(ValueError, match="unknown tier"):
        load_specs(specs)
    specs.write_text("bad:\n  statement: s\n  tier: robust\n  treshold: 1\n")
    with pytest.raises(ValueError, match="unknown field"):
        load_specs(specs)
    specs.write_text("bad:\n  statement: s\n  tier: robust\n  threshold_from: 'a small calibration'\n")
    with pytest.raises(ValueError, match="threshold_from must start with"):
        load_specs(specs)


def test_every_book_claim_says_where_its_threshold_comes_from():
    """The claims tables keep the paper's place apart from the threshold's origin (paper, proposed, calibrated)."""
    from varbook.book import chapters, project_root

    root = project_root()
    for chapter in chapters(root):
        path = root / chapter.source.with_suffix(".claims.yml")
        for key, spec in load_specs(path).items():
            assert "threshold_from" in spec, f"{path.name}: claim {key!r} does not say where its threshold comes from"
            assert "calibrat" not in spec.get("source", "").lower(), (
                f"{path.name}: claim {key!r} puts a calibration in its source; it belongs in threshold_from"
            )


def test_dashboard_counts_reproduced_controls_and_sanity():
    from varbook.book import dashboard

    r = make()
    r.check("claim", 1.0, "<", 2.0, tier="robust", control=5.0)
    r.check("identity", 0.0, "<=", 0.0, tier="robust", kind="sanity")
    r.skip("later", "full profile only", tier="full")
    rec = r.record() | {"origin": "this build"}
    page = dashboard([rec])
    assert "1 claims reproduced" in page and "1 of them with a negative control" in page
    assert "1 sanity checks" in page and "1 not run" in page and "sanity check" in page


def test_a_missing_peer_skips_even_an_asserted_claim(tmp_path):
    r = make()
    c = r.skip("peer agrees", "pyro is not installed", tier="robust", missing_peer=True)
    assert c.holds is None and "peer" in c.comparison
    r.finish(tmp_path)  # not a failure: the reader lacks the peer
    with pytest.raises(ValueError, match="cannot be skipped"):
        r.skip("core", "no", tier="robust")


def test_an_asserted_claim_without_a_negative_control_fails(tmp_path):
    r = make()
    r.check("uncontrolled", 1.0, "<", 2.0, tier="robust")
    r.check("exploratory rows need none", 1.0, "<", 2.0, tier="exploratory")
    r.check("sanity rows need none", 1.0, "<", 2.0, tier="robust", kind="sanity")
    with pytest.raises(ClaimFailed, match=r"1 claim\(s\).*uncontrolled \(no negative control\)"):
        r.finish(tmp_path)


def test_sanity_checks_are_shown_apart_after_the_claims():
    r = make()
    r.check("identity", 0.0, "<=", 0.0, tier="robust", kind="sanity")
    r.check("claim", 1.0, "<", 2.0, tier="robust", control=5.0)
    page = r.to_html()
    assert page.index("claim<") < page.index("Sanity checks") < page.index("identity")


def test_an_experiment_not_built_says_so_in_every_profile(tmp_path):
    for profile in ("smoke", "full"):
        r = Report("demo", profile, 0, torch.device("cpu"))
        c = r.skip("AIR on multi-object digits", "not built: needs a recurrent attention model", tier="robust",
                   not_built=True)  # fmt: skip
        assert c.verdict(r.asserted(c)) == "not built" and "not built" in r.to_html()
        assert r.failures() == []  # shown as missing, not failed
        r.finish(tmp_path)
    with pytest.raises(ValueError, match="either not built or missing a peer"):
        r.skip("x", "y", tier="exploratory", not_built=True, missing_peer=True)
    with pytest.raises(ValueError, match="cannot be skipped"):
        r.skip("z", "not run", tier="robust")
