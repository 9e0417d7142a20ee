"""`lossbench queue`: a set's stale training stages run here (`run`) or as submitit jobs
(`slurm`; here through submitit's local executor) and are recorded in dvc.lock.

The DVC tests run on a temporary copy of the repository with the `smoke` profile, or on a tiny
DVC repository whose stages are shell one-liners. The job settings are checked against the
sbatch file submitit writes, without a cluster (a stand-in `srun` on PATH).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lossbench.queue import (
    SLURM_ENV,
    QueueError,
    SlurmSettings,
    StageRun,
    executor_parameters,
    make_executor,
    run_here,
    run_jobs,
    run_order,
    run_slurm,
    slurm_settings,
    stage_runs,
)
from lossbench.workspace import SMOKE_PARAMS, copy_repo, dvc, set_params

FAMILIES = ("focal", "ohem", "sse")
#: the smoke profile's trainings that need no selection (`--set study`)
STUDY = ["train_focal@setting0-0", "train_focal@setting1-0", "train_ohem@3-0", "train_sse@0.5-0",
         *(f"train_default@{f}-1" for f in FAMILIES), *(f"train_prior_off@{f}-0" for f in FAMILIES),
         *(f"train_calibration@{f}-0" for f in FAMILIES)]


def lossbench(repo: Path, *args: str, env: dict[str, str] | None = None,
              ok: bool = True) -> subprocess.CompletedProcess:
    bindir = Path(sys.executable).parent
    p = subprocess.run([sys.executable, "-m", "lossbench", *args], cwd=repo, text=True,
                       capture_output=True, timeout=1200,
                       env={**os.environ, **(env or {}),
                            "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"})
    if ok:
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p


def _group_ended(pgid: int, within_s: float) -> bool:
    """Whether every process of group ``pgid`` has ended within ``within_s``. An ended process whose parent died
    stays a zombie until the machine's init reaps it, which can take seconds, so zombies count as ended."""
    def live(stat: Path) -> bool:
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after the name: state, ppid, pgrp, ...
        except (OSError, IndexError):
            return False  # ended while being read
        return int(fields[2]) == pgid and fields[0] != "Z"

    deadline = time.monotonic() + within_s
    while True:
        if not any(map(live, Path("/proc").glob("[0-9]*/stat"))):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def _dvc(repo: Path, *args: str) -> str:
    res = dvc(repo, *args)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr


def smoke_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    copy_repo(repo)
    set_params(repo, **SMOKE_PARAMS)
    return repo


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


# --- the stage list and `run` ------------------------------------------------------------------

TINY_RUN_DVC_YAML = """\
stages:
  train_sse:
    matrix:
      n: [1, 2, 3]
    cmd: >-
      mkdir -p runs/n${item.n} && date +%s.%N > runs/n${item.n}/start && sleep 2
      && echo ${item.n} $DVC_STAGE $OMP_NUM_THREADS >> runs/n${item.n}/out.txt
      && date +%s.%N > runs/n${item.n}/end
      && { test ${item.n} != 3 || { echo "no luck for ${item.n}" >&2; exit 1; }; }
    outs:
      - runs/n${item.n}/out.txt:
          cache: false
"""
TINY_FILES = {"params.yaml": "profile: t\n", "dvc.yaml": TINY_RUN_DVC_YAML, "data/t/x": "x",
              ".gitignore": "/data/\n", "runs/n1/out.txt": "left over\n"}


