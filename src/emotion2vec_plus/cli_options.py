"""Command-line options shared by every subcommand that loads a model."""

from __future__ import annotations

import argparse

MODEL_HELP = ("compact (bundled, default), large, base, seed, emotion2vec_base_finetuned, "
              "emotion2vec_base, a hub id, or a local model directory")


def add_model_options(parser: argparse.ArgumentParser, model_help: str = MODEL_HELP) -> None:
    """``--model``, ``--hub``, ``--cache-dir``, ``--device`` and ``--threads``."""
    parser.add_argument("--model", default=None, help=model_help)
    parser.add_argument("--hub", choices=["hf", "ms"], default=None,
                        help="where to download models: hf = Hugging Face, ms = ModelScope "
                             "(default: $EMOTION2VEC_HUB or hf)")
    parser.add_argument("--cache-dir", default=None, help="model cache directory (default: $EMOTION2VEC_CACHE)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    parser.add_argument("--threads", type=int, default=None, help="PyTorch CPU threads")
