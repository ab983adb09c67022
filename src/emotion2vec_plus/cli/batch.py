"""``emotion2vec-plus batch INPUT... --out DIR``: many files into results.jsonl and embeddings; resumable."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..defaults import AUDIO_EXTENSIONS, EMBEDDING_MODES, GRANULARITIES
from .options import add_length_options, add_model_options, model_from_args, model_kwargs


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "batch", help="recognise many files (folders, lists) into results.jsonl + embeddings; resumable",
        description="Recognise every audio file in the inputs into --out DIR (results.jsonl, embeddings.parquet, "
                    "embeddings/*.npy). Re-running the same command skips files already done.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="audio files, folders (searched recursively for "
                             f"{', '.join(e[1:] for e in AUDIO_EXTENSIONS)}) and .txt/.csv lists of paths")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder: results.jsonl, embeddings.parquet, embeddings/*.npy; "
                             "re-running the same command resumes")
    add_model_options(parser)
    parser.add_argument("--granularity", choices=GRANULARITIES, default="utterance",
                        help="utterance: one result per file; frame: also (T, D) frame features as .npy")
    parser.add_argument("--embeddings", choices=list(EMBEDDING_MODES), default="parquet",
                        help="where embeddings go: parquet (embeddings.parquet, default), npy (embeddings/ "
                             "mirroring the inputs), both, or none")
    parser.add_argument("--workers", type=int, default=2, help="decoding threads (default 2)")
    parser.add_argument("--batch-size", type=int, default=8, help="files per forward pass (default 8)")
    add_length_options(parser)
    parser.add_argument("--head", default=None, help="a custom head file made by train-head")
    parser.add_argument("--retry-failed", action="store_true", help="process files again that failed before")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--engine", choices=["local", "ray"], default="local",
                        help="local: this process (default); ray: Ray Data workers (needs the 'ray' extra)")
    parser.add_argument("--address", default=None, metavar="ADDR",
                        help="with --engine ray: a running Ray cluster (default: start a local one on 127.0.0.1)")
    parser.add_argument("--ray-workers", type=int, default=None, metavar="N",
                        help="with --engine ray: model workers, each loading the model once (default 1)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """0 if every file of the inputs has an ``ok`` line, 1 if any failed (in this run, or in an
    earlier run and skipped now), 130 when interrupted (the next run resumes)."""
    from ..jobs import RESULTS_NAME, check_batch_options, discover_inputs, run_batch

    check_batch_options(args.granularity, args.embeddings, args.workers, args.batch_size)
    plan = discover_inputs(args.inputs)  # errors in the inputs come before the model loads
    progress = not args.no_progress
    try:
        if args.engine == "ray":
            from ..jobs.ray import run_batch_ray

            if progress:
                where = f"the Ray cluster at {args.address}" if args.address else "a local Ray instance (127.0.0.1)"
                print(f"engine ray: {args.ray_workers or 1} worker(s) on {where}", file=sys.stderr)
            options = model_kwargs(args)
            summary = run_batch_ray(
                options.pop("model_name"), args.inputs, args.out, address=args.address,
                granularity=args.granularity, embeddings=args.embeddings, batch_size=args.batch_size,
                num_workers=args.ray_workers, workers=args.workers, progress=progress,
                retry_failed=args.retry_failed, model_kwargs=options)
        else:
            started = time.perf_counter()
            model = model_from_args(args)
            if progress:
                print(f"{model.describe()}; loaded in {time.perf_counter() - started:.1f} s; "
                      f"{len(plan.files)} file(s)", file=sys.stderr)
            summary = run_batch(model, plan, args.out, granularity=args.granularity, embeddings=args.embeddings,
                                workers=args.workers, batch_size=args.batch_size, progress=progress,
                                retry_failed=args.retry_failed)
    except KeyboardInterrupt:
        print(f"interrupted; run the same command again to resume ({Path(args.out) / RESULTS_NAME})", file=sys.stderr)
        return 130
    print(f"{summary}\nresults in {Path(args.out) / RESULTS_NAME}")
    return 1 if summary.failed or summary.skipped_failed else 0
