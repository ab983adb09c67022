"""Where a live stream's compute goes: one provisional window, encoder vs everything else, and
what scoring several streams' windows in one batch would save.

A live stream scores the last ``--window`` seconds every hop (``EmotionStream._provisional``:
``model.score_samples`` with the speech probabilities the stream already has). Real speech
(RAVDESS sentences) is cut into such windows; each is scored alone under ``cProfile`` (CPU time of
this process, so a busy machine slows it less than wall time) and the CPU time is split by
function: the encoder's matrix products, convolutions and attention, the rest of the encoder, and
whatever runs outside the encoder. Then the same windows in batches of 2-16, as a server gathering
its streams' windows would score them. Run with ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
MKL_ENABLE_INSTRUCTIONS=AVX2`` to see an AVX2-only CPU's kernels. Usage:

    python bench/stream_window_cost.py [--window 3] [--windows 16] [--threads 1] [--compute-type float32]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "training"))
from corpora import read_corpus  # noqa: E402

SR = 16000
#: Each row counts the own time of the cProfile entries whose function name contains one of these.
PARTS = {
    "matrix products (linear)": {"linear"},
    "convolutions": {"conv1d"},
    "attention": {"scaled_dot_product_attention"},
    "layer norm, GELU": {"layer_norm", "gelu"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="compact")
    parser.add_argument("--window", type=float, default=3.0)
    parser.add_argument("--windows", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compute-type", default="float32")
    args = parser.parse_args()

    import soundfile as sf
    import torch

    from emotion2vec_plus import Emotion2VecPlus
    from emotion2vec_plus.vad import SpeechTrack, speech_probabilities

    model = Emotion2VecPlus(args.model, num_threads=args.threads, compute_type=args.compute_type)
    size = int(args.window * SR)
    audio = np.concatenate([sf.read(c.path, dtype="float32")[0] for c in read_corpus("RAVDESS")[: 4 * args.windows]])
    windows = [audio[SR // 2 + i * size : SR // 2 + (i + 1) * size] for i in range(args.windows)]
    tracks = [SpeechTrack(speech_probabilities(w), 0) for w in windows]
    model.score_samples(windows[:2], tracks[:2])  # warm-up

    profile = cProfile.Profile(timer=time.process_time)
    profile.enable()
    for window, track in zip(windows, tracks):
        model.score_samples([window], [track])
    profile.disable()
    stats = pstats.Stats(profile).stats
    total = sum(v[2] for v in stats.values())  # own time of every function
    print(f"{model.model_name}, {args.compute_type}, {args.threads} thread(s), torch {torch.__version__}, "
          f"ATEN_CPU_CAPABILITY={os.environ.get('ATEN_CPU_CAPABILITY', '-')} "
          f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', '-')}; {args.windows} windows of "
          f"{args.window:g} s of real speech, each scored alone (CPU time)\n")
    print("| part | CPU ms per window | share |")
    print("|---|---|---|")
    counted = 0.0
    for part, names in PARTS.items():
        own = sum(v[2] for (_, _, name), v in stats.items() if any(n in name for n in names))
        counted += own
        print(f"| {part} | {own / args.windows * 1000:.1f} | {own / total:.0%} |")
    print(f"| everything else (Python, pooling, head, tensors) | {(total - counted) / args.windows * 1000:.1f} | "
          f"{(total - counted) / total:.0%} |")
    print(f"| **total** | **{total / args.windows * 1000:.1f}** | 100% |\n")

    def cpu_per_window(batch: int) -> float:
        best = float("inf")
        for _ in range(3):
            started = time.process_time()
            for i in range(0, args.windows, batch):
                model.score_samples(windows[i : i + batch], tracks[i : i + batch])
            best = min(best, time.process_time() - started)
        return best / args.windows

    alone = cpu_per_window(1)
    print("| windows per call | CPU ms per window | vs one at a time |")
    print("|---|---|---|")
    for batch in (1, 2, 4, 8, 16):
        cost = alone if batch == 1 else cpu_per_window(batch)
        print(f"| {batch} | {cost * 1000:.1f} | {alone / cost:.2f}x |")
    hop_s = 0.5
    print(f"\none stream scores one window per {hop_s:g} s hop: {alone / hop_s:.3f} CPU s per s of audio "
          f"(one at a time), so {args.threads} thread(s) at full use carry at most {args.threads * hop_s / alone:.1f} streams")


if __name__ == "__main__":
    main()
