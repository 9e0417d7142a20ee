"""Run a set's training stages N at a time: here (`run`, what `make repro` uses), or through
DVC's experiment queue and collect them back (`submit`, `collect`).

`run` runs the set's stale stages in the workspace, each as `dvc repro` would (its command
from DVC's stage index, outputs removed first), and records them with `dvc commit --force`;
no temporary copy per training (see `run_here`). The queue below is for workers that need
their own copy of the repository.

`submit` queues one DVC experiment per training stage of a set that is not up to
date (or every one with --all):

    dvc exp run --queue --single-item --copy-paths data/<profile> --name <name> <stage>

named after its stage (train_sse@0.5-0 -> train_sse-0_5-0). The sets (--set):
`study` (default), the current profile's trainings that need no val selection
(train_focal/ohem/sse, train_default, train_prior_off); `extra`, the extra seeds of
each family's val-selected best (best_extra, queued after `dvc repro select`; each
experiment also gets runs/<profile>/, for its selection.json: DVC copies a file
only into a folder that exists); and `sweep`, the imbalance
sweep's train_sweep stages (their data: data/<p> for each p of params.yaml's
sweep.profiles).

Each experiment runs in a temporary copy of the repository into which the
prepared data its stage reads is copied, so the set's fetch and prepare stages
must be up to date first (`dvc repro prepare`; submit checks). An experiment
runs its own stage only (--single-item): without it, DVC would first verify,
and where the copy lacks their outputs rerun, every upstream stage — for a
sweep stage, which reads the main study's selection.json, the main study's
fetch, prepare and 63 training stages, in every experiment. With --jobs N
submit then starts N workers (`dvc queue start -j N`); workers pick
experiments one after another; --threads T gives each T intra-op threads
(OMP_NUM_THREADS): on a CPU machine, two 1-thread trainings side by side
outrun one 2-thread training. How the workers were started is kept in
.dvc/tmp/lossbench-queue.json for `collect --wait`.

One GPU per worker: start the workers with LOSSBENCH_GPUS=0,1,...,N-1 in the
environment (submit --gpus does it); each training locks a free GPU of that
pool and sees only it (CUDA_VISIBLE_DEVICES). LOSSBENCH_WORK_ROOT=<repo>
(set by submit) puts the checkpoints in this repository's work_dirs/ instead
of the temporary copy, so they outlive the experiment.

`collect` brings the finished experiments of the current commit back into the
workspace. --wait first waits until no task is queued or running, reading the
queue's own task files every 30 s (DVC's `celery_queue.iter_queued` and
`iter_active`; `dvc exp show` on a full queue keeps a core busy for a minute
per call, and `dvc queue status` inspects the workers, which can race them).
A worker of DVC's file-based queue can die on a half-written message
(JSONDecodeError, treeverse/dvc#10428); when tasks stay queued while fewer
than the submitted number of workers are busy, --wait starts the missing ones
again with the recorded settings. Then `dvc exp show --json` lists the
experiments of HEAD with their commit and state (queued, running, success,
failed), `git restore --source <experiment commit>` brings
back the files each one changed under runs/, and `dvc commit --force <stages>`
records their stages in dvc.lock, so `dvc status` sees them as done and
`make report` (or `dvc repro`) builds the report without training again. An
experiment is matched to its stage by the name submit gave it.

Examples:
  dvc repro prepare
  lossbench queue submit --jobs 4 --gpus 0,1,2,3
  lossbench queue collect --wait && make report
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from lossbench.devices import POOL_ENV, parse_pool
from lossbench.profiles import load_params
from lossbench.stages.train import WORK_ROOT_ENV
from lossbench.utils import atomic_path

WORKERS_FILE = Path(".dvc/tmp/lossbench-queue.json")  # how submit started the workers
RUN_LOGS = Path(".dvc/tmp/lossbench-run")  # run_here: one log per stage
WAIT_POLL_S = 30.0
EXP_SHOW_TIMEOUT_S = 120  # one `dvc exp show` takes seconds; longer means it is stuck
#: the training stages each set queues: the study (`make repro`: first the trainings that
#: need no val selection, then, after `dvc repro select`, the extra seeds of the val-bests)
#: and the imbalance sweep
STAGE_SETS = {"study": re.compile(r"^train_(focal|ohem|sse|default|prior_off)@"),
              "extra": re.compile(r"^best_extra@"),
              "sweep": re.compile(r"^train_sweep@")}
#: the stages a set's experiments rely on (they must be up to date before submit), and the
#: command that brings them up to date
UPSTREAM = {"study": (("fetch", "prepare"), "dvc repro prepare"),
            "extra": (("fetch", "prepare", "select"), "dvc repro select"),
            "sweep": (("fetch_sweep", "prepare_sweep"), "dvc repro --glob 'prepare_sweep@*'")}
TRAIN_STAGE = STAGE_SETS["study"]


class QueueError(RuntimeError):
    """The workspace is not ready for the queue (named cause)."""


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None,
         timeout: float | None = None) -> str:
    """``cmd``'s stdout. Output goes through files, not pipes: the queue workers that
    ``dvc queue start`` leaves running inherit them, and a pipe would block us until they exit.
    A command still running after ``timeout`` seconds is killed and reported."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            rc = subprocess.run(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=err, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            raise QueueError(f"`{' '.join(cmd)}` did not finish within {timeout:g} s") from None
        stdout, stderr = (f.seek(0) or f.read().decode(errors="replace") for f in (out, err))
    if rc != 0:
        raise QueueError(f"`{' '.join(cmd)}` failed (exit {rc}):\n{(stdout + stderr).strip()[-2000:]}")
    return stdout


