"""Speed and drift of every compute_type / backend against float32 PyTorch.

For the bundled compact model on the ../shared/datasets clips (RAVDESS + CASIA, 16 kHz FLAC):
max |Δ| of utterance embeddings and of class scores against torch float32, argmax agreement,
wall time and real-time factor. Then speed-only rows for a random-weight checkpoint of
emotion2vec+ large's size (built with tests/checkpoints.py; no download needed).

Usage: python bench/drift.py [--limit N] [--threads 2] [--large-clips 24] [--skip-large]
       python bench/drift.py --corpora RAVDESS,CASIA,nEMO,EMOVO --per-corpus 200 --modes auto --skip-large

``--corpora`` picks the corpora (all four have real speech in other languages), ``--per-corpus N``
takes N evenly spaced clips of each, ``--modes`` the backend:compute_type pairs to compare with
torch float32 (``auto``: what ``compute_type="auto"`` picks on this CPU). A second table gives the
argmax agreement per corpus.

Prints a Markdown table. RTF is wall time / audio time; "CPU s per audio s" is the process's
CPU time (all threads) per second of audio, steadier than wall time on a shared machine. The models are loaded before timing; "load" is the constructor's
time (for onnx the first run includes exporting and checking the graph, later runs reuse the
cached export).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"
sys.path.insert(0, str(REPO / "tests"))

from emotion2vec_plus import Emotion2VecPlus, load_audio  # noqa: E402
from machine import cpu_name  # noqa: E402  bench/ is on sys.path when a script runs

MODES = [("torch", "float32"), ("torch", "int8"), ("torch", "bfloat16"), ("onnx", "float32"), ("onnx", "int8")]
AGREEMENT_NEEDED = 99.0




def evenly_spaced(paths: list, count: int | None) -> list:
    """``count`` evenly spaced items (manifests list speakers in turn, so every speaker is represented)."""
    if not count or count >= len(paths):
        return paths
    return [paths[i] for i in np.linspace(0, len(paths) - 1, count).round().astype(int)]


def dataset_clips(limit: int | None, corpora: tuple[str, ...] = ("RAVDESS", "CASIA"),
                  per_corpus: int | None = None) -> tuple[list[Path], list[str]]:
    """The clips and the corpus of each."""
    paths: list[Path] = []
    names: list[str] = []
    for corpus in corpora:
        manifest = DATASETS / corpus / "manifest.csv"
        if not manifest.is_file():
            continue
        with manifest.open(encoding="utf-8") as handle:
            these = evenly_spaced([DATASETS / corpus / row["path"] for row in csv.DictReader(handle)], per_corpus)
        paths += these
        names += [corpus] * len(these)
    if not paths:
        sys.exit(f"no clips found under {DATASETS}")
    if limit and limit < len(paths):
        keep = evenly_spaced(list(range(len(paths))), limit)
        paths, names = [paths[i] for i in keep], [names[i] for i in keep]
    return paths, names


def run_mode(model_name, audios, backend: str, compute_type: str, threads: int, batch_size: int, cache_dir):
    started = time.perf_counter()
    model = Emotion2VecPlus(model_name, backend=backend, compute_type=compute_type, num_threads=threads,
                            batch_size=batch_size, cache_dir=cache_dir)
    load_s = time.perf_counter() - started
    model.predict_batch(audios[:2])  # warm-up
    started, cpu_started = time.perf_counter(), time.process_time()
    results = model.predict_batch(audios, extract_embedding=True)
    wall_s = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_started
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise SystemExit(f"{len(failed)} clips failed, e.g. {failed[0]}")
    embeddings = np.stack([r.embedding for r in results])
    scores = np.array([list(r.scores.values()) for r in results]) if results[0].scores else None
    del model
    return load_s, wall_s, cpu_s, embeddings, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="use N evenly spaced clips (default: all)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--large-clips", type=int, default=24, help="clips for the large-size speed rows")
    parser.add_argument("--large-depth", type=int, default=8, help="main blocks of the large-size checkpoint (plus_large: 8)")
    parser.add_argument("--large-prenet", type=int, default=4, help="prenet blocks of the large-size checkpoint (plus_large: 4)")
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--corpora", default="RAVDESS,CASIA", help="corpora of ../shared/datasets, comma-separated")
    parser.add_argument("--per-corpus", type=int, default=None, help="N evenly spaced clips of each corpus")
    parser.add_argument("--modes", default=",".join(f"{b}:{c}" for b, c in MODES),
                        help="backend:compute_type pairs besides torch:float32, or auto (default: all)")
    parser.add_argument("--cache-dir", default=None,
                        help="model cache (ONNX exports go to <cache>/onnx); default: a temporary directory")
    args = parser.parse_args()

    import onnxruntime

    torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory(prefix="drift-")
    cache_dir = args.cache_dir or tmp.name
    paths, corpus_of = dataset_clips(args.limit, tuple(args.corpora.split(",")), args.per_corpus)
    audios = [load_audio(p) for p in paths]
    audio_s = sum(a.duration_s for a in audios)
    print(f"{cpu_name()}, {args.threads} threads, batch size {args.batch_size}; torch {torch.__version__}, "
          f"onnxruntime {onnxruntime.__version__}; {len(audios)} clips, {audio_s / 60:.1f} min of audio", flush=True)
    from emotion2vec_plus.runtime.compute import choose_compute_type

    chosen, reason = choose_compute_type("torch", torch.device("cpu"), compact=True)
    print(f"compute_type='auto' picks {chosen} here ({reason})", flush=True)
    modes = [("torch", "float32")]
    for item in args.modes.split(","):
        backend, compute_type = ("torch", chosen) if item == "auto" else tuple(item.split(":"))
        if (backend, compute_type) not in modes:
            modes.append((backend, compute_type))

    rows = []
    per_corpus_rows = []
    corpus_array = np.array(corpus_of)
    corpora = list(dict.fromkeys(corpus_of))
    reference = None
    for backend, compute_type in modes:
        load_s, wall_s, cpu_s, emb, scores = run_mode("compact", audios, backend, compute_type, args.threads,
                                               args.batch_size, cache_dir)
        if reference is None:
            reference = (emb, scores, wall_s)
        emb_d = float(np.abs(emb - reference[0]).max())
        score_d = float(np.abs(scores - reference[1]).max())
        agree = 100.0 * float(np.mean(scores.argmax(1) == reference[1].argmax(1)))
        rows.append(("compact", len(audios), backend, compute_type, f"{emb_d:.2e}", f"{score_d:.2e}",
                     f"{agree:.2f}", f"{load_s:.1f}", f"{wall_s:.1f}", f"{wall_s / audio_s:.4f}",
                     f"{cpu_s / audio_s:.4f}", f"{reference[2] / wall_s:.2f}x"))
        print("  " + " | ".join(map(str, rows[-1])), flush=True)
        same = scores.argmax(1) == reference[1].argmax(1)
        per_corpus_rows.append((backend, compute_type, *(
            f"{100.0 * same[corpus_array == c].mean():.2f} ({(corpus_array == c).sum()}; "
            f"largest score change {np.abs(scores - reference[1])[corpus_array == c].max():.3f})"
            for c in corpora)))

    if not args.skip_large:
        from checkpoints import build_checkpoint

        directory = build_checkpoint(Path(tmp.name) / "large_size", seed=0, embed_dim=1024, num_heads=16,
                                     depth=args.large_depth, prenet_depth=args.large_prenet)
        subset = audios[:: max(1, len(audios) // args.large_clips)][: args.large_clips]
        subset_s = sum(a.duration_s for a in subset)
        base = None
        for backend, compute_type in modes:
            load_s, wall_s, cpu_s, emb, _ = run_mode(str(directory), subset, backend, compute_type, args.threads,
                                              args.batch_size, cache_dir)
            base = base or wall_s
            name = f"large-size, random weights ({args.large_prenet}+{args.large_depth} blocks)"
            rows.append((name, len(subset), backend, compute_type, "—", "—", "—", f"{load_s:.1f}", f"{wall_s:.1f}",
                         f"{wall_s / subset_s:.4f}", f"{cpu_s / subset_s:.4f}", f"{base / wall_s:.2f}x"))
            print("  " + " | ".join(map(str, rows[-1])), flush=True)

    print()
    print("| model | clips | backend | compute_type | max \\|Δ\\| embedding | max \\|Δ\\| scores | argmax agreement % "
          "| load s | wall s | RTF (wall) | CPU s per audio s | speed vs torch fp32 (wall) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(str(v) for v in row) + " |")
    print("\nArgmax agreement with torch float32 per corpus, % (clips; largest score change), compact model:\n")
    print("| backend | compute_type | " + " | ".join(corpora) + " |")
    print("|---|---|" + "---|" * len(corpora))
    for row in per_corpus_rows:
        print("| " + " | ".join(row) + " |")
    offered = [f"{r[2]} {r[3]}" for r in rows if r[0] == "compact" and float(r[6]) >= AGREEMENT_NEEDED]
    below = [f"{r[2]} {r[3]} ({r[6]}%)" for r in rows if r[0] == "compact" and float(r[6]) < AGREEMENT_NEEDED]
    print(f"\nargmax agreement >= {AGREEMENT_NEEDED:g}% with torch float32: {', '.join(offered)}")
    if below:
        print(f"below {AGREEMENT_NEEDED:g}%: {', '.join(below)}")


if __name__ == "__main__":
    main()
