"""Train a set's stale stages and record them in dvc.lock: `run` here, `slurm` as Slurm jobs.

Both actions take the training stages of a set (--set) that `dvc status` lists as not up to
date (--all: every one; --stages GLOB: only those matching): `study` (default), the current
profile's trainings that need no val selection; `extra`, the extra seeds of each family's
val-selected best (after `dvc repro select`); `sweep`, the imbalance sweep's train_sweep stages.
The stages they read must be up to date first (both actions check). Each stage runs as `dvc
repro` would run it; those that succeed are recorded with `dvc commit --force`, a failed one is
reported with the end of its log and stays stale, so the same command runs it, and only it,
again. `run` runs them in this workspace (--jobs N side by side, --gpus a device pool); `slurm`
submits one Slurm job array through submitit (--executor local: processes of this machine), each
job setting a flag or its LOSSBENCH_SLURM_* variable. Details: docs/scaling.md.

Examples:
  dvc repro prepare
  lossbench queue run --jobs 2 --threads 1
  lossbench queue slurm --partition gpu --gpus-per-job 1 --cpus-per-job 8 --time 120
  LOSSBENCH_SLURM_PARTITION=gpu lossbench queue slurm --set extra --slurm-option account=proj
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from lossbench.profiles import load_params
from lossbench.stages.train import WORK_ROOT_ENV
from lossbench.training.devices import POOL_ENV, parse_pool

RUN_LOGS = Path(".dvc/tmp/lossbench-run")  # run_here: one log per stage
SLURM_LOGS = Path(".dvc/tmp/lossbench-slurm")  # run_slurm: submitit's folder (jobs, logs)
#: the training stages of each set (`make repro`: study, then extra after `dvc repro select`)
STAGE_SETS = {"study": re.compile(r"^train_(focal|ohem|sse|default|prior_off|calibration)@"),
              "extra": re.compile(r"^best_(extra|calibration)@"),
              "remedies": re.compile(r"^remedy_[a-z_]+@"), "remedies_extra": re.compile(r"^remedies_extra@"),
              "sweep": re.compile(r"^train_sweep@")}
#: the stages a set's trainings read (up to date first), and the command that updates them
UPSTREAM = {"study": (("fetch", "prepare", "pretrain"), "dvc repro prepare pretrain"),
            "extra": (("fetch", "prepare", "pretrain", "select"), "dvc repro select"),
            "remedies": (("fetch", "prepare", "pretrain"), "dvc repro prepare pretrain"),
            "remedies_extra": (("fetch", "prepare", "pretrain", "select_remedies"), "dvc repro select_remedies"),
            "sweep": (("fetch_sweep", "prepare_sweep"), "dvc repro --glob 'prepare_sweep@*'")}
#: `queue slurm`'s job settings: argparse dest -> the environment variable read without the flag
SLURM_ENV = {"executor": "LOSSBENCH_SLURM_EXECUTOR", "partition": "LOSSBENCH_SLURM_PARTITION",
             "time": "LOSSBENCH_SLURM_TIME", "gpus_per_job": "LOSSBENCH_SLURM_GPUS_PER_JOB",
             "cpus_per_job": "LOSSBENCH_SLURM_CPUS_PER_JOB", "mem_gb": "LOSSBENCH_SLURM_MEM_GB",
             "array_parallelism": "LOSSBENCH_SLURM_ARRAY_PARALLELISM", "slurm_option": "LOSSBENCH_SLURM_OPTIONS",
             "log_dir": "LOSSBENCH_SLURM_LOG_DIR"}
EXECUTORS = ("slurm", "local")
LOG_TAIL = 1500  # characters of a failed stage's log in the error
#: the stages of a set run in an order shuffled with this seed: the finished ones are then a random sample of the set,
#: so the estimated finish (their mean wall time x the stages left) is not biased where stages differ in cost (the
#: sweep's canvases, the calibration's 2T runs), which dvc.yaml's order would group at one end
ORDER_SEED = 0


class QueueError(RuntimeError):
    """The workspace is not ready, a setting is wrong, or stages failed (named cause)."""


class StageFailed(RuntimeError):
    """A stage's command ended with a non-zero exit status (raised inside its job)."""