def _dvc(repo: Path, *args: str, env: dict[str, str] | None = None,
         timeout: float | None = None) -> str:
    """Run the ``dvc`` next to this Python (the project's venv, else PATH's) with its scripts on PATH."""
    bindir = Path(sys.executable).parent
    exe = bindir / "dvc"
    env = {**os.environ, **(env or {}), "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    return _run([str(exe) if exe.is_file() else "dvc", *args], repo, env, timeout)


def exp_name(stage: str) -> str:
    """A git-ref-safe experiment name for a stage: ``train_sse@0.5-0`` → ``train_sse-0_5-0``."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", stage.replace("@", "-"))


def profile_of(repo: Path) -> str:
    prof = load_params(repo / "params.yaml").get("profile")
    if not isinstance(prof, str):
        raise QueueError(f"{repo / 'params.yaml'}: 'profile' must name a profile, got {prof!r}")
    return prof


def train_stages(repo: Path, stage_set: str = "study") -> list[str]:
    return [n for n in _dvc(repo, "stage", "list", "--name-only").split()
            if STAGE_SETS[stage_set].match(n)]


def data_dirs(repo: Path, stage_set: str) -> list[Path]:
    """The prepared data a set's experiments read (copied into each one's temporary copy);
    for `extra`, also the runs folder with the val selection its stages read (a folder:
    ``--copy-paths`` copies a single file only into a folder the copy already has)."""
    if stage_set == "study":
        return [Path("data") / profile_of(repo)]
    if stage_set == "extra":
        return [Path("data") / profile_of(repo), Path("runs") / profile_of(repo)]
    profiles = (load_params(repo / "params.yaml").get("sweep") or {}).get("profiles")
    if not profiles:
        raise QueueError(f"{repo / 'params.yaml'}: sweep.profiles lists no profile")
    return [Path("data") / p for p in profiles]


def stage_data(stage: str, data: list[Path]) -> list[Path]:
    """The data folders of ``data`` that ``stage`` reads: a sweep stage's own point's
    (``train_sweep@sweep_o4-run0-1`` reads ``data/sweep_o4``, not ``data/sweep_o12``), else all
    of them."""
    return [d for d in data if f"@{d.name}-" in stage] or data


def experiments(repo: Path) -> tuple[str, list[dict[str, Any]]]:
    """HEAD's commit and its experiments, ``{name, rev, state}``, from ``dvc exp show --json``.

    ``state`` is DVC's executor state: queued, running, success or failed. An
    experiment whose queue task record is gone (``dvc queue remove``, or run
    with ``dvc exp run --run-all``) has a commit and no executor: success.
    """
    # DVC may be rewriting a task's info file as it finishes (the JSON comes out broken),
    # or may block reading an experiment whose temporary copy is being removed: retry
    for attempt in range(3):
        try:
            shown = json.loads(_dvc(repo, "exp", "show", "--json", "--hide-workspace", "--sha",
                                    timeout=EXP_SHOW_TIMEOUT_S))
            break
        except QueueError:
            if attempt == 2:
                raise
            time.sleep(2)
    if len(shown) != 1:
        raise QueueError(f"`dvc exp show --json` in {repo}: expected HEAD only, got "
                         f"{[b.get('rev') for b in shown]}")
    exps = [{"name": r["name"], "rev": r["revs"][0]["rev"],
             "state": (r.get("executor") or {}).get("state", "success")}
            for r in shown[0].get("experiments") or []]
    return shown[0]["rev"], exps


def start_workers(repo: Path, jobs: int, env: dict[str, str]) -> None:
    _dvc(repo, "queue", "start", "-j", str(jobs), env=env)


def stale_stages(repo: Path, stage_set: str, *, all_stages: bool = False,
                 pattern: str | None = None) -> list[str]:
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


def worker_env(repo: Path, threads: int | None, gpus: str | None) -> dict[str, str]:
    """Environment of the trainings: checkpoints under ``repo``, ``threads`` intra-op threads,
    the GPU pool."""
    env = {WORK_ROOT_ENV: str(repo)}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if gpus:
        parse_pool(gpus)
        env[POOL_ENV] = gpus
    return env


def run_here(repo: Path, *, jobs: int = 1, stage_set: str = "study", threads: int | None = None,
             gpus: str | None = None, all_stages: bool = False, pattern: str | None = None,
             log=print) -> list[str]:
    """Run a set's stale training stages in this workspace, ``jobs`` at a time, and record them
    in dvc.lock (``dvc commit --force``). Returns the stages that ran.

    Each stage runs as ``dvc repro`` would run it (its command from DVC's own stage index, in
    its folder, with DVC_ROOT and DVC_STAGE set, its non-persistent outputs removed first),
    but without DVC's experiment queue, whose temporary copy of the repository costs about
    20 s per experiment on 2 cores (docs/scaling.md). `dvc repro` itself runs one stage at a
    time; the stages of a set write disjoint folders, so they can run side by side. A stage
    that fails is reported with its log (``RUN_LOGS``); the ones that succeeded are recorded.
    """
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from dvc.repo import Repo

    repo = Path(repo).resolve()
    stages = stale_stages(repo, stage_set, all_stages=all_stages, pattern=pattern)
    if not stages:
        log("nothing to run")
        return []
    with Repo(str(repo)) as dvc_repo:
        specs = {}
        for name in stages:
            (stage,) = dvc_repo.stage.collect(f"{repo / 'dvc.yaml'}:{name}")
            cmds = stage.cmd if isinstance(stage.cmd, list) else [stage.cmd]
            specs[name] = (" && ".join(f"( {c} )" for c in cmds), stage.wdir,
                           [o.fs_path for o in stage.outs if not o.persist])
    bindir = Path(sys.executable).parent
    env = {**os.environ, **worker_env(repo, threads, gpus), "DVC_ROOT": str(repo),
           "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    logs = repo / RUN_LOGS
    logs.mkdir(parents=True, exist_ok=True)
    shell = os.environ.get("SHELL") or "/bin/sh"

    def one(name: str) -> int:
        cmd, wdir, outs = specs[name]
        for out in map(Path, outs):
            if out.is_dir() and not out.is_symlink():
                shutil.rmtree(out)
            elif out.exists() or out.is_symlink():
                out.unlink()
        with open(logs / f"{exp_name(name)}.log", "wb") as f:
            return subprocess.run([shell, "-c", cmd], cwd=wdir, env={**env, "DVC_STAGE": name},
                                  stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT).returncode

    log(f"run {len(stages)} stage(s), {jobs} at a time" + (f", {POOL_ENV}={gpus}" if gpus else ""))
    rc: dict[str, int] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(one, name): name for name in stages}
        for fut in as_completed(futures):
            name = futures[fut]
            rc[name] = fut.result()
            log(f"{'done' if rc[name] == 0 else f'FAILED (exit {rc[name]})'} {name} "
                f"[{len(rc)}/{len(stages)}]")
    done = [s for s in stages if rc[s] == 0]
    if done:
        _dvc(repo, "commit", "--force", *done)
    failed = [s for s in stages if rc[s] != 0]
    if failed:
        tails = "\n".join(f"--- {s} ({logs / (exp_name(s) + '.log')}):\n"
                          + (logs / f"{exp_name(s)}.log").read_text(errors="replace")[-1500:]
                          for s in failed[:3])
        raise QueueError(f"{len(failed)} of {len(stages)} stage(s) failed: {', '.join(failed)} "
                         f"({len(done)} recorded in dvc.lock)\n{tails}")
    return done


def submit(repo: Path, *, all_stages: bool = False, pattern: str | None = None,
           jobs: int | None = None, gpus: str | None = None, dry_run: bool = False,
           stage_set: str = "study", threads: int | None = None, log=print) -> list[str]:
    """Queue a set's training stages; start ``jobs`` workers if given (``threads`` intra-op
    threads each: two 1-thread CPU trainings side by side outrun one 2-thread training).
    Returns the stages."""
    repo = Path(repo).resolve()
    data = data_dirs(repo, stage_set)
    stages = stale_stages(repo, stage_set, all_stages=all_stages, pattern=pattern)
    known = {e["name"]: e["state"] for e in experiments(repo)[1] if e["state"] != "failed"}
    for s in [s for s in stages if exp_name(s) in known]:
        log(f"skip {s}: experiment {exp_name(s)} is {known[exp_name(s)]}"
            + (" (run `lossbench queue collect`)" if known[exp_name(s)] == "success" else ""))
    stages = [s for s in stages if exp_name(s) not in known]
    env = worker_env(repo, threads, gpus)

    def start() -> None:
        log(f"start {jobs} worker(s)" + (f", {POOL_ENV}={gpus}" if gpus else ""))
        with atomic_path(repo / WORKERS_FILE) as tmp:
            tmp.write_text(json.dumps({"jobs": jobs, "env": env}, indent=1) + "\n")
        start_workers(repo, jobs, env)

    # Queueing one experiment takes seconds (DVC stashes the workspace), so the workers start
    # as soon as each has one to take, and train while the rest are queued.
    started = not jobs or dry_run
    for i, s in enumerate(stages, 1):
        cmd = ["exp", "run", "--queue", "--single-item",
               *[a for d in stage_data(s, data) for a in ("--copy-paths", str(d))],
               "--name", exp_name(s), s]
        log(("would run: " if dry_run else "queue: ") + " ".join(cmd))
        if not dry_run:
            _dvc(repo, *cmd)
        if not started and i >= min(jobs, len(stages)):
            start()
            started = True
    if not stages:
        log("nothing to queue")
    if not started:
        start()
    return stages


def queue_counts(repo: Path) -> Counter:
    """Tasks of the repository's experiment queue: ``queued`` and ``running``, read from
    the queue's task files by DVC's own queue object (no worker inspection)."""
    from dvc.repo import Repo

    with Repo(str(repo)) as r:
        q = r.experiments.celery_queue
        return Counter(queued=sum(1 for _ in q.iter_queued()),
                       running=sum(1 for _ in q.iter_active()))


def wait_for_queue(repo: Path, *, poll_s: float = WAIT_POLL_S, log=print,
                   counts=queue_counts, restart=start_workers) -> None:
    """Return once no task is queued or running. When tasks stay queued while fewer than
    the submitted number of workers (``WORKERS_FILE``) are busy, on two polls in a row,
    start the missing workers again (``dvc queue start`` starts only the ones not alive)."""
    short = 0
    while True:
        n = counts(repo)
        if not n["queued"] and not n["running"]:
            return
        log(f"waiting: {n['running']} running, {n['queued']} queued")
        try:
            workers = json.loads((repo / WORKERS_FILE).read_text())
        except (OSError, ValueError):
            workers = None
        if workers and n["queued"] and n["running"] < workers["jobs"]:
            short += 1
            if short >= 2:
                log(f"{n['running']} of {workers['jobs']} workers busy with {n['queued']} "
                    f"queued: starting the missing ones (`dvc queue start -j {workers['jobs']}`)")
                restart(repo, workers["jobs"], workers["env"])
                short = 0
        else:
            short = 0
        time.sleep(poll_s)


def changed_files(repo: Path, base: str, rev: str) -> list[str]:
    """The files under runs/ that experiment ``rev`` wrote, relative to its base commit: the
    ones it added or modified, and the ones it deleted inside a folder it wrote into (a stage
    clearing its own outputs). An experiment's commit also holds the workspace it was queued
    from, so other deletions (say, an emptied runs/ not yet committed) are that workspace's,
    not the stage's, and restoring them would delete what other experiments brought back."""
    out = _run(["git", "diff", "--name-status", "--no-renames", "-z", base, rev, "--", "runs/"],
               repo).split("\0")
    pairs = list(zip(out[0::2], out[1::2]))
    written = [p for status, p in pairs if status in ("A", "M")]
    folders = {os.path.dirname(p) + "/" for p in written}
    deleted = [p for status, p in pairs if status == "D"
               and any(p.startswith(f) for f in folders)]
    return written + deleted


