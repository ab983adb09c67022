"""``emotion2vec-plus listen``: live emotion from the microphone, raw PCM on stdin, or a file.

A line per hop for people; ``--jsonl`` prints every event as one JSON object per line (the same
objects as the Python API's :meth:`StreamEvent.to_dict` and the ``/v1/stream`` WebSocket).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Iterator

from ..terminal import terminal_safe
from .options import add_model_options, model_from_args

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from ..streaming import EmotionStream, StreamEvent

#: Raw PCM encodings of ``--input`` (little-endian).
ENCODINGS = {"s16le": "<i2", "f32le": "<f4"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "listen", help="live emotion from the microphone, raw PCM on stdin or a file",
        description="Live emotion: a provisional emotion every hop over the last window of audio, and a final "
                    "result for every utterance (speech between pauses). Sources: the default microphone "
                    "(needs pip install 'emotion2vec-plus[live]'), raw PCM on stdin (--input -), e.g. "
                    "ffmpeg -i call.mp3 -f s16le -ac 1 -ar 16000 - | emotion2vec-plus listen --input -, "
                    "or a file (--file PATH, --realtime to pace it as live).")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--input", default=None, metavar="-",
                        help="read raw PCM from standard input ('-'); see --sample-rate, --encoding, --channels")
    source.add_argument("--file", default=None, metavar="PATH", help="stream an audio file (any format predict reads)")
    parser.add_argument("--realtime", action="store_true", help="with --file: deliver it at real-time pace")
    parser.add_argument("--sample-rate", type=int, default=16000,
                        help="rate of --input PCM or of the microphone (default 16000)")
    parser.add_argument("--encoding", choices=sorted(ENCODINGS), default="s16le", help="--input sample format")
    parser.add_argument("--channels", type=int, default=1, help="--input channels, interleaved (default 1)")
    parser.add_argument("--device-index", type=int, default=None, help="microphone: input device number (default: the system's)")
    parser.add_argument("--hop", type=float, default=0.5, help="seconds between provisional events (default 0.5)")
    parser.add_argument("--live-window", type=float, default=3.0,
                        help="seconds of audio scored for each provisional event (default 3; the model's own "
                             "window, which bounds an utterance scored whole, is not changed)")
    parser.add_argument("--min-speech", type=float, default=1.0,
                        help="speech a window needs to be scored, in seconds; else 'silence' (default 1)")
    parser.add_argument("--embeddings", action="store_true", help="add each utterance's embedding to its event")
    parser.add_argument("--jsonl", action="store_true", help="one JSON event per line instead of text")
    add_model_options(parser)
    parser.set_defaults(run=run)


def describe_event(event: "StreamEvent") -> str | None:
    """One line for people, or None for events that need none (boundaries are shown by the finals)."""
    when = f"{event.end_s:7.1f} s"
    if event.type == "utterance":
        return (f"{when}  ■ utterance {event.start_s:.1f}-{event.end_s:.1f} s: {event.emoji} {event.emotion} "
                f"{event.emotion_zh} {event.confidence * 100:.0f}%")
    if event.type == "emotion":
        return f"{when}  {event.emoji} {event.emotion} {event.confidence * 100:.0f}%"
    if event.type == "silence":
        return f"{when}  · silence"
    return None


def _pcm_blocks(stream_in, dtype: str, channels: int, samples_per_block: int) -> Iterator["np.ndarray"]:
    """Blocks of samples read from a binary pipe until it ends (a partial last sample is dropped)."""
    import numpy as np

    item = np.dtype(dtype).itemsize * channels
    pending = b""
    while True:
        data = stream_in.read1(samples_per_block * item) if hasattr(stream_in, "read1") else stream_in.read(
            samples_per_block * item)
        if not data:
            break
        pending += data
        whole = len(pending) - len(pending) % item
        if whole:
            block = np.frombuffer(pending[:whole], dtype=dtype)
            pending = pending[whole:]
            yield block.reshape(-1, channels) if channels > 1 else block


def _microphone_blocks(sample_rate: int, device: int | None, samples_per_block: int) -> Iterator["np.ndarray"]:
    """Blocks from the default (or given) input device until interrupted."""
    import queue

    try:
        import sounddevice
    except ImportError:
        raise ModuleNotFoundError("listen from a microphone needs sounddevice", name="sounddevice") from None
    except OSError as exc:  # the package is there but PortAudio is not
        raise OSError(f"the microphone needs the PortAudio library ({exc}); use --input - or --file instead") from None
    try:
        sounddevice.check_input_settings(device=device, channels=1, samplerate=sample_rate, dtype="float32")
    except Exception as exc:  # sounddevice raises PortAudioError or ValueError, both with a useful message
        raise OSError(f"no usable microphone ({exc}); list devices with python -m sounddevice, pick one with "
                      "--device-index, or use --input - / --file") from None
    blocks: queue.Queue = queue.Queue()
    with sounddevice.InputStream(samplerate=sample_rate, channels=1, dtype="float32", device=device,
                                 blocksize=samples_per_block, callback=lambda data, *_: blocks.put(data[:, 0].copy())):
        while True:
            yield blocks.get()


def run(args: argparse.Namespace) -> int:
    """Stream until the source ends (or Ctrl+C), printing events as they come."""
    if args.realtime and args.file is None:
        raise ValueError("--realtime applies to --file only (stdin and the microphone are live already)")
    if args.input not in (None, "-"):
        raise ValueError(f"--input takes '-' (standard input), got {args.input!r}; use --file for a file")
    started = time.perf_counter()
    model = model_from_args(args)
    options = {"hop_s": args.hop, "window_s": args.live_window, "min_speech_s": args.min_speech,
               "embeddings": args.embeddings}
    if not args.jsonl:
        source = args.file or ("standard input" if args.input else "the microphone")
        print(f"{model.describe()}; loaded in {time.perf_counter() - started:.1f} s; listening to "
              f"{terminal_safe(source)} (Ctrl+C stops)", file=sys.stderr)
    if args.file is not None:
        events: Iterator["StreamEvent"] = model.stream_file(args.file, realtime=args.realtime, **options)
        _print_events(events, args)
        return 0
    stream = model.stream(sample_rate=args.sample_rate, name="stdin" if args.input else "microphone", **options)
    block = max(1, int(args.sample_rate * 0.1))
    blocks = (_pcm_blocks(sys.stdin.buffer, ENCODINGS[args.encoding], args.channels, block) if args.input
              else _microphone_blocks(args.sample_rate, args.device_index, block))
    try:
        _print_events(_pushed(stream, blocks), args)
    except KeyboardInterrupt:
        _print_events(iter(stream.close()), args)
        return 130
    return 0


def _pushed(stream: "EmotionStream", blocks: Iterator["np.ndarray"]) -> Iterator["StreamEvent"]:
    for block in blocks:
        yield from stream.push(block)
    yield from stream.close()


def _print_events(events: Iterator["StreamEvent"], args: argparse.Namespace) -> None:
    for event in events:
        if args.jsonl:
            print(json.dumps(event.to_dict(include_embedding=args.embeddings), ensure_ascii=False))
        else:
            line = describe_event(event)
            if line is None:
                continue
            print(line)
        sys.stdout.flush()
