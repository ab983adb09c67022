"""Head-of-line blocking and memory of the REST service under long recordings.

Starts ``emotion2vec-plus serve`` (the bundled model unless --model) on a free loopback port from
the source tree given by --src (default: this checkout; pass another tree's ``src`` to measure a
before/after), then:

1. sends --long-count (4) frame-level requests of --long-seconds (599 s) of real speech at once,
   and one --short-seconds (3 s) clip a second later, and times each; a client that gets a 503
   waits its ``Retry-After`` and sends again (as a well-behaved client does);
2. sends --memory-count (8) more long frame-level requests the same way, then reads the server's
   RSS (now and peak) once they are done and again --settle-seconds later.

The speech is RAVDESS from ../shared/datasets joined with 1 s pauses. Prints Markdown tables.

Usage: python bench/rest_lanes.py [--src PATH] [--model compact] [--long-seconds 599] [--long-count 4]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import soundfile as sf

from machine import cpu_name  # bench/ is on sys.path when a script runs
from rest_load import DATASETS, REPO, free_port, multipart, rss_mb, wav_bytes


def speech(seconds: float, offset: int = 0) -> np.ndarray:
    """``seconds`` of RAVDESS clips (16 kHz FLAC) joined with 1 s pauses."""
    clips = sorted((DATASETS / "RAVDESS").glob("Actor_0*/*.flac"))[:60]
    if not clips:
        sys.exit("needs ../shared/datasets/RAVDESS beside the repository")
    parts, have, index, need = [], 0, offset, int(seconds * 16000)
    while have < need:
        audio, rate = sf.read(clips[index % len(clips)], dtype="float32")
        assert rate == 16000
        parts += [audio, np.zeros(16000, np.float32)]
        have += len(audio) + 16000
        index += 1
    return np.concatenate(parts)[:need]


def post_until_accepted(url: str, fields: dict, timeout: float = 1800) -> tuple[int, float, int]:
    """(final status, seconds from the first try to the answer, 503s received on the way)."""
    data, content_type = multipart(fields)
    started, refusals = time.perf_counter(), 0
    while True:
        request = urllib.request.Request(url, data=data, headers={"Content-Type": content_type}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
                return response.status, time.perf_counter() - started, refusals
        except urllib.error.HTTPError as error:
            error.read()
            if error.code != 503:
                return error.code, time.perf_counter() - started, refusals
            refusals += 1
            time.sleep(float(error.headers.get("Retry-After", "1")))


def concurrently(jobs: list[tuple[float, str, dict]]) -> list[tuple[int, float, int]]:
    """Run ``(delay_s, url, fields)`` jobs on threads; their (status, seconds, 503s)."""
    results: list = [None] * len(jobs)

    def run(index: int, delay: float, url: str, fields: dict) -> None:
        time.sleep(delay)
        results[index] = post_until_accepted(url, fields)

    threads = [threading.Thread(target=run, args=(i, *job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, default=REPO / "src", help="the package source tree to serve")
    parser.add_argument("--model", default="compact")
    parser.add_argument("--long-seconds", type=float, default=599)
    parser.add_argument("--long-count", type=int, default=4)
    parser.add_argument("--short-seconds", type=float, default=3)
    parser.add_argument("--memory-count", type=int, default=8)
    parser.add_argument("--settle-seconds", type=float, default=10)
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the server below is stopped too
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(args.src.resolve())}
    server = subprocess.Popen([sys.executable, "-m", "emotion2vec_plus.cli", "serve", "--port", str(port),
                               "--model", args.model, "--max-duration", str(args.long_seconds + 10)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"the server did not start:\n{server.stderr.read() if server.stderr else ''}")
                time.sleep(0.5)
        long_flac = wav_bytes(speech(args.long_seconds), "FLAC")
        short_wav = wav_bytes(speech(args.short_seconds, offset=7), "WAV")
        frame = {"file": ("long.flac", long_flac), "granularity": "frame"}
        start_rss, _ = rss_mb(server.pid)

        jobs = [(0.0, base + "/v1/recognize", frame)] * args.long_count
        jobs.append((1.0, base + "/v1/recognize", {"file": ("short.wav", short_wav)}))
        first = concurrently(jobs)
        after_first, _ = rss_mb(server.pid)
        print(f"first round done: {first}", file=sys.stderr, flush=True)

        second = concurrently([(0.0, base + "/v1/recognize", frame)] * args.memory_count)
        done_rss, peak = rss_mb(server.pid)
        time.sleep(args.settle_seconds)
        settled_rss, peak = rss_mb(server.pid)
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:  # uvicorn waits for requests in progress
            server.kill()
            server.wait()

    print(f"\nsource {args.src}; model {args.model}; {cpu_name()}, {os.cpu_count()} CPUs\n")
    print(f"| request | status | seconds (first try to answer) | 503s before it was taken |\n|---|---|---|---|")
    for index, (status, seconds, refusals) in enumerate(first):
        kind = (f"{args.short_seconds:g} s clip, sent 1 s after the long ones" if index == args.long_count
                else f"{args.long_seconds:g} s frame-level #{index + 1}")
        print(f"| {kind} | {status} | {seconds:.1f} | {refusals} |")
    statuses = sorted({status for status, _, _ in second})
    print(f"\n{args.memory_count} more {args.long_seconds:g} s frame-level requests at once: statuses {statuses}, "
          f"slowest {max(s for _, s, _ in second):.1f} s\n")
    print("| server RSS | MB |\n|---|---|")
    print(f"| at start (model loaded) | {start_rss:.0f} |\n| after the first round | {after_first:.0f} |")
    print(f"| after the {args.memory_count} long requests | {done_rss:.0f} |")
    print(f"| {args.settle_seconds:g} s later | {settled_rss:.0f} |\n| peak (VmHWM) | {peak:.0f} |")


if __name__ == "__main__":
    main()
