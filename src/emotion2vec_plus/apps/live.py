"""The REST service's live endpoint: ``/v1/stream``, a WebSocket over :class:`~emotion2vec_plus.streaming.EmotionStream`.

Protocol (``docs/streaming.md`` has a JSON schema for every message):

1. The client sends one JSON text message: ``{"type": "config", "sample_rate": 16000, "encoding":
   "s16le" | "f32le", "channels": 1, "hop_s": 0.5, "window_s": 3.0, "min_speech_s": 1.0,
   "embeddings": false, "realtime": true}`` (every field but ``type`` optional).
2. The server answers ``session.started`` (the session id, the model, its labels and the limits).
3. The client sends audio as binary messages (little-endian samples, channels interleaved) and
   may end with ``{"type": "end"}``; the server sends each event as a JSON text message (the same
   objects as :meth:`StreamEvent.to_dict`), then ``session.ended`` with totals, and closes.

Errors are ``{"type": "error", "code": ..., "message": ...}`` followed by a close; the codes are
stable: ``unauthorized``, ``bad_config``, ``bad_message``, ``bad_frame``, ``bad_samples``,
``too_fast``, ``session_too_long``, ``server_full``, ``idle_timeout``, ``slow_reader``,
``internal``.

Limits, each enforced per session: the size of one audio message, the pace (audio may not
arrive faster than ``max_speed`` times real time, after a burst allowance, unless the config says
``"realtime": false``), the session's audio length, the number of concurrent sessions (a new one
beyond it is refused with ``server_full``), an idle timeout between messages, and a bounded queue
of events to send: a client that reads too slowly loses provisional events (``emotion``,
``silence``, ``emotion.changed``), never ``utterance`` finals or speech boundaries; if even those
pile up, the session ends with ``slow_reader``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from ..errors import Emotion2VecError, InvalidSamplesError, LiveSessionError
from ..inference import Emotion2VecPlus
from ..runtime.compute import model_thread
from ..streaming import EmotionStream, StreamEvent

log = logging.getLogger("emotion2vec_plus.apps.live")

#: Event types a slow reader may lose.
PROVISIONAL_TYPES = frozenset({"emotion", "silence", "emotion.changed"})
ENCODINGS = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
#: WebSocket close codes: policy violation, internal error, try again later (RFC 6455 / IANA).
_CLOSE_POLICY, _CLOSE_INTERNAL, _CLOSE_TRY_LATER = 1008, 1011, 1013


@dataclass
class LiveLimits:
    """What one server allows its live sessions (``serve --live-*`` options)."""

    max_sessions: int = 8
    max_load: float = 0.9
    """A new session is refused while the sessions running would keep the model busy more than
    this share of the time if all of them spoke at once (each session's cost per provisional
    window is measured as it runs): on a CPU that carries fewer than ``max_sessions`` real-time
    streams, the sessions running stay on time instead of all falling behind."""
    max_session_s: float = 3600.0
    """Audio per session, in seconds."""
    max_frame_s: float = 1.0
    """Audio in one binary message, in seconds (at the session's rate and channels)."""
    max_speed: float = 2.0
    """Audio may arrive at most this many times faster than real time (unless ``realtime: false``)."""
    burst_s: float = 2.0
    """Audio a client may send ahead of that pace (network jitter, a buffered start)."""
    idle_timeout_s: float = 30.0
    queue_events: int = 256
    """Events waiting to be sent, at most; provisional ones are dropped first."""
    queue_finals: int = 1024
    """Finals and speech boundaries waiting to be sent, at most, when no provisional event is left
    to drop (minutes of speech); beyond that the client is too slow and the session ends."""

    def __post_init__(self) -> None:
        if not self.max_load > 0:
            raise ValueError(f"max_load (--live-max-load) must be above 0, got {self.max_load}")

    def to_dict(self) -> dict[str, Any]:
        return {"max_sessions": self.max_sessions, "max_load": self.max_load, "max_session_s": self.max_session_s,
                "max_frame_s": self.max_frame_s, "max_speed": self.max_speed, "burst_s": self.burst_s,
                "idle_timeout_s": self.idle_timeout_s, "queue_events": self.queue_events,
                "queue_finals": self.queue_finals}


@dataclass
class SessionConfig:
    sample_rate: int = 16000
    encoding: str = "s16le"
    channels: int = 1
    hop_s: float = 0.5
    window_s: float = 3.0
    min_speech_s: float = 1.0
    embeddings: bool = False
    realtime: bool = True

    @classmethod
    def parse(cls, text: str | None) -> "SessionConfig":
        """The config message, checked field by field (``bad_config`` names the field)."""
        try:
            data = json.loads(text) if text is not None else None
        except (ValueError, RecursionError):
            raise LiveSessionError("bad_config", "the first message must be a JSON config object") from None
        if not isinstance(data, dict) or data.get("type") != "config":
            raise LiveSessionError("bad_config", 'the first message must be a JSON object with "type": "config"')
        unknown = sorted(set(data) - {"type", *cls.__dataclass_fields__})
        if unknown:
            raise LiveSessionError("bad_config", f"unknown config field(s): {', '.join(unknown)}")
        config = cls()
        for name, kind in (("sample_rate", int), ("channels", int), ("hop_s", float), ("window_s", float),
                           ("min_speech_s", float), ("embeddings", bool), ("realtime", bool), ("encoding", str)):
            if name not in data:
                continue
            value = data[name]
            ok = isinstance(value, bool) if kind is bool else (
                isinstance(value, str) if kind is str else
                isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value))
            if not ok or (kind is int and float(value) != int(value)):
                raise LiveSessionError("bad_config", f"{name} must be {'a number' if kind in (int, float) else kind.__name__}, "
                                              f"got {json.dumps(value)[:40]}")
            setattr(config, name, kind(value))
        if config.encoding not in ENCODINGS:
            raise LiveSessionError("bad_config", f"encoding must be one of {', '.join(ENCODINGS)}, got {config.encoding!r}")
        if not 1 <= config.channels <= 8:
            raise LiveSessionError("bad_config", f"channels must be 1 to 8, got {config.channels}")
        return config


