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
    """Points named by their objects per image, hand-worked means on each point's own test set,
    the duplicate sse runs merged, and the training conditions in a table and in words."""
    runs, data, sel = sweep
    out = tmp_path / "sweep"
    res = build_sweep_report(runs, data, fab.SWEEP_PARAMS, sel, out)
    # 3 points x (focal 2 + ohem 2 + sse 1 setting: its default and best runs merged) x 3 seeds
    df = res["runs"]
    assert len(df) == 45
    assert df[df.family == "sse"]["role"].unique().tolist() == ["both"]
    assert df[df.family == "sse"]["run"].str.contains("/default/").all()
    rows = md_rows((out / "tables" / "sweep.md").read_text())
    assert rows[0] == ["canvas (px)", "objects / image", "batch", "positive anchors (%)",
                       "focal γ 2, α 0.25 (paper default)",
                       "focal γ 1, α 0.25 (val-best)", "ohem 3:1 (paper default)", "ohem all (val-best)",
                       "sse λ 0.5 (paper default = val-best)"]
    assert [r[:4] for r in rows[1:]] == [["192", "12", "4", "1.4"], ["192", "4", "4", "0.48"],
                                         ["192", "1", "4", "0.12"]]
    # 12 objects: focal default 148, 150, 152 of 220 -> 68.2, its val-best 140 of 220 -> 63.6;
    # 1 object: 40 fewer of 180 -> 61.1; sse at 4 objects: 80 of 200 -> 40.0
    assert rows[1][4].startswith("68.2 [") and rows[1][5].startswith("63.6 [")
    assert rows[3][4].startswith("61.1 [")
    assert rows[2][8].startswith("40.0 [")
    comp = res["comparisons"]
    assert comp["group"].tolist() == (["12 objects/image"] * 3 + ["4 objects/image"] * 3
                                      + ["1 object/image"] * 3)
    assert comp.loc[0, ["A", "B"]].tolist() == ["focal γ 2, α 0.25", "ohem 3:1"]
    assert comp.loc[0, "diff"] == pytest.approx(30 / 220)
    assert comp.loc[6, "diff"] == pytest.approx(30 / 180)
    for r in comp.itertuples():
        assert (r.verdict == "not resolved") == (r.lo <= 0 <= r.hi)
    readme = (out / "README.md").read_text()
    assert "sweep_mAP50_vs_positive_share.png" in readme and "1000 bootstrap replicates" in readme
    for r in comp.itertuples():
        assert f"{r.A} vs {r.B} ({r.group}, 3 seeds)" in readme and f"**{r.verdict}**" in readme
    for ext in ("png", "pdf"):
        assert (out / "figures" / f"sweep_mAP50_vs_positive_share.{ext}").stat().st_size > 5000
    assert sorted(p.name for p in (out / "tables").iterdir()) == sorted(
        f"{n}.{e}" for n in ("sweep", "sweep_comparisons", "sweep_conditions") for e in ("md", "tex", "csv"))
    # training conditions: 12 / 4 / 1 objects per image x batch 4; OHEM's clipped share per point,
    # mean over seeds 0-2 (+0, +0.3, +0.6 %) and the largest
    cond = md_rows((out / "tables" / "sweep_conditions.md").read_text())
    assert cond[0][:4] == ["canvas (px)", "objects / image", "batch", "objects per step"]
    assert [r[:4] for r in cond[1:]] == [["192", "12", "4", "48"], ["192", "4", "4", "16"], ["192", "1", "4", "4"]]
    ohem = cond[0].index("ohem 3:1 (paper default)")
    assert [r[ohem] for r in cond[1:]] == ["1.3 (max 1.6)", "2.3 (max 2.6)", "3.3 (max 3.6)"]
    assert cond[1][cond[0].index("focal γ 2, α 0.25 (paper default)")] == "0.0 (max 0.0)"
    assert "Canvas (192 px), batch (4)" in readme and "(48, 16, 4 per step)" in readme
    assert "the gradient-norm clip (max_norm 20) acts on a different share of steps" in readme
    assert "not rarity alone" in readme