def collect(repo: Path, *, wait: bool = False, poll_s: float = WAIT_POLL_S, remove: bool = False,
            stage_set: str = "study", log=print) -> dict[str, str]:
    """Bring the finished experiments of HEAD into the workspace. Returns ``{experiment: stage}``."""
    repo = Path(repo).resolve()
    if wait:
        wait_for_queue(repo, poll_s=poll_s, log=log)
    base, exps = experiments(repo)
    stage_of = {exp_name(s): s for s in train_stages(repo, stage_set)}
    merged: dict[str, str] = {}
    for e in sorted((e for e in exps if e["state"] == "success"), key=lambda e: e["name"]):
        if e["name"] not in stage_of:
            log(f"skip {e['name']}: not the name of a training stage of this profile")
            continue
        restore = changed_files(repo, base, e["rev"])
        if restore:
            _run(["git", "restore", "--worktree", "--source", e["rev"], "--", *restore], repo)
        merged[e["name"]] = stage_of[e["name"]]
        log(f"collected {e['name']}: {stage_of[e['name']]}")
    if merged:
        _dvc(repo, "commit", "--force", *merged.values())
    else:
        log(f"no finished experiment of commit {base[:7]} (all commits: `dvc exp show -A`)")
    if remove and merged:
        _dvc(repo, "exp", "remove", *merged)
    n = Counter(e["state"] for e in exps)
    if n["failed"]:
        log(f"{n['failed']} experiment(s) failed: `dvc queue status`, `dvc queue logs NAME`")
    if n["queued"] or n["running"]:
        log(f"still {n['running']} running, {n['queued']} queued: collect again later")
    return merged


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    s = sub.add_parser("submit", help="queue the grid's training stages (dvc exp run --queue)")
    r = sub.add_parser("run", help="run the stale training stages here, N at a time, and record "
                                   "them in dvc.lock (no experiment queue)")
    for p, verb, jobs_help in ((s, "queue", "then start N workers (dvc queue start -j N)"),
                               (r, "run", "trainings side by side")):
        p.add_argument("--all", action="store_true", help=f"{verb} every training stage, not only stale ones")
        p.add_argument("--stages", metavar="GLOB", help="only stages matching, e.g. 'train_focal@*'")
        p.add_argument("--jobs", "-j", type=int, metavar="N", help=jobs_help)
        p.add_argument("--gpus", metavar="IDS", help=f"device pool, e.g. 0,1,2,3 (sets {POOL_ENV})")
        p.add_argument("--threads", type=int, metavar="N",
                       help="intra-op threads per training (OMP_NUM_THREADS), e.g. 1 on a CPU machine")
    s.add_argument("--dry-run", action="store_true", help="print the commands only")
    c = sub.add_parser("collect", help="bring finished experiments into runs/ and dvc.lock")
    c.add_argument("--wait", action="store_true", help="first wait until nothing is queued or running")
    c.add_argument("--remove", action="store_true", help="remove the collected experiments afterwards")
    for p in (s, r, c):
        p.add_argument("--set", dest="stage_set", choices=sorted(STAGE_SETS), default="study",
                       help="which training stages: the study's (default), the extra seeds of "
                            "its val-bests (after `dvc repro select`) or the imbalance sweep's")
    parser.add_argument("--repo", default=".", help="repository root (default: current folder)")