@dataclass
class _Outbox:
    """Events waiting to be sent to one client, bounded: provisional ones give way first."""

    limit: int
    final_limit: int
    items: deque = field(default_factory=deque)
    dropped: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def put(self, message: dict[str, Any]) -> None:
        if len(self.items) >= self.limit:
            for index, queued in enumerate(self.items):
                if queued.get("type") in PROVISIONAL_TYPES:
                    del self.items[index]
                    self.dropped += 1
                    break
            else:
                if message.get("type") in PROVISIONAL_TYPES:
                    self.dropped += 1
                    return
                if len(self.items) >= self.final_limit:
                    raise LiveSessionError("slow_reader", f"the client reads too slowly: {len(self.items)} events are "
                                                   "waiting, finals included")
        self.items.append(message)
        self.ready.set()


class LiveSessions:
    """The live sessions of one server: admission (at most ``limits.max_sessions``) and totals."""

    def __init__(self, model: Emotion2VecPlus, limits: LiveLimits, api_key: str | None) -> None:
        self.model = model
        self.limits = limits
        self.api_key = api_key.encode() if api_key else None
        self.started = 0
        self._ids = itertools.count(1)
        self.running: set["_Session"] = set()
        #: Seconds of model work per provisional window, over every session so far (the cost a
        #: new session is expected to add before its own is measured).
        self.window_cost = _Average()

    @property
    def active(self) -> int:
        """Sessions running now."""
        return len(self.running)

    def speaking_load(self) -> float:
        """The share of the time the model would be busy if every running session spoke: each
        session's measured cost per provisional window (the server's average until it has one)
        over its hop."""
        return sum(session.speaking_load(self.window_cost.value) for session in self.running)

    def load_refusal(self) -> LiveSessionError | None:
        """``server_full`` when one more session would push :meth:`speaking_load` past ``max_load``."""
        if not self.running or self.window_cost.value is None:
            return None
        load = self.speaking_load()
        added = self.window_cost.value / SessionConfig.hop_s
        if load + added <= self.limits.max_load:
            return None
        return LiveSessionError("server_full", f"the model would be busy {100 * (load + added):.0f} % of the time with "
                                f"one more session ({len(self.running)} running, at most {100 * self.limits.max_load:.0f} %); "
                                "try again later", _CLOSE_TRY_LATER)

    def authorised(self, websocket: WebSocket) -> bool:
        """``Authorization: Bearer <key>``, or ``?api_key=<key>`` (browsers cannot set headers on a WebSocket)."""
        if self.api_key is None:
            return True
        header = websocket.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        offered = token.strip() if scheme.lower() == "bearer" else websocket.query_params.get("api_key", "")
        return hmac.compare_digest(offered.encode(), self.api_key)

    async def serve(self, websocket: WebSocket) -> None:
        """Run one session from the handshake to the close."""
        await websocket.accept()
        if not self.authorised(websocket):
            await _refuse(websocket, LiveSessionError("unauthorized", "missing or invalid API key: send "
                                               "'Authorization: Bearer <key>' or ?api_key=<key>"))
            return
        if self.active >= self.limits.max_sessions:
            await _refuse(websocket, LiveSessionError("server_full", f"all {self.limits.max_sessions} live sessions are "
                                               "in use; try again later", _CLOSE_TRY_LATER))
            return
        refusal = self.load_refusal()
        if refusal is not None:
            await _refuse(websocket, refusal)
            return
        self.started += 1
        session = _Session(self, websocket, f"live-{next(self._ids)}")
        self.running.add(session)
        try:
            await session.run()
        finally:
            self.running.discard(session)


