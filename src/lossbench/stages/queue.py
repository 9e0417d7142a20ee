"""Run the training grid through DVC's experiment queue, N at a time, and collect it back.

`submit` queues one DVC experiment per training stage of the current profile
(params.yaml: profile) that is not up to date (or every one with --all):

    dvc exp run --queue --copy-paths data/<profile> --name <name> <stage>     (train_sse@0.5-0 -> train_sse-0_5-0)

Each experiment runs in a temporary copy of the repository into which the
prepared data is copied, so `fetch` and `prepare` must be up to date first
(`dvc repro prepare`). With --jobs N it then starts N workers
(`dvc queue start -j N`); workers pick experiments one after another.

One GPU per worker: start the workers with LOSSBENCH_GPUS=0,1,...,N-1 in the
environment (submit --gpus does it); each training locks a free GPU of that
pool and sees only it (CUDA_VISIBLE_DEVICES). LOSSBENCH_WORK_ROOT=<repo>
(set by submit) puts the checkpoints in this repository's work_dirs/ instead
of the temporary copy, so they outlive the experiment.

`collect` brings the finished experiments of the current commit back into the
workspace: the run folders they wrote under runs/ and their stages' dvc.lock
entries, so `dvc status` sees those stages as done and `make report` (or
`dvc repro`) builds the report from them without training again.

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
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from lossbench.devices import POOL_ENV, parse_pool
from lossbench.stages.train import WORK_ROOT_ENV
from lossbench.utils import atomic_write_bytes, atomic_write_text

TRAIN_STAGE = re.compile(r"^train_[a-z]+@")


class QueueError(RuntimeError):
    """The workspace is not ready for the queue (named cause)."""


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None,
         check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise QueueError(f"`{' '.join(cmd)}` failed (exit {p.returncode}):\n"
                         f"{(p.stdout + p.stderr).strip()[-2000:]}")
    return p


def _dvc() -> str:
    """The ``dvc`` next to this Python (the project's venv), else the one on PATH."""
    exe = Path(sys.executable).parent / "dvc"
    return str(exe) if exe.is_file() else "dvc"


def _env() -> dict[str, str]:
    bindir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}


def exp_name(stage: str) -> str:
    """A git-ref-safe experiment name for a stage: ``train_sse@0.5-0`` → ``train_sse-0_5-0``."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", stage.replace("@", "-"))


def profile_of(repo: Path) -> str:
    params = yaml.safe_load((repo / "params.yaml").read_text()) or {}
    prof = params.get("profile")
    if not isinstance(prof, str):
        raise QueueError(f"{repo / 'params.yaml'}: 'profile' must name a profile, got {prof!r}")
    return prof


def stale_stages(repo: Path) -> dict[str, Any]:
    out = _run([_dvc(), "status", "--json"], repo, _env()).stdout.strip()
    return json.loads(out) if out else {}


def train_stages(repo: Path) -> list[str]:
    names = _run([_dvc(), "stage", "list", "--name-only"], repo, _env()).stdout.split()
    return [n for n in names if TRAIN_STAGE.match(n)]


def baseline(repo: Path) -> str:
    return _run(["git", "rev-parse", "HEAD"], repo).stdout.strip()


def experiments(repo: Path) -> dict[str, str]:
    """Finished experiments of the current commit: name -> commit."""
    base = baseline(repo)
    prefix = f"refs/exps/{base[:2]}/{base[2:]}/"
    out = _run(["git", "for-each-ref", "--format=%(refname) %(objectname)", prefix], repo).stdout
    exps = {}
    for line in out.splitlines():
        ref, sha = line.split()
        exps[ref[len(prefix):]] = sha
    return exps


def queue_counts(repo: Path) -> dict[str, int]:
    """Tasks of ``dvc queue status`` by status (Queued, Running, Success, Failed)."""
    out = _run([_dvc(), "queue", "status"], repo, _env()).stdout
    counts: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[-1] in ("Queued", "Running", "Success", "Failed"):
            counts[parts[-1]] = counts.get(parts[-1], 0) + 1
    return counts


def submit(repo: Path, *, all_stages: bool = False, pattern: str | None = None,
           jobs: int | None = None, gpus: str | None = None, dry_run: bool = False,
           log=print) -> list[str]:
    """Queue the grid's training stages; start ``jobs`` workers if given. Returns the stages."""
    repo = Path(repo).resolve()
    profile = profile_of(repo)
    data = Path("data") / profile
    status = stale_stages(repo)
    for upstream in ("fetch", "prepare"):
        if upstream in status or not (repo / data).is_dir():
            raise QueueError(f"stage '{upstream}' of profile {profile!r} is not up to date: "
                             "run `dvc repro prepare` first (queued experiments reuse its data)")
    stages = [s for s in train_stages(repo) if all_stages or s in status]
    if pattern:
        stages = [s for s in stages if fnmatch.fnmatch(s, pattern)]
    done = experiments(repo)
    skipped = [s for s in stages if exp_name(s) in done]
    stages = [s for s in stages if exp_name(s) not in done]
    for s in skipped:
        log(f"skip {s}: experiment {exp_name(s)} already finished (run `lossbench queue collect`)")
    for s in stages:
        cmd = [_dvc(), "exp", "run", "--queue", "--copy-paths", str(data), "--name", exp_name(s), s]
        log(("would run: " if dry_run else "queue: ") + " ".join(cmd[1:]))
        if not dry_run:
            _run(cmd, repo, _env())
    if not stages:
        log("nothing to queue")
    if jobs and not dry_run:
        env = {**_env(), WORK_ROOT_ENV: str(repo)}
        if gpus:
            parse_pool(gpus)
            env[POOL_ENV] = gpus
        log(f"start {jobs} worker(s)" + (f", {POOL_ENV}={gpus}" if gpus else ""))
        _run([_dvc(), "queue", "start", "-j", str(jobs)], repo, env)
    return stages


