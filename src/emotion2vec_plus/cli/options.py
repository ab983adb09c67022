"""Options shared by the commands that load a model, and the one place a model is built from them."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ..defaults import BACKENDS, COMPUTE_TYPE_CHOICES, DEFAULT_MODEL, MAX_DURATION_S

if TYPE_CHECKING:
    from ..inference import Emotion2VecPlus

MODEL_HELP = ("compact (bundled, default), large, base, seed, emotion2vec_base_finetuned, "
              "emotion2vec_base, a hub id, or a local model directory")


def add_model_options(parser: argparse.ArgumentParser, model_help: str = MODEL_HELP) -> None:
    """``--model``, ``--hub``, ``--cache-dir``, ``--device``, ``--threads``, ``--compute-type``, ``--backend``
    and ``--adapter``."""
    parser.add_argument("--model", default=None, help=model_help)
    parser.add_argument("--hub", choices=["hf", "ms"], default=None,
                        help="where to download models: hf = Hugging Face, ms = ModelScope "
                             "(default: $EMOTION2VEC_HUB or hf)")
    parser.add_argument("--cache-dir", default=None, help="model cache directory (default: $EMOTION2VEC_CACHE)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    parser.add_argument("--threads", type=int, default=None, help="PyTorch CPU threads")
    add_compute_options(parser)
    add_adapter_option(parser)


def add_adapter_option(parser: argparse.ArgumentParser) -> None:
    """``--adapter`` (part of :func:`add_model_options`)."""
    parser.add_argument("--adapter", default=None, metavar="FILE",
                        help="an adapter made by 'emotion2vec-plus adapt' from your own recordings "
                             "(bundled compact model only; recorded in every result)")


def add_compute_options(parser: argparse.ArgumentParser) -> None:
    """``--compute-type`` and ``--backend`` (part of :func:`add_model_options`)."""
    parser.add_argument("--compute-type", choices=COMPUTE_TYPE_CHOICES, default=None,
                        help="auto (default, or $EMOTION2VEC_COMPUTE_TYPE when set: the fastest for this CPU; "
                             "the choice is printed and recorded in every result), float32 (FunASR's numbers "
                             "exactly), int8 (dynamic int8 linear layers, CPU) or bfloat16 (torch only)")
    parser.add_argument("--backend", choices=BACKENDS, default="torch",
                        help="torch (default) or onnx (exported once, cached, run with onnxruntime; "
                             "pip install 'emotion2vec-plus[onnx]')")


def add_length_options(parser: argparse.ArgumentParser, max_duration_s: float = MAX_DURATION_S) -> None:
    """``--window`` and ``--max-duration``."""
    parser.add_argument("--window", type=float, default=None,
                        help="longest piece scored whole, in seconds; longer files are cut at their pauses "
                             "(default: the model's, 10 for compact, 30 for emotion2vec+)")
    parser.add_argument("--max-duration", type=float, default=max_duration_s,
                        help=f"refuse files longer than this many seconds (default {max_duration_s:g})")


def model_kwargs(args: argparse.Namespace, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments of :class:`~emotion2vec_plus.Emotion2VecPlus` from parsed options (those the
    command has), then ``overrides``; the model name is under ``"model_name"``."""
    options = {
        "model_name": getattr(args, "model", None) or DEFAULT_MODEL,
        "device": getattr(args, "device", "cpu"),
        "hub": getattr(args, "hub", None),
        "cache_dir": getattr(args, "cache_dir", None),
        "num_threads": getattr(args, "threads", None),
        "compute_type": getattr(args, "compute_type", None),
        "backend": getattr(args, "backend", None) or "torch",
    }
    if getattr(args, "window", None) is not None:
        options["window_s"] = args.window
    if getattr(args, "max_duration", None) is not None:
        options["max_duration_s"] = args.max_duration
    if getattr(args, "adapter", None) is not None:
        options["adapter"] = args.adapter
    if getattr(args, "head", None) is not None:
        options["head"] = args.head
    if getattr(args, "batch_size", None) is not None:
        options["batch_size"] = args.batch_size
    options.update(overrides)
    return options


def model_from_args(args: argparse.Namespace, **overrides: Any) -> "Emotion2VecPlus":
    """The model the parsed options ask for (see :func:`model_kwargs`)."""
    from ..inference import Emotion2VecPlus

    return Emotion2VecPlus(**model_kwargs(args, **overrides))
