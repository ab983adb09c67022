"""Time and peak memory of ``emotion2vec-plus cluster`` by index size.

Writes embeddings Parquet files of N rows in the batch job's schema: a mixture of --clusters
Gaussian groups of unequal size in --dim dimensions (256 = the bundled model's), plus 2 % scattered
rows. Runs ``emotion2vec-plus cluster`` on each in a fresh process from the source tree --src
(default: this checkout), reading its peak RSS from the kernel (``wait4``), and scores the labels
against the groups (adjusted Rand index over the grouped rows). A run past --timeout is stopped and
reported as such.

Usage: python bench/cluster_scale.py [--sizes 20000,50000,200000] [--src PATH] [--timeout 900]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from machine import cpu_name  # bench/ is on sys.path when a script runs

REPO = Path(__file__).resolve().parents[1]


def write_index(path: Path, n: int, dim: int, groups: int, seed: int = 0) -> np.ndarray:
    """An index of ``n`` rows; returns each row's group (-1 for the scattered rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.5, 2.0, groups)
    truth = rng.choice(groups, size=n, p=weights / weights.sum())
    truth[rng.random(n) < 0.02] = -1
    centres = rng.standard_normal((groups, dim)).astype(np.float32) * 2.5
    embeddings = rng.standard_normal((n, dim)).astype(np.float32)
    grouped = truth >= 0
    embeddings[grouped] += centres[truth[grouped]]
    embeddings[~grouped] *= 3.0
    emotions = np.array(["angry", "happy", "neutral", "sad"])[np.maximum(truth, 0) % 4]
    table = pa.table({
        "path": pa.array([f"calls/{i // 1000:04d}/clip_{i:07d}.wav" for i in range(n)]),
        "emotion": pa.array(emotions.tolist()),
        "confidence": pa.array(rng.uniform(0.3, 1.0, n)),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(embeddings.reshape(-1)), dim),
    })
    pq.write_table(table, path)
    return truth


def run(index: Path, out: Path, src: Path, timeout: float, extra: list[str]) -> tuple[str, float, float]:
    """(status, wall seconds, peak RSS MB) of one ``cluster`` run in a fresh process."""
    command = [sys.executable, "-m", "emotion2vec_plus.cli", "cluster", str(index), "--out", str(out), *extra]
    env = {**os.environ, "PYTHONPATH": str(src.resolve())}
    started = time.perf_counter()
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                process.kill()
                _, status, usage = os.wait4(process.pid, 0)
                return f"stopped after {timeout:g} s", time.perf_counter() - started, usage.ru_maxrss / 1024
            time.sleep(0.5)
        elapsed = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status):
            stderr.seek(0)
            return f"failed: {stderr.read().decode()[-300:]}", elapsed, usage.ru_maxrss / 1024
    return "ok", elapsed, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="20000,50000,200000")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--clusters", type=int, default=12)
    parser.add_argument("--src", type=Path, default=REPO / "src")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--extra", default="", help="more cluster options, e.g. '--max-clustered 50000'")
    args = parser.parse_args()
    from sklearn.metrics import adjusted_rand_score

    print(f"source {args.src}; {cpu_name()}, {os.cpu_count()} CPUs; {args.dim}-d, {args.clusters} groups\n")
    print("| rows | status | wall s | peak RSS MB | clusters found | ARI (grouped rows) |\n|---:|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="cluster_scale_") as tmp:
        for n in [int(s) for s in args.sizes.split(",") if s]:
            index = Path(tmp) / f"index_{n}.parquet"
            truth = write_index(index, n, args.dim, args.clusters)
            out = Path(tmp) / f"report_{n}"
            status, elapsed, peak = run(index, out, args.src, args.timeout, args.extra.split())
            found = ari = "-"
            if status == "ok":
                with (out / "clusters.csv").open(encoding="utf-8") as handle:
                    labels = np.array([int(row["cluster"]) for row in csv.DictReader(handle)])
                found = str(len(set(labels.tolist()) - {-1}))
                ari = f"{adjusted_rand_score(truth[truth >= 0], labels[truth >= 0]):.3f}"
            print(f"| {n:,} | {status} | {elapsed:.0f} | {peak:.0f} | {found} | {ari} |", flush=True)


if __name__ == "__main__":
    main()
