"""Command line: ``emotion2vec-plus predict FILE...`` and ``emotion2vec-plus models``.

A thin layer over :class:`emotion2vec_plus.Emotion2VecPlus`; user errors print one clear
line (no traceback) and set a non-zero exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Sequence

from .analytics import add_analytics_parsers, run_analytics_command
from .batch import add_batch_parser, run_batch_command
from .head_training import add_train_head_parser, run_train_head_command
from .onnx_backend import add_export_onnx_parser, run_export_onnx_command
from .service import add_serve_parser, run_serve_command
from .webui import add_webui_parser, run_webui_command
from .cli_options import add_model_options, compute_options
from .terminal import terminal_safe
from .errors import Emotion2VecError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emotion2vec-plus",
        description="Speech emotion recognition and emotion embeddings with emotion2vec+.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    predict = sub.add_parser("predict", help="recognise the emotion of audio files")
    predict.add_argument("files", nargs="+", metavar="FILE", help="audio files (wav, mp3, m4a, flac, ogg, webm, ...)")
    add_model_options(predict)
    predict.add_argument("--granularity", choices=["utterance", "frame"], default="utterance",
                         help="utterance: one result per file; frame: also per-frame emotions at 50 Hz")
    predict.add_argument("--embedding", action="store_true",
                         help="extract the embedding (written as embedding.npy with --output-dir, "
                              "included in --json output)")
    predict.add_argument("--output-dir", default=None,
                         help="save each run to DIR/outputs_YYYYMMDD_HHMMSS/ (processed_audio.wav, "
                              "result.json, embedding.npy)")
    predict.add_argument("--json", action="store_true", help="print results as JSON lines instead of text")
    predict.add_argument("--head", default=None,
                         help="a custom head file made by train-head (replaces the model's own classes)")
    predict.add_argument("--batch-size", type=int, default=8, help="windows per forward pass (default 8)")
    predict.add_argument("--window", type=float, default=None,
                        help="longest piece scored whole, in seconds; longer files are cut at their pauses "
                             "(default: the model's, 10 for compact, 30 for emotion2vec+)")
    predict.add_argument("--max-duration", type=float, default=None,
                         help="refuse files longer than this many seconds (default 4 h)")

    models = sub.add_parser("models", help="list known models, their sizes and whether they are cached")
    models.add_argument("--hub", choices=["hf", "ms"], default=None)
    models.add_argument("--cache-dir", default=None)
    models.add_argument("--json", action="store_true")
    add_analytics_parsers(sub)
    add_batch_parser(sub)
    add_train_head_parser(sub)
    add_serve_parser(sub)
    add_export_onnx_parser(sub)
    add_webui_parser(sub)
    return parser


def _format_line(result) -> str:
    """One result for the terminal; every text that comes from outside (the file name, messages
    quoting it) is shown with its control characters escaped."""
    source = terminal_safe(result.source)
    if not result.ok:
        return f"✗ {source}: {terminal_safe(result.error)}"
    if result.emotion is None:
        shape = "x".join(str(n) for n in result.embedding.shape) if result.embedding is not None else result.embedding_dim
        return f"{source}: embedding {shape} ({result.processing_time_s:.2f} s)"
    line = (f"{result.emoji} {result.emotion} {result.emotion_zh} {result.confidence * 100:.1f}%  "
            f"{source}  ({result.duration_s:.1f} s audio, {result.processing_time_s:.2f} s)")
    for warning in result.warnings:
        line += f"\n  warning: {terminal_safe(warning)}"
    if result.segments:
        for segment in result.segments:
            line += (f"\n  {segment.start_s:7.1f}-{segment.end_s:7.1f} s  {segment.emoji} {segment.emotion} "
                     f"{segment.confidence * 100:.1f}%")
    if result.output_dir:
        line += f"\n  saved to {terminal_safe(result.output_dir)}"
    return line


def _run_predict(args: argparse.Namespace) -> int:
    from .audio import DEFAULT_MAX_DURATION_S
    from .inference import DEFAULT_MODEL, Emotion2VecPlus

    started = time.perf_counter()
    model = Emotion2VecPlus(
        args.model or DEFAULT_MODEL, device=args.device, hub=args.hub, cache_dir=args.cache_dir,
        num_threads=args.threads, batch_size=args.batch_size, window_s=args.window,
        max_duration_s=args.max_duration or DEFAULT_MAX_DURATION_S, head=args.head, **compute_options(args),
    )
    if not args.json:
        print(f"{model.describe()}; loaded from {model.model_dir} in {time.perf_counter() - started:.1f} s",
              file=sys.stderr)
    failed = 0
    for path in args.files:
        result = model.predict_batch([path], granularity=args.granularity, extract_embedding=args.embedding,
                                     output_dir=args.output_dir)[0]
        failed += not result.ok
        if args.json:
            print(json.dumps(result.to_dict(include_embedding=args.embedding), ensure_ascii=False))
        else:
            print(_format_line(result), file=sys.stdout if result.ok else sys.stderr)
        sys.stdout.flush()
    if failed and not args.json:
        print(f"{failed} of {len(args.files)} file(s) failed", file=sys.stderr)
    return 1 if failed else 0


def _compact_size_mb() -> int:
    from .compact import default_compact_path
    from .whisper import default_weights_path

    return round((default_compact_path().stat().st_size + default_weights_path().stat().st_size) / 1e6)


def _run_models(args: argparse.Namespace) -> int:
    from .compact import COMPACT_NAME, default_compact_path, read_compact
    from .hub import list_models, resolve_hub

    statuses = list_models(hub=args.hub, cache_dir=args.cache_dir)
    hub = resolve_hub(args.hub)
    compact = read_compact()
    if args.json:
        bundled = {"name": COMPACT_NAME, "repo": None, "embed_dim": compact.embed_dim, "has_head": compact.head is not None,
                   "size_mb": _compact_size_mb(), "cached": True, "path": str(default_compact_path().parent)}
        print(json.dumps([bundled] + [{
            "name": s.spec.name, "repo": s.spec.repo(hub) if s.spec.on_hub(hub) else None,
            "embed_dim": s.spec.embed_dim, "has_head": s.spec.has_head, "size_mb": s.spec.size_mb,
            "cached": s.cached, "path": str(s.path) if s.path else None,
        } for s in statuses], ensure_ascii=False, indent=2))
        return 0
    print(f"{'name':28} {'dim':>5} {'head':>5} {'size':>8}  {'cached':7} location")
    print(f"{COMPACT_NAME + ' (default)':28} {compact.embed_dim:>5} {'yes':>5} {_compact_size_mb():>5} MB  "
          f"{'bundled':7} {default_compact_path().parent}")
    for s in statuses:
        where = str(s.path) if s.path else s.spec.url(hub if s.spec.on_hub(hub) else "ms")
        if not s.spec.on_hub(hub):
            where += " (ModelScope only: --hub ms)"
        print(f"{s.spec.name:28} {s.spec.embed_dim:>5} {'yes' if s.spec.has_head else 'no':>5} "
              f"{s.spec.size_mb:>5} MB  {'yes' if s.cached else 'no':7} {where}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``emotion2vec-plus`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "predict":
            return _run_predict(args)
        if args.command == "batch":
            return run_batch_command(args)
        if args.command == "train-head":
            return run_train_head_command(args)
        if args.command == "serve":
            return run_serve_command(args)
        if args.command == "export-onnx":
            return run_export_onnx_command(args)
        if args.command == "webui":
            return run_webui_command(args)
        if args.command in ("similarity", "search", "cluster"):
            return run_analytics_command(args)
        return _run_models(args)
    except Emotion2VecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
