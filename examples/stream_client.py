"""Live emotion from a server: stream a file at real-time pace, or the microphone, to /v1/stream.

    emotion2vec-plus serve &
    python examples/stream_client.py call.wav
    python examples/stream_client.py --microphone            # pip install "emotion2vec-plus[live]"
    python examples/stream_client.py call.mp3 --url ws://host:8000/v1/stream --api-key KEY --jsonl

Sends 16 kHz 16-bit mono PCM in 100 ms messages (the protocol: docs/streaming.md) and prints each
event as it arrives: one line per hop, and a marked line for each finished utterance. Needs only
the ``websockets`` package (and this package's decoder for files, or ``sounddevice`` for the
microphone).
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time

import numpy as np
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

SAMPLE_RATE = 16000
BLOCK = SAMPLE_RATE // 10  # 100 ms per message


def file_blocks(path: str):
    """The file decoded to 16 kHz mono, in 100 ms blocks."""
    from emotion2vec_plus import load_audio

    samples = load_audio(path).samples
    for start in range(0, len(samples), BLOCK):
        yield samples[start : start + BLOCK]


def microphone_blocks():
    """100 ms blocks from the default microphone until Ctrl+C."""
    import sounddevice

    blocks: queue.Queue = queue.Queue()
    with sounddevice.InputStream(samplerate=SAMPLE_RATE, channels=1, dtype="float32", blocksize=BLOCK,
                                 callback=lambda data, *_: blocks.put(data[:, 0].copy())):
        while True:
            yield blocks.get()


def show(event: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(event, ensure_ascii=False), flush=True)
        return
    kind = event["type"]
    if kind == "utterance":
        print(f"{event['end_s']:7.1f} s  ■ utterance {event['start_s']:.1f}-{event['end_s']:.1f} s: "
              f"{event['emoji']} {event['emotion']} {event['confidence'] * 100:.0f}%", flush=True)
    elif kind == "emotion":
        print(f"{event['end_s']:7.1f} s  {event['emoji']} {event['emotion']} {event['confidence'] * 100:.0f}%", flush=True)
    elif kind == "silence":
        print(f"{event['end_s']:7.1f} s  · silence", flush=True)
    elif kind in ("session.started", "session.ended", "error"):
        print(json.dumps(event, ensure_ascii=False), file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", nargs="?", help="an audio file to stream at real-time pace")
    parser.add_argument("--microphone", action="store_true", help="stream the default microphone instead")
    parser.add_argument("--url", default="ws://127.0.0.1:8000/v1/stream")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--fast", action="store_true", help="send the file as fast as possible (realtime: false)")
    parser.add_argument("--jsonl", action="store_true", help="print every message as a JSON line")
    args = parser.parse_args()
    if bool(args.file) == args.microphone:
        parser.error("give a file or --microphone")
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    blocks = microphone_blocks() if args.microphone else file_blocks(args.file)
    failed = False
    with connect(args.url, additional_headers=headers, max_size=2**24) as ws:
        ws.send(json.dumps({"type": "config", "sample_rate": SAMPLE_RATE, "encoding": "s16le",
                            "realtime": not args.fast}))

        def receive() -> None:
            nonlocal failed
            try:
                while True:
                    event = json.loads(ws.recv())
                    failed |= event["type"] == "error"
                    show(event, args.jsonl)
            except ConnectionClosed:
                pass

        reader = threading.Thread(target=receive, daemon=True)
        reader.start()
        started = time.monotonic()
        sent = 0
        try:
            for block in blocks:
                ws.send((np.clip(block, -1, 1) * 32767).astype("<i2").tobytes())
                sent += len(block)
                if not args.fast and not args.microphone:  # pace a file as a live source would
                    time.sleep(max(0.0, started + sent / SAMPLE_RATE - time.monotonic()))
            ws.send(json.dumps({"type": "end"}))
        except (KeyboardInterrupt, ConnectionClosed):
            ws.send(json.dumps({"type": "end"})) if not failed else None
        reader.join()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