def test_each_point_is_its_own_test_set(sweep, fab, tmp_path):
    """A point's intervals come from its own bootstrap: the 4-objects point alone gives the same
    cells as within the whole sweep; alone, nothing differs and the point is named by its canvas."""
    runs, data, sel = sweep
    res = build_sweep_report(runs, data, fab.SWEEP_PARAMS, sel, tmp_path / "all")
    one = build_sweep_report(runs, data, fab.sweep_params(["sweep_o4"]), sel, tmp_path / "one")["summary"]
    both = res["summary"][res["summary"].profile == "sweep_o4"].reset_index(drop=True)
    assert one["point"].tolist() == ["192 px"] * len(one)
    for k in ("mean", "lo", "hi"):
        assert both[k].tolist() == pytest.approx(one[k].tolist(), abs=1e-12)


def test_sweep_refuses_a_best_that_is_not_the_selection(sweep, fab, tmp_path):
    runs, data, sel = sweep
    s = json.loads(sel.read_text())
    s["families"]["focal"]["best"] = {"gamma": 5.0, "alpha": 0.25}
    sel.write_text(json.dumps(s))
    with pytest.raises(ReportError, match=r"sweep_o12/best/focal/seed0/metrics.json: setting is \{'gamma': 1.0, "
                                          r"'alpha': 0.25\}, but families.focal.best of .*selection.json is "
                                          r"\{'gamma': 5.0"):
        build_sweep_report(runs, data, fab.SWEEP_PARAMS, sel, tmp_path / "out")


def _without(fab, family, choose):
    params = copy.deepcopy(fab.SWEEP_PARAMS)
    params["sweep"]["runs"].remove({"family": family, "choose": choose})
    return params


def test_sweep_runs_must_hold_the_default_and_a_best_that_differs(sweep, fab, tmp_path):
    runs, data, sel = sweep
    with pytest.raises(ReportError, match=r"sweep.runs lacks \{family: ohem, choose: best\}, but the val-best "
                                          r"in .*selection.json \(\{\"neg_pos_ratio\": \"all\"\}\) is not"):
        build_sweep_report(runs, data, _without(fab, "ohem", "best"), sel, tmp_path / "out")
    with pytest.raises(ReportError, match=r"sweep.runs lacks \{family: sse, choose: default\}"):
        build_sweep_report(runs, data, _without(fab, "sse", "default"), sel, tmp_path / "out")
    # sse's val-best is its paper default: its best entry may be left out
    res = build_sweep_report(runs, data, _without(fab, "sse", "best"), sel, tmp_path / "out")
    assert res["runs"][res["runs"].family == "sse"]["role"].unique().tolist() == ["default"]


def test_sweep_duplicates_must_agree(sweep, fab, tmp_path):
    runs, data, sel = sweep
    f = runs / "sweep_o4" / "best" / "sse" / "seed1" / "metrics.json"
    rec = json.loads(f.read_text())
    rec["metrics"]["test"]["mAP50"] += 1e-6
    f.write_text(json.dumps(rec))
    with pytest.raises(ReportError, match=r"sweep_o4/default/sse/seed1 and .*sweep_o4/best/sse/seed1 .*disagree"):
        build_sweep_report(runs, data, fab.SWEEP_PARAMS, sel, tmp_path / "out")


def test_sweep_needs_every_run_and_the_positive_share(sweep, fab, tmp_path):
    runs, data, sel = sweep
    stats = data / "sweep_o4" / "raw" / "stats.json"
    stats.write_text(json.dumps({"anchors": {"image_size": 192}}))
    with pytest.raises(ReportError, match=r"sweep_o4/raw/stats.json: anchors.positive_share"):
        build_sweep_report(runs, data, fab.SWEEP_PARAMS, sel, tmp_path / "out")
    stats.write_text(json.dumps({"anchors": {"image_size": 192, "positive_share": 0.0048}}))
    (runs / "sweep_o1" / "best" / "ohem" / "seed2" / "metrics.json").unlink()
    with pytest.raises(ReportError, match=r"missing run: .*sweep_o1/best/ohem/seed2"):
        build_sweep_report(runs, data, fab.SWEEP_PARAMS, sel, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_sweep_report_exit_codes(sweep, fab, tmp_path, capsys):
    import yaml

    from lossbench.cli import main

    runs, data, sel = sweep
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(fab.SWEEP_PARAMS))
    args = ["sweep-report", "--runs", str(runs), "--data", str(data), "--params", str(params),
            "--selection", str(sel), "--out", str(tmp_path / "out")]
    assert main(args) == 0 and "45 runs" in capsys.readouterr().out
    params.write_text(yaml.safe_dump(_without(fab, "focal", "best")))
    assert main(args) == 2 and "sweep.runs lacks {family: focal, choose: best}" in capsys.readouterr().err
