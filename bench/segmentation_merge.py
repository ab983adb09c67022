"""Can a pause threshold, or merging neighbouring utterances whose emotions look alike, give
segments that read the joined clips as well as the clips alone? (issue 20's aim)

The same joined held-out-speaker files as ``bench/segmentation.py`` (same seed, same pauses of
0.3-2 s of the speaker's room tone, six clips per file). Each file is segmented at every
``--thresholds`` value of ``min_pause_s`` (the package's own segmentation, with its merging turned
off), and the segments found at ``--fine`` are merged with their neighbour when the
pause between them is under ``--max-gap`` and the two segments' class scores look alike
(``--criteria``: ``label`` the same top class, ``cosN`` cosine of the two score vectors >= N,
``all`` every such neighbour), each merged group scored whole (with the model's segment context,
only while it fits the window). The package adopted ``cos0.8`` under 0.6 s
(:class:`emotion2vec_plus.segmentation.UtteranceMerger`, which scores a group from its first
segment's context to its last's); ``bench/segmentation.py`` measures it as users get it. Every clip is read from the segment covering most of it, as in
``bench/segmentation.py``. Prints, per corpus, UA from segments minus UA of the clips alone (the aim:
within 0.03) and segments per clip. Usage:

    python bench/segmentation_merge.py --fold-models FOLDS [--thresholds 0.3,0.4,0.5] [--fine 0.3]
        [--criteria label,cos0.7,cos0.9,all] [--clips-per-speaker N] [--compute-type float32] [--json-out F]
    python bench/segmentation_merge.py --pool F0 F1 F2 F3      # one table from several runs' clips
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "training"))
sys.path.insert(0, str(REPO / "bench"))
from corpora import ALL_CORPORA, fold_models, read_all  # noqa: E402
from segmentation import SR, held_out_files, read_segments, ua  # noqa: E402

from emotion2vec_plus.segmentation import scores_alike


def alike(first: dict[str, float], second: dict[str, float], criterion: str) -> bool:
    """Whether two segments' class scores look alike under ``criterion``."""
    if criterion == "all":
        return True
    a, b = np.array(list(first.values())), np.array([second[k] for k in first])
    if criterion == "label":
        return int(a.argmax()) == int(b.argmax())
    if criterion.startswith("cos"):
        return scores_alike(a, b, float(criterion[3:]))
    raise ValueError(f"unknown criterion {criterion!r}")


