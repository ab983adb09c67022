"""Live mode latency and concurrency, with real speech paced at real time.

Real speech (RAVDESS sentences of several emotions, 0.3-2 s apart; about ``--seconds`` long) is
streamed in 100 ms blocks at real-time pace:

1. through the Python API (``model.stream``) in this process: the delay from the moment the block
   holding a hop's last sample is pushed to the moment its provisional event is returned; the
   delay of each final from the push in which its segment was decided (the voice-activity detector
   closed its utterance and, with alike neighbours merged, the pause after it reached
   ``merge_pause_s`` or the next utterance closed);
   the compute per second of audio (real-time factor);
2. through the ``/v1/stream`` WebSocket of ``emotion2vec-plus serve`` (another process) on
   loopback, with 1, 2, 4, ... concurrent clients each streaming in real time: the same delays,
   measured at the client from sending the block to receiving the event. The largest number of
   clients whose provisional p95 stays under the hop is what the machine sustains.

Models: ``compact`` (the bundled model) and ``plus_large`` (emotion2vec+ large's architecture,
1024-d, 4 + 8 blocks, random weights: timing only). Usage:

    python bench/stream_latency.py [--models compact,plus_large] [--streams 1,2,4,8,12,16]
        [--seconds 30] [--compute-type auto] [--json-out FILE]

Prints one Markdown table per model; the CPU and the load average are printed first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "training"))
sys.path.insert(0, str(REPO / "tests"))
from corpora import read_corpus  # noqa: E402

SR = 16000
BLOCK = SR // 10


def speech(seconds: float, seed: int = 0) -> np.ndarray:
    """Real sentences of several speakers and emotions, 0.3-2 s apart, about ``seconds`` long."""
    import soundfile as sf

    clips = read_corpus("RAVDESS")
    rng = np.random.default_rng(seed)
    parts, total = [], 0
    for index in rng.permutation(len(clips)):
        audio = sf.read(clips[index].path, dtype="float32")[0]
        pause = np.zeros(int(rng.uniform(0.3, 2.0) * SR), np.float32)
        parts += [audio, pause]
        total += len(audio) + len(pause)
        if total >= seconds * SR:
            break
    return np.concatenate(parts)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def api_run(model, samples: np.ndarray, hop_s: float, min_pause_s: float) -> dict:
    """One stream through the Python API at real-time pace."""
    stream = model.stream(hop_s=hop_s)
    provisional, finals, busy = [], [], 0.0
    started = time.perf_counter()
    for start in range(0, len(samples), BLOCK):
        due = started + (start + BLOCK) / SR
        time.sleep(max(0.0, due - time.perf_counter()))
        pushed = time.perf_counter()
        events = stream.push(samples[start : start + BLOCK])
        took = time.perf_counter() - pushed
        busy += took
        provisional += [took for e in events if e.type in ("emotion", "silence")]
        finals += [took for e in events if e.type == "utterance"]
    stream.close()
    return {"provisional": provisional, "finals": finals, "rtf": busy / (len(samples) / SR)}


class Client(threading.Thread):
    """One WebSocket client streaming ``samples`` at real-time pace and timing every event."""

    def __init__(self, url: str, samples: np.ndarray, hop_s: float, min_pause_s: float, merge_pause_s: float,
                 delay_s: float) -> None:
        super().__init__(daemon=True)
        self.url, self.samples, self.hop_s, self.delay_s = url, samples, hop_s, delay_s
        self.min_pause_s, self.merge_pause_s = min_pause_s, merge_pause_s
        self.sent_at: list[float] = []
        self.events: list[tuple[float, dict]] = []
        self.error: str | None = None

    def run(self) -> None:
        from websockets.sync.client import connect

        time.sleep(self.delay_s)
        try:
            with connect(self.url, max_size=2**24) as ws:
                ws.send(json.dumps({"type": "config", "hop_s": self.hop_s}))
                reader = threading.Thread(target=self._read, args=(ws,), daemon=True)
                reader.start()
                started = time.perf_counter()
                for start in range(0, len(self.samples), BLOCK):
                    time.sleep(max(0.0, started + start / SR - time.perf_counter()))
                    self.sent_at.append(time.perf_counter())
                    ws.send((self.samples[start : start + BLOCK] * 32767).astype("<i2").tobytes())
                ws.send(json.dumps({"type": "end"}))
                reader.join(120)
        except Exception as exc:  # reported in the table, not raised from a thread
            self.error = f"{type(exc).__name__}: {exc}"

    def _read(self, ws) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            while True:
                message = json.loads(ws.recv())
                self.events.append((time.perf_counter(), message))
                if message["type"] == "error":
                    self.error = message["code"]
        except ConnectionClosed:
            pass

    def _decided_at(self, final: dict) -> float:
        """Audio time at which the stream could send ``final``: the pause after it reached
        ``min_pause_s`` (no merging) or ``merge_pause_s``, or, sooner, the next utterance was closed
        (its pause reached ``min_pause_s``) and proved unlike it. Ends are padded by the detector's 30 ms."""
        if self.merge_pause_s <= 0:
            return final["end_s"] - 0.03 + self.min_pause_s
        candidates = [final["end_s"] + 0.03 + self.merge_pause_s]
        later = [e["end_s"] for _, e in self.events if e["type"] == "speech.end" and e["start_s"] > final["end_s"]]
        if later:
            candidates.append(min(later) - 0.03 + self.min_pause_s)
        return min(candidates)

    def delays(self) -> tuple[list[float], list[float], int]:
        """Provisional and final delays (seconds), and events dropped by the server."""
        provisional, finals, dropped = [], [], 0
        for received, event in self.events:
            if event["type"] in ("emotion", "silence"):
                block = min(int(round(event["end_s"] * SR)) // BLOCK, len(self.sent_at)) - 1
                provisional.append(received - self.sent_at[max(block, 0)])
            elif event["type"] == "utterance":
                closed = self._decided_at(event)
                block = min(int(np.ceil(closed * SR / BLOCK)), len(self.sent_at)) - 1
                finals.append(received - self.sent_at[max(block, 0)])
            elif event["type"] == "session.ended":
                dropped = event["dropped"]
        return provisional, finals, dropped


def serve(model_arg: str, compute_type: str, max_sessions: int, log: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exe = Path(sys.executable).with_name("emotion2vec-plus")
    process = subprocess.Popen([str(exe), "serve", "--port", str(port), "--model", model_arg, "--compute-type",
                                compute_type, "--live-sessions", str(max_sessions), "--log-level", "warning"],
                               stdout=subprocess.DEVNULL, stderr=log.open("w"), env=dict(os.environ, EMOTION2VEC_API_KEY=""))
    deadline = time.monotonic() + 300
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
            return process, f"ws://127.0.0.1:{port}/v1/stream"
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.3)


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="compact,plus_large")
    parser.add_argument("--streams", default="1,2,4,8,12,16")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--hop", type=float, default=0.5)
    parser.add_argument("--compute-type", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()

    import torch

    from emotion2vec_plus import Emotion2VecPlus
    from emotion2vec_plus.segmentation import MERGE_PAUSE_S, MIN_PAUSE_S

    flags = Path("/proc/cpuinfo").read_text()
    isa = ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f" {f}" in flags)
    print(f"CPU: {cpu_name()} ({isa}), {os.cpu_count()} cores, torch {torch.__version__}, "
          f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    samples = speech(args.seconds)
    print(f"audio: {len(samples) / SR:.1f} s of RAVDESS sentences with 0.3-2 s pauses, 100 ms blocks, hop {args.hop} s\n")
    tmp = tempfile.TemporaryDirectory(prefix="stream-latency-")
    report = {}
    for name in args.models.split(","):
        model_arg = "compact"
        if name == "plus_large":
            from checkpoints import CONFIG_1024, build_checkpoint

            model_arg = str(build_checkpoint(Path(tmp.name) / "plus_large", seed=0, **CONFIG_1024))
        model = Emotion2VecPlus(model_arg, num_threads=args.threads, compute_type=args.compute_type)
        api = api_run(model, samples, args.hop, MIN_PAUSE_S)
        rows = [("API, 1 stream", api["provisional"], api["finals"], 0, api["rtf"], "")]
        del model
        process, url = serve(model_arg, args.compute_type, max(int(s) for s in args.streams.split(",")),
                             Path(tmp.name) / f"serve-{name}.log")
        sustained = 0
        try:
            for count in (int(s) for s in args.streams.split(",")):
                clients = [Client(url, samples, args.hop, MIN_PAUSE_S, MERGE_PAUSE_S, delay_s=i * args.hop / count)
                           for i in range(count)]
                for client in clients:
                    client.start()
                for client in clients:
                    client.join(len(samples) / SR + 300)
                provisional, finals, dropped = [], [], 0
                errors = sorted({c.error for c in clients if c.error})
                for client in clients:
                    p, f, d = client.delays()
                    provisional += p
                    finals += f
                    dropped += d
                rows.append((f"WebSocket, {count} stream(s)", provisional, finals, dropped, None, ", ".join(errors)))
                if not errors and percentile(provisional, 95) < args.hop:
                    sustained = count
        finally:
            process.terminate()
            process.wait(30)
        print(f"### {name} ({args.compute_type})\n")
        print("| path | provisional p50 | provisional p95 | finals p50 | finals p95 | events dropped | "
              "compute / audio | errors |")
        print("|---|---|---|---|---|---|---|---|")
        report[name] = {"sustained_streams": sustained, "rows": []}
        for label, provisional, finals, dropped, rtf, errors in rows:
            print(f"| {label} | {percentile(provisional, 50) * 1000:.0f} ms | {percentile(provisional, 95) * 1000:.0f} ms | "
                  f"{percentile(finals, 50) * 1000:.0f} ms | {percentile(finals, 95) * 1000:.0f} ms | {dropped} | "
                  f"{'—' if rtf is None else f'{rtf:.3f}'} | {errors or '—'} |")
            report[name]["rows"].append({
                "path": label, "provisional_p50_s": percentile(provisional, 50), "provisional_p95_s": percentile(provisional, 95),
                "finals_p50_s": percentile(finals, 50), "finals_p95_s": percentile(finals, 95), "finals": len(finals),
                "dropped": dropped, "rtf": rtf, "errors": errors})
        print(f"\nconcurrent real-time streams with provisional p95 under the {args.hop} s hop: {sustained}\n", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json_out is not None:
        args.json_out.write_text(json.dumps({"cpu": cpu_name(), "isa": isa, "compute_type": args.compute_type,
                                             "models": report}, indent=2))


if __name__ == "__main__":
    import signal

    # A terminated run still stops the server it started (the finally around each model's runs).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()