def _path_env() -> dict[str, str]:
    """This Python's scripts (the project's venv) first on PATH."""
    return {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def _dvc(repo: Path, *args: str) -> str:
    """Run the ``dvc`` next to this Python (the project's venv, else PATH's) with its scripts on PATH; its stdout,
    or QueueError with its output."""
    exe = Path(sys.executable).parent / "dvc"
    cmd = [str(exe) if exe.is_file() else "dvc", *args]
    p = subprocess.run(cmd, cwd=repo, env={**os.environ, **_path_env()}, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, errors="replace")
    if p.returncode != 0:
        raise QueueError(f"`{' '.join(cmd)}` failed (exit {p.returncode}):\n{(p.stdout + p.stderr).strip()[-2000:]}")
    return p.stdout


def log_name(stage: str) -> str:
    """A file name for a stage's log: ``train_sse@0.5-0`` → ``train_sse-0_5-0``."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", stage.replace("@", "-"))


def profile_of(repo: Path) -> str:
    prof = load_params(repo / "params.yaml").get("profile")
    if not isinstance(prof, str):
        raise QueueError(f"{repo / 'params.yaml'}: 'profile' must name a profile, got {prof!r}")
    return prof


def train_stages(repo: Path, stage_set: str = "study") -> list[str]:
    return [n for n in _dvc(repo, "stage", "list", "--name-only").split() if STAGE_SETS[stage_set].match(n)]


def data_dirs(repo: Path, stage_set: str) -> list[Path]:
    """The prepared data a set's trainings read."""
    if stage_set in ("study", "extra", "remedies", "remedies_extra"):
        return [Path("data") / profile_of(repo)]
    profiles = (load_params(repo / "params.yaml").get("sweep") or {}).get("profiles")
    if not profiles:
        raise QueueError(f"{repo / 'params.yaml'}: sweep.profiles lists no profile")
    return [Path("data") / p for p in profiles]


def stale_stages(repo: Path, stage_set: str, *, all_stages: bool = False, pattern: str | None = None) -> list[str]:
    """The set's training stages that are not up to date (``all_stages``: every one), matching
    ``pattern``; raises when a stage they rely on (``UPSTREAM``) is stale or its output missing."""
    status = json.loads(_dvc(repo, "status", "--json").strip() or "{}")
    upstream, hint = UPSTREAM[stage_set]
    stale = [s for s in status if s.split("@")[0] in upstream]
    missing = [str(d) for d in data_dirs(repo, stage_set) if not (repo / d).exists()]
    if stale or missing:
        raise QueueError(f"{', '.join(stale + missing)}: not up to date; run `{hint}` first "
                         f"(the trainings read its outputs)")
    stages = [s for s in train_stages(repo, stage_set) if all_stages or s in status]
    return [s for s in stages if fnmatch.fnmatch(s, pattern)] if pattern else stages


def worker_env(repo: Path, threads: int | None, gpus: str | None = None) -> dict[str, str]:
    """What the trainings' environment adds: DVC_ROOT, checkpoints under ``repo``, threads, GPU pool."""
    env = {"DVC_ROOT": str(repo), WORK_ROOT_ENV: str(repo)}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if gpus:
        parse_pool(gpus)
        env[POOL_ENV] = gpus
    return env


@dataclass(frozen=True)
class StageRun:
    """One stage as `dvc repro` runs it: its command (a list's commands joined by ``&&``), its
    folder and the outputs to remove first (the non-persistent ones), from DVC's stage index."""

    name: str
    cmd: str
    wdir: str
    outs: tuple[str, ...] = ()


def stage_runs(repo: Path, stages: list[str]) -> dict[str, StageRun]:
    from dvc.repo import Repo

    runs = {}
    with Repo(str(repo)) as dvc_repo:
        for name in stages:
            (stage,) = dvc_repo.stage.collect(f"{repo / 'dvc.yaml'}:{name}")
            cmds = stage.cmd if isinstance(stage.cmd, list) else [stage.cmd]
            runs[name] = StageRun(name, " && ".join(f"( {c} )" for c in cmds), stage.wdir,
                                  tuple(o.fs_path for o in stage.outs if not o.persist))
    return runs


def run_stage(stage: StageRun, env: Mapping[str, str], out: IO[bytes] | None = None, *, own_group: bool = False,
              group_file: Path | None = None) -> int:
    """Run ``stage`` here as `dvc repro` would: remove its non-persistent outputs, then run its
    command with the shell in its folder, with this environment plus ``env``, DVC_STAGE and this
    Python's scripts first on PATH; output to ``out``, else this process's. Returns the exit status.

    ``own_group``: the command gets a process group of its own, ended as a whole (the training
    under the shell included) when waiting is interrupted (a cancelled job, a time-limit signal);
    ``group_file``: where its process group id is written once it starts (:func:`end_job_group`)."""
    for path in map(Path, stage.outs):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    full_env = {**os.environ, **env, "DVC_STAGE": stage.name, **_path_env()}
    proc = subprocess.Popen([os.environ.get("SHELL") or "/bin/sh", "-c", stage.cmd], cwd=stage.wdir, env=full_env,
                            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT if out is not None else None,
                            start_new_session=own_group)
    if group_file is not None and own_group:
        group_file.write_text(f"{proc.pid}\n")
    try:
        return proc.wait()
    except BaseException:
        if own_group:
            _end_group(proc)
        else:
            proc.kill()
            proc.wait()
        raise


def _end_group(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """End ``proc``'s process group: SIGTERM, then SIGKILL to what is left after ``grace_s``."""
    import signal

    def gone(wait_s: float) -> bool:
        deadline = time.monotonic() + wait_s
        while True:
            proc.poll()  # reap the shell, which would otherwise keep the group alive
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        if gone(wait_s):
            break
    proc.wait()


class Progress:
    """``[k/N, 37 min elapsed, ~1 h 05 min left, ends ~11:42]``: the finished count and an estimated
    finish from the mean wall time per finished stage so far (unbiased for stages that run in a random order,
    ``run_order``)."""

    def __init__(self, total: int, clock=time.monotonic) -> None:
        self.total, self.done, self.clock = total, 0, clock
        self.start = clock()

    @staticmethod
    def _span(seconds: float) -> str:
        minutes = round(seconds / 60)
        return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"

    def step(self) -> str:
        self.done += 1
        elapsed = self.clock() - self.start
        text = f"[{self.done}/{self.total}, {self._span(elapsed)} elapsed"
        if self.done < self.total:
            left = elapsed / self.done * (self.total - self.done)
            end = time.strftime("%H:%M", time.localtime(time.time() + left))
            text += f", ~{self._span(left)} left, ends ~{end}"
        return text + "]"


def _recorded(stages: list[str], failed: dict[str, str]) -> list[str]:
    """The stages that did not fail (each recorded in dvc.lock as it finished); raise naming the failed ones with
    ``failed``'s text (stage -> the end of its log)."""
    done = [s for s in stages if s not in failed]
    if failed:
        raise QueueError(f"{len(failed)} of {len(stages)} stage(s) failed: {', '.join(failed)} "
                         f"({len(done)} recorded in dvc.lock)\n" + "\n".join(list(failed.values())[:3]))
    return done


def _tail(path: Path, n: int = LOG_TAIL) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError as e:
        return f"(no log: {e})"


def run_order(stages: list[str]) -> list[str]:
    """``stages`` in the order they run: shuffled with ``ORDER_SEED`` (the same list gives the same order)."""
    order = list(stages)
    random.Random(ORDER_SEED).shuffle(order)
    return order


def _stale_runs(repo: Path, stage_set: str, all_stages: bool, pattern: str | None, log) -> dict[str, StageRun]:
    """The stale stages of a set, in ``run_order``."""
    stages = stale_stages(repo, stage_set, all_stages=all_stages, pattern=pattern)
    if not stages:
        log("nothing to run")
    return stage_runs(repo, run_order(stages)) if stages else {}


def run_here(repo: Path, *, jobs: int = 1, stage_set: str = "study", threads: int | None = None,
             gpus: str | None = None, all_stages: bool = False, pattern: str | None = None, log=print) -> list[str]:
    """Run a set's stale training stages in this workspace, ``jobs`` at a time, and record them in dvc.lock (``dvc
    commit --force``). Returns the stages that ran. The stages of a set write disjoint folders, so they can run side
    by side; a failed one is reported with its log (``RUN_LOGS``)."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    repo = Path(repo).resolve()
    runs = _stale_runs(repo, stage_set, all_stages, pattern, log)
    if not runs:
        return []
    stages, env = list(runs), worker_env(repo, threads, gpus)
    logs = repo / RUN_LOGS
    logs.mkdir(parents=True, exist_ok=True)

    def one(name: str) -> int:
        with open(logs / f"{log_name(name)}.log", "wb") as f:
            return run_stage(runs[name], env, f)

    log(f"run {len(stages)} stage(s), {jobs} at a time" + (f", {POOL_ENV}={gpus}" if gpus else ""))
    rc: dict[str, int] = {}
    progress = Progress(len(stages))
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(one, name): name for name in stages}
        for fut in as_completed(futures):
            name = futures[fut]
            rc[name] = fut.result()
            if rc[name] == 0:  # recorded at once: an interrupted queue keeps every finished run
                _dvc(repo, "commit", "--force", name)
            log(f"{'done' if rc[name] == 0 else f'FAILED (exit {rc[name]})'} {name} {progress.step()}")
    failed = {s: f"--- {s} ({f}):\n{_tail(f)}" for s in stages if rc[s] != 0 for f in [logs / f"{log_name(s)}.log"]}
    return _recorded(stages, failed)


# --- Slurm (submitit) --------------------------------------------------------------------------

@dataclass(frozen=True)
class SlurmSettings:
    """The job settings of `queue slurm` (docs/scaling.md)."""

    executor: str = "slurm"
    partition: str | None = None
    time: int = 60
    gpus_per_job: int | None = None
    cpus_per_job: int | None = None
    mem_gb: float | None = None
    array_parallelism: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    log_dir: Path = SLURM_LOGS


def _slurm_options(items: list[str], source: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not key.strip() or key != key.strip():
            raise QueueError(f"{source}: expected KEY=VALUE (or KEY), got {item!r}")
        options[key] = value if eq else True
    return options


#: the numeric settings: their type and least value
NUMBERS = {"time": (int, 1), "gpus_per_job": (int, 0), "cpus_per_job": (int, 1), "mem_gb": (float, 0.001),
           "array_parallelism": (int, 1)}


def _number(dest: str, value: str, source: str) -> int | float:
    kind, least = NUMBERS[dest]
    try:
        number = kind(value)
    except ValueError:
        raise QueueError(f"{source}: expected {'an integer' if kind is int else 'a number'}, got {value!r}") from None
    if number < least:
        raise QueueError(f"{source}: must be {'> 0' if kind is float else f'>= {least}'}, got {value}")
    return number


def slurm_settings(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> SlurmSettings:
    """``args``' job settings; one not given as a flag is read from its ``SLURM_ENV`` variable, else default."""
    values: dict[str, Any] = {}
    for dest, var in SLURM_ENV.items():
        value, source = getattr(args, dest, None), "--" + dest.replace("_", "-")
        if value is None and environ.get(var, "").strip():
            value, source = environ[var].strip(), var
            if dest == "slurm_option":
                value = shlex.split(value)
        if value is None:
            continue
        if dest == "slurm_option":
            values["options"] = _slurm_options(value, source)
        elif dest == "log_dir":
            values[dest] = Path(value)
        elif dest in ("partition", "executor"):
            values[dest] = value
        else:
            values[dest] = _number(dest, value, source)
    if values.get("executor", "slurm") not in EXECUTORS:
        raise QueueError(f"executor must be one of {', '.join(EXECUTORS)}, got {values['executor']!r}")
    return SlurmSettings(**values)


def executor_parameters(settings: SlurmSettings, threads: int | None, name: str) -> dict[str, Any]:
    """The settings as submitit's ``update_parameters`` keywords: one node and one task per job;
    CPUs: --cpus-per-job, else --threads; ``slurm_`` ones apply to Slurm only."""
    params: dict[str, Any] = {"name": name, "timeout_min": settings.time, "nodes": 1, "tasks_per_node": 1}
    if settings.gpus_per_job is not None:
        params["gpus_per_node"] = settings.gpus_per_job
    if settings.cpus_per_job or threads:
        params["cpus_per_task"] = settings.cpus_per_job or threads
    if settings.mem_gb is not None:
        params["mem_gb"] = settings.mem_gb
    if settings.partition:
        params["slurm_partition"] = settings.partition
    if settings.array_parallelism:
        params["slurm_array_parallelism"] = settings.array_parallelism
    if settings.options:
        params["slurm_additional_parameters"] = dict(settings.options)
    return params


def make_executor(repo: Path, settings: SlurmSettings, threads: int | None, name: str):
    """A submitit executor for ``settings`` (its folder: the log dir, relative to ``repo``)."""
    import submitit

    folder = settings.log_dir if settings.log_dir.is_absolute() else Path(repo) / settings.log_dir
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster=settings.executor)
    except RuntimeError as e:  # no `srun` on PATH
        raise QueueError(f"{e} (without Slurm: --executor local)") from None
    try:
        executor.update_parameters(**executor_parameters(settings, threads, name))
    except (ValueError, NameError) as e:  # submitit's check of the sbatch parameters
        raise QueueError(f"submitit refused the job settings: {e}") from None
    return executor


def group_file(paths) -> Path:
    """Where a job's stage writes its process group id: beside the job's stdout (submitit's ``JobPaths``)."""
    return Path(paths.stdout).with_suffix(".pgid")


def stage_job(stage: StageRun, env: dict[str, str]) -> str:
    """What one job runs: ``stage`` (``run_stage``); a stage that fails raises, so its job fails."""
    import submitit

    print(f"lossbench: {stage.name} in {stage.wdir}: {stage.cmd}", flush=True)
    rc = run_stage(stage, env, own_group=True, group_file=group_file(submitit.JobEnvironment().paths))
    if rc != 0:
        raise StageFailed(f"exit {rc}")
    return stage.name


def job_error(job) -> str | None:
    """None when ``job`` (finished) succeeded, else why not, in one line: ``exit N`` for a stage
    that failed, else the last line of the job's traceback (a job stopped at its time limit:
    ``...UncompletedJobError: Job not requeued because: timed-out and not checkpointable.``),
    else submitit's first line (a job that left no result: killed, cancelled, out of memory)."""
    exc = job.exception()
    if exc is None:
        return None
    text = str(exc)
    parts = text.split("-" * 22 + "\n")  # FailedJobError: the job's traceback between two rules
    if len(parts) >= 3 and parts[1].strip():
        last = parts[1].strip().splitlines()[-1]
        found = re.match(rf"(?:[\w.]+\.)?{StageFailed.__name__}: (.+)", last)
        return found.group(1) if found else last
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def run_jobs(executor, runs: list[StageRun], env: dict[str, str], *, limit: int, poll_s: float,
             log=print) -> Iterator[tuple[StageRun, Any, str | None]]:
    """Submit ``runs`` as jobs (``stage_job``), at most ``limit`` unfinished at a time, each
    batch as one job array; yield ``(run, job, error)`` as each job ends (``job_error``).
    Closing the generator early (Ctrl-C) cancels the jobs that have not ended."""
    pending, running = list(runs), []
    try:
        while pending or running:
            if pending and len(running) < limit:
                batch, pending = pending[:limit - len(running)], pending[limit - len(running):]
                jobs = executor.map_array(stage_job, batch, [env] * len(batch))
                log(f"submitted {len(batch)} job(s): {jobs[0].job_id}"
                    + (f" ... {jobs[-1].job_id}" if len(jobs) > 1 else ""))
                running += zip(batch, jobs)
            ended, still = [], []
            for r, j in running:
                (ended if j.done() else still).append((r, j))
            running = still
            for r, j in ended:
                yield r, j, job_error(j)
            if running and not ended:
                time.sleep(poll_s)
    finally:
        unfinished = [j for _, j in running if not j.done()]
        for j in unfinished:
            j.cancel(check=False)
            end_job_group(j)
        if unfinished:
            log(f"cancelled {len(unfinished)} unfinished job(s)")


def end_job_group(job) -> bool:
    """SIGTERM to the process group of a cancelled job's stage when the job runs on this machine (submitit's local
    executor), from the id its stage wrote (:func:`group_file`). The job ends the group itself when its cancel signal
    reaches it (``run_stage``); this covers a job whose signal did not, or was killed before it could. Slurm ends a
    cancelled job's processes itself. Returns whether a signal was sent."""
    import signal

    from submitit.local.local import LocalJob

    if not isinstance(job, LocalJob):
        return False
    try:
        pgid = int(group_file(job.paths).read_text())
        os.killpg(pgid, signal.SIGTERM)
    except (OSError, ValueError):  # not started yet, or already gone
        return False
    return True


def run_slurm(repo: Path, settings: SlurmSettings | None = None, *, stage_set: str = "study",
              threads: int | None = None, all_stages: bool = False, pattern: str | None = None,
              poll_s: float | None = None, log=print) -> list[str]:
    """Run a set's stale training stages as submitit jobs (Slurm, or local processes), wait for them, and record each
    one that succeeded in dvc.lock as it ends (``dvc commit --force``: an interrupted wait keeps every finished run); a
    failed one is reported with the end of its job's stdout and stderr. Returns the recorded stages."""
    repo, settings = Path(repo).resolve(), settings or SlurmSettings()
    executor = make_executor(repo, settings, threads, name=f"lossbench-{stage_set}")
    runs = _stale_runs(repo, stage_set, all_stages, pattern, log)
    if not runs:
        return []
    stages, env = list(runs), worker_env(repo, threads)
    if settings.executor == "local":
        limit = settings.array_parallelism or max(1, (os.cpu_count() or 1) // (threads or 1))
        how = f"local jobs, {limit} at a time"
    else:
        limit = len(stages)  # one array; Slurm runs at most --array-parallelism of it at once
        how = "one Slurm job array" + (f", {settings.array_parallelism} at a time"
                                       if settings.array_parallelism else "")
    log(f"submit {len(stages)} stage(s) as {how}; logs in {executor.folder}")
    failed: dict[str, str] = {}
    recorded: list[str] = []
    progress = Progress(len(stages))
    try:
        poll_s = poll_s or (1.0 if settings.executor == "local" else 15.0)
        events = run_jobs(executor, list(runs.values()), env, limit=limit, poll_s=poll_s, log=log)
        with contextlib.closing(events):
            for r, job, error in events:
                if error is None:
                    _dvc(repo, "commit", "--force", r.name)
                    recorded.append(r.name)
                log(f"{'done' if error is None else f'FAILED ({error})'} {r.name} "
                    f"{progress.step()} (job {job.job_id})")
                if error is not None:
                    failed[r.name] = (f"--- {r.name} (job {job.job_id}: {error})\n"
                                      f"{job.paths.stdout}:\n{_tail(job.paths.stdout)}\n"
                                      f"{job.paths.stderr}:\n{_tail(job.paths.stderr)}")
    except KeyboardInterrupt:
        log(f"interrupted: {len(recorded)} finished stage(s) recorded in dvc.lock")
        raise
    return _recorded(stages, failed)


# --- command line ------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    r = sub.add_parser("run", help="run the stale training stages here, N at a time, and record them in dvc.lock")
    s = sub.add_parser("slurm", help="run them as Slurm jobs (submitit), wait, and record them in dvc.lock")
    for p in (r, s):
        p.add_argument("--set", dest="stage_set", choices=sorted(STAGE_SETS), default="study",
                       help="which training stages: the study's (default), the extra seeds of "
                            "its val-bests (after `dvc repro select`) or the imbalance sweep's")
        p.add_argument("--all", action="store_true", help="every training stage of the set, not only stale ones")
        p.add_argument("--stages", metavar="GLOB", help="only stages matching, e.g. 'train_focal@*'")
        p.add_argument("--threads", type=int, metavar="N",
                       help="intra-op threads per training (OMP_NUM_THREADS), e.g. 1 on a CPU machine")
    r.add_argument("--jobs", "-j", type=int, metavar="N", help="trainings side by side (default 1)")
    r.add_argument("--gpus", metavar="IDS", help=f"device pool, e.g. 0,1,2,3 (sets {POOL_ENV})")
    def env(dest: str, default: str | None = None) -> str:
        return f" ({f'default {default}; ' if default else ''}env {SLURM_ENV[dest]})"

    s.add_argument("--executor", choices=EXECUTORS,
                   help="slurm, or local: the same jobs as processes of this machine" + env("executor", "slurm"))
    s.add_argument("--partition", help="Slurm partition" + env("partition"))
    s.add_argument("--time", metavar="MIN", help="time limit per job, minutes" + env("time", "60"))
    s.add_argument("--gpus-per-job", metavar="N", help="GPUs per job" + env("gpus_per_job"))
    s.add_argument("--cpus-per-job", metavar="N", help="CPUs per job" + env("cpus_per_job", "--threads"))
    s.add_argument("--mem-gb", metavar="GB", help="memory per job" + env("mem_gb"))
    s.add_argument("--array-parallelism", metavar="N",
                   help="jobs running at once" + env("array_parallelism", "256 on Slurm; local: CPUs / --threads"))
    s.add_argument("--slurm-option", action="append", metavar="KEY=VALUE",
                   help="adds `#SBATCH --KEY=VALUE`; repeatable" + env("slurm_option")
                        + "; the variable: KEY=VALUE items separated by spaces")
    s.add_argument("--log-dir", metavar="DIR",
                   help="submitit's folder: jobs and logs" + env("log_dir", str(SLURM_LOGS)))
    parser.add_argument("--repo", default=".", help="repository root (default: current folder)")


def run(args: argparse.Namespace) -> int:
    try:
        if args.threads is not None and args.threads < 1:
            raise QueueError(f"--threads must be >= 1, got {args.threads}")
        if args.action == "run":
            if args.jobs is not None and args.jobs < 1:
                raise QueueError(f"--jobs must be >= 1, got {args.jobs}")
            if args.gpus and args.jobs and args.jobs > (n := len(parse_pool(args.gpus))):
                raise QueueError(f"--jobs {args.jobs} > {n} devices in --gpus {args.gpus}: "
                                 "trainings would wait for a GPU")
            run_here(Path(args.repo), jobs=args.jobs or 1, stage_set=args.stage_set, threads=args.threads,
                     gpus=args.gpus, all_stages=args.all, pattern=args.stages)
        else:
            run_slurm(Path(args.repo), slurm_settings(args), stage_set=args.stage_set,
                      threads=args.threads, all_stages=args.all, pattern=args.stages)
    except (QueueError, ValueError) as e:
        print(f"lossbench queue: error: {e}", file=sys.stderr)
        return 2
    return 0
