"""``emotion2vec-plus predict FILE...``: the emotion of each file, as text or JSON lines."""

from __future__ import annotations

import argparse
import json
import sys
import time

from ..defaults import GRANULARITIES
from ..terminal import escape_undecodable, terminal_safe, undecodable_name_error
from .options import add_length_options, add_model_options, model_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("predict", help="recognise the emotion of audio files")
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files (wav, mp3, m4a, flac, ogg, webm, ...)")
    add_model_options(parser)
    parser.add_argument("--granularity", choices=GRANULARITIES, default="utterance",
                        help="utterance: one result per file; frame: also per-frame emotions at 50 Hz")
    parser.add_argument("--embedding", action="store_true",
                        help="extract the embedding (written as embedding.npy with --output-dir, "
                             "included in --json output)")
    parser.add_argument("--output-dir", default=None,
                        help="save each run as OUTPUT_DIR/outputs_YYYYMMDD_HHMMSS/ "
                             "(processed_audio.wav, result.json, embedding.npy)")
    parser.add_argument("--json", action="store_true", help="print results as JSON lines instead of text")
    parser.add_argument("--head", default=None,
                        help="a custom head file made by train-head (replaces the model's own classes)")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per forward pass (default 8)")
    parser.add_argument("--no-segments", dest="segments", action="store_false",
                        help="score a file within the window once, without reporting its utterances (faster for "
                             "clips of several sentences; a longer file is always scored utterance by utterance)")
    add_length_options(parser)
    parser.set_defaults(run=run)


def format_line(result) -> str:
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


def run(args: argparse.Namespace) -> int:
    """0 if every file was recognised, 1 if any failed (each reported; the others are done)."""
    from ..results import Result

    started = time.perf_counter()
    model = model_from_args(args)
    if not args.json:
        print(f"{model.describe()}; loaded from {model.model_dir} in {time.perf_counter() - started:.1f} s",
              file=sys.stderr)
    failed = 0
    for path in args.files:
        name_error = undecodable_name_error(path)
        if name_error is not None:
            result = Result(source=escape_undecodable(path), model=model.model_name, granularity=args.granularity,
                            error=name_error)
        else:
            result = model.predict_batch([path], granularity=args.granularity, extract_embedding=args.embedding,
                                         output_dir=args.output_dir, segments=args.segments)[0]
        failed += not result.ok
        if args.json:
            print(json.dumps(result.to_dict(include_embedding=args.embedding), ensure_ascii=False))
        else:
            print(format_line(result), file=sys.stdout if result.ok else sys.stderr)
        sys.stdout.flush()
    if failed and not args.json:
        print(f"{failed} of {len(args.files)} file(s) failed", file=sys.stderr)
    return 1 if failed else 0
