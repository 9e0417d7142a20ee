"""The DVC stages of ``dvc.yaml``, one command-line module each (fetch, prepare, train, select,
report, sweep_report), each defining ``add_arguments(parser)`` and ``run(args) -> int``."""
