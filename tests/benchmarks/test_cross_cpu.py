"""benchmarks/cross_cpu.py: runs retrained on another CPU against the committed ones, on fabricated trees."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "benchmarks") not in sys.path:
    sys.path.insert(0, str(REPO / "benchmarks"))

import cross_cpu  # noqa: E402


def _run(tree: Path, rel: str, val: float, test: float, cpu: str, records: bytes | None = None) -> None:
    d = tree / rel
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(json.dumps({"metrics": {"val": {"mAP50": val}, "test": {"mAP50": test}}}))
    (d / "env.json").write_text(json.dumps({"cpu_model": cpu, "cpu_capability": "X"}))
    (d / "dvclive").mkdir()
    (d / "dvclive" / "metrics.json").write_text("{}")  # DVCLive's own file: not a run
    if records is not None:
        (d / "test_records.npz").write_bytes(records)


@pytest.fixture
def trees(tmp_path):
    ref, rerun = tmp_path / "ref", tmp_path / "rerun"
    # setting a: 0.90, 0.92 -> 0.91, 0.90 ; setting b: 0.86, 0.88 -> 0.88, 0.89 (fractions, as metrics.json)
    for tree, cpu, values in ((ref, "Intel", {("a", 0): .90, ("a", 1): .92, ("b", 0): .86, ("b", 1): .88}),
                              (rerun, "AMD", {("a", 0): .91, ("a", 1): .90, ("b", 0): .88, ("b", 1): .89})):
        for (setting, seed), test in values.items():
            # a/seed0: the same bytes on both; b/seed1: no records on either (not "the same bytes")
            records = {("a", 0): b"same", ("b", 1): None}.get((setting, seed), cpu.encode())
            _run(tree, f"focal/{setting}/seed{seed}", .5, test, cpu, records)
    _run(ref, "focal/c/seed0", .5, .5, "Intel")  # only in the reference: left out
    return ref, rerun


def test_hand_worked_differences(trees):
    ref, rerun = trees
    t = cross_cpu.compare(cross_cpu.load_runs(ref), cross_cpu.load_runs(rerun))
    runs = t["runs"].set_index("run")
    assert len(runs) == 4  # c/seed0 and the DVCLive files are not runs in both
    assert runs.loc["focal/a/seed1", "d_test"] == pytest.approx(-2.0)
    assert runs.loc["focal/a/seed1", "d_val"] == pytest.approx(0.0)
    assert runs.same_bytes.tolist().count(True) == 1 and runs.loc["focal/a/seed0", "same_bytes"]
    s = t["settings"].set_index("setting")
    assert s.loc["a", "ref"] == pytest.approx(91.0) and s.loc["a", "rerun"] == pytest.approx(90.5)
    assert s.loc["b", "d"] == pytest.approx(88.5 - 87.0)
    assert s.loc["a", "ref_sd"] == pytest.approx(2 ** 0.5)  # SD of 90 and 92
    assert s.loc["a", "mean_abs_d"] == pytest.approx((1 + 2) / 2)
    (p,) = t["pairs"].itertuples(index=False)
    assert (p.a, p.b, p.seeds) == ("a", "b", "0,1")
    assert p.ref == pytest.approx(91.0 - 87.0) and p.rerun == pytest.approx(90.5 - 88.5)
    assert p.moved == pytest.approx(2.0 - 4.0) and p.same_sign


def test_no_common_run_is_an_error(tmp_path):
    _run(tmp_path / "ref", "focal/a/seed0", .5, .9, "Intel")
    _run(tmp_path / "rerun", "focal/b/seed0", .5, .9, "AMD")
    with pytest.raises(ValueError, match="no run path"):
        cross_cpu.compare(cross_cpu.load_runs(tmp_path / "ref"), cross_cpu.load_runs(tmp_path / "rerun"))


def test_markdown_names_both_cpus(trees, tmp_path):
    ref, rerun = trees
    out = tmp_path / "out.md"
    assert cross_cpu.main(["--rerun", str(rerun), "--reference", str(ref), "--out", str(out)]) == 0
    text = out.read_text()
    assert "Reference: Intel (X); rerun: AMD (X). 4 runs in both" in text
    assert "| focal | a | b | 0,1 | +4.0 | +2.0 | -2.0 | yes |" in text
    assert "|test difference|: mean 1.5, largest 2.0 (|val difference|: mean 0.0, largest 0.0)" in text


def test_signed_never_prints_minus_zero():
    assert [cross_cpu._signed(x) for x in (-0.04, 0.0, 0.06, -1.25)] == ["+0.0", "+0.0", "+0.1", "-1.2"]


def test_bad_trees_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="no run folder"):
        cross_cpu.load_runs(tmp_path)
    _run(tmp_path / "ref", "focal/a/seed0", .5, .9, "Intel")
    (tmp_path / "ref/focal/a/seed0/metrics.json").write_text("{\"metrics\": {}}")
    with pytest.raises(ValueError, match=r"focal/a/seed0: unreadable metrics.json"):
        cross_cpu.load_runs(tmp_path / "ref")