@pytest.mark.slow
def test_run_here_runs_stages_side_by_side_and_records_the_ones_that_succeed(tmp_path):
    """`queue run`: the stale stages of a set run here, 2 at a time, each as DVC would run it
    (its output removed first, DVC_STAGE set); the ones that succeed go into dvc.lock, a
    failing one is named with its log and stays stale."""
    repo = tiny_repo(tmp_path / "tiny", TINY_FILES)
    log: list[str] = []
    with pytest.raises(QueueError, match=r"1 of 3 stage\(s\) failed: train_sse@3 \(2 recorded") as err:
        run_here(repo, jobs=2, threads=1, log=log.append)
    assert "lossbench-run/train_sse-3.log" in str(err.value) and "no luck for 3" in str(err.value)
    assert (repo / "runs/n1/out.txt").read_text() == "1 train_sse@1 1\n"  # left-over removed
    assert (repo / "runs/n2/out.txt").read_text() == "2 train_sse@2 1\n"
    span = {n: [float((repo / f"runs/n{n}" / k).read_text()) for k in ("start", "end")] for n in (1, 2, 3)}
    a, b, c = (int(name[-1]) for name in run_order([f"train_sse@{n}" for n in (1, 2, 3)]))  # the order they ran in
    assert span[a][0] < span[b][1] and span[b][0] < span[a][1], span  # the first two side by side
    assert span[c][0] >= min(span[a][1], span[b][1]), span  # the third waited for a free slot
    assert set(yaml.safe_load((repo / "dvc.lock").read_text())["stages"]) == {"train_sse@1", "train_sse@2"}
    assert set(json.loads(_dvc(repo, "status", "--json"))) == {"train_sse@3"}
    assert "FAILED (exit 1) train_sse@3 [" in "\n".join(log), log
    # a second run retries only the failed one
    with pytest.raises(QueueError, match=r"1 of 1 stage"):
        run_here(repo, jobs=2, log=log.append)


def test_the_stages_run_in_one_shuffled_order():
    """The same stale list always runs in the same order, a permutation of it that mixes the stages dvc.yaml lists
    together (the sweep's 54 runs, canvas by canvas there: each canvas is among the first nine to run), so the
    estimated finish from the finished stages' mean is not thrown off by the costlier canvases coming last."""
    names = [f"train_sweep@sweep_c{c}-run{r}-{k}" for c in (96, 192, 320) for r in range(6) for k in range(3)]
    order = run_order(names)
    assert order == run_order(list(names)) and sorted(order) == sorted(names) and order != names
    assert {n.split("@")[1].split("-")[0] for n in order[:9]} == {"sweep_c96", "sweep_c192", "sweep_c320"}
    assert run_order([]) == [] and run_order(["a"]) == ["a"]


@pytest.mark.slow
def test_run_here_runs_the_smoke_study(tmp_path):
    """`make repro`'s path on the smoke profile: the trainings that need no selection, the
    selection, the val-bests' extra seeds, then `dvc repro report` has nothing left to train."""
    repo = smoke_repo(tmp_path)
    _dvc(repo, "repro", "prepare", "pretrain")
    p = lossbench(repo, "queue", "run", "--set", "extra", ok=False)
    assert p.returncode == 2 and "dvc repro select" in p.stderr, p.stderr
    out = lossbench(repo, "queue", "run", "--jobs", "2", "--threads", "1").stdout
    assert sorted(re.findall(r"^done (\S+)", out, re.M)) == sorted(STUDY), out
    _dvc(repo, "repro", "select")
    out = lossbench(repo, "queue", "run", "--set", "extra", "--jobs", "2", "--threads", "1").stdout
    assert sorted(re.findall(r"^done (\S+)", out, re.M)) == sorted(
        [f"best_extra@{f}-1" for f in FAMILIES] + [f"best_calibration@{f}-0" for f in FAMILIES])
    ran = re.findall(r"Running stage '([^']+)'", _dvc(repo, "repro", "report"))
    assert ran == ["report"], ran
    rec = json.loads((repo / "runs/smoke/extra/best/sse/seed1/metrics.json").read_text())
    assert rec["iters"] == 4 and rec["seed"] == 1
    stale = {s for s in json.loads(_dvc(repo, "status", "--json"))
             if "sweep" not in s and not s.startswith(("remed", "select_remedies", "report_remedies"))}  # `make remedies`, `make sweep`
    assert stale == set(), stale


# --- `slurm`: settings (no job started) ---------------------------------------------------------

def parse(*argv: str):
    from lossbench.cli import build_parser

    return build_parser(expand="queue").parse_args(["queue", "slurm", *argv])