def _lock_entries(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    return (yaml.safe_load(text) or {}).get("stages", {}) or {}


def _git_show(repo: Path, rev: str, path: str) -> bytes | None:
    p = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=repo, capture_output=True)
    return p.stdout if p.returncode == 0 else None


def collect(repo: Path, *, wait: bool = False, poll_s: float = 5.0, remove: bool = False,
            log=print) -> dict[str, list[str]]:
    """Merge the finished experiments of HEAD into the workspace.

    Returns ``{experiment: [stages merged]}``.
    """
    repo = Path(repo).resolve()
    if wait:
        while True:
            c = queue_counts(repo)
            if not c.get("Queued") and not c.get("Running"):
                break
            log(f"waiting: {c.get('Running', 0)} running, {c.get('Queued', 0)} queued")
            time.sleep(poll_s)
    base = baseline(repo)
    base_lock = _lock_entries((_git_show(repo, base, "dvc.lock") or b"").decode() or None)
    lock_path = repo / "dvc.lock"
    lock = yaml.safe_load(lock_path.read_text()) if lock_path.is_file() else None
    lock = lock or {"schema": "2.0", "stages": {}}
    lock.setdefault("stages", {})
    merged: dict[str, list[str]] = {}
    for name, sha in sorted(experiments(repo).items()):
        exp_lock = _lock_entries((_git_show(repo, sha, "dvc.lock") or b"").decode() or None)
        stages = [s for s, e in exp_lock.items() if base_lock.get(s) != e]
        diff = _run(["git", "diff", "--name-status", "--no-renames", base, sha, "--", "runs/"],
                    repo).stdout
        for line in diff.splitlines():
            status, path = line.split("\t", 1)
            target = repo / path
            if status == "D":
                target.unlink(missing_ok=True)
            else:
                blob = _git_show(repo, sha, path)
                if blob is None:
                    raise QueueError(f"experiment {name}: cannot read {path} from {sha}")
                atomic_write_bytes(target, blob)
        for s in stages:
            lock["stages"][s] = exp_lock[s]
        merged[name] = stages
        log(f"collected {name}: {', '.join(stages) or 'no stage changes'}")
    if merged:
        atomic_write_text(lock_path, yaml.safe_dump(lock, sort_keys=False))
    else:
        log(f"no finished experiment of commit {base[:7]} (all commits: `dvc exp show -A`)")
    if remove and merged:
        _run([_dvc(), "exp", "remove", *merged], repo, _env())
    c = queue_counts(repo)
    if c.get("Failed"):
        log(f"{c['Failed']} experiment(s) failed: `dvc queue status`, `dvc queue logs NAME`")
    if c.get("Queued") or c.get("Running"):
        log(f"still {c.get('Running', 0)} running, {c.get('Queued', 0)} queued: collect again later")
    return merged


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    s = sub.add_parser("submit", help="queue the grid's training stages (dvc exp run --queue)")
    s.add_argument("--all", action="store_true", help="queue every training stage, not only stale ones")
    s.add_argument("--stages", metavar="GLOB", help="only stages matching, e.g. 'train_focal@*'")
    s.add_argument("--jobs", "-j", type=int, metavar="N", help="then start N workers (dvc queue start -j N)")
    s.add_argument("--gpus", metavar="IDS",
                   help=f"device pool for the workers, e.g. 0,1,2,3 (sets {POOL_ENV})")
    s.add_argument("--dry-run", action="store_true", help="print the commands only")
    c = sub.add_parser("collect", help="merge finished experiments into runs/ and dvc.lock")
    c.add_argument("--wait", action="store_true", help="first wait until nothing is queued or running")
    c.add_argument("--remove", action="store_true", help="remove the collected experiments afterwards")
    parser.add_argument("--repo", default=".", help="repository root (default: current folder)")


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "submit":
            if args.jobs is not None and args.jobs < 1:
                raise QueueError(f"--jobs must be >= 1, got {args.jobs}")
            if args.gpus and args.jobs and args.jobs > len(parse_pool(args.gpus)):
                raise QueueError(f"--jobs {args.jobs} > {len(parse_pool(args.gpus))} devices in "
                                 f"--gpus {args.gpus}: workers would wait for a GPU")
            submit(Path(args.repo), all_stages=args.all, pattern=args.stages, jobs=args.jobs,
                   gpus=args.gpus, dry_run=args.dry_run)
        else:
            collect(Path(args.repo), wait=args.wait, remove=args.remove)
    except (QueueError, ValueError) as e:
        print(f"lossbench queue: error: {e}", file=sys.stderr)
        return 2
    return 0
