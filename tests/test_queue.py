"""The training grid through DVC's experiment queue: 2 workers, one device each, collected back.

Runs on a temporary copy of the repository with the `smoke` profile. The
"devices" are the pool LOSSBENCH_GPUS=0,1 (CPU runs; only the assignment is
checked): two trainings that ran at the same time must never share a device.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lossbench.stages.queue import collect, submit
from lossbench.workspace import SMOKE_PARAMS, copy_repo, dvc, set_params

pytestmark = pytest.mark.slow
RUNS = ("focal/gamma2.0_alpha0.25/seed0", "ohem/ratio3/seed0", "sse/lambda0.5/seed0")


def lossbench(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    bindir = Path(sys.executable).parent
    p = subprocess.run([sys.executable, "-m", "lossbench", *args], cwd=repo, text=True,
                       capture_output=True, timeout=900,
                       env={**os.environ, **(env or {}),
                            "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"})
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout + p.stderr


def _dvc(repo: Path, *args: str) -> str:
    res = dvc(repo, *args)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("queue") / "repo"
    repo.mkdir()
    copy_repo(repo)
    set_params(repo, **SMOKE_PARAMS)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-qam",
                    "smoke"], cwd=repo, check=True)
    return repo


def test_submit_needs_prepared_data(repo):
    p = subprocess.run([sys.executable, "-m", "lossbench", "queue", "submit"], cwd=repo,
                       capture_output=True, text=True)
    assert p.returncode == 2 and "dvc repro prepare" in p.stderr


def test_queue_two_workers_one_device_each(repo, tmp_path):
    _dvc(repo, "repro", "prepare")
    out = lossbench(repo, "queue", "submit", "--jobs", "2", "--gpus", "0,1",
                    env={"LOSSBENCH_LOCK_DIR": str(tmp_path / "locks")})
    queued = re.findall(r"--name (\S+) (\S+)", out)
    families = ("focal", "ohem", "sse")
    study = ["train_focal@setting0-0", "train_focal@setting1-0", "train_ohem@3-0", "train_sse@0.5-0",
             *(f"train_default@{f}-1" for f in families), *(f"train_prior_off@{f}-0" for f in families)]
    assert sorted(s for _, s in queued) == sorted(study)  # not best_extra: it needs the selection

    out = lossbench(repo, "queue", "collect", "--wait")
    assert "failed" not in out, out
    assert len(re.findall(r"^collected ", out, re.M)) == len(study)

    recs = [json.loads((repo / "runs/smoke" / r / "metrics.json").read_text()) for r in RUNS]
    assert all(r["iters"] == 4 for r in recs)
    # each run locked one device of the pool and saw only that one
    assert {r["pool_device"] for r in recs} <= {"0", "1"}
    overlapping = 0
    for a, b in itertools.combinations(recs, 2):
        ta, tb = a["timing"], b["timing"]
        if ta["started_at"] < tb["finished_at"] and tb["started_at"] < ta["finished_at"]:
            overlapping += 1
            assert a["pool_device"] != b["pool_device"], (a["run"], b["run"])
    assert overlapping >= 1, "the two workers never trained at the same time"
    env = json.loads((repo / "runs/smoke" / RUNS[0] / "env.json").read_text())
    assert env["CUDA available"] is False  # trained on the CPU (MMEngine collect_env key)
    # checkpoints landed in this repository (LOSSBENCH_WORK_ROOT), not the temporary copy
    assert (repo / "work_dirs/smoke" / RUNS[1] / "iter_4.pth").is_file()

    # the collected stages are done: what is left of the study is the selection, the extra
    # seeds of each family's val-best and the report (`dvc repro report`, see test_pipeline)
    stale = {s for s in json.loads(_dvc(repo, "status", "--json")) if not s.endswith("_sweep")
             and "_sweep@" not in s}
    assert stale == {"select", *(f"best_extra@{f}-1" for f in families), "report"}, stale

    # a second submit has nothing left to queue
    assert "nothing to queue" in lossbench(repo, "queue", "submit", "--dry-run")

    # the extra seeds of the val-bests need the selection first ...
    p = subprocess.run([sys.executable, "-m", "lossbench", "queue", "submit", "--set", "extra"],
                       cwd=repo, capture_output=True, text=True)
    assert p.returncode == 2 and "select" in p.stderr and "dvc repro select" in p.stderr, p.stderr
    # ... then go through the queue too, each experiment with the runs folder copied in
    _dvc(repo, "repro", "select")
    out = lossbench(repo, "queue", "submit", "--set", "extra", "--jobs", "2")
    extra = [f"best_extra@{f}-1" for f in families]
    assert sorted(re.findall(r"--name \S+ (\S+)", out)) == extra, out
    assert out.count("--copy-paths runs/smoke ") == len(extra), out  # with its selection.json
    out = lossbench(repo, "queue", "collect", "--set", "extra", "--wait", "--remove")
    assert len(re.findall(r"^collected best_extra", out, re.M)) == len(extra), out
    selection = json.loads((repo / "runs/smoke/selection.json").read_text())
    for f in families:
        rec = json.loads((repo / "runs/smoke/extra/best" / f / "seed1/metrics.json").read_text())
        assert rec["iters"] == 4 and rec["seed"] == 1, rec
        best = selection["families"][f]["best"]
        knob = {k: "all" if v in (None, "all") else float(v) for k, v in rec["imbalance"].items()
                if k in best}
        assert knob == {k: "all" if v in (None, "all") else float(v) for k, v in best.items()}, \
            (rec["imbalance"], best)
    # all that is left of the study is the report
    stale = {s for s in json.loads(_dvc(repo, "status", "--json")) if not s.endswith("_sweep")
             and "_sweep@" not in s}
    assert stale == {"report"}, stale


TINY_DVC_YAML = """\
stages:
  train_sse:
    matrix:
      n: [1, 2]
    cmd: >-
      mkdir -p runs/n${item.n} && cd runs/n${item.n} && echo ${item.n} > out.txt
      && sleep 2 && rm -f old.txt
    outs:
      - runs/n${item.n}/out.txt:
          cache: false