@pytest.fixture
def fake_srun(tmp_path, monkeypatch):
    """A stand-in `srun` on PATH: submitit builds its Slurm executor only where `srun` exists.
    Nothing is submitted (no `sbatch`)."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    (bindir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bindir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")


FLAGS = ("--partition", "gpu", "--time", "120", "--gpus-per-job", "1", "--cpus-per-job", "8",
         "--mem-gb", "32", "--array-parallelism", "4", "--slurm-option", "account=proj",
         "--slurm-option", "qos=high", "--log-dir", "slurm-logs")
ENV = {"LOSSBENCH_SLURM_PARTITION": "gpu", "LOSSBENCH_SLURM_TIME": "120",
       "LOSSBENCH_SLURM_GPUS_PER_JOB": "1", "LOSSBENCH_SLURM_CPUS_PER_JOB": "8",
       "LOSSBENCH_SLURM_MEM_GB": "32", "LOSSBENCH_SLURM_ARRAY_PARALLELISM": "4",
       "LOSSBENCH_SLURM_OPTIONS": "account=proj qos=high", "LOSSBENCH_SLURM_LOG_DIR": "slurm-logs"}


def test_flags_and_environment_become_submitit_parameters(tmp_path, fake_srun):
    """Each flag, or its environment variable when the flag is not given, ends up in the sbatch
    file submitit writes for the job array."""
    from submitit.slurm.slurm import _make_sbatch_string

    expected = SlurmSettings(partition="gpu", time=120, gpus_per_job=1, cpus_per_job=8, mem_gb=32.0,
                             array_parallelism=4, options={"account": "proj", "qos": "high"},
                             log_dir=Path("slurm-logs"))
    assert slurm_settings(parse(*FLAGS), environ={}) == expected
    assert slurm_settings(parse(), environ=ENV) == expected
    assert set(ENV) | {"LOSSBENCH_SLURM_EXECUTOR"} == set(SLURM_ENV.values())
    # a flag wins over its variable; the others still come from the environment
    mixed = slurm_settings(parse("--partition", "cpu", "--slurm-option", "exclusive"), environ=ENV)
    assert (mixed.partition, mixed.options, mixed.time) == ("cpu", {"exclusive": True}, 120)
    # nothing given: submitit's defaults but for the time limit (its own is 5 minutes)
    assert slurm_settings(parse(), environ={}) == SlurmSettings()

    executor = make_executor(tmp_path, expected, threads=2, name="lossbench-study")
    assert executor.cluster == "slurm" and executor.folder == tmp_path / "slurm-logs"
    assert executor._executor.parameters == {
        "job_name": "lossbench-study", "time": 120, "nodes": 1, "ntasks_per_node": 1,
        "gpus_per_node": 1, "cpus_per_task": 8, "mem": "32GB", "partition": "gpu",
        "array_parallelism": 4, "additional_parameters": {"account": "proj", "qos": "high"}}
    sbatch = _make_sbatch_string(command="python -m submitit.core._submit x", folder=executor.folder,
                                 map_count=10, **executor._executor.parameters)
    for line in ("--partition=gpu", "--time=120", "--gpus-per-node=1", "--cpus-per-task=8",
                 "--mem=32GB", "--array=0-9%4", "--account=proj", "--qos=high", "--job-name=lossbench-study",
                 "--nodes=1", "--ntasks-per-node=1"):
        assert f"#SBATCH {line}\n" in sbatch, (line, sbatch)
    # --threads gives the CPUs when --cpus-per-job is not given
    assert executor_parameters(SlurmSettings(), threads=3, name="n") == {
        "name": "n", "timeout_min": 60, "nodes": 1, "tasks_per_node": 1, "cpus_per_task": 3}

    # the local executor takes the generic settings and leaves the Slurm-only ones
    local = make_executor(tmp_path, SlurmSettings(executor="local", time=7, partition="gpu",
                                                  options={"account": "proj"}), threads=1, name="n")
    assert local.cluster == "local"
    assert local._executor.parameters["timeout_min"] == 7
    assert not {"partition", "additional_parameters", "slurm_partition"} & set(local._executor.parameters)


@pytest.mark.parametrize("env, message", [
    ({"LOSSBENCH_SLURM_TIME": "2h"}, "LOSSBENCH_SLURM_TIME: expected an integer, got '2h'"),
    ({"LOSSBENCH_SLURM_GPUS_PER_JOB": "-1"}, "LOSSBENCH_SLURM_GPUS_PER_JOB: must be >= 0"),
    ({"LOSSBENCH_SLURM_MEM_GB": "0"}, "LOSSBENCH_SLURM_MEM_GB: must be > 0"),
    ({"LOSSBENCH_SLURM_OPTIONS": "=x"}, "LOSSBENCH_SLURM_OPTIONS: expected KEY=VALUE"),
    ({"LOSSBENCH_SLURM_EXECUTOR": "pbs"}, "executor must be one of slurm, local"),
])
def test_a_bad_setting_is_named(env, message):
    with pytest.raises(QueueError, match=re.escape(message)):
        slurm_settings(parse(), environ=env)


def test_without_slurm_the_error_names_the_local_executor(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun
    with pytest.raises(QueueError, match="--executor local"):
        run_slurm(tmp_path, SlurmSettings())


# --- `slurm`: jobs ------------------------------------------------------------------------------

def test_a_failing_job_is_reported_with_its_log_and_the_others_recorded(tmp_path, monkeypatch):
    """Real jobs through submitit's local executor (shell one-liners, no DVC): the stage that
    fails is named with its exit status and the end of its job's logs; the others, and only
    them, are recorded (``dvc commit --force``, stood in for here)."""
    import lossbench.queue as queue

    out = tmp_path / "out"
    out.mkdir()
    runs = {f"train_sse@{n}": StageRun(f"train_sse@{n}", f"echo $DVC_STAGE $OMP_NUM_THREADS >> {n}.txt", str(out),
                                       (str(out / f"{n}.txt"),)) for n in (1, 2)}
    runs["train_sse@3"] = StageRun("train_sse@3", 'echo "half of $DVC_STAGE"; echo "$DVC_STAGE broke" >&2; exit 3',
                                    str(out))
    (out / "1.txt").write_text("left over\n")
    commits: list[tuple[str, ...]] = []
    monkeypatch.setattr(queue, "stale_stages", lambda repo, stage_set, **kw: list(runs))
    monkeypatch.setattr(queue, "stage_runs", lambda repo, stages: {s: runs[s] for s in stages})
    monkeypatch.setattr(queue, "_dvc", lambda repo, *args: commits.append(args) or "")
    log: list[str] = []
    with pytest.raises(QueueError) as err:
        run_slurm(tmp_path, SlurmSettings(executor="local", array_parallelism=2), threads=1,
                  poll_s=0.2, log=log.append)
    text = str(err.value)
    assert text.startswith("1 of 3 stage(s) failed: train_sse@3 (2 recorded in dvc.lock)"), text
    assert re.search(r"--- train_sse@3 \(job \d+: exit 3\)", text), text
    assert "half of train_sse@3" in text and "train_sse@3 broke" in text, text  # its stdout, its stderr
    assert str(tmp_path / ".dvc/tmp/lossbench-slurm") in text  # where the logs are
    # each recorded as its job ended (the two ran side by side: either may end first)
    assert sorted(commits) == [("commit", "--force", "train_sse@1"), ("commit", "--force", "train_sse@2")]
    assert (out / "1.txt").read_text() == "train_sse@1 1\n"  # its output removed first; env set
    assert (out / "2.txt").read_text() == "train_sse@2 1\n"
    assert sorted(re.findall(r"^(done|FAILED \(exit 3\)) (\S+)", "\n".join(log), re.M)) == [
        ("FAILED (exit 3)", "train_sse@3"), ("done", "train_sse@1"), ("done", "train_sse@2")], log


def test_at_most_array_parallelism_local_jobs_run_at_once(tmp_path):
    import submitit

    executor = submitit.AutoExecutor(folder=tmp_path / "jobs", cluster="local")
    executor.update_parameters(timeout_min=5)
    runs = [StageRun(f"s{n}", f"date +%s.%N > {n}.start; sleep 1; date +%s.%N > {n}.end", str(tmp_path))
            for n in range(3)]
    ended = [(r.name, error) for r, _, error in run_jobs(executor, runs, {}, limit=2, poll_s=0.1, log=print)]
    assert sorted(ended) == [("s0", None), ("s1", None), ("s2", None)]
    span = [[float((tmp_path / f"{n}.{k}").read_text()) for k in ("start", "end")] for n in range(3)]
    assert span[2][0] >= min(span[0][1], span[1][1]), span  # the third waited for a free slot


def test_an_interrupted_wait_cancels_the_unfinished_jobs(tmp_path):
    """Ctrl-C while waiting (run_slurm closes the generator) cancels the jobs still running, and
    a cancelled job ends its stage's whole process group, not only the shell."""
    import submitit

    executor = submitit.AutoExecutor(folder=tmp_path / "jobs", cluster="local")
    executor.update_parameters(timeout_min=5)
    log: list[str] = []
    events = run_jobs(executor, [StageRun("fast", "true", str(tmp_path)),
                                 StageRun("slow", "touch slow.started; (sleep 8; touch slow.done) & wait",
                                          str(tmp_path))],
                      {}, limit=2, poll_s=0.1, log=log.append)
    run, _, error = next(events)
    assert (run.name, error) == ("fast", None)
    t0 = time.monotonic()
    while not (tmp_path / "slow.started").exists():  # its stage is running
        assert time.monotonic() - t0 < 60, "the slow job never started"
        time.sleep(0.1)
    events.close()
    assert log[-1] == "cancelled 1 unfinished job(s)", log
    time.sleep(10)  # the margins hold on a loaded machine: cancelling took over 2 s there
    assert not (tmp_path / "slow.done").exists()


