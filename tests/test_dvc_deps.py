"""Every DVC stage depends on the code its command executes, no less and no more.

`dvc status` clean must mean that every number came from the code at HEAD: a stage whose
`deps` miss a module its command imports would not rerun when that module changes. For every
stage of `dvc.yaml` (matrix stages expanded by DVC itself), the modules of `lossbench` its
command imports, transitively (lossbench.codedeps), must each lie under one of its deps, and
every `src/` dep must hold at least one of them. The configs a stage reads (a profile's
training config and its `_base_` chain, the anchor config of the generator) are checked the
same way.
"""

from __future__ import annotations

import ast
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from lossbench import codedeps
from lossbench.cli import COMMANDS
from lossbench.profiles import load_params

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def stages():
    """``[(name, [commands], [dep paths])]`` of every stage, resolved by DVC."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    out = []
    with Repo(str(REPO)) as repo:
        for st in repo.index.stages:
            cmds = st.cmd if isinstance(st.cmd, list) else [st.cmd]
            deps = [d.def_path for d in st.deps if not isinstance(d, ParamsDependency)]
            out.append((st.addressing, cmds, deps, [o.def_path for o in st.outs]))
    assert len(out) > 50  # the study and the sweep, expanded
    return out


def command_modules(cmds: list[str]) -> list[str]:
    """The modules the ``lossbench <command>`` invocations of a stage run."""
    mods = []
    for cmd in cmds:
        words = shlex.split(cmd)
        for i, w in enumerate(words[:-1]):
            if w == "lossbench":
                mods.append(COMMANDS[words[i + 1]])
    return mods


def options(cmds: list[str]) -> dict[str, str]:
    words = [w for c in cmds for w in shlex.split(c)]
    return {w: words[i + 1] for i, w in enumerate(words[:-1]) if w.startswith("--")}


def covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def config_chain(path: Path) -> list[Path]:
    """A config file and every file its ``_base_`` inherits, transitively (read with ast)."""
    out, todo = [], [path]
    while todo:
        f = todo.pop()
        out.append(f)
        for node in ast.parse(f.read_text()).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_base_" for t in node.targets):
                bases = ast.literal_eval(node.value)
                todo += [(f.parent / b).resolve() for b in ([bases] if isinstance(bases, str) else bases)]
    return out


def test_every_stage_depends_on_the_code_it_runs(stages):
    problems = []
    for name, cmds, deps, _ in stages:
        mods = command_modules(cmds)
        assert mods, f"{name}: no `lossbench <command>` in {cmds}"
        files = [f.relative_to(REPO).as_posix() for f in codedeps.files(mods)]
        missing = [f for f in files if not covered(f, deps)]
        unused = [d for d in deps if d.startswith("src/") and not any(covered(f, [d]) for f in files)]
        if missing:
            problems.append(f"{name}: deps lack {missing}")
        if unused:
            problems.append(f"{name}: deps {unused} hold no module its command imports")
    assert not problems, "\n".join(problems)


def test_training_stages_read_the_config_they_train_with(stages):
    params = load_params(REPO / "params.yaml")
    checked = 0
    for name, cmds, deps, _ in stages:
        opts = options(cmds)
        if COMMANDS["train"] not in command_modules(cmds):
            continue
        config = REPO / params["profiles"][opts["--profile"]]["config"]
        missing = [f.relative_to(REPO).as_posix() for f in config_chain(config)
                   if not covered(f.relative_to(REPO).as_posix(), deps)]
        assert not missing, f"{name}: deps lack the configs {missing}"
        assert covered(opts["--ann-dir"], deps), f"{name}: deps lack its data {opts['--ann-dir']}"
        checked += 1
    assert checked > 50


def test_generator_stages_read_their_anchor_config(stages):
    """The positive-anchor share in data/<profile>/raw/stats.json comes from the anchor config."""
    from lossbench.data.anchor_stats import find_model_config

    params = load_params(REPO / "params.yaml")
    checked = 0
    for name, cmds, deps, _ in stages:
        if COMMANDS["fetch"] not in command_modules(cmds):
            continue
        data = params["profiles"][options(cmds)["--profile"]]["data"]
        if not data:  # a real dataset: downloaded, no anchors
            continue
        anchor = find_model_config(data.get("anchor_config"))
        chain = [f.relative_to(REPO).as_posix() for f in config_chain(Path(anchor).resolve())]
        missing = [f for f in chain if not covered(f, deps)]
        assert not missing, f"{name}: deps lack the anchor config files {missing}"
        checked += 1
    assert checked >= 4  # fetch and the three sweep points


def test_resume_hashes_the_train_stages_code(stages):
    """The fingerprint's code (lossbench.training.resume.code_files) is what the train stages'
    `src/` deps hold: a checkpoint resumes exactly when DVC would not see new code."""
    from lossbench.training.resume import code_files

    files = {f.relative_to(REPO).as_posix() for f in code_files()}
    for name, cmds, deps, _ in stages:
        if COMMANDS["train"] in command_modules(cmds):
            src = [d for d in deps if d.startswith("src/")]
            on_disk = {p.relative_to(REPO).as_posix() for d in src
                       for p in ([REPO / d] if (REPO / d).is_file() else (REPO / d).rglob("*.py"))}
            assert on_disk == files, f"{name}: src deps {sorted(on_disk ^ files)} differ from the fingerprint's code"


def test_closure_follows_imports_of_a_fabricated_package(tmp_path):
    """Hand-worked: a imports b at top level and c.d inside a function; c/__init__ imports e
    relatively; f is imported by nobody; a name imported from a module is not a module."""
    pkg = tmp_path / "pkg"
    (pkg / "c").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import thing\n\ndef g():\n    import pkg.c.d\n")
    (pkg / "b.py").write_text("thing = 1\n")
    (pkg / "c" / "__init__.py").write_text("from . import e\n")
    (pkg / "c" / "d.py").write_text("import os\n")
    (pkg / "c" / "e.py").write_text("from ..b import thing\n")
    (pkg / "f.py").write_text("")
    got = codedeps.closure(["pkg.a"], root=pkg)
    assert sorted(got) == ["pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.c.d", "pkg.c.e"]
    assert got["pkg.c"] == pkg / "c" / "__init__.py"
    with pytest.raises(ValueError, match="pkg.nope: no such module"):
        codedeps.closure(["pkg.nope"], root=pkg)


def _tracked(*paths: str) -> list[str]:
    return subprocess.run(["git", "ls-files", "-z", "--", *paths], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.split("\0")[:-1]


def test_every_committed_run_file_is_a_stage_output(stages):
    """runs/ holds nothing that no stage declares: what `dvc status` checks is what is committed."""
    outs = [o for *_, stage_outs in stages for o in stage_outs]
    stray = [f for f in _tracked("runs") if not covered(f, outs)]
    assert not stray, f"committed under runs/ but no stage's output: {stray[:10]} ({len(stray)} in all)"


MACHINE_PATH = re.compile(rb"/tmp/|/home/|/root/")


def test_no_machine_paths_in_committed_results():
    """Runs and reports hold no absolute path of the machine that made them."""
    files = _tracked("runs", "reports")
    assert len(files) > 100
    found = [f for f in files if MACHINE_PATH.search((REPO / f).read_bytes())]
    assert not found, f"absolute paths in {found[:10]}"