async def _refuse(websocket: WebSocket, error: LiveSessionError) -> None:
    with contextlib.suppress(Exception):
        await websocket.send_text(json.dumps({"type": "error", "code": error.code, "message": str(error)}))
        await websocket.close(error.close_code)


class _Session:
    def __init__(self, sessions: LiveSessions, websocket: WebSocket, session_id: str) -> None:
        self.sessions = sessions
        self.limits = sessions.limits
        self.websocket = websocket
        self.id = session_id
        self.outbox = _Outbox(self.limits.queue_events, max(self.limits.queue_events, self.limits.queue_finals))
        self.stream: EmotionStream | None = None
        self.config = SessionConfig()
        self.audio_bytes = 0
        self.events = 0
        self.utterances = 0
        self.started_at = time.monotonic()
        self.closing = False
        self.window_cost = _Average()

    def speaking_load(self, fallback: float | None) -> float:
        """Share of the model's time this session takes while it speaks: its cost per provisional
        window (``fallback`` until measured) over its hop."""
        cost = self.window_cost.value if self.window_cost.value is not None else fallback
        return 0.0 if cost is None else cost / self.config.hop_s

    async def run(self) -> None:
        sender = asyncio.create_task(self._send_loop())
        error: LiveSessionError | None = None
        try:
            await self._receive_loop()
        except LiveSessionError as exc:
            error = exc
        except WebSocketDisconnect:
            pass
        except Exception as exc:  # never a traceback to the client
            log.exception("live session %s failed", self.id)
            error = LiveSessionError("internal", f"internal error: {type(exc).__name__}", _CLOSE_INTERNAL)
        finally:
            if self.stream is not None and not self.stream.closed:
                with contextlib.suppress(Exception):
                    await self._push(None)  # the last utterance's final, if the client is still there
            if error is None:
                self._queue({"type": "session.ended", **self._totals()}, force=True)
            else:
                self._queue({"type": "error", "code": error.code, "message": str(error)}, force=True)
            self.closing = True
            self.outbox.ready.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sender, 10)
            sender.cancel()
            with contextlib.suppress(Exception):
                await self.websocket.close(1000 if error is None else error.close_code)

    def _totals(self) -> dict[str, Any]:
        seconds = self.stream.position_s if self.stream is not None else 0.0
        return {"session": self.id, "audio_s": round(seconds, 3), "events": self.events,
                "utterances": self.utterances, "dropped": self.outbox.dropped,
                "wall_s": round(time.monotonic() - self.started_at, 3)}

    async def _next_message(self) -> dict[str, Any]:
        try:
            message = await asyncio.wait_for(self.websocket.receive(), self.limits.idle_timeout_s)
        except asyncio.TimeoutError:
            raise LiveSessionError("idle_timeout", f"no message for {self.limits.idle_timeout_s:g} s") from None
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        return message

    async def _receive_loop(self) -> None:
        first = await self._next_message()
        self.config = SessionConfig.parse(first.get("text"))
        try:
            self.stream = self.sessions.model.stream(
                sample_rate=self.config.sample_rate, hop_s=self.config.hop_s, window_s=self.config.window_s,
                min_speech_s=self.config.min_speech_s, embeddings=self.config.embeddings, name=self.id)
        except ValueError as exc:
            raise LiveSessionError("bad_config", str(exc)) from None
        dtype = ENCODINGS[self.config.encoding]
        frame_bytes = dtype.itemsize * self.config.channels
        max_bytes = int(self.limits.max_frame_s * self.config.sample_rate) * frame_bytes
        self._queue({"type": "session.started", "session": self.id, "model": self.sessions.model.model_name,
                     "labels": [label.english for label in self.sessions.model.labels],
                     "config": self.config.__dict__, "limits": self.limits.to_dict()})
        self.started_at = time.monotonic()
        while True:
            message = await self._next_message()
            if message.get("text") is not None:
                if _is_end(message["text"]):
                    return
                raise LiveSessionError("bad_message", 'text messages after the config must be {"type": "end"}')
            data = message.get("bytes") or b""
            if not data:
                continue
            if len(data) > max_bytes:
                raise LiveSessionError("bad_frame", f"an audio message holds at most {self.limits.max_frame_s:g} s "
                                             f"({max_bytes} bytes), got {len(data)}")
            if len(data) % frame_bytes:
                raise LiveSessionError("bad_frame", f"an audio message must hold whole samples: a multiple of "
                                             f"{frame_bytes} bytes ({self.config.encoding}, {self.config.channels} "
                                             f"channel(s)), got {len(data)}")
            self.audio_bytes += len(data)
            seconds = self.audio_bytes / frame_bytes / self.config.sample_rate
            if seconds > self.limits.max_session_s:
                raise LiveSessionError("session_too_long", f"a session holds at most {self.limits.max_session_s:g} s of audio")
            allowed = self.limits.max_speed * (time.monotonic() - self.started_at) + self.limits.burst_s
            if self.config.realtime and seconds > allowed:
                raise LiveSessionError("too_fast", f"audio arrives faster than {self.limits.max_speed:g}x real time; "
                                            'send at the pace it is recorded, or set "realtime": false')
            samples = np.frombuffer(data, dtype=dtype)
            if self.config.channels > 1:
                samples = samples.reshape(-1, self.config.channels)
            await self._push(samples)

    async def _push(self, samples: np.ndarray | None) -> None:
        stream = self.stream
        assert stream is not None
        def work() -> tuple[list[StreamEvent], float]:
            started = time.perf_counter()
            events = stream.close() if samples is None else stream.push(samples)
            return events, time.perf_counter() - started

        loop = asyncio.get_running_loop()
        try:
            events, took = await loop.run_in_executor(model_thread(), work)
        except InvalidSamplesError as exc:
            raise LiveSessionError("bad_samples", str(exc)) from None
        except (Emotion2VecError, ValueError) as exc:
            raise LiveSessionError("bad_frame", str(exc)) from None
        if any(event.type == "emotion" for event in events):  # this push scored a window
            self.window_cost.add(took)
            self.sessions.window_cost.add(took)
        for event in events:
            self.events += 1
            self.utterances += event.type == "utterance"
            self._queue(event.to_dict(include_embedding=self.config.embeddings))

    def _queue(self, message: dict[str, Any], force: bool = False) -> None:
        if force:
            self.outbox.items.append(message)
            self.outbox.ready.set()
        else:
            self.outbox.put(message)

    async def _send_loop(self) -> None:
        while True:
            await self.outbox.ready.wait()
            self.outbox.ready.clear()
            while self.outbox.items:
                message = self.outbox.items.popleft()
                await self.websocket.send_text(json.dumps(message, ensure_ascii=False))
            if self.closing:
                return


class _Average:
    """A running mean that follows recent values (exponential, weight 0.2)."""

    def __init__(self) -> None:
        self.value: float | None = None

    def add(self, sample: float) -> None:
        self.value = sample if self.value is None else 0.8 * self.value + 0.2 * sample


def _is_end(text: str) -> bool:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return False
    return isinstance(data, dict) and data.get("type") == "end"


def live_router(sessions: LiveSessions) -> APIRouter:
    """The ``/v1/stream`` WebSocket route over ``sessions``."""
    router = APIRouter()

    @router.websocket("/v1/stream")
    async def stream(websocket: WebSocket) -> None:
        await sessions.serve(websocket)

    return router
