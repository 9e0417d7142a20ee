"""The ``lossbench`` command line: one sub-command per module, which defines
``add_arguments(parser)`` and ``run(args) -> int``. The first line of the module docstring is
the command's one-line help, read from the source, so only the command that runs is imported.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import sys
from pathlib import Path

from lossbench import __version__

# command name -> module implementing it: the DVC stages (lossbench.stages), then the helpers
COMMANDS: dict[str, str] = {
    **{name: f"lossbench.stages.{name}" for name in ("fetch", "prepare", "pretrain", "train", "select", "report")},
    "sweep-report": "lossbench.stages.sweep_report", "remedies-report": "lossbench.stages.remedies_report",
    "queue": "lossbench.queue", "synth": "lossbench.data.synth.cli", "env": "lossbench.training.envinfo"}


def _available() -> dict[str, str]:
    """Command -> the first line of its module's docstring, for the modules installed."""
    found = {}
    for name, module in COMMANDS.items():
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.origin:
            doc = ast.get_docstring(ast.parse(Path(spec.origin).read_text(encoding="utf-8"))) or ""
            found[name] = doc.strip().splitlines()[0].rstrip(".") if doc.strip() else ""
    return found


def build_parser(expand: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the sub-command named ``expand`` imports its module."""
    parser = argparse.ArgumentParser(
        prog="lossbench", description="One-stage detector imbalance-loss study (YOLO SSE, SSD OHEM, RetinaNet focal).")
    parser.add_argument("--version", action="version", version=f"lossbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in _available().items():
        if name == expand:
            mod = importlib.import_module(COMMANDS[name])
            doc = (mod.__doc__ or help_text).strip()
            p = sub.add_parser(name, help=help_text, description=doc,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
            mod.add_arguments(p)
            p.set_defaults(_run=mod.run)
        else:
            sub.add_parser(name, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(expand=command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return int(args._run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
