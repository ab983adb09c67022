"""Load the REST service with good and hostile uploads and watch its latency, errors and memory.

Starts ``emotion2vec-plus serve`` (the bundled model unless --model) on a free loopback port,
then N client threads send, for --seconds, a mix of: real speech clips of 1-8 s
(/v1/recognize, /v1/embed), frame-level requests, similarity of a clip and a .npy, and bad
uploads (text, truncated FLAC, empty file, an .npy whose header claims 10^12 floats, a 20 MB
upload over the limit). Then one 600 s recording with granularity=frame to /v1/recognize and
/v1/embed (the .npy file). It prints p50/p99 latency per kind, the status codes seen (any 5xx
is a failure), and the server's RSS at start, peak (VmHWM) and end. The run stops by itself.

Usage: python bench/rest_load.py [--clients 16] [--seconds 120] [--model compact] [--json-out F]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def wav_bytes(samples: np.ndarray, fmt: str = "WAV") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, 16000, format=fmt)
    return buffer.getvalue()


def multipart(fields: dict[str, tuple[str, bytes] | str]) -> tuple[bytes, str]:
    boundary = f"----bench{random.getrandbits(64):x}"
    body = io.BytesIO()
    for name, value in fields.items():
        body.write(f"--{boundary}\r\n".encode())
        if isinstance(value, tuple):
            body.write(f'Content-Disposition: form-data; name="{name}"; filename="{value[0]}"\r\n'
                       "Content-Type: application/octet-stream\r\n\r\n".encode())
            body.write(value[1])
        else:
            body.write(f'Content-Disposition: form-data; name="{name}"\r\n\r\n{value}'.encode())
        body.write(b"\r\n")
    body.write(f"--{boundary}--\r\n".encode())
    return body.getvalue(), f"multipart/form-data; boundary={boundary}"


def post(url: str, fields: dict, timeout: float = 300) -> tuple[int, int]:
    """(status, response bytes)."""
    data, content_type = multipart(fields)
    request = urllib.request.Request(url, data=data, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, len(response.read())
    except urllib.error.HTTPError as error:
        return error.code, len(error.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
        return -1, len(str(error))


def requests_mix() -> list[tuple[str, str, dict]]:
    """(kind, path, fields) of the load mix."""
    clips = sorted((DATASETS / "RAVDESS").glob("Actor_0*/*.flac"))[:60]
    if not clips:
        sys.exit("needs ../shared/datasets/RAVDESS beside the repository")
    good = [(p.name, p.read_bytes()) for p in clips]
    flac = good[0][1]
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }"
    header += " " * (118 - len(header)) + "\n"
    hostile_npy = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + bytes(16)
    buffer = io.BytesIO()
    np.save(buffer, np.ones(8, np.float32))
    mix = []
    for name, data in good:
        mix.append(("recognize", "/v1/recognize", {"file": (name, data)}))
        mix.append(("embed", "/v1/embed", {"file": (name, data)}))
    for name, data in good[:10]:
        mix.append(("frame", "/v1/recognize", {"file": (name, data), "granularity": "frame"}))
        mix.append(("frame-npy", "/v1/embed", {"file": (name, data), "granularity": "frame"}))
    mix += [("bad: text", "/v1/recognize", {"file": ("notes.wav", b"meeting notes, not audio" * 40)}),
            ("bad: truncated flac", "/v1/recognize", {"file": ("cut.flac", flac[: len(flac) // 2])}),
            ("bad: empty", "/v1/recognize", {"file": ("empty.wav", b"")}),
            ("bad: huge npy header", "/v1/similarity", {"a": ("huge.npy", hostile_npy), "b": good[0]}),
            ("bad: over the size limit", "/v1/recognize", {"file": ("big.wav", bytes(20 * 1024 * 1024))}),
            ("bad: frame json embedding", "/v1/recognize", {"file": good[1], "granularity": "frame", "embedding": "true"})] * 6
    return mix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--model", default="compact")
    parser.add_argument("--long-seconds", type=float, default=600, help="length of the long frame-level request")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "emotion2vec_plus.cli", "serve", "--port", str(port), "--model",
                               args.model, "--max-upload-mb", "16", "--max-duration", str(args.long_seconds + 10)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"the server did not start:\n{server.stderr.read() if server.stderr else ''}")
                time.sleep(0.5)
        start_rss, _ = rss_mb(server.pid)
        mix = requests_mix()
        latencies: dict[str, list[float]] = defaultdict(list)
        statuses: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        lock = threading.Lock()
        stop = time.monotonic() + args.seconds

        def client(seed: int) -> None:
            rng = random.Random(seed)
            while time.monotonic() < stop:
                kind, path, fields = rng.choice(mix)
                started = time.perf_counter()
                status, _ = post(base + path, fields)
                with lock:
                    latencies[kind].append(time.perf_counter() - started)
                    statuses[kind][status] += 1

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for thread in threads:
            thread.start()
        peak_during = 0.0
        while any(t.is_alive() for t in threads):
            peak_during = max(peak_during, rss_mb(server.pid)[0])
            time.sleep(0.5)
        after_load = rss_mb(server.pid)

        clips = sorted((DATASETS / "RAVDESS").glob("Actor_1*/*.flac"))
        long = np.concatenate([sf.read(p, dtype="float32")[0] for p in clips])
        long = np.tile(long, int(np.ceil(args.long_seconds * 16000 / len(long))))[: int(args.long_seconds * 16000)]
        long_flac = wav_bytes(long, "FLAC")
        long_rows = []
        for kind, path, fields in [("600 s frame JSON", "/v1/recognize", {"granularity": "frame"}),
                                   ("600 s frame .npy", "/v1/embed", {"granularity": "frame"}),
                                   ("600 s frame JSON + embedding", "/v1/recognize", {"granularity": "frame", "embedding": "true"})]:
            before = rss_mb(server.pid)[0]
            started = time.perf_counter()
            status, size = post(base + path, {"file": ("long.flac", long_flac), **fields}, timeout=900)
            took = time.perf_counter() - started
            now, hwm = rss_mb(server.pid)
            long_rows.append((kind, status, size / 1e6, took, before, now, hwm))
        end_rss, peak_rss = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)

    print(f"{args.clients} clients for {args.seconds:g} s against {args.model}; server RSS start {start_rss:.0f} MB, "
          f"highest sampled under load {peak_during:.0f} MB, after the load {after_load[0]:.0f} MB, "
          f"peak (VmHWM) {peak_rss:.0f} MB, end {end_rss:.0f} MB\n")
    print("| request | sent | p50 s | p99 s | status codes |\n|---|---|---|---|---|")
    report = {"rss_mb": {"start": start_rss, "under_load_max": peak_during, "after_load": after_load[0],
                         "peak": peak_rss, "end": end_rss}, "kinds": {}}
    server_errors = 0
    for kind in sorted(latencies):
        values = sorted(latencies[kind])
        p50 = statistics.median(values)
        p99 = values[min(len(values) - 1, int(0.99 * len(values)))]
        codes = dict(sorted(statuses[kind].items()))
        server_errors += sum(n for code, n in codes.items() if code >= 500 or code < 0)
        report["kinds"][kind] = {"sent": len(values), "p50_s": p50, "p99_s": p99, "statuses": codes}
        print(f"| {kind} | {len(values)} | {p50:.3f} | {p99:.3f} | {', '.join(f'{c}: {n}' for c, n in codes.items())} |")
    print(f"\n5xx or connection failures: {server_errors}\n")
    print("| long request | status | response MB | seconds | RSS before MB | RSS after MB | peak so far MB |\n|---|---|---|---|---|---|---|")
    for kind, status, size, took, before, now, hwm in long_rows:
        print(f"| {kind} | {status} | {size:.1f} | {took:.1f} | {before:.0f} | {now:.0f} | {hwm:.0f} |")
    report["long"] = [dict(zip(("kind", "status", "response_mb", "seconds", "rss_before", "rss_after", "peak"), row))
                      for row in long_rows]
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
