"""``emotion2vec-plus``: the parser of every command and the one error -> exit code policy."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from . import adapt, analytics, batch, export_onnx, listen, models, predict, serve, train_head, webui
from ..terminal import terminal_safe

#: Optional packages -> the extra that installs them (``pip install "emotion2vec-plus[EXTRA]"``).
EXTRA_OF_MODULE = {
    "fastapi": "serve", "uvicorn": "serve", "starlette": "serve", "multipart": "serve", "swagger_ui": "serve",
    "gradio": "webui", "matplotlib": "analytics", "plotly": "analytics", "umap": "analytics",
    "sklearn": "analytics", "ray": "ray", "onnx": "onnx", "onnxruntime": "onnx", "modelscope": "modelscope",
    "sounddevice": "live",
}

#: Modules whose ``add_parser`` registers their command(s), in ``--help`` order.
COMMANDS = (predict, listen, models, batch, adapt, analytics, train_head, serve, export_onnx, webui)


def build_parser() -> argparse.ArgumentParser:
    """The ``emotion2vec-plus`` parser; each command's ``run`` is in ``args.run``."""
    parser = argparse.ArgumentParser(
        prog="emotion2vec-plus",
        description="Speech emotion recognition and emotion embeddings with emotion2vec+.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``emotion2vec-plus`` console script.

    Exit codes: 0 success; 1 some inputs failed (reported, the rest done); 2 a user or model error
    (one ``error: ...`` line on stderr naming the file and the problem, no traceback); 130 interrupted.
    """
    args = build_parser().parse_args(argv)
    from ..errors import Emotion2VecError  # light; imported here so --help stays minimal

    try:
        return args.run(args)
    except (Emotion2VecError, ValueError, OSError) as exc:
        message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
        print(f"error: {terminal_safe(message)}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        extra = EXTRA_OF_MODULE.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        print(f"error: '{args.command}' needs the {exc.name} package, which is not installed: "
              f"pip install \"emotion2vec-plus[{extra}]\"", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
