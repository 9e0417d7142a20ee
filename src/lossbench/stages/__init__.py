"""One module per pipeline stage: ``add_arguments(parser)`` and ``run(args) -> int``."""