def merged_segments(model, samples: np.ndarray, result, criterion: str, max_gap_s: float,
                    scored: dict[tuple[int, int], dict]) -> SimpleNamespace:
    """``result``'s segments with alike neighbours (pause under ``max_gap_s``) merged and each
    merged group scored whole (``scored`` caches spans across criteria)."""
    segments = result.segments or []
    if not segments:
        return result
    window_s = model.window_samples / SR
    context = model.segment_context_s
    groups = [[segments[0]]]
    for segment in segments[1:]:
        last = groups[-1][-1]
        fits = segment.end_s - groups[-1][0].start_s + 2 * context <= window_s
        if segment.start_s - last.end_s < max_gap_s and fits and alike(last.scores, segment.scores, criterion):
            groups[-1].append(segment)
        else:
            groups.append([segment])
    out = []
    for group in groups:
        if len(group) == 1:
            out.append(group[0])
            continue
        span = (max(0, int((group[0].start_s - context) * SR)), min(len(samples), int((group[-1].end_s + context) * SR)))
        if span not in scored:
            scored[span] = model.predict(samples[span[0] : span[1]]).scores
        out.append(SimpleNamespace(start_s=group[0].start_s, end_s=group[-1].end_s, scores=scored[span]))
    return SimpleNamespace(segments=out, duration_s=result.duration_s, scores=result.scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fold-models", type=Path, default=None)
    parser.add_argument("--folds", default=None)
    parser.add_argument("--corpora", default=",".join(ALL_CORPORA))
    parser.add_argument("--clips-per-speaker", type=int, default=0, help="at most this many clips per speaker (0: all)")
    parser.add_argument("--thresholds", default="0.3,0.4,0.5", help="min_pause_s values, each a row")
    parser.add_argument("--fine", type=float, default=0.3, help="min_pause_s of the segments that are merged")
    parser.add_argument("--max-gap", type=float, default=1.0, help="merge only across pauses shorter than this (s)")
    parser.add_argument("--criteria", default="label,cos0.7,cos0.9,all")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compute-type", default="float32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out", type=Path, default=None, help="the table's figures and every clip's labels")
    parser.add_argument("--pool", type=Path, nargs="+", default=None,
                        help="instead of running: pool the clips of several --json-out files (e.g. one per fold) "
                             "into one table")
    args = parser.parse_args()
    if args.pool:
        runs = [json.loads(path.read_text()) for path in args.pool]
        rows_names = list(runs[0]["clips"])
        corpora = list(runs[0]["clips"][rows_names[0]])
        rows = {n: {c: {k: sum((r["clips"][n][c][k] for r in runs), []) for k in ("truth", "single", "segment", "segments")}
                    for c in corpora} for n in rows_names}
        report(rows, rows_names, corpora, runs[0]["args"]["max_gap"], runs[0]["args"]["compute_type"], args.json_out, args)
        return

    if args.fold_models is None:
        parser.error("give --fold-models (or --pool)")

    from emotion2vec_plus import Emotion2VecPlus

    corpora = args.corpora.split(",")
    thresholds = [float(v) for v in args.thresholds.split(",")]
    criteria = [c for c in args.criteria.split(",") if c]
    rows_names = [f"min_pause_s {t:g}" for t in thresholds] + [f"{args.fine:g} + merge {c}" for c in criteria]
    rows: dict[str, dict[str, dict[str, list]]] = {n: defaultdict(lambda: defaultdict(list)) for n in rows_names}
    clips = read_all(corpora=tuple(corpora))
    started = time.perf_counter()
    for model_name, held_out in fold_models(args.fold_models, args.folds):
        model = Emotion2VecPlus(model_name, num_threads=args.threads, compute_type=args.compute_type,
                               merge_pause_s=0.0)  # its own merging off: this script merges by --criteria
        rng = np.random.default_rng(args.seed)
        for corpus in corpora:
            for files in held_out_files(clips, corpus, held_out, rng, clips_per_speaker=args.clips_per_speaker):
                singles = model.predict_batch([str(c.path) for f in files for c in f.clips])
                for joined in files:
                    by_threshold = {}
                    for threshold in sorted(set(thresholds) | {args.fine}):
                        model.min_pause_s = threshold
                        by_threshold[threshold] = model.predict(joined.samples)
                    results = {f"min_pause_s {t:g}": by_threshold[t] for t in thresholds}
                    scored: dict[tuple[int, int], dict] = {}
                    for criterion in criteria:
                        results[f"{args.fine:g} + merge {criterion}"] = merged_segments(
                            model, joined.samples, by_threshold[args.fine], criterion, args.max_gap, scored)
                    for name, result in results.items():
                        chosen, _, _ = read_segments(result, joined.spans)
                        data = rows[name][corpus]
                        data["segment"] += [None if s is None else max(s, key=s.get) for s in chosen]
                        data["segments"].append(len(result.segments or [None]))
                        data["truth"] += [c.label for c in joined.clips]
                for data in (rows[name][corpus] for name in rows_names):
                    data["single"] += [s.emotion for s in singles]
        print(f"{model_name}: done ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)

    report(rows, rows_names, corpora, args.max_gap, args.compute_type, args.json_out, args)


def report(rows, rows_names: list[str], corpora: list[str], max_gap: float, compute_type: str,
           json_out: Path | None, args: argparse.Namespace) -> None:
    """Print the table; write ``json_out`` (figures and every clip's labels) when given."""
    print(f"\nUA from segments − UA of the clips alone (segments per clip); merging across pauses under "
          f"{max_gap:g} s, compute type {compute_type}\n")
    print("| segmentation | " + " | ".join(corpora) + " |")
    print("|---|" + "---|" * len(corpora))
    summary: dict[str, dict] = {}
    for name in rows_names:
        cells = []
        for corpus in corpora:
            data = rows[name][corpus]
            single, segments = ua(data["truth"], data["single"]), ua(data["truth"], data["segment"])
            ratio = sum(data["segments"]) / len(data["truth"])
            summary.setdefault(name, {})[corpus] = {"clips": len(data["truth"]), "ua_single": single,
                                                    "ua_segments": segments, "segments_per_clip": ratio}
            cells.append(f"{segments - single:+.3f} ({ratio:.2f})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nclips per corpus: " + ", ".join(f"{c} {len(rows[rows_names[0]][c]['truth'])}" for c in corpora)
          + "; UA of the clips alone: " + ", ".join(
              f"{c} {summary[rows_names[0]][c]['ua_single']:.3f}" for c in corpora))
    if json_out is not None:
        clips = {n: {c: {k: list(rows[n][c][k]) for k in ("truth", "single", "segment", "segments")} for c in corpora}
                 for n in rows_names}
        json_out.write_text(json.dumps({"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                                                 if k != "pool"},
                                        "rows": summary, "clips": clips}))


if __name__ == "__main__":
    main()
