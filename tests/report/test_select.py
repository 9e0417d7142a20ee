"""Selection on val: hand-worked means, tie-breaks, grid edges and the selection file."""

import json

import pandas as pd
import pytest

from lossbench.report.collect import ReportError
from lossbench.report.select import grid_edge, select, select_from, write_selection

# the study's grids (params.yaml)
FOCAL = [{"gamma": 0.0, "alpha": 0.75}, {"gamma": 0.0, "alpha": 0.25}, {"gamma": 0.5, "alpha": 0.25},
         {"gamma": 1.0, "alpha": 0.25}, {"gamma": 2.0, "alpha": 0.25}, {"gamma": 5.0, "alpha": 0.25}]
OHEM = [{"neg_pos_ratio": r} for r in (1, 3, 10, "all")]
SSE = [{"lambda_noobj": v} for v in (0.05, 0.1, 0.5, 1.0)]


def test_select_file_from_fabricated_runs(study, fab, tmp_path):
    sel = select(study, fab.PARAMS)
    assert sel["metric"] == "val mAP50" and sel["seeds"] == [0, 1, 2]
    focal = sel["families"]["focal"]
    # val means over seeds 0-2: the seed offsets -0.01, 0, +0.01 cancel; γ 5's seed 1 collapsed (0.44, 0, 0.46)
    assert focal["val_means"] == pytest.approx({"gamma0.0_alpha0.75": 0.40, "gamma1.0_alpha0.25": 0.62,
                                                "gamma2.0_alpha0.25": 0.55, "gamma5.0_alpha0.25": 0.30},
                                               abs=1e-12)
    assert focal["best"] == {"gamma": 1.0, "alpha": 0.25} and focal["default"] == {"gamma": 2.0, "alpha": 0.25}
    assert sel["families"]["ohem"]["best"] == {"neg_pos_ratio": "all"}
    assert sel["families"]["ohem"]["best_on_grid_edge"] is True
    assert sel["families"]["sse"]["best"] == {"lambda_noobj": 0.5}
    assert sel["families"]["sse"]["best_on_grid_edge"] is False
    path = write_selection(sel, tmp_path / "selection.json", tmp_path / "val_means.json")
    saved = json.loads(path.read_text())
    assert saved == {**sel, "families": {f: {k: v for k, v in c.items() if k != "val_means"}
                                         for f, c in sel["families"].items()}}
    means = json.loads((tmp_path / "val_means.json").read_text())
    assert means == {"metric": "val mAP50", "seeds": [0, 1, 2],
                     "families": {f: c["val_means"] for f, c in sel["families"].items()}}