"""


def tiny_repo(repo: Path, files: dict[str, str]) -> Path:
    """A git + DVC repository at ``repo`` holding ``files`` (path -> text), committed."""
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
    for cmd in (["git", "init", "-q"], [str(Path(sys.executable).parent / "dvc"), "init", "-q"],
                ["git", "add", "-A"], [*git, "commit", "-qm", "tiny"]):
        subprocess.run(cmd, cwd=repo, check=True)
    return repo


def test_collect_two_experiments_of_a_tiny_repo(tmp_path):
    """Two queued experiments of a trivial stage come back: their files, and dvc.lock from DVC."""
    repo = tiny_repo(tmp_path / "tiny", {"params.yaml": "profile: t\n", "dvc.yaml": TINY_DVC_YAML,
                                         "data/t/x": "x", ".gitignore": "/data/\n",
                                         "runs/n1/old.txt": "removed by the stage"})
    log: list[str] = []
    assert submit(repo, log=log.append) == ["train_sse@1", "train_sse@2"]
    assert collect(repo, log=log.append) == {}
    assert log[-1] == "still 0 running, 2 queued: collect again later", log

    assert submit(repo, jobs=2, log=log.append) == []  # already queued; starts the workers
    merged = collect(repo, wait=True, poll_s=1, log=log.append)
    assert merged == {"train_sse-1": "train_sse@1", "train_sse-2": "train_sse@2"}, log
    assert any(line.startswith("waiting: ") for line in log), log  # polled the queued/running states
    assert (repo / "runs/n1/out.txt").read_text() == "1\n"
    assert (repo / "runs/n2/out.txt").read_text() == "2\n"
    assert not (repo / "runs/n1/old.txt").exists()
    assert set(yaml.safe_load((repo / "dvc.lock").read_text())["stages"]) == set(merged.values())
    assert json.loads(_dvc(repo, "status", "--json")) == {}
    # the finished experiments are not queued again
    log.clear()
    assert submit(repo, all_stages=True, dry_run=True, log=log.append) == []
    assert log[:2] == [f"skip train_sse@{n}: experiment train_sse-{n} is success "
                       "(run `lossbench queue collect`)" for n in (1, 2)]


def test_a_stuck_dvc_command_is_killed_and_reported(tmp_path):
    """`dvc exp show` can block on an experiment whose temporary copy is being removed; the
    queue's commands run under a time-out instead of waiting forever."""
    import sys

    from lossbench.stages.queue import QueueError, _run

    with pytest.raises(QueueError, match="did not finish within 0.5 s"):
        _run([sys.executable, "-c", "import time; time.sleep(30)"], tmp_path, timeout=0.5)
    assert _run([sys.executable, "-c", "print('ok')"], tmp_path, timeout=30).strip() == "ok"


