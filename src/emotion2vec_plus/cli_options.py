"""Command-line options shared by every subcommand that loads a model."""

from __future__ import annotations

import argparse
from typing import Any

from .compute import BACKENDS, COMPUTE_TYPE_CHOICES

MODEL_HELP = ("compact (bundled, default), large, base, seed, emotion2vec_base_finetuned, "
              "emotion2vec_base, a hub id, or a local model directory")


def add_model_options(parser: argparse.ArgumentParser, model_help: str = MODEL_HELP) -> None:
    """``--model``, ``--hub``, ``--cache-dir``, ``--device``, ``--threads``, ``--compute-type`` and ``--backend``."""
    parser.add_argument("--model", default=None, help=model_help)
    parser.add_argument("--hub", choices=["hf", "ms"], default=None,
                        help="where to download models: hf = Hugging Face, ms = ModelScope "
                             "(default: $EMOTION2VEC_HUB or hf)")
    parser.add_argument("--cache-dir", default=None, help="model cache directory (default: $EMOTION2VEC_CACHE)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    parser.add_argument("--threads", type=int, default=None, help="PyTorch CPU threads")
    add_compute_options(parser)


def add_compute_options(parser: argparse.ArgumentParser) -> None:
    """``--compute-type`` and ``--backend`` (part of :func:`add_model_options`)."""
    parser.add_argument("--compute-type", choices=COMPUTE_TYPE_CHOICES, default="auto",
                        help="auto (default: bfloat16 on CPUs with AMX, else int8 with AVX2, else float32; "
                             "the choice is printed), float32 (FunASR's numbers exactly), int8 (dynamic int8 "
                             "linear layers, CPU) or bfloat16 (torch only)")
    parser.add_argument("--backend", choices=BACKENDS, default="torch",
                        help="torch (default) or onnx (exported once, cached, run with onnxruntime; "
                             "pip install 'emotion2vec-plus[onnx]')")


def compute_options(args: argparse.Namespace) -> dict[str, Any]:
    """``compute_type`` and ``backend`` keyword arguments for :class:`Emotion2VecPlus` from parsed options."""
    return {"compute_type": getattr(args, "compute_type", None) or "auto",
            "backend": getattr(args, "backend", None) or "torch"}
