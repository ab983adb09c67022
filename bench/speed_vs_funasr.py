"""Speed against FunASR on the same architecture and weights, measured in one run.

Random-weight checkpoints in FunASR's own format (built by FunASR's ``Emotion2vec`` class) for
the plus_base (768-d) and plus_large-width (1024-d, 16 heads; 4 prenet + 8 main blocks)
configurations: compute does not depend on weight values, so timings compare like with like.
FunASR runs through its own ``AutoModel(model=<dir>, ncpu=T).generate(...)``; this package through
its Python API (``Emotion2VecPlus``, ``run_batch``) and its REST service. Both use T threads.

Figures (medians of several runs after a warm-up; the two systems alternate run by run):
  1. latency of one 2 s and one 10 s clip (in one process, interleaved);
  2. throughput over a directory of N clips of 1-20 s, files to results (each run in a fresh
     process, so its peak RSS is that system's own);
  3. peak RSS of those runs;
  4. a 10-minute file: wall time and peak RSS (and 2.5 / 5 min for linearity); the child
     processes run under an address-space cap so that a run that would exhaust RAM fails
     instead of swapping;
  5. model load time;
  6. REST (this package only; FunASR has no server): requests/s, p50 and p99 at concurrency
     1, 4 and 16 for 2 s clips, client threads on the same machine;
  7. achieved GFLOP/s (FLOPs counted by torch's FlopCounterMode) on a 4 x 20 s batch, as a fraction
     of the matmul peak of its compute type (2048 x 2048, T threads) timed in the same run;
  8. the bundled compact model's latency on a 2 s clip in every compute type (this package only).

CPU classes: ``--cpu-class avx512_bf16,avx2`` runs everything once per class, each in a child
process whose kernels are capped by environment variables (see ``CPU_CLASSES``: ``avx512_bf16``
hides AMX from oneDNN, ``avx2`` also lowers PyTorch's own kernels, MKL and FBGEMM to AVX2, an
AVX2-only CPU as far as these libraries can tell), then prints one table across the classes.
A class the CPU cannot run (``amx`` without AMX) is listed as not measured. Each class's raw
tables go to ``--results-dir`` (``speed_vs_funasr_<class>.md``), the summary to
``speed_vs_funasr_classes.md`` there.

Usage:
  python bench/speed_vs_funasr.py                     # everything (about 30-40 min on 2 cores)
  python bench/speed_vs_funasr.py --quick             # a smoke run (few clips, one run each)
  python bench/speed_vs_funasr.py --compute-types float32,bfloat16 --only latency,throughput
  python bench/speed_vs_funasr.py --cpu-class amx,avx512_bf16,avx2 --compute-types float32,bfloat16,int8 \
      --models plus_large --only latency,throughput,flops,compact --clips 24 --results-dir bench/results
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from machine import cpu_name  # bench/ is on sys.path when a script runs

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"
sys.path.insert(0, str(REPO / "tests"))  # checkpoint builders (tests/checkpoints.py)

SAMPLE_RATE = 16000
SECTIONS = ("load", "latency", "throughput", "longfile", "rest", "flops", "compact")

#: Environment that caps the kernels to what a CPU class offers. oneDNN (bf16 and fp32 products,
#: ``torch._int_mm``), PyTorch's vectorised kernels, MKL and FBGEMM (the int8 linear) each read
#: their own variable; they are read at import, so a class runs in a child process.
CPU_CLASSES: dict[str, dict[str, str]] = {
    "amx": {},
    "avx512_bf16": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"},
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
             "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"},
}
#: Compute types not run in a class by default, and why.
EMULATED = {"avx2": {"bfloat16": "bf16 is emulated without AVX512-BF16 (about 10x slower than float32)"}}
CLASS_ENV = "SPEED_BENCH_CPU_CLASS"
RESULT_PREFIX = "BENCH-RESULT "
#: Key figures of this run, for the per-class summary (written as JSON with ``--summary-json``).
SUMMARY: dict[str, Any] = {}


def remember(*keys_and_value) -> None:
    *keys, last, value = keys_and_value
    node = SUMMARY
    for key in keys:
        node = node.setdefault(key, {})
    node[last] = value


# --------------------------------------------------------------------------- helpers


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def speech_pool() -> list[Path]:
    """Real speech (RAVDESS + CASIA 16 kHz FLAC) from ../shared/datasets."""
    paths: list[Path] = []
    for corpus in ("RAVDESS", "CASIA"):
        manifest = DATASETS / corpus / "manifest.csv"
        if manifest.is_file():
            with manifest.open(encoding="utf-8") as handle:
                paths += [DATASETS / corpus / row["path"] for row in csv.DictReader(handle)]
    if not paths:
        sys.exit(f"no speech found under {DATASETS} (the benchmark needs ../shared/datasets)")
    return paths


def speech_of_length(seconds: float, pool: list[Path], offset: int) -> "np.ndarray":
    import numpy as np
    import soundfile as sf

    need = int(round(seconds * SAMPLE_RATE))
    parts, have, index = [], 0, offset
    while have < need:
        audio, rate = sf.read(pool[index % len(pool)], dtype="float32")
        if rate != SAMPLE_RATE:
            raise ValueError(f"{pool[index % len(pool)]}: expected 16 kHz, got {rate}")
        parts.append(audio)
        have += len(audio)
        index += 7
    return np.concatenate(parts)[:need]


def write_clip(path: Path, samples) -> Path:
    import soundfile as sf

    sf.write(path, samples, SAMPLE_RATE, subtype="PCM_16")
    return path


def make_directory(folder: Path, count: int, pool: list[Path], seed: int = 0) -> tuple[list[Path], float]:
    """``count`` WAV files of 1-20 s of real speech (uniform lengths, fixed seed)."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    lengths = np.random.default_rng(seed).uniform(1.0, 20.0, size=count)
    files = [write_clip(folder / f"clip_{i:04d}.wav", speech_of_length(float(s), pool, offset=i * 13))
             for i, s in enumerate(lengths)]
    return files, float(lengths.sum())


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). Not ru_maxrss: Linux carries that across exec,
    so a worker started from a large parent would report the parent's peak."""
    with contextlib.suppress(OSError):
        for line in open("/proc/self/status", encoding="utf-8"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextlib.contextmanager
def quiet():
    """FunASR prints its progress and tables on stdout; keep the benchmark's own output clean."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


# --------------------------------------------------------------------------- the two systems
def load_funasr(model_dir: Path, threads: int):
    from funasr import AutoModel

    with quiet():
        return AutoModel(model=str(model_dir), disable_update=True, disable_pbar=True, log_level="ERROR",
                         ncpu=threads, device="cpu")


def load_ours(model_dir: Path | str, threads: int, compute_type: str, backend: str):
    from emotion2vec_plus import Emotion2VecPlus

    # Always explicit: the API's default is "auto", which would make the "float32" rows bf16 or int8.
    return Emotion2VecPlus(str(model_dir), num_threads=threads, compute_type=compute_type, backend=backend)


def funasr_predict(model, audio) -> dict:
    with quiet():
        return model.generate(audio, granularity="utterance", extract_embedding=True)[0]


def ours_predict(model, audio):
    # What FunASR gives: the utterance-level result and embedding. predict's default also scores
    # each utterance of a multi-utterance clip again as a segment, which FunASR does not offer.
    return model.predict(audio, extract_embedding=True, segments=False)


# --------------------------------------------------------------------------- worker processes
def worker_main(argv: list[str]) -> None:
    """One measurement in a fresh process: prints ``BENCH-RESULT {json}`` on its last line."""
    parser = argparse.ArgumentParser(prog="speed_vs_funasr.py worker")
    parser.add_argument("task", choices=["throughput", "longfile"])
    parser.add_argument("--system", choices=["funasr", "ours"], required=True)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--compute-type", default="float32")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--inputs", nargs="+", required=True)
    parser.add_argument("--mem-cap-gb", type=float, default=None)
    args = parser.parse_args(argv)
    if args.mem_cap_gb:
        cap = int(args.mem_cap_gb * 1024**3)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    import torch

    torch.set_num_threads(args.threads)
    record: dict[str, Any] = {"system": args.system, "task": args.task}
    try:
        started = time.perf_counter()
        if args.system == "funasr":
            model = load_funasr(Path(args.model_dir), args.threads)
        else:
            model = load_ours(args.model_dir, args.threads, args.compute_type, args.backend)
        record["load_s"] = time.perf_counter() - started
        record["rss_after_load_mb"] = peak_rss_mb()
        if args.task == "throughput":
            record.update(_throughput(model, args))
        else:
            record.update(_longfile(model, args))
    except (MemoryError, RuntimeError) as exc:  # torch reports a failed allocation as RuntimeError
        record["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    record["peak_rss_mb"] = peak_rss_mb()
    print(RESULT_PREFIX + json.dumps(record), flush=True)


def _throughput(model, args) -> dict[str, Any]:
    import soundfile as sf

    folder = Path(args.inputs[0])
    files = sorted(folder.glob("*.wav"))
    audio_s = sum(sf.info(str(f)).frames for f in files) / SAMPLE_RATE
    warm = files[0]
    if args.system == "funasr":
        funasr_predict(model, str(warm))
        started = time.perf_counter()
        with quiet():
            results = model.generate([str(f) for f in files], granularity="utterance", extract_embedding=True)
        wall = time.perf_counter() - started
        ok = sum(1 for r in results if len(r.get("scores", [])) > 0)
    else:
        from emotion2vec_plus.jobs import run_batch

        ours_predict(model, str(warm))
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            summary = run_batch(model, [folder], out, embeddings="parquet", workers=1, batch_size=8, progress=False)
            wall = time.perf_counter() - started
        ok = summary.done
    return {"wall_s": wall, "audio_s": audio_s, "files": len(files), "ok": ok}


def _longfile(model, args) -> dict[str, Any]:
    import soundfile as sf

    rows = []
    for path in args.inputs:
        seconds = sf.info(path).frames / SAMPLE_RATE
        started = time.perf_counter()
        if args.system == "funasr":
            funasr_predict(model, path)
        else:
            ours_predict(model, path)
        rows.append({"audio_s": seconds, "wall_s": time.perf_counter() - started, "peak_rss_mb": peak_rss_mb()})
    return {"runs": rows}


def run_worker(task: str, system: str, model_dir: Path, threads: int, inputs: list[str],
               compute_type: str = "float32", backend: str = "torch", mem_cap_gb: float | None = None) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "worker", task, "--system", system,
               "--model-dir", str(model_dir), "--threads", str(threads), "--compute-type", compute_type,
               "--backend", backend, "--inputs", *inputs]
    if mem_cap_gb:
        command += ["--mem-cap-gb", str(mem_cap_gb)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    return {"system": system, "task": task, "error": f"exit {done.returncode}: {' | '.join(tail)[:300]}"}


# --------------------------------------------------------------------------- the sections
@dataclass
class Mode:
    """One way of running this package."""

    compute_type: str = "float32"
    backend: str = "torch"

    @property
    def label(self) -> str:
        name = "ours" if self.compute_type == "float32" else f"ours {self.compute_type}"
        return name if self.backend == "torch" else f"{name} ({self.backend})"


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)

    def table(self, title: str, header: list[str], rows: list[list[str]]) -> None:
        block = [f"\n### {title}\n", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        block += ["| " + " | ".join(row) + " |" for row in rows]
        text = "\n".join(block)
        print(text, flush=True)
        self.lines.append(text)

    def note(self, text: str) -> None:
        print(text, flush=True)
        self.lines.append(text)


def timed_runs(functions: dict[str, Callable[[], Any]], runs: int) -> dict[str, list[float]]:
    """Warm each up, then call them in turn ``runs`` times (interleaved); wall times per name."""
    for function in functions.values():
        function()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(runs):
        for name, function in functions.items():
            started = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - started)
    return times


def ratio(ours: float, reference: float) -> str:
    return f"{reference / ours:.2f}×" if ours > 0 else "—"


def section_load_and_latency(report: Report, checkpoints: dict[str, Path], modes: list[Mode], args,
                             pool: list[Path]) -> None:
    import torch

    torch.set_num_threads(args.threads)
    load_rows, latency_rows = [], []
    clips = {seconds: speech_of_length(seconds, pool, offset=seconds_index * 31)
             for seconds_index, seconds in enumerate((2.0, 10.0))}
    for name, directory in checkpoints.items():
        if "load" in args.only:
            loaders = {"FunASR": lambda: load_funasr(directory, args.threads)}
            for mode in modes:
                loaders[mode.label] = (lambda m=mode: load_ours(directory, args.threads, m.compute_type, m.backend))
            times = timed_runs(loaders, args.runs)
            reference = median(times["FunASR"])
            for label, values in times.items():
                load_rows.append([name, label, f"{median(values):.2f}",
                                  "1.00×" if label == "FunASR" else ratio(median(values), reference)])
        if "latency" in args.only:
            funasr = load_funasr(directory, args.threads)
            ours = {mode.label: load_ours(directory, args.threads, mode.compute_type, mode.backend) for mode in modes}
            for seconds, clip in clips.items():
                calls = {"FunASR": lambda c=clip: funasr_predict(funasr, c)}
                for label, model in ours.items():
                    calls[label] = (lambda c=clip, m=model: ours_predict(m, c))
                times = timed_runs(calls, args.runs)
                reference = median(times["FunASR"])
                for label, values in times.items():
                    remember("latency", name, label, f"{seconds:g}", median(values))
                    latency_rows.append([name, f"{seconds:g}", label, f"{median(values):.3f}",
                                         f"{median(values) / reference:.2f}", f"{min(values):.3f}"])
            del funasr, ours
    if load_rows:
        report.table(f"Model load time (median of {args.runs}, s; speed-up vs FunASR)",
                     ["model", "system", "load (s)", "speed-up"], load_rows)
    if latency_rows:
        report.table(f"Latency of one clip (median of {args.runs} after warm-up; ratio = ours / FunASR, lower is better)",
                     ["model", "clip (s)", "system", "median (s)", "ratio to FunASR", "best (s)"], latency_rows)


def section_throughput(report: Report, checkpoints: dict[str, Path], modes: list[Mode], args, workdir: Path,
                       pool: list[Path]) -> None:
    folder = workdir / "clips"
    files, audio_s = make_directory(folder, args.clips, pool)
    report.note(f"\nDirectory: {len(files)} WAV files, {audio_s / 60:.1f} min of real speech, 1-20 s each.")
    rows = []
    for name in args.throughput_models:
        directory = checkpoints[name]
        systems = [("FunASR", "funasr", Mode())] + [(m.label, "ours", m) for m in modes]
        walls: dict[str, list[float]] = {label: [] for label, _, _ in systems}
        rss: dict[str, list[float]] = {label: [] for label, _, _ in systems}
        errors: dict[str, str] = {}
        for _ in range(args.throughput_runs):
            for label, system, mode in systems:
                record = run_worker("throughput", system, directory, args.threads, [str(folder)],
                                    mode.compute_type, mode.backend)
                if "error" in record:
                    errors[label] = record["error"]
                    continue
                if record["ok"] != record["files"]:
                    errors[label] = f"{record['files'] - record['ok']} files failed"
                walls[label].append(record["wall_s"])
                rss[label].append(record["peak_rss_mb"])
        reference = median(walls["FunASR"])
        for label, _, _ in systems:
            if label in errors and not walls[label]:
                rows.append([name, label, "failed", "", "", "", errors[label]])
                continue
            wall = median(walls[label])
            remember("throughput", name, label, {"wall_s": wall, "audio_s": audio_s, "files": len(files)})
            rows.append([name, label, f"{wall:.1f}", f"{audio_s / wall:.1f}", f"{max(rss[label]):.0f}",
                         "1.00×" if label == "FunASR" else ratio(wall, reference), errors.get(label, "")])
    report.table(f"Directory throughput, files to results (median of {args.throughput_runs} runs, each in a fresh "
                 "process; audio s per wall s; peak RSS of the process)",
                 ["model", "system", "wall (s)", "audio s / s", "peak RSS (MB)", "speed-up", "note"], rows)


def section_longfile(report: Report, checkpoints: dict[str, Path], modes: list[Mode], args, workdir: Path,
                     pool: list[Path]) -> None:
    lengths_min = (2.5, 5.0, 10.0)
    files = {minutes: write_clip(workdir / f"long_{minutes:g}min.wav",
                                 speech_of_length(minutes * 60, pool, offset=int(minutes * 10)))
             for minutes in lengths_min}
    rows = []
    name = "plus_large" if "plus_large" in checkpoints else next(iter(checkpoints))
    directory = checkpoints[name]
    for label, system, mode in [("FunASR", "funasr", Mode())] + [(m.label, "ours", m) for m in modes]:
        inputs = [str(files[10.0])] if system == "funasr" else [str(files[m]) for m in lengths_min]
        # Each length in its own process so that peak RSS belongs to that length.
        for path in inputs:
            record = run_worker("longfile", system, directory, args.threads, [path], mode.compute_type,
                                mode.backend, mem_cap_gb=args.mem_cap_gb)
            minutes = float(Path(path).stem.split("_")[1].removesuffix("min"))
            if "error" in record or not record.get("runs"):
                rows.append([name, label, f"{minutes:g}", "failed", "", f"{record.get('peak_rss_mb', 0):.0f}",
                             record.get("error", "no result")])
                continue
            run = record["runs"][0]
            rows.append([name, label, f"{minutes:g}", f"{run['wall_s']:.1f}",
                         f"{run['wall_s'] / minutes:.2f}", f"{record['peak_rss_mb']:.0f}", ""])
    report.table(f"Long files (one run each in a fresh process, address space capped at {args.mem_cap_gb:g} GB)",
                 ["model", "system", "minutes", "wall (s)", "s per audio minute", "peak RSS (MB)", "note"], rows)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def section_rest(report: Report, checkpoints: dict[str, Path], modes: list[Mode], args, pool: list[Path]) -> None:
    import httpx

    clip = io.BytesIO()
    import soundfile as sf

    sf.write(clip, speech_of_length(2.0, pool, offset=3), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    body = clip.getvalue()
    name = "plus_large" if "plus_large" in checkpoints else next(iter(checkpoints))
    rows, ceilings = [], []
    for mode in modes:
        port = _free_port()
        command = [sys.executable, "-m", "emotion2vec_plus.cli", "serve", "--model", str(checkpoints[name]),
                   "--port", str(port), "--threads", str(args.threads), "--log-level", "warning",
                   "--batch-window-ms", str(args.batch_window_ms)]
        command += ["--compute-type", mode.compute_type, "--backend", mode.backend]
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 120
            while time.time() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                        break
                if server.poll() is not None:
                    raise RuntimeError(f"server exited: {server.stderr.read()[-500:]}")
                time.sleep(0.3)
            base = None
            for concurrency in (1, 4, 16):
                requests = max(args.rest_requests, 4 * concurrency)
                before = httpx.get(url + "/healthz", timeout=10).json()["batches"]
                rate, p50, p99, failed = _load_test(url, body, concurrency, requests)
                after = httpx.get(url + "/healthz", timeout=10).json()["batches"]
                mean_batch = (after["requests"] - before["requests"]) / max(1, after["model_calls"] - before["model_calls"])
                base = base or rate
                rows.append([name, mode.label, str(concurrency), str(requests), f"{rate:.2f}", f"{p50 * 1000:.0f}",
                             f"{p99 * 1000:.0f}", f"{rate / base:.2f}×", f"{mean_batch:.1f}", str(failed)])
        finally:
            server.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(10)
        # The ceiling for the concurrency-16 / concurrency-1 ratio: the model alone (no HTTP, no
        # decoding) on one clip against a batch of 16, in this process with the server stopped.
        wav = sf.read(io.BytesIO(body), dtype="float32")[0]
        ours = load_ours(checkpoints[name], args.threads, mode.compute_type, mode.backend)
        times = timed_runs({"1": lambda: ours.predict_batch([wav], batch_size=1),
                            "16": lambda: ours.predict_batch([wav] * 16, batch_size=16)}, args.runs)
        alone_1, alone_16 = 1 / median(times["1"]), 16 / median(times["16"])
        del ours
        ceilings.append([name, mode.label, f"{alone_1:.2f}", f"{alone_16:.2f}", f"{alone_16 / alone_1:.2f}×",
                         f"{rows[-3][4]} → {rows[-1][4]}"])
    report.table("REST /v1/recognize, 2 s WAV clips (client threads on the same 2 cores; after 4 warm-up requests)",
                 ["model", "system", "concurrency", "requests", "req/s", "p50 (ms)", "p99 (ms)", "vs concurrency 1",
                  "mean batch", "failed"], rows)
    report.table("Model alone on the same 2 s clip (no HTTP, no decoding): the most batching can give",
                 ["model", "system", "1 clip (clips/s)", "batch of 16 (clips/s)", "batch gain",
                  "REST c1 → c16 (req/s)"], ceilings)


def _load_test(url: str, body: bytes, concurrency: int, requests: int) -> tuple[float, float, float, int]:
    import httpx

    with httpx.Client(timeout=300) as client:
        for _ in range(4):
            client.post(url + "/v1/recognize", files={"file": ("clip.wav", body, "audio/wav")})
    latencies: list[float] = []
    failed = 0
    lock = threading.Lock()
    counter = iter(range(requests))

    def user() -> None:
        nonlocal failed
        with httpx.Client(timeout=300) as client:
            while True:
                with lock:
                    if next(counter, None) is None:
                        return
                started = time.perf_counter()
                response = client.post(url + "/v1/recognize", files={"file": ("clip.wav", body, "audio/wav")})
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    failed += response.status_code != 200

    threads = [threading.Thread(target=user) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return len(latencies) / wall, median(ordered), p99, failed


def section_flops(report: Report, checkpoints: dict[str, Path], modes: list[Mode], args, pool: list[Path]) -> None:
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(args.threads)
    peaks = matmul_peaks(args.threads)
    remember("peaks", peaks)
    rows = []
    batch_clips = [speech_of_length(20.0, pool, offset=i * 17) for i in range(4)]
    wavs = torch.from_numpy(np.stack(batch_clips))
    for name, directory in checkpoints.items():
        reference = load_ours(directory, args.threads, "float32", "torch")
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            reference.encode_batch(wavs)
        flops = counter.get_total_flops()
        del reference
        for mode in modes:
            if mode.backend != "torch":
                continue  # FLOPs are counted on torch operators
            ours = load_ours(directory, args.threads, mode.compute_type, mode.backend)
            with torch.inference_mode():
                times = timed_runs({"ours": lambda: ours.encode_batch(wavs)}, args.runs)["ours"]
            rate = flops / median(times) / 1e9
            reference_peak = peaks[mode.compute_type]
            remember("flops", name, mode.label, {"gflops": rate, "peak": reference_peak, "compute_type": mode.compute_type})
            rows.append([name, mode.label, "4 × 20 s batch", f"{flops / 1e9:.0f}", f"{median(times):.2f}",
                         f"{rate:.0f}", f"{100 * rate / reference_peak:.0f}% of {mode.compute_type}"])
            del ours
        funasr = load_funasr(directory, args.threads)
        single = batch_clips[0]
        times = timed_runs({"funasr": lambda: funasr_predict(funasr, single)}, args.runs)["funasr"]
        rate = flops / 4 / median(times) / 1e9
        remember("flops", name, "FunASR", {"gflops": rate, "peak": peaks["float32"], "compute_type": "float32"})
        rows.append([name, "FunASR", "1 × 20 s clip", f"{flops / 4e9:.0f}", f"{median(times):.2f}", f"{rate:.0f}",
                     f"{100 * rate / peaks['float32']:.0f}% of float32"])
        del funasr
    report.table(f"Achieved GFLOP/s (matmul peaks, {PEAK_SIZE}×{PEAK_SIZE}, {args.threads} threads, timed in this run: "
                 f"float32 {peaks['float32']:.0f}, bfloat16 {peaks['bfloat16']:.0f}, int8 {peaks['int8']:.0f} GFLOP/s "
                 f"(int8: the faster of torch._int_mm {peaks['int8_int_mm']:.0f} and FBGEMM's dynamic int8 linear "
                 f"{peaks['int8_fbgemm']:.0f}, the kernel int8 mode uses))",
                 ["model", "system", "input", "GFLOP", "time (s)", "GFLOP/s", "of peak"], rows)


PEAK_SIZE = 2048


def matmul_peaks(threads: int) -> dict[str, float]:
    """GFLOP/s of a PEAK_SIZE² matmul per compute type with the kernels this process may use."""
    import warnings

    import torch

    torch.set_num_threads(threads)
    size = PEAK_SIZE
    flop = 2 * size**3 / 1e9
    a, b = torch.randn(size, size), torch.randn(size, size)

    def rate(function) -> float:
        return flop / median(timed_runs({"mm": function}, 5)["mm"])

    peaks = {"float32": rate(lambda: a @ b)}
    a16, b16 = a.bfloat16(), b.bfloat16()
    peaks["bfloat16"] = rate(lambda: a16 @ b16)
    a8, b8 = (torch.randint(-128, 128, (size, size), dtype=torch.int8) for _ in range(2))
    peaks["int8_int_mm"] = rate(lambda: torch._int_mm(a8, b8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scales = (b.abs().amax(1) / 127.5).double()
        weight = torch.quantize_per_channel(b, scales, torch.zeros(size, dtype=torch.long), 0, torch.qint8)
        packed = torch.ops.quantized.linear_prepack(weight, None)
    peaks["int8_fbgemm"] = rate(lambda: torch.ops.quantized.linear_dynamic(a, packed, True))
    peaks["int8"] = max(peaks["int8_int_mm"], peaks["int8_fbgemm"])
    return peaks


def section_compact(report: Report, modes: list[Mode], args, pool: list[Path]) -> None:
    """The bundled compact model (this package only): one 2 s clip per compute type."""
    import torch

    torch.set_num_threads(args.threads)
    clip = speech_of_length(2.0, pool, offset=0)
    models = {mode.label: load_ours("compact", args.threads, mode.compute_type, mode.backend) for mode in modes}
    times = timed_runs({label: (lambda m=model: ours_predict(m, clip)) for label, model in models.items()}, args.runs)
    rows = []
    for label, values in times.items():
        remember("compact", label, median(values))
        rows.append(["compact", label, f"{median(values):.3f}", f"{min(values):.3f}"])
    report.table(f"Bundled compact model, one 2 s clip (median of {args.runs} after warm-up)",
                 ["model", "system", "median (s)", "best (s)"], rows)


# --------------------------------------------------------------------------- CPU classes
def cpu_flags() -> set[str]:
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def class_unavailable(name: str) -> str | None:
    """Why this machine cannot stand in for CPU class ``name`` (capping only removes features)."""
    flags = cpu_flags()
    needs = {"amx": {"amx_tile", "amx_bf16"}, "avx512_bf16": {"avx512_bf16"}, "avx2": {"avx2"}}[name]
    missing = needs - flags
    return f"not measured here (this CPU has no {', '.join(sorted(missing))})" if missing else None


def run_classes(argv: list[str], classes: list[str], results_dir: Path) -> None:
    """The whole benchmark once per class, each in a child process with that class's caps."""
    results_dir.mkdir(parents=True, exist_ok=True)
    summaries: dict[str, Any] = {}
    for name in classes:
        why = class_unavailable(name)
        if why:
            print(f"\n## CPU class {name}: {why}", flush=True)
            summaries[name] = {"unavailable": why}
            continue
        summary_path = results_dir / f"speed_vs_funasr_{name}.json"
        command = [sys.executable, str(Path(__file__).resolve()), *argv, "--cpu-class", name,
                   "--save", str(results_dir / f"speed_vs_funasr_{name}.md"), "--summary-json", str(summary_path)]
        env = dict(os.environ, **CPU_CLASSES[name], **{CLASS_ENV: name})
        print(f"\n## CPU class {name}: {' '.join(f'{k}={v}' for k, v in CPU_CLASSES[name].items()) or 'no caps'}",
              flush=True)
        done = subprocess.run(command, env=env)
        summaries[name] = (json.loads(summary_path.read_text()) if done.returncode == 0 and summary_path.is_file()
                           else {"unavailable": f"run failed (exit {done.returncode})"})
    text = class_table(summaries)
    print(text, flush=True)
    (results_dir / "speed_vs_funasr_classes.md").write_text(text + "\n", encoding="utf-8")


def class_table(summaries: dict[str, Any]) -> str:
    """One row per CPU class and system: directory speed-up, 2 s latency, fraction of that class's peak."""
    header = ["CPU class", "system", "directory wall (s)", "vs FunASR", "2 s clip (s)", "ratio to FunASR",
              "4 × 20 s batch GFLOP/s", "of the class's peak", "compact 2 s clip (s)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, summary in summaries.items():
        if "unavailable" in summary:
            lines.append(f"| {name} | — | {summary['unavailable']} |" + " |" * (len(header) - 3))
            continue
        model = next(iter(summary.get("latency") or summary.get("throughput") or {"": {}}), "")
        latency = summary.get("latency", {}).get(model, {})
        throughput = summary.get("throughput", {}).get(model, {})
        flops = summary.get("flops", {}).get(model, {})
        compact = summary.get("compact", {})
        labels = list(dict.fromkeys([*latency, *throughput, *flops, *compact]))
        base_wall = throughput.get("FunASR", {}).get("wall_s")
        base_latency = latency.get("FunASR", {}).get("2")
        for label in labels:
            wall = throughput.get(label, {}).get("wall_s")
            clip = latency.get(label, {}).get("2")
            rate = flops.get(label)
            cells = [name, label,
                     f"{wall:.1f}" if wall else "", f"{base_wall / wall:.2f}×" if wall and base_wall else "",
                     f"{clip:.3f}" if clip else "", f"{clip / base_latency:.2f}" if clip and base_latency else "",
                     f"{rate['gflops']:.0f}" if rate else "",
                     f"{100 * rate['gflops'] / rate['peak']:.0f}% of {rate['compute_type']} ({rate['peak']:.0f})"
                     if rate else "",
                     f"{compact[label]:.3f}" if label in compact else ""]
            lines.append("| " + " | ".join(cells) + " |")
        if "peaks" in summary:
            p = summary["peaks"]
            lines.append(f"| {name} | matmul peaks {PEAK_SIZE}² | | | | | float32 {p['float32']:.0f}, bfloat16 "
                         f"{p['bfloat16']:.0f}, int8 {p['int8']:.0f} (_int_mm {p['int8_int_mm']:.0f}, FBGEMM "
                         f"{p['int8_fbgemm']:.0f}) | | |")
        for skipped, why in summary.get("skipped", {}).items():
            lines.append(f"| {name} | ours {skipped} | not run: {why} |" + " |" * (len(header) - 3))
    return "\n".join(lines)


# --------------------------------------------------------------------------- main
def parse_modes(text: str) -> list[Mode]:
    """``float32,bfloat16,onnx:int8`` -> modes (backend defaults to torch)."""
    modes = []
    for item in text.split(","):
        backend, _, compute_type = item.rpartition(":")
        modes.append(Mode(compute_type=compute_type, backend=backend or "torch"))
    return modes


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:
        worker_main(argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="threads for both systems (default 2)")
    parser.add_argument("--models", default="plus_base,plus_large", help="plus_base, plus_large")
    parser.add_argument("--throughput-models", default="plus_large",
                        help="models for the directory run (default plus_large: the target)")
    parser.add_argument("--compute-types", default="float32",
                        help="this package's modes, e.g. float32,bfloat16,int8 (onnx:float32 for the ONNX backend)")
    parser.add_argument("--long-compute-types", default=None,
                        help="modes for the long sections (throughput, long files, REST); default: --compute-types")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"sections: {','.join(SECTIONS)}")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per latency / load / FLOP figure")
    parser.add_argument("--throughput-runs", type=int, default=3)
    parser.add_argument("--clips", type=int, default=200, help="files in the throughput directory")
    parser.add_argument("--rest-requests", type=int, default=48)
    parser.add_argument("--mem-cap-gb", type=float, default=16.0)
    parser.add_argument("--batch-window-ms", type=float, default=10, help="the REST server's --batch-window-ms")
    parser.add_argument("--quick", action="store_true", help="smoke run: 12 clips, 2 runs, short REST runs")
    parser.add_argument("--save", default=None, help="also write the tables to this Markdown file")
    parser.add_argument("--cpu-class", default=None,
                        help=f"comma list of {', '.join(CPU_CLASSES)}: run once per class with the kernels capped "
                             "(child processes), then print a table across the classes")
    parser.add_argument("--include-emulated", action="store_true",
                        help="also run compute types a class only emulates (bfloat16 in avx2)")
    parser.add_argument("--results-dir", default=str(REPO / "bench" / "results"),
                        help="where --cpu-class writes each class's tables and the summary")
    parser.add_argument("--summary-json", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    classes = [c for c in (args.cpu_class or "").split(",") if c]
    for name in classes:
        if name not in CPU_CLASSES:
            parser.error(f"--cpu-class: unknown class {name!r}; choose from {', '.join(CPU_CLASSES)}")
    if classes and os.environ.get(CLASS_ENV) != ",".join(classes):
        passed = []  # this run's options, without --cpu-class / --save / --results-dir
        skip_next = False
        for item in argv:
            if skip_next:
                skip_next = False
                continue
            if item in ("--cpu-class", "--save", "--results-dir", "--summary-json"):
                skip_next = True
                continue
            if item.split("=", 1)[0] in ("--cpu-class", "--save", "--results-dir", "--summary-json"):
                continue
            passed.append(item)
        run_classes(passed, classes, Path(args.results_dir))
        return
    args.only = set(args.only.split(","))
    args.throughput_models = [m for m in args.throughput_models.split(",") if m]
    if args.quick:
        args.runs, args.throughput_runs, args.clips, args.rest_requests = 2, 1, 12, 8
    modes = parse_modes(args.compute_types)
    long_modes = parse_modes(args.long_compute_types or args.compute_types)
    cpu_class = os.environ.get(CLASS_ENV)
    if cpu_class and not args.include_emulated:
        emulated = EMULATED.get(cpu_class, {})
        SUMMARY["skipped"] = {m.compute_type: emulated[m.compute_type] for m in modes + long_modes
                              if m.compute_type in emulated}
        modes = [m for m in modes if m.compute_type not in emulated]
        long_modes = [m for m in long_modes if m.compute_type not in emulated]

    import torch
    import funasr

    from checkpoints import CONFIG_768, CONFIG_1024, build_funasr_checkpoint

    torch.set_num_threads(args.threads)
    report = Report()
    report.note(f"CPU: {cpu_name()} ({os.cpu_count()} logical CPUs), {args.threads} threads for both systems; "
                f"Python {platform.python_version()}, torch {torch.__version__}, funasr {funasr.__version__}")
    vector = sorted(f for f in cpu_flags() if f.startswith(("avx512", "amx")) or f in ("avx2", "avx_vnni"))
    report.note(f"The CPU's own vector extensions (/proc/cpuinfo): {', '.join(vector) or 'none listed'}")
    if cpu_class:
        caps = " ".join(f"{k}={v}" for k, v in CPU_CLASSES[cpu_class].items()) or "no caps"
        report.note(f"CPU class {cpu_class} ({caps}); PyTorch's kernels: {torch.backends.cpu.get_cpu_capability()}; "
                    f"load average at start {os.getloadavg()[0]:.2f}")
        for compute_type, why in SUMMARY.get("skipped", {}).items():
            report.note(f"ours {compute_type} not run in this class: {why}")
    report.note("Models: random-weight checkpoints written by FunASR's own Emotion2vec class: plus_base = 768-d, "
                "12 heads; plus_large = 1024-d, 16 heads; both 4 prenet + 8 main blocks (12 blocks).")
    pool = speech_pool()
    sizes = {"plus_base": CONFIG_768, "plus_large": CONFIG_1024}
    workdir = Path(tempfile.mkdtemp(prefix="speed_vs_funasr_"))
    try:
        with quiet():
            checkpoints = {name: build_funasr_checkpoint(workdir / name, seed=7, **sizes[name])
                           for name in args.models.split(",")}
        if args.only & {"load", "latency"}:
            section_load_and_latency(report, checkpoints, modes, args, pool)
        if "throughput" in args.only:
            section_throughput(report, checkpoints, long_modes, args, workdir, pool)
        if "longfile" in args.only:
            section_longfile(report, checkpoints, long_modes, args, workdir, pool)
        if "rest" in args.only:
            section_rest(report, checkpoints, long_modes, args, pool)
        if "flops" in args.only:
            section_flops(report, checkpoints, modes, args, pool)
        if "compact" in args.only:
            section_compact(report, modes, args, pool)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report.note(f"load average at end {os.getloadavg()[0]:.2f}")
    if args.save:
        Path(args.save).write_text("\n".join(report.lines) + "\n", encoding="utf-8")
    if args.summary_json:
        SUMMARY["load_average_end"] = os.getloadavg()[0]
        Path(args.summary_json).write_text(json.dumps(SUMMARY, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
