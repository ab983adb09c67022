"""The Live tab's sessions: one :class:`LiveSession` per browser session (kept in its ``gr.State``),
over one :class:`~emotion2vec_plus.streaming.EmotionStream`.

The browser's microphone arrives in pieces of 0.1-0.5 s at its own rate (48 kHz, usually), as
WAV files Gradio stores; :func:`read_chunk` reads one. The session queues it for the stream, which
takes it on the process's one model thread (:func:`~emotion2vec_plus.runtime.compute.model_thread`),
and keeps what the page shows: the latest provisional event, the last :data:`LIVE_CHART_S` seconds of
provisional scores for the chart, the latest :data:`LIVE_FINALS_KEPT` utterances, and counts.
Everything else (the session's 16 kHz audio, every event, the utterances' embeddings) goes to
files as it arrives (:class:`~emotion2vec_plus.outputs.LiveRecorder`), so memory stays bounded
however long the session runs; :meth:`LiveSession.save` writes a ``live_YYYYMMDD_HHMMSS`` run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...audio import SAMPLE_RATE, StreamResampler
from ...outputs import LiveRecorder
from ...runtime.compute import model_thread
from .messages import PageMessage

if TYPE_CHECKING:  # pragma: no cover
    from ...inference import Emotion2VecPlus
    from ...streaming import EmotionStream, StreamEvent

log = logging.getLogger(__name__)

#: Seconds of provisional scores the chart shows (and the session keeps).
LIVE_CHART_S = 60.0
#: Utterances the page lists (the newest); every one is in the saved ``events.jsonl``.
LIVE_FINALS_KEPT = 200
#: A provisional event every this much audio, over the last :data:`LIVE_WINDOW_S`.
LIVE_HOP_S = 0.5
LIVE_WINDOW_S = 3.0
#: How often the browser is asked to send the microphone's audio (``.stream(stream_every=...)``; Gradio 6.31's
#: microphone sends 0.1 s pieces whatever it says: its Audio frontend sets 0.1) and the page is redrawn.
LIVE_STREAM_EVERY_S = 0.5
LIVE_REFRESH_S = 0.5
#: Most audio waiting for the model thread (a busy server); more is dropped, and the page says so.
LIVE_BACKLOG_S = 30.0
#: A session that received nothing for this long has ended (the recording stopped, even if the
#: stop itself was missed): the next audio starts a new session.
LIVE_IDLE_NEW_S = 10.0
#: The page says audio went missing on its way from the browser when the recording took this much
#: longer (and this share longer) than the audio that arrived.
LIVE_MISSED_MIN_S = 1.0
LIVE_MISSED_MIN_SHARE = 0.1
#: What the stream and its errors call the source.
MICROPHONE = "microphone"


@dataclass(frozen=True)
class LiveHop:
    """One provisional event as the chart keeps it: the window's end and its class probabilities
    (``None``: silence)."""

    end_s: float
    probabilities: np.ndarray | None


@dataclass(frozen=True)
class LiveFinal:
    """One utterance as the page lists it (the final ``utterance`` event)."""

    start_s: float
    end_s: float
    emotion: str | None
    emotion_zh: str | None
    emoji: str | None
    confidence: float | None


@dataclass(frozen=True)
class LiveSnapshot:
    """What a session shows at one moment (copied under its lock, drawn without it)."""

    labels: list[str]
    current_event: dict[str, Any] | None
    hops: list[LiveHop]
    finals: list[LiveFinal]
    utterances: int
    position_s: float
    sample_rate: int
    closed: bool
    limit_reached: bool
    saved: Path | None
    saved_utterances: int
    saved_s: float
    error: PageMessage | None
    model_name: str
    dropped_s: float
    missed_s: float
    recorded_s: float


def read_chunk(path: str | Path) -> tuple[int, np.ndarray]:
    """A piece of microphone audio as the browser sent it (a WAV file): its rate and mono float32 samples."""
    import soundfile as sf

    samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return int(rate), samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]


class LiveSession:
    """One browser session's live stream: :meth:`feed` microphone audio, :meth:`close` when the
    recording stops, :meth:`save` the session, :meth:`snapshot` what to draw.

    :meth:`feed` returns at once: the audio waits in a queue and the stream takes it on the
    process's model thread, in order (Gradio hands the next piece of the microphone to the same
    callback only once it returned, and keeps only the newest piece meanwhile: a callback that
    waited for the model would lose audio). At most :data:`LIVE_BACKLOG_S` seconds wait; beyond
    that the server is too busy and the audio is dropped (and counted). Thread-safe.

    Args:
        model: the model (with a classifier head) that scores.
        sample_rate: the microphone's rate; the stream resamples it to 16 kHz, and so does the
            recording (the same soxr resampler, so the saved audio is what the stream scored).
        outputs_root: where the working files and the saved run go.
        max_s: seconds of audio a session may take; later audio is ignored (``limit_reached``).
    """

    def __init__(self, model: "Emotion2VecPlus", sample_rate: int, outputs_root: str | Path, max_s: float) -> None:
        self.model = model
        self.model_name = model.model_name
        self.labels = [label.english for label in model.labels]
        self.sample_rate = int(sample_rate)
        self.max_s = float(max_s)
        self.stream: "EmotionStream | None" = None  # made on the model thread (its VAD is a PyTorch module)
        self._resampler = None if self.sample_rate == SAMPLE_RATE else StreamResampler(self.sample_rate, MICROPHONE)
        self.recorder = LiveRecorder(outputs_root)
        self._lock = threading.Lock()  # what the stream and the recorder hold
        self._queue_lock = threading.Lock()  # the audio waiting for the model thread
        self._pending: deque[np.ndarray] = deque()
        self._pending_samples = 0
        self._accepted = 0  # samples at the microphone's rate taken for the stream
        self.dropped_s = 0.0
        """Seconds of audio dropped because the server was too busy."""
        self._arrived = 0  # samples at the microphone's rate that reached :meth:`feed`
        self._first_feed: tuple[float, float] | None = None  # when the first piece arrived, and its length (s)
        self._hops: deque[LiveHop] = deque(maxlen=int(np.ceil(LIVE_CHART_S / LIVE_HOP_S)) + 2)
        self._finals: deque[LiveFinal] = deque(maxlen=LIVE_FINALS_KEPT)
        self._current_event: dict[str, Any] | None = None
        self.closing = False
        self.closed = False
        self.limit_reached = False
        self.error: PageMessage | None = None
        self._saved: tuple[Path, int, int, int] | None = None  # folder, events, samples, utterances then
        self.last_feed = time.monotonic()
        self.version = 0
        """Changes whenever what the page shows changes."""
        self.drawn_version = -1
        """The version the page last drew (the refresh draws only what changed)."""

    # ------------------------------------------------------------------ audio in
    def feed(self, samples: np.ndarray) -> None:
        """Queue the microphone's next mono float32 samples (at ``sample_rate``) for the stream."""
        with self._queue_lock:
            self.last_feed = time.monotonic()
            if self._first_feed is None:
                self._first_feed = (self.last_feed, len(samples) / self.sample_rate)
            self._arrived += len(samples)
            if self.closing or self.limit_reached:
                return
            room = int(round(self.max_s * self.sample_rate)) - self._accepted
            if len(samples) >= room:
                samples = samples[:max(room, 0)]
                self.limit_reached = True
                self.version += 1
            if self._pending_samples + len(samples) > LIVE_BACKLOG_S * self.sample_rate:
                self.dropped_s += len(samples) / self.sample_rate
                self.version += 1
                return
            if not len(samples):
                return
            self._accepted += len(samples)
            self._pending.append(samples)
            self._pending_samples += len(samples)
        model_thread().submit(self._take_pending)

    def close(self) -> None:
        """The recording stopped: the audio still queued, then the last utterance's final; waits for them."""
        with self._queue_lock:
            if self.closing:
                return
            self.closing = True
        model_thread().submit(self._finish).result()

    def wait(self) -> None:
        """Wait until the stream has taken every piece queued so far."""
        model_thread().submit(self._take_pending).result()

    def _take_pending(self) -> None:
        """On the model thread: push what is queued, in order (the lock is let go between pieces,
        so the page can be drawn meanwhile)."""
        while True:
            with self._queue_lock:
                if not self._pending:
                    return
                samples = self._pending.popleft()
                self._pending_samples -= len(samples)
            with self._lock:
                if self.closed:
                    continue
                try:
                    if self.stream is None:
                        self.stream = self._open_stream()
                    events = self.stream.push(samples)
                    self.recorder.add_audio(self._resampler(samples) if self._resampler is not None else samples)
                    self._take(events)
                except Exception as exc:  # shown in the page; the session stops taking audio
                    self._fail(exc)

    def _finish(self) -> None:
        self._take_pending()
        with self._lock:
            if self.closed:
                return
            try:
                if self.stream is not None:
                    events = self.stream.close()
                    if self._resampler is not None:
                        self.recorder.add_audio(self._resampler(np.zeros(0, np.float32), last=True))
                    self._take(events)
            except Exception as exc:
                self._fail(exc)
            self.closed = True
            self.version += 1

    def _open_stream(self) -> "EmotionStream":
        window_s = min(LIVE_WINDOW_S, self.model.window_samples / SAMPLE_RATE)
        return self.model.stream(sample_rate=self.sample_rate, hop_s=LIVE_HOP_S, window_s=window_s, embeddings=True,
                                 name=MICROPHONE)

    def _fail(self, exc: Exception) -> None:
        from .messages import page_error

        log.warning("live session failed: %s", exc)
        self.error = page_error(exc, MICROPHONE, max_duration_s=self.max_s)
        self.closed = True
        self.version += 1

    def _take(self, events: list["StreamEvent"]) -> None:
        self.recorder.add_events(events)
        for event in events:
            if event.type in ("emotion", "silence"):
                probabilities = (np.array([event.scores.get(name, 0.0) for name in self.labels], np.float32)
                                 if event.scores is not None else None)
                self._current_event = event.to_dict(include_embedding=False)
                self._hops.append(LiveHop(event.end_s, probabilities))
            elif event.type == "utterance":
                self._finals.append(LiveFinal(event.start_s, event.end_s, event.emotion, event.emotion_zh, event.emoji,
                                              event.confidence))
        if events:
            self.version += 1

    # ------------------------------------------------------------------ save
    def save(self) -> Path:
        """Save the session so far as ``live_YYYYMMDD_HHMMSS`` (the audio queued until now included;
        unchanged since the last save: that folder)."""
        self.wait()
        with self._lock:
            recorder = self.recorder
            state = (recorder.events, recorder.samples)
            if self._saved is None or self._saved[1:3] != state:
                self._saved = (recorder.save(), *state, recorder.utterances)
                self.version += 1
            return self._saved[0]

    def discard(self) -> None:
        """End the session and remove its working files (a saved run stays)."""
        with self._queue_lock:
            self.closing = True
            self._pending.clear()
            self._pending_samples = 0
        with self._lock:
            self.closed = True
            self.recorder.discard()

    # ------------------------------------------------------------------ what is shown
    @property
    def position_s(self) -> float:
        """Seconds of audio the stream has taken (16 kHz)."""
        return self.recorder.duration_s

    def missing(self) -> tuple[float, float]:
        """Seconds of the recording that never arrived, and the recording's length by the clock.

        Gradio's streaming microphone sends a piece every 0.1 s and the server keeps only the newest
        piece that waits (gradio/routes.py, ``/stream/{event_id}``): when the browser, the network or
        the server falls behind, pieces are lost before this session sees them. The clock time from
        the first piece to the last, against the audio that arrived, shows how much."""
        if self._first_feed is None:
            return 0.0, 0.0
        started, first_s = self._first_feed
        recorded = self.last_feed - started + first_s
        return max(0.0, recorded - self._arrived / self.sample_rate), recorded

    def snapshot(self) -> LiveSnapshot:
        missed, recorded = self.missing()
        with self._lock:
            saved = self._saved
            return LiveSnapshot(
                labels=list(self.labels), current_event=self._current_event, hops=list(self._hops),
                finals=list(self._finals), utterances=self.recorder.utterances, position_s=self.recorder.duration_s,
                sample_rate=self.sample_rate, closed=self.closed, limit_reached=self.limit_reached,
                saved=saved[0] if saved else None, saved_utterances=saved[3] if saved else 0,
                saved_s=saved[2] / SAMPLE_RATE if saved else 0.0, error=self.error, model_name=self.model_name,
                dropped_s=self.dropped_s, missed_s=missed, recorded_s=recorded)


def discard_session(value: Any) -> None:
    """``gr.State``'s delete callback: a browser session that is gone leaves no working files."""
    if isinstance(value, LiveSession):
        value.discard()
