"""Speed of the bundled compact model on this CPU: real-time factor by clip length, batch
throughput, and the cost of Whisper's 30-s padding versus running on the true length.

Usage: python bench/compact_speed.py [--threads 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from emotion2vec_plus import Emotion2VecPlus
from emotion2vec_plus.models.whisper import log_mel_spectrogram
from machine import cpu_name  # bench/ is on sys.path when a script runs


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    started = time.perf_counter()
    model = Emotion2VecPlus(num_threads=args.threads)
    load_s = time.perf_counter() - started
    rng = np.random.default_rng(0)
    print(f"{cpu_name()}, {args.threads} threads, torch {torch.__version__}; model load {load_s:.2f} s")
    print("| input | median wall time (s) | real-time factor |")
    print("|---|---|---|")
    for seconds in (2, 10, 30):
        wav = (rng.standard_normal(seconds * 16000) * 0.1).astype(np.float32)
        t = timed(lambda: model.predict(wav), args.repeats)
        print(f"| one {seconds} s clip | {t:.3f} | {t / seconds:.4f} |")
    clips = [(rng.standard_normal(int(s * 16000)) * 0.1).astype(np.float32) for s in rng.uniform(1, 8, 32)]
    total = sum(len(c) for c in clips) / 16000
    t = timed(lambda: model.predict_batch(clips, batch_size=8), max(1, args.repeats // 2))
    print(f"| 32 clips of 1-8 s ({total:.0f} s), batches of 8 | {t:.3f} | {t / total:.4f} |")
    encoder = model.model.encoder
    wav = torch.from_numpy((rng.standard_normal(32000) * 0.1).astype(np.float32))[None]
    with torch.inference_mode():
        true_length = timed(lambda: encoder(*log_mel_spectrogram(wav)), args.repeats)
        padded = timed(lambda: encoder(*log_mel_spectrogram(wav, pad_to_30s=True)), args.repeats)
    print(f"| encoder, 2 s clip, true length | {true_length:.3f} | {true_length / 2:.4f} |")
    print(f"| encoder, 2 s clip, padded to 30 s (Whisper default) | {padded:.3f} | {padded / 2:.4f} |")
    print(f"30-s padding costs {padded / true_length:.1f}x the true-length run for a 2 s clip")


if __name__ == "__main__":
    main()