def test_a_cancelled_local_job_s_stage_group_is_ended_from_the_queue_too(tmp_path):
    """The stage writes its process group id beside its job's stdout; the queue ends that group itself when it
    cancels a local job (should the cancel signal not reach the job), and leaves other executors' jobs alone."""
    import signal
    import subprocess

    from submitit.core.core import Job
    from submitit.local.local import LocalJob

    from lossbench.queue import end_job_group, group_file, run_stage

    job = LocalJob(tmp_path / "jobs", job_id="4242")
    group_file(job.paths).parent.mkdir(parents=True)
    assert not end_job_group(job)  # its stage never started: nothing to end
    # run_stage records the group of the stage it starts
    rc = run_stage(StageRun("s", "echo $$ > shell.pid", str(tmp_path)), {}, own_group=True,
                   group_file=group_file(job.paths))
    assert rc == 0 and group_file(job.paths).read_text().strip() == (tmp_path / "shell.pid").read_text().strip()
    assert not end_job_group(job)  # that stage has ended and been reaped: its group is gone
    # a live group: the shell and the sleep under it both end
    proc = subprocess.Popen(["sh", "-c", "sleep 60 & echo $!; wait"], start_new_session=True,
                            stdout=subprocess.PIPE, text=True)
    assert int(proc.stdout.readline())  # the sleep has started: the group has two members
    proc.stdout.close()
    group_file(job.paths).write_text(f"{proc.pid}\n")
    assert end_job_group(job)
    assert proc.wait(timeout=10) == -signal.SIGTERM
    assert _group_ended(proc.pid, within_s=10), "the sleep under the shell outlived the cancel"
    assert not end_job_group(Job(tmp_path / "jobs", job_id="4242"))  # not a local job: Slurm ends its own


