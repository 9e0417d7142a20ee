"""The later remedies' report: the seven families side by side, from a fabricated study whose numbers are known by hand.

The three papers' families are conftest's study; the four remedies add grids of two settings each (seeds 0-2) and
their val-best's extra seeds 3-5. Test values in points are ``tp / 10`` with seed noise -1, 0, +1, so a cell's mean is
its ``tp / 10`` exactly and the pooled seed variance is 1 point².
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lossbench.families import run_name

REMEDY_PARAMS: dict[str, Any] = {
    "ghm": {"settings": [{"bins": 10, "momentum": 0.75}, {"bins": 30, "momentum": 0.75}],
            "default": {"bins": 30, "momentum": 0.75}},
    "qfl": {"beta": [1.0, 2.0], "default": 2.0},
    "vfl": {"settings": [{"vfl_gamma": 1.0, "vfl_alpha": 0.75}, {"vfl_gamma": 2.0, "vfl_alpha": 0.75}],
            "default": {"vfl_gamma": 2.0, "vfl_alpha": 0.75}},
    "ce_prior": {"scaling": ["off", "on"], "default": "on"},
}
# setting index -> (val of seed 1, true positives of seed 1); ghm's val-best is bins 10 (not its default), qfl's and
# ce_prior's their default, vfl's γ 1; ce_prior 'off' seed 0 collapses
REMEDY_SPEC = {"ghm": [(0.50, 600), (0.48, 620)], "qfl": [(0.60, 800), (0.66, 900)],
               "vfl": [(0.64, 850), (0.63, 870)], "ce_prior": [(0.40, 500), (0.65, 880)]}
REMEDY_BEST = {"ghm": 0, "qfl": 1, "vfl": 0, "ce_prior": 1}
REMEDY_EXTRA_TP = {"ghm": 640, "qfl": 900, "vfl": 860, "ce_prior": 880}  # the val-bests' seeds 3-5
COLLAPSED_REMEDY = ("ce_prior", 0, 0)  # family, setting index, seed


def remedy_params(fab) -> dict[str, Any]:
    primary = [{"within": f} for f in REMEDY_PARAMS] + [{"across": "val_best"}]
    return {**fab.PARAMS, **REMEDY_PARAMS, "remedies": {"families": list(REMEDY_PARAMS), "primary": primary}}


def settings_of(family: str) -> list[dict[str, Any]]:
    from lossbench.families import grid_of

    return grid_of(family, REMEDY_PARAMS[family])


def make_remedies(root: Path, fab) -> Path:
    """conftest's study under ``root`` plus every remedy run, and both selection files as `lossbench select` writes
    them."""
    from lossbench.report.select import select, write_selection

    fab.make_study(root)
    for fam, spec in REMEDY_SPEC.items():
        grid = settings_of(fam)
        for i, (s, (val, tp)) in enumerate(zip(grid, spec)):
            for seed in fab.PARAMS["seeds"]:
                down = (fam, i, seed) == COLLAPSED_REMEDY
                fab.write_run(root / run_name(fam, s, seed), fam, s, seed, "grid",
                              0.0 if down else fab.val_of(val, seed), 0 if down else fab.tp_of(tp, seed))
        best = grid[REMEDY_BEST[fam]]
        for seed in fab.PARAMS["extra_seeds"]:
            fab.write_run(root / "extra" / "best" / fam / f"seed{seed}", fam, best, seed, "best",
                          fab.val_of(spec[REMEDY_BEST[fam]][0], seed), fab.tp_of(REMEDY_EXTRA_TP[fam], seed))
    params = remedy_params(fab)
    write_selection(select(root, {**params, "families": list(REMEDY_PARAMS)}), root / "selection_remedies.json")
    return root


@pytest.fixture(scope="module")
def seven(tmp_path_factory, fab) -> dict[str, Any]:
    from lossbench.report.remedies import build_remedies_report

    base = tmp_path_factory.mktemp("remedies")
    runs = make_remedies(base / "runs", fab)
    out = base / "report"
    res = build_remedies_report(runs, remedy_params(fab), "synth", out, runs / "selection.json",
                                runs / "selection_remedies.json")
    return {"runs": runs, "out": out, "res": res}


def csv_rows(out: Path, name: str) -> list[dict[str, str]]:
    import csv

    with open(out / "tables" / f"{name}.csv") as f:
        return list(csv.DictReader(f))


def test_every_family_has_its_val_best_and_default(seven, fab):
    rows = csv_rows(seven["out"], "cross_family")
    got = [(r["family"], r["best"] == "True", r["default"] == "True") for r in rows]
    # family order, then grid order; a family whose val-best is its paper default has one row
    assert got == [("focal", True, False), ("focal", False, True), ("ohem", False, True), ("ohem", True, False),
                   ("sse", True, True), ("ghm", True, False), ("ghm", False, True), ("qfl", True, True),
                   ("vfl", True, False), ("vfl", False, True), ("ce_prior", True, True)]


def test_val_best_cells_use_the_seeds_that_did_not_choose_it(seven):
    by_role = {(r["family"], r["best"], r["default"]): r for r in csv_rows(seven["out"], "cross_family")}
    best, default = by_role["ghm", "True", "False"], by_role["ghm", "False", "True"]
    # the val-best on its extra seeds 3-5 only (64.0); its grid seeds, which chose it, would give 60.0
    assert best["seeds"] == "3,4,5" and float(best["test_all_mean"]) == pytest.approx(64.0)
    # a remedy's paper default has its grid seeds only
    assert default["seeds"] == "0,1,2" and float(default["test_all_mean"]) == pytest.approx(62.0)


def test_comparisons_are_the_remedies_primary_family(seven, fab):
    comp = seven["res"]["comparisons"]
    within = comp[comp["kind"] == "within"]
    assert list(within["family"]) == ["ghm", "qfl", "vfl", "ce_prior"]
    assert (comp["kind"] == "across").sum() == 21  # the val-bests of all seven, every pair
    # by hand: focal's val-best (γ 1) on its extra seeds 70.0, ce_prior's ('on') 88.0
    r = comp[(comp["family_a"] == "focal") & (comp["family_b"] == "ce_prior")].iloc[0]
    assert r["diff"] == pytest.approx(70.0 - 88.0) and r["verdict"] == "A < B"
    assert set(r["seeds_a"]) == {3, 4, 5} and set(r["seeds_b"]) == {3, 4, 5}
    # ghm: the default (bins 30, seeds 0-2: 62.0) against the val-best's seeds 3-5 (64.0)
    g = within[within["family"] == "ghm"].iloc[0]
    assert g["diff"] == pytest.approx(64.0 - 62.0)
    assert (comp["diff_lo"] >= -100).all() and (comp["diff_hi"] <= 100).all()


def test_collapse_is_counted_and_left_out(seven):
    summ = seven["res"]["summary"]
    off = summ[(summ["family"] == "ce_prior") & (summ["setting"] == "scaling off")].iloc[0]
    assert (off["n_collapsed"], off["n"], off["n_ok"]) == (1, 3, 2)
    assert off["test_ok_mean"] == pytest.approx((50.0 + 51.0) / 2)  # seeds 1 and 2
    assert off["test_all_mean"] == pytest.approx((0.0 + 50.0 + 51.0) / 3)
    assert off["test_all_lo"] >= 0 and off["test_all_hi"] <= 100


def test_the_sampling_free_claim_is_read_off_the_verdicts(seven):
    text = (seven["out"] / "README.md").read_text()
    line = next(x for x in text.splitlines() if x.startswith("- Chen et al. 2019"))
    # ce_prior 88.0 against focal 70.0, OHEM 72.0 and GHM 64.0: every difference resolved above
    assert "**ce_prior above every one**" in line
    for rival, d in (("focal", "+18.0"), ("ohem", "+16.0"), ("ghm", "+24.0")):
        assert f"ce_prior − {rival} {d}" in line


def test_sampling_free_claim_when_a_rival_is_above():
    import pandas as pd

    from lossbench.report.remedies import sampling_free_line

    comp = pd.DataFrame([{"kind": "across", "family_a": "focal", "family_b": "ce_prior", "diff": 5.0,
                          "diff_lo": 1.0, "diff_hi": 9.0, "verdict": "A > B", "detectable": 2.0},
                         {"kind": "across", "family_a": "ghm", "family_b": "ce_prior", "diff": 1.0,
                          "diff_lo": -3.0, "diff_hi": 5.0, "verdict": "not resolved", "detectable": 6.5}])
    line = sampling_free_line(comp)
    assert "**contradicted**" in line
    assert "ce_prior − focal -5.0 [-9.0, -1.0], resolved" in line
    assert "ce_prior − ghm -1.0 [-5.0, +3.0], not resolved, detectable 6.5" in line
    assert "**not tested**" in sampling_free_line(comp.iloc[0:0])


def test_remedies_claims_and_deviations_are_stated(seven):
    text = (seven["out"] / "README.md").read_text()
    for claim in ("GHM-C (Li et al. 2019)", "GFL (Li et al. 2020)", "VarifocalNet (Zhang et al. 2021)",
                  "Sampling-free (Chen et al. 2019): guided loss scaling on"):
        assert claim in text
    assert "class-adaptive test threshold" in text and "instead of ATSS" in text
    for fig in ("cross_family_mAP50.png", "ablation_mAP50.png"):
        assert (seven["out"] / "figures" / fig).is_file()


def test_a_selection_that_disagrees_is_refused(tmp_path, fab):
    from lossbench.report.collect import ReportError
    from lossbench.report.remedies import build_remedies_report

    runs = make_remedies(tmp_path / "runs", fab)
    sel_file = runs / "selection_remedies.json"
    sel = json.loads(sel_file.read_text())
    sel["families"]["ghm"]["best"] = {"bins": 30, "momentum": 0.75}
    sel_file.write_text(json.dumps(sel))
    with pytest.raises(ReportError, match="selection_remedies.json: families.ghm.best"):
        build_remedies_report(runs, remedy_params(fab), "synth", tmp_path / "out", runs / "selection.json", sel_file)
    assert not (tmp_path / "out").exists()


def test_remedies_must_not_repeat_the_study_families(fab):
    from lossbench.report.collect import ReportError
    from lossbench.report.remedies import seven_params

    params = remedy_params(fab)
    with pytest.raises(ReportError, match="remedies.families repeats the study's families"):
        seven_params({**params, "remedies": {**params["remedies"], "families": ["focal", "ghm"]}})
    with pytest.raises(ReportError, match="remedies.primary"):
        seven_params({**params, "remedies": {"families": ["ghm"]}})


def test_the_study_report_points_to_the_remedies(built):
    text = (built["out"] / "README.md").read_text()
    assert "## Later remedies" not in text  # conftest's params have no remedies section


def test_the_study_report_section_when_params_list_remedies(study, tmp_path, fab):
    from lossbench.report.build import build_report

    out = tmp_path / "out"
    build_report(study, remedy_params(fab), "synth", out, study / "selection.json")
    text = (out / "README.md").read_text()
    assert "## Later remedies" in text and "reports/synth_remedies/" in text
    assert "../synth_remedies/figures/cross_family_mAP50.png" in text
