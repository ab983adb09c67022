"""The /v1/stream WebSocket on a real uvicorn server: the protocol, every limit, hostile clients."""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import numpy as np
import pytest
import soundfile as sf
import uvicorn
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from conftest import speech_clips
from emotion2vec_plus import Emotion2VecPlus
from emotion2vec_plus.apps.live import LiveLimits
from emotion2vec_plus.apps.service import create_app
from emotion2vec_plus.vad import speech_regions

SR = 16000


def _stream_schema():
    import importlib.resources

    import jsonschema

    schema = json.loads((importlib.resources.files("emotion2vec_plus") / "schemas" / "stream.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema)


STREAM_SCHEMA = _stream_schema()


@pytest.fixture(scope="module")
def model() -> Emotion2VecPlus:
    return Emotion2VecPlus()


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """Four real sentences of one speaker in several emotions, 1 s apart (about 12 s)."""
    parts = []
    for path in speech_clips(28)[::9][:4]:
        audio = sf.read(path, dtype="float32")[0]
        regions = speech_regions(audio)
        parts += [audio[max(0, regions[0].start - 4800) : regions[-1].end + 4800], np.zeros(SR, np.float32)]
    return np.concatenate(parts)


@pytest.fixture()
def server(model):
    """Start a real uvicorn server (``start(**create_app options) -> ws://...``); stopped after the test."""
    servers = []

    def start(ws_ping_interval: float | None = 20.0, send_buffer: int | None = None, **options) -> str:
        """``send_buffer`` fixes the kernel's send buffer of every connection (no autotuning to MBs)."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if send_buffer is not None:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)  # accepted sockets inherit it
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        app = create_app(model, api_key=options.pop("api_key", ""), **options)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws_ping_interval=ws_ping_interval))
        threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True).start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        servers.append((server, app))
        return f"ws://127.0.0.1:{port}/v1/stream"

    yield start
    for server, _ in servers:
        server.should_exit = True


def rss_bytes() -> int:
    """Resident memory of this process (the server runs in it, on a thread)."""
    with open(f"/proc/{os.getpid()}/status", encoding="ascii") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def pcm16(samples: np.ndarray) -> bytes:
    return np.round(np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def receive_all(ws, timeout: float = 60.0) -> list[dict]:
    """Every message until the server closes the connection."""
    messages = []
    try:
        while True:
            messages.append(json.loads(ws.recv(timeout=timeout)))
    except ConnectionClosed:
        pass
    return messages


def run_session(url: str, samples: np.ndarray, config: dict | None = None, *, frame_s: float = 0.1,
                pace: float = 0.0, headers: dict | None = None) -> list[dict]:
    """Send a config, then the audio in frames (sleeping ``frame_s * pace`` between them), then
    "end"; every message the server sent."""
    config = {"type": "config", "realtime": False, **(config or {})}
    with connect(url, additional_headers=headers or {}, max_size=2**24) as ws:
        frame = int(frame_s * config.get("sample_rate", SR))
        collected: list[dict] = []
        reader = threading.Thread(target=lambda: collected.extend(receive_all(ws)), daemon=True)
        reader.start()
        try:  # the server may end the session early (refused, an error): its last message says why
            ws.send(json.dumps(config))
            for start in range(0, len(samples), frame):
                ws.send(pcm16(samples[start : start + frame]))
                if pace:
                    time.sleep(frame_s * pace)
            ws.send(json.dumps({"type": "end"}))
        except ConnectionClosed:
            pass
        reader.join(120)
    return collected


def test_a_session_gives_the_apis_events_and_its_totals(server, model, speech):
    url = server()
    messages = run_session(url, speech, {"embeddings": True})
    assert messages[0]["type"] == "session.started" and messages[0]["labels"] == [l.english for l in model.labels]
    assert messages[-1]["type"] == "session.ended"
    events = messages[1:-1]
    with model.stream(embeddings=True) as stream:  # the Python API on the same samples (as int16 gives them)
        expected = stream.push(np.frombuffer(pcm16(speech), "<i2")) + stream.close()
    assert [e["type"] for e in events] == [e.type for e in expected]
    for got, want in zip(events, expected):
        assert got["seq"] == want.seq and got["end_s"] == pytest.approx(want.end_s, abs=1e-3)
        if want.scores is not None:
            assert got["scores"] == pytest.approx(want.scores, abs=1e-4) and got["emotion"] == want.emotion
    finals = [e for e in events if e["type"] == "utterance"]
    assert len(finals) == 4 and all(len(f["embedding"]) == model.embed_dim for f in finals)
    totals = messages[-1]
    assert totals["utterances"] == 4 and totals["events"] == len(events) and totals["dropped"] == 0
    assert totals["audio_s"] == pytest.approx(len(speech) / SR, abs=1e-3)
    for message in messages:
        STREAM_SCHEMA.validate(message)


def test_the_documented_schemas_are_the_schema_file():
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "streaming.md").read_text(encoding="utf-8")
    section = doc[doc.index("### Message schemas"):doc.index("## Clients")]
    blocks = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", section, re.S)]
    defs = STREAM_SCHEMA.schema["$defs"]
    assert blocks == [defs[name] for name in ("config", "session_started", "event", "session_ended", "error")]


def test_f32le_stereo_at_48_khz(server, speech):
    import soxr

    url = server()
    stereo = np.repeat(soxr.resample(speech, SR, 48000).astype("<f4")[:, None], 2, axis=1)
    with connect(url) as ws:
        ws.send(json.dumps({"type": "config", "sample_rate": 48000, "encoding": "f32le", "channels": 2,
                            "realtime": False}))
        for start in range(0, len(stereo), 4800):
            ws.send(stereo[start : start + 4800].tobytes())
        ws.send(json.dumps({"type": "end"}))
        messages = receive_all(ws)
    assert sum(m["type"] == "utterance" for m in messages) == 4 and messages[-1]["type"] == "session.ended"


def error_of(url: str, first, frames=(), headers=None) -> dict:
    """Send ``first`` (text or bytes) and then ``frames``; the error message the server ends with."""
    with connect(url, additional_headers=headers or {}) as ws:
        try:  # a refused session may be closed before the client has sent anything
            for message in (first, *frames):
                ws.send(message)
        except ConnectionClosed:
            pass
        messages = receive_all(ws)
        assert ws.close_code in (1008, 1011, 1013)
    assert messages[-1]["type"] == "error", messages
    for message in messages:
        STREAM_SCHEMA.validate(message)
    return messages[-1]


CONFIG = json.dumps({"type": "config", "realtime": False})


@pytest.mark.parametrize("first, code", [
    ("hello", "bad_config"),
    (b"\x00\x01", "bad_config"),
    (json.dumps({"type": "config", "sample_rate": "fast"}), "bad_config"),
    (json.dumps({"type": "config", "encoding": "mp3"}), "bad_config"),
    (json.dumps({"type": "config", "hop_s": 0.0}), "bad_config"),
    (json.dumps({"type": "config", "window_s": 1e9}), "bad_config"),
    (json.dumps({"type": "config", "sample_rate": float("nan")}).replace("NaN", "NaN"), "bad_config"),
    (json.dumps({"type": "config", "volume": 11}), "bad_config"),
    ("[" * 100000, "bad_config"),
])
def test_bad_configs_are_refused_with_a_code(server, first, code):
    error = error_of(server(), first)
    assert error["code"] == code and error["message"]


def test_bad_frames_are_refused_with_a_code(server):
    url = server()
    assert error_of(url, CONFIG, [b"\x00\x01\x02"])["code"] == "bad_frame"  # half a sample
    assert error_of(url, CONFIG, [bytes(2 * SR * 2)])["code"] == "bad_frame"  # 2 s in one message (limit 1 s)
    nan = np.zeros(1600, "<f4")
    nan[7] = np.nan
    f32 = json.dumps({"type": "config", "encoding": "f32le", "realtime": False})
    error = error_of(url, f32, [nan.tobytes()])
    assert error["code"] == "bad_samples" and "NaN" in error["message"]
    assert error_of(url, CONFIG, ["louder please"])["code"] == "bad_message"


def test_audio_faster_than_twice_real_time_is_refused_unless_the_config_says_so(server):
    url = server()
    frames = [bytes(int(0.5 * SR) * 2)] * 40  # 20 s of audio sent as fast as possible
    error = error_of(url, json.dumps({"type": "config"}), frames)
    assert error["code"] == "too_fast" and "realtime" in error["message"]
    with connect(url) as ws:  # the same with "realtime": false is served
        ws.send(CONFIG)
        for frame in frames:
            ws.send(frame)
        ws.send(json.dumps({"type": "end"}))
        messages = receive_all(ws)
    assert messages[-1]["type"] == "session.ended" and messages[-1]["audio_s"] == pytest.approx(20.0)


def test_session_length_idle_timeout_and_the_api_key(server):
    url = server(live_limits=LiveLimits(max_session_s=3.0, idle_timeout_s=1.0), api_key="s3cret")
    headers = {"Authorization": "Bearer s3cret"}
    assert error_of(url, CONFIG)["code"] == "unauthorized"
    assert error_of(url, CONFIG, headers={"Authorization": "Bearer wrong"})["code"] == "unauthorized"
    assert error_of(url, CONFIG, [bytes(SR * 2)] * 4, headers=headers)["code"] == "session_too_long"
    with connect(url, additional_headers=headers) as ws:
        ws.send(CONFIG)
        messages = receive_all(ws, timeout=10)  # sends nothing more: closed after 1 s
    assert messages[-1]["code"] == "idle_timeout"
    with connect(url + "?api_key=s3cret") as ws:  # browsers cannot set headers on a WebSocket
        ws.send(CONFIG)
        ws.send(json.dumps({"type": "end"}))
        assert receive_all(ws)[-1]["type"] == "session.ended"


def test_sessions_beyond_the_limit_are_refused_and_a_freed_place_is_reused(server):
    url = server(live_limits=LiveLimits(max_sessions=2))
    first, second = connect(url), connect(url)
    for ws in (first, second):
        ws.send(CONFIG)
        assert json.loads(ws.recv(timeout=30))["type"] == "session.started"
    error = error_of(url, CONFIG)
    assert error["code"] == "server_full"
    first.close()
    deadline = time.monotonic() + 10
    while True:  # the server notices the disconnect and frees the place
        reply = receive_all_after_config(url)[0]
        if reply["type"] == "session.started" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert reply["type"] == "session.started"
    second.close()


def test_a_session_the_model_could_not_keep_up_with_is_refused_by_measured_load(server, speech):
    """--live-max-load: each session's cost per provisional window is measured as it runs; a new
    session is refused while one more would push the model past the allowed share of its time,
    and admitted again once the load is gone. (A load of 0.001 is passed by any real session.)"""
    url = server(live_limits=LiveLimits(max_sessions=8, max_load=0.001))
    assert receive_all_after_config(url)[0]["type"] == "session.started"  # nothing measured yet: admitted
    first = connect(url)
    first.send(json.dumps({"type": "config", "realtime": False}))
    assert json.loads(first.recv(timeout=30))["limits"]["max_load"] == 0.001
    for second in range(4):  # four seconds of speech, a second per message: provisional windows are scored
        first.send(pcm16(speech[second * SR : (second + 1) * SR]))
    while json.loads(first.recv(timeout=60))["type"] != "emotion":
        pass
    error = error_of(url, CONFIG)
    assert error["code"] == "server_full" and "busy" in error["message"] and "1 running" in error["message"]
    first.close()
    deadline = time.monotonic() + 10
    while True:  # the running session is gone, and its load with it
        reply = receive_all_after_config(url)[0]
        if reply["type"] == "session.started" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert reply["type"] == "session.started"
    with pytest.raises(ValueError, match="max_load"):
        LiveLimits(max_load=0)


def receive_all_after_config(url: str) -> list[dict]:
    """Connect, send the config and "end" (as far as the server lets the client), and read everything."""
    with connect(url) as ws:
        try:
            ws.send(CONFIG)
            ws.send(json.dumps({"type": "end"}))
        except ConnectionClosed:
            pass
        return receive_all(ws)


def test_a_client_that_vanishes_mid_utterance_frees_its_session(server, speech):
    url = server(live_limits=LiveLimits(max_sessions=1))
    ws = connect(url)
    ws.send(CONFIG)
    ws.recv(timeout=30)
    ws.send(pcm16(speech[: int(2.2 * SR)][: int(0.9 * SR)]))  # stops inside the first sentence
    ws.socket.close()  # no close frame: the TCP connection just goes away
    deadline = time.monotonic() + 20
    while True:
        messages = run_session(url, speech[: 2 * SR])
        if messages and messages[0]["type"] == "session.started" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert messages[0]["type"] == "session.started" and messages[-1]["type"] == "session.ended"


def test_the_outbox_drops_provisional_events_first_and_gives_up_on_finals():
    from emotion2vec_plus.apps.live import _Outbox
    from emotion2vec_plus.errors import LiveSessionError

    outbox = _Outbox(limit=3, final_limit=6)
    for kind in ("emotion", "utterance", "silence", "speech.start"):
        outbox.put({"type": kind})
    assert [m["type"] for m in outbox.items] == ["utterance", "silence", "speech.start"] and outbox.dropped == 1
    outbox.put({"type": "emotion"})  # full of finals but one: a new provisional event goes first
    assert [m["type"] for m in outbox.items] == ["utterance", "speech.start", "emotion"] and outbox.dropped == 2
    for _ in range(4):  # finals are kept beyond the limit, up to the limit for finals
        outbox.put({"type": "utterance"})
    assert len(outbox.items) == 6 and outbox.dropped == 3
    with pytest.raises(LiveSessionError, match="reads too slowly"):
        outbox.put({"type": "utterance"})


class RawWebSocket:
    """A WebSocket client on a bare socket that reads only when told to: a reader that stops
    reading leaves the server facing a full connection (the libraries keep reading into memory)."""

    def __init__(self, url: str, receive_buffer: int = 4096) -> None:
        import base64

        host, rest = url.removeprefix("ws://").split(":", 1)
        port, path = rest.split("/", 1)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.connect((host, int(port)))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           ).encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(4096)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def send(self, payload: str | bytes) -> None:
        import struct

        opcode = 1 if isinstance(payload, str) else 2
        data = payload.encode() if isinstance(payload, str) else payload
        mask = os.urandom(4)
        if len(data) < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | len(data))
        elif len(data) < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, len(data))
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, len(data))
        masked = (np.frombuffer(data, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), len(data))).tobytes()
        self.sock.sendall(header + mask + masked)

    def _take(self, count: int) -> bytes:
        while len(self.buffer) < count:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        out, self.buffer = self.buffer[:count], self.buffer[count:]
        return out

    def messages(self) -> list[dict]:
        """Every text message until the server's close frame."""
        import struct

        out = []
        while True:
            first, second = self._take(2)
            length = second & 0x7F
            if length == 126:
                length = struct.unpack("!H", self._take(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", self._take(8))[0]
            payload = self._take(length)
            if first & 0x0F == 8:  # close
                return out
            if first & 0x0F == 1:
                out.append(json.loads(payload))


def test_a_slow_reader_loses_provisional_events_never_finals(server, speech):
    """A client that reads nothing while it sends a minute of audio at four times real time with
    ten events a second (small socket buffers on both sides): the server's queue drops provisional
    events, and every final still arrives once it reads. (No keep-alive pings: a client that reads
    nothing for 40 s is closed.)"""
    url = server(live_limits=LiveLimits(queue_events=16), ws_ping_interval=None, send_buffer=8192)
    audio = np.tile(speech, int(60 * SR / len(speech)) + 1)[: 60 * SR]
    ws = RawWebSocket(url)
    ws.send(json.dumps({"type": "config", "realtime": False, "hop_s": 0.1, "window_s": 0.5, "min_speech_s": 0.0}))
    for start in range(0, len(audio), 8000):
        ws.send(pcm16(audio[start : start + 8000]))
        time.sleep(0.5 / 4)
    ws.send(json.dumps({"type": "end"}))
    messages = ws.messages()
    ws.sock.close()
    totals = messages[-1]
    assert totals["type"] == "session.ended" and totals["dropped"] > 0, totals
    finals = [m for m in messages if m["type"] == "utterance"]
    assert len(finals) == totals["utterances"] >= 15
    sent = [m["seq"] for m in messages[1:-1]]
    assert sent == sorted(sent) and len(sent) + totals["dropped"] == totals["events"]


def test_rss_stays_flat_over_a_hundred_sessions(server, speech):
    """Sessions opened, fed real speech, closed (some cleanly, some by vanishing) one after another:
    the server process's memory does not grow with their number."""
    url = server()
    short = speech[: 4 * SR]

    def one(i: int) -> None:
        if i % 3 == 2:
            ws = connect(url)
            ws.send(CONFIG)
            ws.send(pcm16(short[:SR]))
            ws.socket.close()
        else:
            run_session(url, short)

    for i in range(20):  # warm-up: allocator pools, the model's first batches
        one(i)
    time.sleep(0.5)
    before = rss_bytes()
    for i in range(100):
        one(i)
    time.sleep(0.5)
    after = rss_bytes()
    assert after - before < 40e6, f"RSS grew by {(after - before) / 1e6:.0f} MB over 100 sessions"
