"""One module per command of run.py: ``add_arguments(parser)`` and ``run(args) -> int``."""