def test_choices_do_not_move_with_a_val_mean(study, fab, tmp_path):
    """A grid run whose val mAP50 moves without changing any choice leaves the choices file
    byte-identical (what best_extra and the sweep depend on); the val means file changes."""
    write_selection(select(study, fab.PARAMS), tmp_path / "a.json", tmp_path / "a_means.json")
    f = study / "ohem" / "ratio3" / "seed0" / "metrics.json"
    rec = json.loads(f.read_text())
    rec["metrics"]["val"]["mAP50"] -= 0.05
    f.write_text(json.dumps(rec))
    write_selection(select(study, fab.PARAMS), tmp_path / "b.json", tmp_path / "b_means.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert (tmp_path / "a_means.json").read_bytes() != (tmp_path / "b_means.json").read_bytes()


def test_selection_never_reads_test(study, fab):
    # the best test run of focal (γ 2) made far better on test: the selection does not move
    f = study / "focal" / "gamma2.0_alpha0.25" / "seed0" / "metrics.json"
    rec = json.loads(f.read_text())
    rec["metrics"]["test"] = {"mAP50": 1.0}
    f.write_text(json.dumps(rec))
    assert select(study, fab.PARAMS)["families"]["focal"]["best"] == {"gamma": 1.0, "alpha": 0.25}


def test_extra_seeds_do_not_enter_the_selection(study, fab):
    # the paper default's extra seeds made excellent on val: the selection uses seeds 0-2 only
    for seed in (3, 4):
        f = study / "extra" / "default" / "focal" / f"seed{seed}" / "metrics.json"
        rec = json.loads(f.read_text())
        rec["metrics"]["val"]["mAP50"] = 0.99
        f.write_text(json.dumps(rec))
    assert select(study, fab.PARAMS)["families"]["focal"]["best"] == {"gamma": 1.0, "alpha": 0.25}


def test_missing_val_raises_naming_the_run(study, fab):
    f = study / "sse" / "lambda0.1" / "seed2" / "metrics.json"
    rec = json.loads(f.read_text())
    del rec["metrics"]["val"]
    f.write_text(json.dumps(rec))
    with pytest.raises(ReportError, match=r"sse/lambda0.1/seed2/metrics.json: no val mAP50"):
        select(study, fab.PARAMS)
    f.unlink()
    with pytest.raises(ReportError, match=r"missing run: .*sse/lambda0.1/seed2 has no metrics.json"):
        select(study, fab.PARAMS)


def _grid_frame(means: dict[str, list[float]]) -> pd.DataFrame:
    """Grid rows of ohem (3 seeds each) with the given val values, settings in OHEM order."""
    order = {"1": 0, "3": 1, "10": 2, "all": 3}
    return pd.DataFrame([{"family": "ohem", "order": order[k], "seed": s, "val_mAP50": v}
                         for k, vals in means.items() for s, v in enumerate(vals)])


PARAMS_OHEM = {"seeds": [0, 1, 2], "focal": {"settings": [FOCAL[4]], "default": FOCAL[4]},
               "ohem": {"neg_pos_ratio": [1, 3, 10, "all"], "default": 3},
               "sse": {"lambda_noobj": [0.5], "default": 0.5}}


def _best(means):
    rows = pd.concat([_grid_frame(means), pd.DataFrame(
        [{"family": f, "order": 0, "seed": s, "val_mAP50": 0.5} for f in ("focal", "sse") for s in range(3)])])
    return select_from(rows, PARAMS_OHEM)["families"]["ohem"]["best"]


def test_ties_go_to_the_paper_default_then_to_grid_order():
    # 0.1 + 0.2 + 0.3 and 0.3 + 0.2 + 0.1 differ in floating point summed left to right, not
    # with fsum: a true tie. 1:1 and 3:1 (the default) tie -> 3:1
    tie = [0.1, 0.2, 0.3]
    assert _best({"1": tie, "3": tie[::-1], "10": [0, 0, 0], "all": [0, 0, 0]}) == {"neg_pos_ratio": 3}
    # 10:1 and all tie, the default is lower -> the earlier in grid order, 10:1
    assert _best({"1": [0, 0, 0], "3": [0, 0, 0], "10": tie, "all": tie[::-1]}) == {"neg_pos_ratio": 10}
    # no tie: the highest mean, even 1e-9 above
    assert _best({"1": [0.2] * 3, "3": [0.2] * 3, "10": [0.2] * 3, "all": [0.2, 0.2, 0.2 + 3e-9]}) == {
        "neg_pos_ratio": "all"}


@pytest.mark.parametrize("family, grid, best, note", [
    ("focal", FOCAL, {"gamma": 0.0, "alpha": 0.25}, "γ 0, α 0.25 is the lowest γ of the grid"),
    ("focal", FOCAL, {"gamma": 5.0, "alpha": 0.25}, "γ 5, α 0.25 is the highest γ of the grid"),
    ("focal", FOCAL, {"gamma": 0.0, "alpha": 0.75},
     "γ 0, α 0.75 is a separate row off the grid's line (α = 0.25), with no neighbour on that line"),
    ("focal", FOCAL, {"gamma": 2.0, "alpha": 0.25}, None),
    ("focal", FOCAL, {"gamma": 0.5, "alpha": 0.25}, None),
    ("ohem", OHEM, {"neg_pos_ratio": 1}, "1:1 is the lowest neg:pos ratio of the grid"),
    ("ohem", OHEM, {"neg_pos_ratio": "all"}, "all is the highest neg:pos ratio of the grid"),
    ("ohem", OHEM, {"neg_pos_ratio": 10}, None),
    ("sse", SSE, {"lambda_noobj": 0.05}, "λ 0.05 is the lowest λ_noobj of the grid"),
    ("sse", SSE, {"lambda_noobj": 1.0}, "λ 1 is the highest λ_noobj of the grid"),
    ("sse", SSE, {"lambda_noobj": 0.1}, None),
])
def test_grid_edge(family, grid, best, note):
    assert grid_edge(family, grid, best) == note