def test_collect_restores_what_an_experiment_wrote_not_its_workspace_deletions(tmp_path):
    """An experiment's commit holds the workspace it was queued from: an uncommitted deletion
    of another run's files there must not delete them again when it is collected."""
    from lossbench.stages.queue import changed_files

    repo = tmp_path / "g"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
    files = {"runs/a/x.txt": "old x", "runs/a/old.txt": "stale", "runs/b/y.txt": "other run"}
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "base"], cwd=repo, check=True)
    base = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    # the experiment: its workspace had runs/b emptied; its stage rewrote runs/a
    (repo / "runs/b/y.txt").unlink()
    (repo / "runs/a/old.txt").unlink()
    (repo / "runs/a/x.txt").write_text("new x")
    (repo / "runs/a/z.txt").write_text("new z")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "exp"], cwd=repo, check=True)
    rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    assert sorted(changed_files(repo, base, rev)) == ["runs/a/old.txt", "runs/a/x.txt", "runs/a/z.txt"]


def test_each_sweep_experiment_gets_its_own_point_data():
    from lossbench.stages.queue import stage_data

    data = [Path("data/sweep_o12"), Path("data/sweep_o4"), Path("data/sweep_o1")]
    assert stage_data("train_sweep@sweep_o4-run3-1", data) == [Path("data/sweep_o4")]
    # one profile's name is the start of another's
    assert stage_data("train_sweep@sweep_o1-run0-0", data) == [Path("data/sweep_o1")]
    assert stage_data("train_sweep@sweep_o12-run0-0", data) == [Path("data/sweep_o12")]
    assert stage_data("train_sse@0.5-1", [Path("data/synth")]) == [Path("data/synth")]


def test_workers_start_once_each_has_an_experiment(tmp_path, monkeypatch):
    """Queueing one experiment takes seconds: with --jobs 2 the workers start right after the
    second experiment is queued (not after the last), once, with the recorded settings."""
    from lossbench.stages import queue as q

    events: list[str] = []
    stages = [f"train_sse@{v}-0" for v in (0.1, 0.5, 1.0, 2.0)]

    def fake_dvc(repo, *args, **kw):
        if args[:2] == ("exp", "run"):
            events.append("queue " + args[-1])
            return ""
        assert args[:2] == ("status", "--json"), args
        return json.dumps({s: [] for s in stages})

    monkeypatch.setattr(q, "_dvc", fake_dvc)
    monkeypatch.setattr(q, "data_dirs", lambda repo, stage_set: [Path("data/synth")])
    monkeypatch.setattr(q, "train_stages", lambda repo, stage_set="study": stages)
    monkeypatch.setattr(q, "experiments", lambda repo: ("base", []))
    monkeypatch.setattr(q, "start_workers", lambda repo, jobs, env: events.append(
        f"start {jobs} {env.get('OMP_NUM_THREADS')}"))
    (tmp_path / "data/synth").mkdir(parents=True)
    assert submit(tmp_path, jobs=2, threads=1, log=lambda m: None) == stages
    assert events == [f"queue {stages[0]}", f"queue {stages[1]}", "start 2 1",
                      f"queue {stages[2]}", f"queue {stages[3]}"]
    assert json.loads((tmp_path / q.WORKERS_FILE).read_text())["jobs"] == 2
    # fewer stages than workers: start after the last one; nothing to queue: start anyway
    events.clear()
    stages[:] = stages[:1]
    submit(tmp_path, jobs=2, log=lambda m: None)
    assert events == [f"queue {stages[0]}", "start 2 None"]
    events.clear()
    monkeypatch.setattr(q, "experiments", lambda repo: ("base", [{"name": q.exp_name(stages[0]),
                                                                  "state": "queued"}]))
    assert submit(tmp_path, jobs=2, log=lambda m: None) == []
    assert events == ["start 2 None"]


