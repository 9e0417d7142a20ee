"""The train stage's study options without training: --choose, --prior-prob, --val-every/--val-from,
and the hooks that count clipped steps and keep the validation history across a resume."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from mmengine.config import Config
from mmengine.logging import MessageHub

from lossbench.stages.train import add_arguments, chosen_setting, imbalance_from_args, parse_prior, set_validation
from lossbench.training.hooks import ClipFractionHook, ValHistoryHook


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(["--data-root", "d", "--ann-dir", "a", "--out", "o", *argv])


@pytest.fixture
def files(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"focal": {"default": {"gamma": 2.0, "alpha": 0.25}},
                                      "ohem": {"default": 3}, "sse": {"default": 0.5}}))
    sel = tmp_path / "selection.json"
    sel.write_text(json.dumps({"families": {"focal": {"best": {"gamma": 0.5, "alpha": 0.25}},
                                            "ohem": {"best": {"neg_pos_ratio": None}},
                                            "sse": {"best": {"lambda_noobj": 0.1}}}}))
    return params, sel


@pytest.mark.parametrize("family, choose, expected", [
    ("focal", "default", {"type": "focal", "gamma": 2.0, "alpha": 0.25}),
    ("focal", "best", {"type": "focal", "gamma": 0.5, "alpha": 0.25}),
    ("ohem", "default", {"type": "ohem", "neg_pos_ratio": 3.0}),
    ("ohem", "best", {"type": "ohem", "neg_pos_ratio": None}),  # 'all' negatives
    ("sse", "best", {"type": "sse", "lambda_noobj": 0.1}),
])
def test_choose_reads_the_default_or_the_selection(files, family, choose, expected):
    params, sel = files
    args = parse("--family", family, "--seed", "3", "--choose", choose, "--params", str(params),
                 "--selection", str(sel))
    imb, spelled = imbalance_from_args(args)
    assert {k: imb[k] for k in expected} == expected


def test_choose_errors_name_the_file_and_key(files, tmp_path):
    params, sel = files
    with pytest.raises(ValueError, match="one or the other"):
        chosen_setting(parse("--family", "sse", "--seed", "0", "--choose", "default",
                             "--lambda-noobj", "0.1", "--params", str(params)))
    with pytest.raises(ValueError, match="needs --selection"):
        chosen_setting(parse("--family", "sse", "--seed", "0", "--choose", "best"))
    empty = tmp_path / "empty.yaml"
    empty.write_text("focal: {}\n")
    with pytest.raises(ValueError, match=r"empty.yaml: focal.default is missing"):
        chosen_setting(parse("--family", "focal", "--seed", "0", "--choose", "default",
                             "--params", str(empty)))


def test_prior_prob_option():
    assert parse_prior("none") is None and parse_prior("NONE") is None
    assert parse_prior("0.01") == 0.01
    for bad in ("0", "1", "-0.5", "x"):
        with pytest.raises(ValueError, match="--prior-prob"):
            parse_prior(bad)


@pytest.mark.parametrize("every, start, interval, begin", [
    (0.25, 0.75, 150, 450),     # grid runs: val at 450 and 600
    (0.125, 0.125, 75, 75),     # calibration: every 75 iterations
    (0.5, None, 300, 300),
])
def test_val_every_and_from_set_the_loop(every, start, interval, begin):
    cfg = Config(dict(train_cfg=dict(type="IterBasedTrainLoop", max_iters=600, val_interval=600)))
    set_validation(cfg, every, start)
    assert (cfg.train_cfg.val_interval, cfg.train_cfg.val_begin) == (interval, begin)
    # the evaluations MMEngine's IterBasedTrainLoop then runs
    evals = [i for i in range(1, 601) if i >= begin and (i % interval == 0 or i == 600)]
    assert evals[-1] == 600


def test_val_options_are_checked():
    cfg = Config(dict(train_cfg=dict(max_iters=600)))
    with pytest.raises(ValueError, match="--val-every"):
        set_validation(cfg, 0.0, None)
    with pytest.raises(ValueError, match="--val-from"):
        set_validation(cfg, 0.25, 1.5)
    with pytest.raises(ValueError, match="--val-from needs --val-every"):
        set_validation(cfg, None, 0.5)
    set_validation(cfg, None, None)
    assert "val_interval" not in cfg.train_cfg


def _runner(work_dir, iteration=0, name="clip"):
    return SimpleNamespace(message_hub=MessageHub.get_instance(name), iter=iteration, work_dir=str(work_dir))


def test_clip_fraction_counts_steps_above_max_norm(tmp_path):
    runner = _runner(tmp_path, name="clip_count")
    hook = ClipFractionHook(max_norm=10.0)
    for norm in (3.0, 12.0, 10.0, 25.0, 9.9):  # 10.0 itself is not clipped by clip_grad_norm_
        runner.message_hub.update_scalar("train/grad_norm", norm)
        hook.after_train_iter(runner, 0)
    assert ClipFractionHook.summary(runner, 10.0) == {"max_norm": 10.0, "clipped_fraction": 0.4, "steps": 5}
    # the counts live in the runtime info a checkpoint saves (resumed=True)
    state = runner.message_hub.state_dict()
    assert state["runtime_info"][ClipFractionHook.KEY] == {"steps": 5, "clipped": 2}
    off = _runner(tmp_path, name="clip_off")
    ClipFractionHook(max_norm=None).after_train_iter(off, 0)
    assert ClipFractionHook.summary(off, None) == {"max_norm": None, "clipped_fraction": None, "steps": 0}


def test_val_history_survives_a_resume(tmp_path):
    hook = ValHistoryHook()
    runner = _runner(tmp_path, 0, "hist")
    hook.before_train(runner)
    for it, m in ((75, 0.1), (150, 0.2), (225, 0.3)):
        runner.iter = it
        hook.after_val_epoch(runner, {"pascal_voc/mAP": m, "note": "text is not kept"})
    saved = json.loads((tmp_path / ValHistoryHook.FILE).read_text())
    assert saved == [{"iter": 75, "pascal_voc/mAP": 0.1}, {"iter": 150, "pascal_voc/mAP": 0.2},
                     {"iter": 225, "pascal_voc/mAP": 0.3}]
    # resumed from the checkpoint of iteration 150: the later entry is evaluated again
    again = ValHistoryHook()
    again.before_train(_runner(tmp_path, 150, "hist2"))
    assert [h["iter"] for h in again.history] == [75, 150]


def test_print_config_of_a_mixed_precision_run_works_without_a_gpu(synth_prepared, tmp_path, capsys):
    """--print-config shows the config as given: a bf16 run's config prints on a CPU machine, where
    training it stops before anything starts (mixed precision needs a CUDA GPU)."""
    import torch

    from lossbench.cli import main

    if torch.cuda.is_available():
        pytest.skip("the CPU-only refusal is what is checked")
    config = Path(__file__).resolve().parents[2] / "configs/smoke/retinanet_r18n_fpn_smoke.py"
    argv = ["train", "--config", str(config), "--family", "ohem", "--seed", "0",
            "--data-root", str(synth_prepared["root"]), "--ann-dir", str(synth_prepared["ann_dir"]),
            "--out", str(tmp_path / "run"), "--amp", "bf16"]
    assert main([*argv, "--print-config"]) == 0
    shown = capsys.readouterr().out
    assert "type='AmpOptimWrapper'" in shown and "dtype='bfloat16'" in shown and "# config_digest: " in shown
    assert main(argv) == 2 and "mixed precision" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ the families added by issue 21
@pytest.mark.parametrize("argv, expected, spelled", [
    (["--family", "ghm"], {"type": "ghm", "bins": 30, "momentum": 0.75}, {"bins": 30, "momentum": 0.75}),
    (["--family", "ghm", "--bins", "10", "--momentum", "0"], {"type": "ghm", "bins": 10, "momentum": 0.0},
     {"bins": "10", "momentum": "0"}),
    (["--family", "qfl", "--beta", "1.5"], {"type": "qfl", "beta": 1.5}, {"beta": "1.5"}),
    (["--family", "vfl", "--vfl-gamma", "1.0", "--vfl-alpha", "0.5"],
     {"type": "vfl", "vfl_gamma": 1.0, "vfl_alpha": 0.5}, {"vfl_gamma": "1.0", "vfl_alpha": "0.5"}),
    (["--family", "ce_prior"], {"type": "ce_prior", "scaling": "on"}, {"scaling": "on"}),
    (["--family", "ce_prior", "--scaling", "off"], {"type": "ce_prior", "scaling": "off"}, {"scaling": "off"}),
])
def test_new_families_parse(argv, expected, spelled):
    imb, given = imbalance_from_args(parse(*argv, "--seed", "0"))
    assert imb == expected and given == spelled
    assert type(imb.get("bins", 0)) is int


@pytest.mark.parametrize("argv, message", [
    (["--family", "ghm", "--bins", "2.5"], r"--ghm.bins must be an integer >= 1, got 2.5"),
    (["--family", "ghm", "--momentum", "1"], r"--ghm.momentum must be in \[0, 1\), got 1.0"),
    (["--family", "ghm", "--bins", "many"], r"--bins must be a number, got 'many'"),
    (["--family", "vfl", "--vfl-alpha", "2"], r"--vfl.vfl_alpha must be in \[0, 1\], got 2.0"),
    (["--family", "vfl", "--gamma", "2"], r"--vfl.gamma is not a knob of family 'vfl': it belongs to family 'focal'"),
    (["--family", "qfl", "--beta", "-1"], r"--qfl.beta must be >= 0"),
])
def test_new_families_bad_knobs_are_named(argv, message):
    from lossbench.families import ImbalanceConfigError

    with pytest.raises(ImbalanceConfigError, match=message):
        imbalance_from_args(parse(*argv, "--seed", "0"))


def test_switch_and_family_choices_are_the_tables(capsys):
    with pytest.raises(SystemExit):
        parse("--family", "ce_prior", "--seed", "0", "--scaling", "maybe")
    assert "invalid choice: 'maybe'" in capsys.readouterr().err
    p = argparse.ArgumentParser()
    add_arguments(p)
    text = p.format_help()
    for flag in ("--bins", "--momentum", "--beta", "--vfl-gamma", "--vfl-alpha", "--scaling", "--cls-weight"):
        assert flag in text
    assert "{ce_prior,focal,ghm,ohem,qfl,sse,vfl}" in text


def test_choose_reads_a_switch_and_settings(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("ce_prior: {scaling: ['on', 'off'], default: 'on'}\n"
                      "ghm: {default: {bins: 30, momentum: 0.75}}\n"
                      "vfl: {default: {vfl_gamma: 2.0, vfl_alpha: 0.75}}\n")
    for family, expected in (("ce_prior", {"scaling": "on"}), ("ghm", {"bins": 30, "momentum": 0.75}),
                             ("vfl", {"vfl_gamma": 2.0, "vfl_alpha": 0.75})):
        imb, _ = imbalance_from_args(parse("--family", family, "--seed", "0", "--choose", "default",
                                           "--params", str(params)))
        assert {k: imb[k] for k in expected} == expected


def test_cls_weight_option():
    from lossbench.stages.train import parse_cls_weight, set_cls_weight

    assert parse_cls_weight("2") == 2.0 and parse_cls_weight("0.5") == 0.5
    for bad in ("0", "-1", "inf", "nan", "x"):
        with pytest.raises(ValueError, match="--cls-weight must be a number > 0"):
            parse_cls_weight(bad)
    cfg = Config(dict(model=dict(bbox_head=dict(type="ImbalanceRetinaHead"))))
    set_cls_weight(cfg, None)
    set_cls_weight(cfg, "1")  # weight 1 leaves the config (its digest, the run's resume) as it was
    assert "cls_weight" not in cfg.model.bbox_head
    set_cls_weight(cfg, "2.5")
    assert cfg.model.bbox_head.cls_weight == 2.5
    set_cls_weight(cfg, "1")  # ...unless the config has one to override
    assert cfg.model.bbox_head.cls_weight == 1.0


@pytest.mark.parametrize("family, knobs, shown", [
    ("ghm", ["--bins", "10", "--momentum", "0.5"], "bins=10"),
    ("qfl", ["--beta", "1.5"], "beta=1.5"),
    ("vfl", ["--vfl-gamma", "1.0"], "vfl_gamma=1.0"),
    ("ce_prior", ["--scaling", "off"], "scaling='off'"),
])
def test_print_config_of_each_new_family(synth_prepared, tmp_path, capsys, family, knobs, shown):
    from lossbench.cli import main

    config = Path(__file__).resolve().parents[2] / "configs/smoke/retinanet_r18n_fpn_smoke.py"
    argv = ["train", "--config", str(config), "--family", family, "--seed", "0", *knobs,
            "--data-root", str(synth_prepared["root"]), "--ann-dir", str(synth_prepared["ann_dir"]),
            "--out", str(tmp_path / "run"), "--print-config"]
    assert main(argv) == 0
    plain = capsys.readouterr().out
    assert f"type='{family}'" in plain and shown in plain and "cls_weight" not in plain
    assert main([*argv, "--cls-weight", "1"]) == 0  # weight 1: the same config, the same digest
    assert capsys.readouterr().out == plain
    assert main([*argv, "--cls-weight", "2"]) == 0
    weighted = capsys.readouterr().out
    assert "cls_weight=2.0" in weighted and weighted.splitlines()[-1] != plain.splitlines()[-1]
    assert not (tmp_path / "run").exists()


def test_choose_names_a_yaml_boolean(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("ce_prior: {default: on}\n")  # unquoted: YAML reads true
    with pytest.raises(ValueError, match=r"ce_prior.default: scaling is the YAML boolean True; quote it"):
        imbalance_from_args(parse("--family", "ce_prior", "--seed", "0", "--choose", "default",
                                  "--params", str(params)))
