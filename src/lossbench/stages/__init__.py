"""The command-line modules: one per DVC stage (fetch, prepare, train, report) plus
``synth`` (the generator on its own) and ``queue`` (the grid through DVC's queue).
Each defines ``add_arguments(parser)`` and ``run(args) -> int``."""
