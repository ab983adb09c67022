"""Peak memory by input duration: does memory stay flat however long a recording is?

Builds long recordings from real speech (RAVDESS and CASIA clips from ``../shared/datasets`` when present,
else the bundled samples) joined with 1 s pauses, written block by block, and runs
``emotion2vec-plus predict`` on each in a fresh process, reading that process's peak RSS from the
kernel (``wait4``). Also a 3 h FLAC of digital silence (about 0.5 MB), which decodes to 173 M
samples. Inputs longer than ``hold_in_memory_s`` (600 s) are streamed: once through the VAD, once
cutting the pieces out; the ``--in-memory`` rows run the same inputs with everything held in memory,
as before streaming.

Usage: python bench/long_audio_memory.py [--minutes 1,10,60,120] [--silence-hours 3]
           [--model compact] [--compute-type auto] [--in-memory] [--workdir /tmp/long_audio_memory]

Prints a Markdown table: input, duration, file size, peak RSS of the process, wall time, emotion.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from machine import cpu_name  # bench/ is on sys.path when a script runs

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"


def speech_clips(count: int = 120) -> tuple[list[np.ndarray], str]:
    """Real speech at 16 kHz mono and where it came from: clips of RAVDESS and CASIA (their
    manifests in ../shared/datasets, taken in turn), else the bundled sample clips."""
    import csv

    import soxr

    per_corpus: list[list[Path]] = []
    for corpus in ("RAVDESS", "CASIA"):
        manifest = DATASETS / corpus / "manifest.csv"
        if manifest.is_file():
            with manifest.open(encoding="utf-8") as handle:
                per_corpus.append([DATASETS / corpus / row["path"] for row in csv.DictReader(handle)][: count // 2])
    paths = [path for group in zip(*per_corpus) for path in group] if per_corpus else []
    source = f"{len(paths)} real speech clips of RAVDESS and CASIA" if paths else ""
    if not paths:
        paths = sorted((REPO / "src" / "emotion2vec_plus" / "samples").glob("*.wav"))
        source = f"the {len(paths)} bundled sample clips (../shared/datasets not found)"
    clips = []
    for path in paths:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
        mono = audio.mean(axis=1)
        clips.append(soxr.resample(mono, rate, 16000) if rate != 16000 else mono)
    return clips, source


def write_long(path: Path, seconds: float, clips: list[np.ndarray], rate: int, channels: int) -> None:
    """``seconds`` of the clips joined with 1 s pauses, written block by block (never whole in memory)."""
    import soxr

    pause = np.zeros(16000, np.float32)
    total, index = int(seconds * 16000), 0
    with sf.SoundFile(path, "w", rate, channels, "PCM_16") as out:
        written = 0
        while written < total:
            block = np.concatenate([clips[index % len(clips)], pause])[: total - written]
            index += 1
            written += len(block)
            if rate != 16000:
                block = soxr.resample(block, 16000, rate)
            out.write(np.repeat(block[:, None], channels, axis=1) if channels > 1 else block)


def write_silence(path: Path, hours: float) -> None:
    block = np.zeros((16000 * 60, 1), np.int16)
    with sf.SoundFile(path, "w", 16000, 1, "PCM_16", format="FLAC") as out:
        for _ in range(int(hours * 60)):
            out.write(block)


def run(path: Path, model: str, in_memory: bool, compute_type: str = "auto") -> tuple[float, float, str]:
    """Peak RSS (MB), wall time (s) and the emotion of one ``predict`` in a fresh process."""
    if in_memory:  # the API with everything held in memory, as before streaming
        code = ("import sys, json; from emotion2vec_plus import Emotion2VecPlus; "
                "m = Emotion2VecPlus(sys.argv[1], max_duration_s=None, hold_in_memory_s=1e9, compute_type=sys.argv[3]); "
                "print(json.dumps(m.predict(sys.argv[2]).to_dict()))")
        command = [sys.executable, "-c", code, model, str(path), compute_type]
    else:
        command = [sys.executable, "-m", "emotion2vec_plus.cli", "predict", str(path), "--model", model,
                   "--json", "--max-duration", "86400", "--compute-type", compute_type]
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, text=True)
        _, status, usage = os.wait4(process.pid, 0)  # the child's own resource usage, peak RSS included
        process.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.perf_counter() - started
        stdout.seek(0)
        stderr.seek(0)
        if process.returncode:
            raise SystemExit(f"{' '.join(command)} failed:\n{stderr.read()}")
        emotion = json.loads(stdout.read().strip().splitlines()[-1]).get("emotion", "?")
    return usage.ru_maxrss / 1024, elapsed, emotion


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", default="1,10,60,120")
    parser.add_argument("--silence-hours", type=float, default=3.0, help="0 to skip the silent FLAC")
    parser.add_argument("--model", default="compact")
    parser.add_argument("--in-memory", action="store_true", help="also run each input held in memory whole")
    parser.add_argument("--compute-type", default="auto", help="predict's --compute-type (default auto)")
    parser.add_argument("--workdir", default="/tmp/long_audio_memory")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    clips, source = speech_clips()
    inputs = []
    for minutes in [float(m) for m in args.minutes.split(",") if m]:
        path = workdir / f"speech_{minutes:g}min.wav"
        if not path.exists():
            write_long(path, minutes * 60, clips, 16000, 1)
        inputs.append(("speech WAV 16 kHz mono", path, minutes * 60))
    if args.silence_hours:
        path = workdir / f"silence_{args.silence_hours:g}h.flac"
        if not path.exists():
            write_silence(path, args.silence_hours)
        inputs.append(("digital silence FLAC", path, args.silence_hours * 3600))
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; model {args.model}, compute type {args.compute_type}; "
          "predict in a fresh process each; "
          f"speech: {source} joined with 1 s pauses\n")
    print("| input | duration | file | mode | peak RSS | wall time | emotion |")
    print("|---|---:|---:|---|---:|---:|---|")
    for kind, path, seconds in inputs:
        modes = [False, True] if args.in_memory else [False]
        for in_memory in modes:
            peak, elapsed, emotion = run(path, args.model, in_memory, args.compute_type)
            mode = "held in memory" if in_memory else "streamed" if seconds > 600 else "in memory (≤ 600 s)"
            print(f"| {kind} | {seconds / 60:g} min | {path.stat().st_size / 1e6:.1f} MB | {mode} | "
                  f"{peak:.0f} MB | {elapsed:.1f} s | {emotion} |", flush=True)
    if workdir == Path("/tmp/long_audio_memory"):
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
