"""The foreground-share sweep report, from fabricated sweep runs (conftest.py)."""

import copy
import json

import pytest

from lossbench.report.collect import ReportError
from lossbench.report.sweep import build_sweep_report


@pytest.fixture
def sweep(study, fab):
    """``(runs, data, selection)`` of a fabricated sweep beside the fabricated study."""
    runs, data = fab.make_sweep(study.parent)
    return runs, data, study / "selection.json"


def md_rows(text):
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|") and set(line) - set("|-: ")]


def test_sweep_report(sweep, fab, tmp_path):
    runs, data, sel = sweep
    out = tmp_path / "sweep"
    res = build_sweep_report(runs, data, fab.SWEEP_PARAMS, sel, out)
    # 3 canvases x (focal 2 + ohem 2 + sse 1 settings) x 3 seeds
    assert len(res["runs"]) == 45
    rows = md_rows((out / "tables" / "sweep.md").read_text())
    assert rows[0] == ["canvas (px)", "batch", "positive anchors (%)", "focal γ 2, α 0.25 (paper default)",
                       "focal γ 1, α 0.25 (val-best)", "ohem 3:1 (paper default)", "ohem all (val-best)",
                       "sse λ 0.5 (paper default)"]
    # 96 px: focal default 148, 150, 152 of 200 -> 75.0; 384 px: 40 fewer -> 55.0; sse at 192: 80 -> 40.0
    assert rows[1][:3] == ["96", "16", "2"] and rows[1][3].startswith("75.0 [")
    assert rows[3][:3] == ["384", "1", "0.125"] and rows[3][3].startswith("55.0 [")
    assert rows[2][7].startswith("40.0 [")
    comp = res["comparisons"]
    assert comp["group"].tolist() == ["96 px"] * 3 + ["192 px"] * 3 + ["384 px"] * 3
    assert comp.loc[0, ["A", "B"]].tolist() == ["focal γ 2, α 0.25", "ohem 3:1"]
    assert comp.loc[0, "diff"] == pytest.approx(30 / 200)
    for r in comp.itertuples():
        assert (r.verdict == "not resolved") == (r.lo <= 0 <= r.hi)
    readme = (out / "README.md").read_text()
    assert "sweep_mAP50_vs_positive_share.png" in readme and "1000 bootstrap replicates" in readme
    for ext in ("png", "pdf"):
        assert (out / "figures" / f"sweep_mAP50_vs_positive_share.{ext}").stat().st_size > 5000
    assert sorted(p.name for p in (out / "tables").iterdir()) == sorted(
        f"{n}.{e}" for n in ("sweep", "sweep_comparisons") for e in ("md", "tex", "csv"))


def _params(fab, family, entries):
    params = copy.deepcopy(fab.SWEEP_PARAMS)
    params["sweep"][family] = entries
    return params


@pytest.mark.parametrize("family, entries, message", [
    # focal's val-best is γ 1 in selection.json
    ("focal", [{"gamma": 2.0, "alpha": 0.25}, {"gamma": 5.0, "alpha": 0.25}],
     r"sweep.focal\[1\] is \{'gamma': 5.0, 'alpha': 0.25\}, but .*selection.json has families.focal.best"),
    ("focal", [{"gamma": 2.0, "alpha": 0.25}], r"sweep.focal lists no val-best \(sweep.focal\[1\]\), but .*families.focal.best = "),
    # sse's val-best is its paper default: listed once
    ("sse", [0.5, 1.0], r"sweep.sse\[1\] is 1.0, but the val-best in .*selection.json is the paper default"),
    ("ohem", [1, "all"], r"sweep.ohem\[0\] is 1, but the paper default \(ohem.default\) is"),
])
def test_sweep_refuses_settings_that_are_not_the_selection(sweep, fab, tmp_path, family, entries, message):
    runs, data, sel = sweep
    with pytest.raises(ReportError, match=message):
        build_sweep_report(runs, data, _params(fab, family, entries), sel, tmp_path / "out")


def test_sweep_refuses_a_changed_selection_file(sweep, fab, tmp_path):
    runs, data, sel = sweep
    s = json.loads(sel.read_text())
    s["families"]["ohem"]["best"] = {"neg_pos_ratio": 10}
    sel.write_text(json.dumps(s))
    with pytest.raises(ReportError, match=r"sweep.ohem\[1\] is 'all', but .* families.ohem.best = "
                                          r"\{\"neg_pos_ratio\": 10\}"):
        build_sweep_report(runs, data, fab.SWEEP_PARAMS, sel, tmp_path / "out")


def test_sweep_needs_every_run_and_the_positive_share(sweep, fab, tmp_path):
    runs, data, sel = sweep
    (data / "c192" / "raw" / "stats.json").write_text(json.dumps({"anchors": {}}))
    with pytest.raises(ReportError, match=r"c192/raw/stats.json: anchors.positive_share"):
        build_sweep_report(runs, data, fab.SWEEP_PARAMS, sel, tmp_path / "out")
    (data / "c192" / "raw" / "stats.json").write_text(json.dumps({"anchors": {"positive_share": 0.005}}))
    (runs / "c384" / "ohem" / "ratioall" / "seed2" / "metrics.json").unlink()
    with pytest.raises(ReportError, match=r"missing run: .*c384/ohem/ratioall/seed2"):
        build_sweep_report(runs, data, fab.SWEEP_PARAMS, sel, tmp_path / "out")


def test_cli_sweep_report_exit_codes(sweep, fab, tmp_path, capsys):
    import yaml

    from lossbench.cli import main

    runs, data, sel = sweep
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(fab.SWEEP_PARAMS))
    args = ["sweep-report", "--runs", str(runs), "--data", str(data), "--params", str(params),
            "--selection", str(sel), "--out", str(tmp_path / "out")]
    assert main(args) == 0 and "45 runs" in capsys.readouterr().out
    params.write_text(yaml.safe_dump(_params(fab, "sse", [0.5, 1.0])))
    assert main(args) == 2 and "sweep.sse[1]" in capsys.readouterr().err
