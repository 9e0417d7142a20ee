"""The train-step breakdown of `make bench` (benchmarks/bench_step.py), on a tiny batch and few repeats."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lossbench.families import FAMILY_ORDER

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "benchmarks") not in sys.path:  # the scripts import each other by name
    sys.path.insert(0, str(REPO / "benchmarks"))

import bench_heads  # noqa: E402
import bench_step  # noqa: E402

HEADS = ("stock", *FAMILY_ORDER)
# a part may exceed the step it belongs to only by noise: repeats are few and the machine may be busy
SLACK, SLACK_MS = 1.5, 50.0


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a busy 2-core machine, two threads wait on each other (10x slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def result(synth_prepared, one_thread) -> dict:
    return bench_step.breakdown(batch=2, repeats=3, warmup=1, data_root=synth_prepared["root"],
                                ann_dir=synth_prepared["ann_dir"])


def test_every_head_of_the_table(result):
    assert bench_heads.heads() == HEADS
    assert tuple(result["heads"]) == HEADS  # stock first, then the table's order
    assert result["reference"] == "focal"  # the config's own family
    assert result["input_shape"] == [2, 3, 96, 96]
    assert result["data_source"] is not None and result["data_note"] is None
    assert (result["layout"], result["optimizer"]) == ("channels_last", "fused")  # as configured


def test_timings_non_negative_and_within_the_step(result):
    for name, v in result["heads"].items():
        step = v["step_ms"]
        assert step > 0, name
        for key in ("net_ms", "loss_ms", "optimizer_ms"):
            assert 0 <= v[key] <= SLACK * step + SLACK_MS, (name, key, v)
        assert v["ratio_to_stock"] == pytest.approx(step / result["heads"]["stock"]["step_ms"], rel=1e-2)
    ref_step = result["heads"][result["reference"]]["step_ms"]
    assert 0 <= result["data_ms"] <= SLACK * ref_step + SLACK_MS
    assert set(result["optimizer_ms"]) == set(bench_step.OPT_MODES)
    assert set(result["layout_ms"]) == set(bench_step.LAYOUTS)
    for ms in (*result["optimizer_ms"].values(), *result["layout_ms"].values()):
        assert ms >= 0
    assert result["optimizer_ms"]["fused"] == result["heads"]["focal"]["optimizer_ms"]
    assert result["layout_ms"]["channels_last"] == result["heads"]["focal"]["step_ms"]


def test_markdown_one_row_per_family(result):
    md = bench_step.markdown(result, goals={"focal": 1.05, "ohem": 1.10})
    ratio_rows = md[md.index("| head | ms / step | ratio to stock | goal | met |"):]
    ratio_rows = ratio_rows[2:ratio_rows.index("")]
    assert [r.split("|")[1].strip() for r in ratio_rows] == list(HEADS)
    assert "<= 1.05" in ratio_rows[HEADS.index("focal")]
    table = md[md.index("| component | ms (median) | share of step |"):]
    table = table[2:table.index("")]
    assert table[0].startswith("| data: load + pipeline + collate + preprocessor")
    for name in HEADS:
        assert sum(r.startswith(f"| {name}: ") for r in table) == len(bench_step.PARTS), name
    assert any("contiguous parameters" in r for r in md) and any("single-tensor" in r for r in md)


def test_data_part_skipped_without_prepared_data(tmp_path):
    res = bench_step.breakdown(heads=("focal",), batch=1, repeats=1, warmup=0, data_root=tmp_path,
                               ann_dir=tmp_path / "prepared")
    assert tuple(res["heads"]) == ("stock", "focal")
    assert res["data_ms"] is None and "train.json" in res["data_note"]
    assert res["input_shape"] == [1, 3, 96, 96]  # a generated batch at the pipeline's size
    assert any(r.startswith("| data: skipped (") for r in bench_step.markdown(res))


def test_time_interleaved_warms_up_then_interleaves():
    calls = []
    times = bench_heads.time_interleaved(
        {"a": lambda: calls.append("a"), "b": bench_heads.Timed(lambda: calls.append("b"), lambda: calls.append("s"))},
        repeats=2, warmup=1)
    assert calls == ["a", "s", "b", "a", "s", "b", "a", "s", "b"]
    assert {k: len(v) for k, v in times.items()} == {"a": 2, "b": 2}
    with pytest.raises(ValueError):
        bench_heads.time_interleaved({"a": lambda: None}, repeats=0)