def test_wait_restarts_a_dead_worker_only_while_tasks_wait(tmp_path):
    """DVC's file-based queue can lose a worker (treeverse/dvc#10428): with tasks queued and
    fewer busy workers than submitted on two polls in a row, the missing ones are started
    again with the recorded settings; a full or draining queue is left alone."""
    from lossbench.stages.queue import WORKERS_FILE, wait_for_queue

    (tmp_path / WORKERS_FILE).parent.mkdir(parents=True)
    (tmp_path / WORKERS_FILE).write_text(json.dumps({"jobs": 2, "env": {"OMP_NUM_THREADS": "1"}}))
    states = iter([(5, 2), (4, 1), (4, 1), (3, 2), (0, 1), (0, 1), (0, 0)])  # (queued, running)
    restarts: list[tuple[int, dict]] = []
    log: list[str] = []
    wait_for_queue(tmp_path, poll_s=0, log=log.append,
                   counts=lambda repo: dict(zip(("queued", "running"), next(states))),
                   restart=lambda repo, jobs, env: restarts.append((jobs, env)))
    # one restart after the two short polls (4 queued, 1 busy); none while draining (0 queued)
    assert restarts == [(2, {"OMP_NUM_THREADS": "1"})], log
    assert sum(line.startswith("waiting: ") for line in log) == 6
    assert next(states, None) is None  # returned at the first empty poll, not before


TINY_UPSTREAM_DVC_YAML = """\
stages:
  select:
    cmd: echo ran >> {log} && echo chosen > runs/sel.txt
    always_changed: true
    outs:
      - runs/sel.txt:
          cache: false
  train_sse:
    matrix:
      n: [1, 2]
    cmd: mkdir -p runs/n${{item.n}} && cat runs/sel.txt > runs/n${{item.n}}/out.txt
    deps:
      - runs/sel.txt
    outs:
      - runs/n${{item.n}}/out.txt:
          cache: false
"""


def test_an_experiment_runs_its_stage_only_not_the_upstream_ones(tmp_path):
    """A sweep stage reads the main study's selection.json; an experiment that re-verified
    the upstream stages would redo the main pipeline's checks (and any stage whose outputs
    its copy lacks) every time. Here the upstream stage always counts as changed: it must
    run once, in the workspace, and never inside the queued experiments."""
    repo, log_file = tmp_path / "tiny", tmp_path / "select.log"
    for path, text in {"params.yaml": "profile: t\n", "data/t/x": "x", ".gitignore": "/data/\n",
                       "dvc.yaml": TINY_UPSTREAM_DVC_YAML.format(log=log_file)}.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    (repo / "runs").mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
    for cmd in (["git", "init", "-q"], [str(Path(sys.executable).parent / "dvc"), "init", "-q"]):
        subprocess.run(cmd, cwd=repo, check=True)
    _dvc(repo, "repro", "select")
    for cmd in (["git", "add", "-A"], [*git, "commit", "-qm", "tiny"]):
        subprocess.run(cmd, cwd=repo, check=True)
    assert log_file.read_text() == "ran\n"
    log: list[str] = []
    assert submit(repo, jobs=2, log=log.append) == ["train_sse@1", "train_sse@2"]
    assert all("--single-item" in line for line in log if line.startswith("queue: ")), log
    merged = collect(repo, wait=True, poll_s=1, log=log.append)
    assert set(merged.values()) == {"train_sse@1", "train_sse@2"}, log
    assert (repo / "runs/n2/out.txt").read_text() == "chosen\n"
    assert log_file.read_text() == "ran\n"  # the experiments did not run `select` again