def test_a_job_at_its_time_limit_is_reported_and_its_training_ended(tmp_path):
    """submitit signals a job near its time limit; the stage's whole process group is ended and
    the job is reported as timed out (its training resumes from its checkpoint on a rerun)."""
    import submitit

    executor = submitit.LocalExecutor(folder=tmp_path / "jobs")
    executor.update_parameters(timeout_min=0.1, signal_delay_s=3)  # the signal after 3 s
    runs = [StageRun("slow", "(sleep 5; touch slow.done) & wait", str(tmp_path)),
            StageRun("bad", "exit 3", str(tmp_path))]
    ended = {r.name: error for r, _, error in run_jobs(executor, runs, {}, limit=2, poll_s=0.1)}
    assert ended["bad"] == "exit 3"
    assert ended["slow"].endswith("UncompletedJobError: Job not requeued because: timed-out and "
                                  "not checkpointable."), ended
    time.sleep(3)
    assert not (tmp_path / "slow.done").exists()


@pytest.mark.slow
def test_tiny_stages_through_the_local_executor(tmp_path):
    """`queue slurm --executor local` on a tiny DVC repository: the failing stage stays stale,
    named with its log; the others are in dvc.lock; a second call submits the failed one only."""
    repo = tiny_repo(tmp_path / "tiny", TINY_FILES)
    log: list[str] = []
    settings = SlurmSettings(executor="local", array_parallelism=3)
    with pytest.raises(QueueError, match=r"1 of 3 stage\(s\) failed: train_sse@3 \(2 recorded") as err:
        run_slurm(repo, settings, threads=1, poll_s=0.2, log=log.append)
    assert "no luck for 3" in str(err.value) and "exit 1" in str(err.value)
    assert (repo / "runs/n1/out.txt").read_text() == "1 train_sse@1 1\n"  # left-over removed
    assert set(yaml.safe_load((repo / "dvc.lock").read_text())["stages"]) == {"train_sse@1", "train_sse@2"}
    assert set(json.loads(_dvc(repo, "status", "--json"))) == {"train_sse@3"}
    log.clear()
    with pytest.raises(QueueError, match=r"1 of 1 stage"):
        run_slurm(repo, settings, poll_s=0.2, log=log.append)
    assert log[0].startswith("submit 1 stage(s) as local jobs"), log