def run(args: argparse.Namespace) -> int:
    try:
        if args.action in ("submit", "run"):
            if args.jobs is not None and args.jobs < 1:
                raise QueueError(f"--jobs must be >= 1, got {args.jobs}")
            if args.gpus and args.jobs and args.jobs > len(parse_pool(args.gpus)):
                raise QueueError(f"--jobs {args.jobs} > {len(parse_pool(args.gpus))} devices in "
                                 f"--gpus {args.gpus}: workers would wait for a GPU")
            if args.threads is not None and args.threads < 1:
                raise QueueError(f"--threads must be >= 1, got {args.threads}")
        if args.action == "run":
            run_here(Path(args.repo), jobs=args.jobs or 1, stage_set=args.stage_set, threads=args.threads,
                     gpus=args.gpus, all_stages=args.all, pattern=args.stages)
        elif args.action == "submit":
            submit(Path(args.repo), all_stages=args.all, pattern=args.stages, jobs=args.jobs,
                   gpus=args.gpus, dry_run=args.dry_run, stage_set=args.stage_set,
                   threads=args.threads)
        else:
            collect(Path(args.repo), wait=args.wait, remove=args.remove, stage_set=args.stage_set)
    except (QueueError, ValueError) as e:
        print(f"lossbench queue: error: {e}", file=sys.stderr)
        return 2
    return 0