TINY_RUN_DVC_YAML = """\
stages:
  train_sse:
    matrix:
      n: [1, 2, 3]
    cmd: >-
      mkdir -p runs/n${item.n} && date +%s.%N > runs/n${item.n}/start && sleep 2
      && echo ${item.n} $DVC_STAGE $OMP_NUM_THREADS >> runs/n${item.n}/out.txt
      && date +%s.%N > runs/n${item.n}/end && test ${item.n} != 3
    outs:
      - runs/n${item.n}/out.txt:
          cache: false
"""


def test_run_here_runs_stages_side_by_side_and_records_the_ones_that_succeed(tmp_path):
    """`queue run`: the stale stages of a set run here, 2 at a time, each as DVC would run it
    (its output removed first, DVC_STAGE set); the ones that succeed go into dvc.lock, a
    failing one is named with its log and stays stale."""
    from lossbench.stages.queue import QueueError, run_here

    repo = tiny_repo(tmp_path / "tiny", {"params.yaml": "profile: t\n", "dvc.yaml": TINY_RUN_DVC_YAML,
                                         "data/t/x": "x", ".gitignore": "/data/\n",
                                         "runs/n1/out.txt": "left over\n"})
    log: list[str] = []
    with pytest.raises(QueueError, match=r"1 of 3 stage\(s\) failed: train_sse@3 \(2 recorded"):
        run_here(repo, jobs=2, threads=1, log=log.append)
    assert (repo / "runs/n1/out.txt").read_text() == "1 train_sse@1 1\n"  # left-over removed
    assert (repo / "runs/n2/out.txt").read_text() == "2 train_sse@2 1\n"
    span = {n: [float((repo / f"runs/n{n}" / k).read_text()) for k in ("start", "end")] for n in (1, 2, 3)}
    assert span[1][0] < span[2][1] and span[2][0] < span[1][1], span  # 1 and 2 side by side
    assert span[3][0] >= min(span[1][1], span[2][1]), span  # 3 waited for a free slot
    assert set(yaml.safe_load((repo / "dvc.lock").read_text())["stages"]) == {"train_sse@1", "train_sse@2"}
    assert set(json.loads(_dvc(repo, "status", "--json"))) == {"train_sse@3"}
    assert "FAILED (exit 1) train_sse@3 [" in "\n".join(log), log
    # a second run retries only the failed one
    with pytest.raises(QueueError, match=r"1 of 1 stage"):
        run_here(repo, jobs=2, log=log.append)


def test_run_here_runs_the_smoke_study(tmp_path):
    """`make repro`'s path on the smoke profile: the trainings that need no selection, the
    selection, the val-bests' extra seeds, then `dvc repro report` has nothing left to train."""
    repo = tmp_path / "repo"
    repo.mkdir()
    copy_repo(repo)
    set_params(repo, **SMOKE_PARAMS)
    _dvc(repo, "repro", "prepare")
    p = subprocess.run([sys.executable, "-m", "lossbench", "queue", "run", "--set", "extra"],
                       cwd=repo, capture_output=True, text=True)
    assert p.returncode == 2 and "dvc repro select" in p.stderr, p.stderr
    out = lossbench(repo, "queue", "run", "--jobs", "2", "--threads", "1")
    families = ("focal", "ohem", "sse")
    study = ["train_focal@setting0-0", "train_focal@setting1-0", "train_ohem@3-0", "train_sse@0.5-0",
             *(f"train_default@{f}-1" for f in families), *(f"train_prior_off@{f}-0" for f in families)]
    assert sorted(re.findall(r"^done (\S+)", out, re.M)) == sorted(study), out
    _dvc(repo, "repro", "select")
    out = lossbench(repo, "queue", "run", "--set", "extra", "--jobs", "2", "--threads", "1")
    assert sorted(re.findall(r"^done (\S+)", out, re.M)) == [f"best_extra@{f}-1" for f in families]
    ran = re.findall(r"Running stage '([^']+)'", _dvc(repo, "repro", "report"))
    assert ran == ["report"], ran
    rec = json.loads((repo / "runs/smoke/extra/best/sse/seed1/metrics.json").read_text())
    assert rec["iters"] == 4 and rec["seed"] == 1
    stale = {s for s in json.loads(_dvc(repo, "status", "--json")) if "sweep" not in s}
    assert stale == set(), stale
