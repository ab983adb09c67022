"""``emotion2vec-plus train-head DATA --out head.safetensors``: a custom classifier on labelled audio."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

from ..defaults import EMBEDDING_CACHE, HEAD_KINDS
from .options import add_model_options, model_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train-head", help="train a custom classifier head on labelled audio",
        description="Train a custom head (logistic regression or MLP over the model's embeddings) from a folder "
                    "of label sub-folders (DATA/angry/*.wav ...) or a CSV with columns path,label[,group]. "
                    "Reports cross-validated UA/WA (grouped by speaker when groups are given) and writes the "
                    "head plus a confusion-matrix PNG.")
    parser.add_argument("data", metavar="DATA", help="folder of label sub-folders, or CSV path,label[,group|speaker]")
    parser.add_argument("--out", required=True, help="head file to write, e.g. head.safetensors")
    add_model_options(parser, "embedding model (default: the bundled compact model)")
    parser.add_argument("--kind", choices=list(HEAD_KINDS), default="logreg", help="classifier kind (default logreg)")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    parser.add_argument("--l2", type=float, default=1e-2, help="L2 regularisation (default 0.01)")
    parser.add_argument("--cache", default=None, metavar="DIR",
                        help=f"embedding cache folder (default {EMBEDDING_CACHE})")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the embedding cache")
    parser.add_argument("--seed", type=int, default=0, help="seed of folds and training (default 0)")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per forward pass (default 8)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..head_training import format_confusion, read_labelled_data, train_head_from_data

    clips = read_labelled_data(args.data)  # check the data before spending time on the model
    counts = Counter(clip.label for clip in clips)
    n_groups = len({c.group for c in clips}) if all(c.group is not None for c in clips) else 0
    print(f"{len(clips)} clips, {len(counts)} labels: "
          + ", ".join(f"{label} {n}" for label, n in sorted(counts.items()))
          + (f"; {n_groups} groups" if n_groups else ""))
    started = time.perf_counter()
    model = model_from_args(args)
    print(f"{model.describe()}; loaded in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    interactive = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if interactive:
            print(f"\rembedding {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)

    started = time.perf_counter()
    report = train_head_from_data(
        model, clips, args.out, kind=args.kind, folds=args.folds, l2=args.l2, cache_dir=args.cache,
        use_cache=not args.no_cache, seed=args.seed, batch_size=args.batch_size, progress=progress,
        data_source=str(Path(args.data).expanduser().resolve()),
    )
    elapsed = time.perf_counter() - started
    print(f"embedded {report.n_embedded} clip(s), {report.cache_hits} from the cache ({elapsed:.1f} s)")
    if report.failures:
        print(f"{report.n_failed} clip(s) failed and were skipped:")
        for path, error in report.failures:
            print(f"  ✗ {path}: {error}")
    else:
        print("0 clips failed")
    m = report.metrics
    how = f"grouped by {n_groups} groups" if report.cv == "grouped" else "stratified"
    print(f"cross-validation ({m.n_folds} folds, {how}, {report.metrics.n_samples} clips): "
          f"UA {m.unweighted_accuracy * 100:.1f}%  WA {m.weighted_accuracy * 100:.1f}%")
    print("per-fold UA: " + "  ".join(f"{ua * 100:.1f}%" for ua in m.fold_unweighted_accuracy))
    print(format_confusion(m))
    print(f"head written to {report.head_path}")
    print(f"confusion matrix plot written to {report.confusion_png}")
    return 0
