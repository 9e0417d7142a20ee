"""The ``lossbench`` command line: one sub-command per module.

Each sub-command lives in its own module, which defines
``add_arguments(parser)`` and ``run(args) -> int``; the first line of the
module docstring is the command's one-line help. Modules are imported only
when their command runs, so ``lossbench --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from lossbench import __version__

# command name -> module implementing it
COMMANDS: dict[str, str] = {
    "env": "lossbench.envinfo",
    "synth": "lossbench.stages.synth",
    "fetch": "lossbench.stages.fetch",
    "prepare": "lossbench.stages.prepare",
    "train": "lossbench.stages.train",
    "report": "lossbench.stages.report",
    "queue": "lossbench.stages.queue",
}

# Short help shown by ``lossbench --help`` without importing every module.
SUMMARIES: dict[str, str] = {
    "env": "print the versions of the stack, the device and the git revision",
    "synth": "generate the synthetic detection set (VOC and COCO layouts)",
    "fetch": "download and verify PASCAL VOC / COCO 2017",
    "prepare": "turn a fetched or generated set into COCO-format splits",
    "train": "train and evaluate one run of the study",
    "report": "build the ablation tables and figures from the runs",
    "queue": "run the training grid through DVC's experiment queue and collect it",
}


def _available() -> dict[str, str]:
    """Commands whose module exists in this installation."""
    found = {}
    for name, module in COMMANDS.items():
        if importlib.util.find_spec(module) is not None:
            found[name] = module
    return found


def build_parser(expand: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the sub-command named ``expand`` imports its module."""
    parser = argparse.ArgumentParser(
        prog="lossbench",
        description="One-stage detector imbalance-loss study (YOLO SSE, SSD OHEM, RetinaNet focal).",
    )
    parser.add_argument("--version", action="version", version=f"lossbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in _available().items():
        help_text = SUMMARIES.get(name, "")
        if name == expand:
            mod = importlib.import_module(module)
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
