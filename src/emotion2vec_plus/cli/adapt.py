"""``emotion2vec-plus adapt INPUT... -o adapted.safetensors``: statistics of your recordings that adapt
the bundled compact model to them (no labels); use the file with ``--adapter`` on any command."""

from __future__ import annotations

import argparse
import sys
import time

from ..defaults import AUDIO_EXTENSIONS
from ..terminal import terminal_safe
from .options import add_length_options, add_model_options, model_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "adapt", help="adapt the bundled compact model to your recordings (no labels) -> an adapter file",
        description="Compute the statistics of your recordings' utterances (cut as predict cuts them) that re-map "
                    "the bundled compact model's inputs onto its training data's, and write them as an adapter "
                    "file for --adapter. The recordings should span the emotions you expect: the statistics of "
                    "an all-angry set would re-centre angry to neutral. Needs at least 20 utterances.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="audio files, folders (searched recursively for "
                             f"{', '.join(e[1:] for e in AUDIO_EXTENSIONS)}) and .txt/.csv lists of paths")
    parser.add_argument("-o", "--output", required=True, metavar="FILE",
                        help="the adapter file to write (e.g. adapted.safetensors)")
    add_model_options(parser)
    add_length_options(parser)
    parser.add_argument("--batch-size", type=int, default=8, help="utterances per forward pass (default 8)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """0 when the adapter was written (files that could not be used are listed on stderr); 2 when
    no adapter could be made (too few utterances, a model that cannot be adapted)."""
    from ..jobs.discovery import discover_inputs

    files = discover_inputs(args.inputs).files  # errors in the inputs come before the model loads
    started = time.perf_counter()
    model = model_from_args(args, adapter=None)  # statistics are of the projection's inputs: no adapter involved
    print(f"{model.describe()}; loaded in {time.perf_counter() - started:.1f} s; {len(files)} file(s)",
          file=sys.stderr)
    adapter = model.adapt([str(path) for path in files], args.output)
    for source, reason in adapter.skipped:
        print(f"skipped {terminal_safe(source)}: {terminal_safe(reason)}", file=sys.stderr)
    print(f"wrote {terminal_safe(str(args.output))}: {adapter.num_utterances} utterances from {adapter.num_files} "
          f"file(s){f', {len(adapter.skipped)} skipped' if adapter.skipped else ''} "
          f"(sha256 {adapter.digest[:12]}) in {time.perf_counter() - started:.1f} s")
    return 0
