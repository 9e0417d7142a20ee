"""The foreground-share sweep report, from fabricated sweep runs (conftest.py)."""

import copy
import json

import numpy as np
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


# --- the sweep's paired comparisons (lossbench.report.sweep.compare) ------------------------------------------------

def test_verdict_is_not_resolved_exactly_when_the_holm_interval_contains_zero():
    from lossbench.report.sweep import compare

    # no image noise (a constant bootstrap): the combined interval is the paired t-interval.
    # pair 1: diffs .10, .11, .09 -> mean .10, sd .01, t = .10 / (.01 / sqrt 3) = 17.32, df 2,
    #   p = 0.0033 <= .05 / 2: Holm rejects at its first step, interval at 97.5%:
    #   t(0.9875, 2) = 6.2053 -> half width 6.2053 * .01 / sqrt 3 = .0358 -> [.0642, .1358]
    # pair 2: diffs .05, -.05, .02 -> p = 0.85 > .05: accepted, interval at 95% contains 0
    values = np.array([.60, .62, .64, .50, .51, .55, .55, .45, .52, .50, .50, .50])
    arms = [{s: 3 * k + s for s in range(3)} for k in range(4)]
    pairs = [("g", "A1", arms[0], "B1", arms[1]), ("g", "A2", arms[2], "B2", arms[3])]
    one, two = compare(pairs, values, np.zeros((2, 12))).to_dict("records")
    assert one["level"] == pytest.approx(0.975) and two["level"] == pytest.approx(0.95)
    assert (one["lo"], one["hi"]) == pytest.approx((0.0642, 0.1358), abs=1e-4)
    assert one["p_holm"] == pytest.approx(2 * 0.003316, abs=2e-5)
    assert one["verdict"] == "A > B"
    assert two["lo"] < 0 < two["hi"] and two["verdict"] == "not resolved"
    # the same pair reversed reads A < B
    rev = compare([("g", "B1", arms[1], "A1", arms[0])], values, np.zeros((2, 12)))
    assert rev.loc[0, "hi"] < 0 and rev.loc[0, "verdict"] == "A < B"
    # with image noise: the verdict follows the Holm-level interval, for random pairs
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(40):
        vals = rng.normal(0.5, 0.02, size=12) + np.repeat(rng.normal(0, 0.03, size=4), 3)
        boot = rng.normal(0, 0.005, size=(200, 12))
        for r in compare(pairs, vals, boot).itertuples():
            assert (r.verdict == "not resolved") == (r.lo <= 0 <= r.hi)
            assert (r.verdict == "A > B") == (r.lo > 0)
            seen.add(r.verdict)
    assert seen == {"A > B", "A < B", "not resolved"}  # every case was met


def test_a_comparison_on_one_seed_is_not_resolved_and_not_counted_by_holm():
    from lossbench.report.sweep import compare

    values = np.array([0.5, 0.9, 0.1, 0.6, 0.7, 0.2, 0.3])
    boot = np.tile(values, (10, 1))
    # A and B share seed 1 only: a difference of +0.8 with no interval; C vs D has 2 seeds
    out = compare([("g", "A", {0: 0, 1: 1}, "B", {1: 2}), ("g", "C", {0: 3, 1: 4}, "D", {0: 5, 1: 6})],
                  values, boot)
    one, two = out.iloc[0], out.iloc[1]
    assert one["verdict"] == "not resolved (one seed)" and one["n"] == 1
    assert one["diff"] == pytest.approx(0.8) and np.isnan(one["lo"]) and np.isnan(one["p_holm"])
    # Holm's m counts only the comparison that has an interval: level 1 - 0.05 / 1
    assert two["level"] == pytest.approx(0.95)
    with pytest.raises(ReportError, match="A vs B: no common seed"):
        compare([("g", "A", {0: 0}, "B", {1: 2})], values, boot)
