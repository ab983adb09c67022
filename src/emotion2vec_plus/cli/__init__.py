"""The ``emotion2vec-plus`` command: a thin layer over the Python API.

One module per command, each with ``add_parser(subparsers)`` and ``run(args)``. Building the parser
imports nothing heavier than :mod:`emotion2vec_plus.defaults`, so ``--help`` is instant; a command
imports the library (and PyTorch) only when it runs. :func:`main` holds the one policy that turns
errors into exit codes.
"""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