@pytest.mark.slow
def test_slurm_local_executor_trains_the_smoke_study(tmp_path):
    """`queue slurm` end to end on the smoke profile, through submitit's local executor: every
    training stage of the set is submitted as a job, trains, and is recorded in dvc.lock."""
    repo = smoke_repo(tmp_path)
    p = lossbench(repo, "queue", "slurm", "--executor", "local", ok=False)
    assert p.returncode == 2 and "dvc repro prepare" in p.stderr, p.stderr
    _dvc(repo, "repro", "prepare", "pretrain")
    t0 = time.monotonic()
    out = lossbench(repo, "queue", "slurm", "--threads", "1",
                    env={"LOSSBENCH_SLURM_EXECUTOR": "local", "LOSSBENCH_SLURM_ARRAY_PARALLELISM": "2"}).stdout
    print(f"queue slurm --executor local: {len(STUDY)} trainings in {time.monotonic() - t0:.0f} s")
    assert re.search(rf"^submit {len(STUDY)} stage\(s\) as local jobs, 2 at a time", out, re.M), out
    assert sorted(re.findall(r"^done (\S+)", out, re.M)) == sorted(STUDY), out
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert set(STUDY) <= set(lock), sorted(lock)
    stale = set(json.loads(_dvc(repo, "status", "--json")))
    assert not stale & set(STUDY), stale
    assert stale >= {"select", "report"}  # the rest of the study is still to do
    for run in stage_runs(repo, STUDY).values():
        (work_dir,) = re.findall(r"--work-dir (\S+)", run.cmd)
        assert list((repo / work_dir).glob("iter_*.pth")), work_dir  # checkpoints in this repository
    (out_dir,) = re.findall(r"--out (\S+)", stage_runs(repo, ["train_ohem@3-0"])["train_ohem@3-0"].cmd)
    rec = json.loads((repo / out_dir / "metrics.json").read_text())
    assert rec["iters"] == 4
    assert json.loads((repo / out_dir / "env.json").read_text())["cpu_threads"] == 1  # --threads 1
    assert len(list((repo / ".dvc/tmp/lossbench-slurm").glob("*_log.out"))) == len(STUDY)
    # resuming: the same command submits only what is stale, here nothing
    out = lossbench(repo, "queue", "slurm", "--executor", "local").stdout
    assert "nothing to run" in out, out
