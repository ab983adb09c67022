"""Live emotion: audio pushed as it arrives, events out as soon as they are known.

Two passes over the same audio, as FunASR's two-pass ASR does:

- **provisional** ``emotion`` events every ``hop_s`` over the last ``window_s`` of audio, when
  the window holds at least ``min_speech_s`` of speech (else a ``silence`` event); the label
  follows the windows with hysteresis (:class:`~emotion2vec_plus.smoothing.LabelHysteresis`) so
  it does not flicker, and an ``emotion.changed`` event marks each change;
- **finals**: ``speech.start`` / ``speech.end`` from Silero VAD run on each 32 ms chunk as it
  arrives, and an ``utterance`` event for every utterance, scored whole exactly as the offline
  ``predict`` scores it as a segment (the same planner, :class:`~emotion2vec_plus.segmentation.SegmentPlanner`,
  decides it the moment the pause after it reaches ``min_pause_s``). Neighbours whose emotions
  look alike across a short pause are one utterance offline
  (:class:`~emotion2vec_plus.segmentation.UtteranceMerger`), so an utterance's final waits until
  the pause after it reaches ``merge_pause_s`` (0.6 s), or until the next utterance, scored,
  proves unlike it; a merged group's final covers it all.

Any input rate is resampled to 16 kHz in a stream (soxr). Memory is bounded: the audio kept is the
last window, or the utterance in progress and the finished ones it may still merge with (at most
about three model windows), and no event is
kept after it is returned.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np

from .audio import SAMPLE_RATE, AudioInput, StreamResampler, describe_source, stream_audio
from .errors import InvalidSamplesError, ModelError
from .labels import Label
from .segmentation import Scored, SegmentPlanner, UtteranceMerger, merged_piece
from .smoothing import SWITCH_MARGIN, LabelHysteresis
from .vad import CHUNK_SAMPLES, SpeechTrack, VadStream



class StreamingModel(Protocol):
    """What a stream needs of its model (:class:`~emotion2vec_plus.inference.Emotion2VecPlus` has it)."""

    model_name: str
    window_samples: int
    min_pause_s: float
    merge_pause_s: float
    merge_similarity: float
    segment_context_s: float
    max_duration_s: float | None
    has_head: bool
    labels: list[Label]

    def alike_scores(self, embeddings: np.ndarray) -> np.ndarray: ...

    def score_samples(self, pieces: Sequence[np.ndarray], speech: Sequence[SpeechTrack | None] | None = None
                      ) -> tuple[np.ndarray, np.ndarray]: ...

#: Event types, in the order they can occur for one stretch of audio.
EVENT_TYPES: tuple[str, ...] = ("speech.start", "emotion", "emotion.changed", "silence", "speech.end", "utterance")
#: Probability at which a 32 ms chunk counts as speech for a provisional window.
_SPEECH_PROBABILITY = 0.5


@dataclass
class StreamEvent:
    """One event of a live stream. Times are audio time (seconds since the stream's first sample).

    ``emotion`` (provisional, every hop), ``emotion.changed`` (the provisional label changed),
    ``silence`` (a hop whose window holds too little speech), ``speech.start`` / ``speech.end``
    (voice activity), ``utterance`` (final: one utterance scored whole, as offline ``predict``
    scores it). Events without an emotion have ``emotion``, ``confidence`` and ``scores`` ``None``.
    """

    type: str
    seq: int
    start_s: float
    end_s: float
    final: bool = False
    emotion: str | None = None
    emotion_zh: str | None = None
    emoji: str | None = None
    confidence: float | None = None
    scores: dict[str, float] | None = None
    speech_s: float | None = None
    """``utterance``: seconds of speech scored."""
    embedding: np.ndarray | None = None
    """``utterance`` with embeddings asked for: the utterance's (D,) embedding."""

    def to_dict(self, include_embedding: bool = True) -> dict[str, Any]:
        """The JSON form (``docs/streaming.md``)."""
        data: dict[str, Any] = {
            "type": self.type, "seq": self.seq, "start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3),
            "final": self.final, "emotion": self.emotion, "emotion_zh": self.emotion_zh, "emoji": self.emoji,
            "confidence": self.confidence, "scores": self.scores,
        }
        if self.speech_s is not None:
            data["speech_s"] = round(self.speech_s, 3)
        if include_embedding and self.embedding is not None:
            data["embedding"] = self.embedding.astype(float).tolist()
        return data


class EmotionStream:
    """A live stream over one model (``model.stream(...)``): ``push`` samples as they arrive and
    get the events they complete; ``close`` at the end (or use it as a context manager).

    Args:
        model: the :class:`~emotion2vec_plus.inference.Emotion2VecPlus` that scores.
        sample_rate: rate of the pushed samples (e.g. 48000 from a browser, 8000 from a telephone
            line); resampled to 16 kHz in a stream.
        hop_s: a provisional event every this much audio.
        window_s: audio scored for each provisional event (the last ``window_s`` seconds).
        min_speech_s: speech a window must hold to be scored (else a ``silence`` event).
        embeddings: give each ``utterance`` event its embedding.
        margin, hold: the provisional label changes when another class has led it by ``margin``
            for ``hold`` consecutive hops.
        name: what errors call the stream.
    """

    def __init__(self, model: StreamingModel, *, sample_rate: int = SAMPLE_RATE, hop_s: float = 0.5,
                 window_s: float = 3.0, min_speech_s: float = 1.0, embeddings: bool = False,
                 margin: float = SWITCH_MARGIN, hold: int = 2, name: str = "<stream>") -> None:
        if not 0.05 <= hop_s <= 10:
            raise ValueError(f"hop_s must be between 0.05 and 10 s, got {hop_s}")
        if not hop_s <= window_s <= model.window_samples / SAMPLE_RATE:
            raise ValueError(f"window_s must be between hop_s ({hop_s} s) and the model's window "
                             f"({model.window_samples / SAMPLE_RATE:g} s), got {window_s}")
        if not 0 <= min_speech_s <= window_s:
            raise ValueError(f"min_speech_s must be between 0 and window_s ({window_s} s), got {min_speech_s}")
        if not 1000 <= int(sample_rate) <= 384000:
            raise ValueError(f"sample_rate must be between 1000 and 384000 Hz, got {sample_rate}")
        if not model.has_head:
            raise ModelError(f"model {model.model_name!r} has no emotion classifier head; a live stream needs one")
        self.model = model
        self.name = name
        self.sample_rate = int(sample_rate)
        self.hop = int(round(hop_s * SAMPLE_RATE))
        self.window = int(round(window_s * SAMPLE_RATE))
        self.min_speech_chunks = int(np.ceil(min_speech_s * SAMPLE_RATE / CHUNK_SAMPLES))
        self.embeddings = embeddings
        self._labels: list[Label] = model.labels
        self._resampler = None if self.sample_rate == SAMPLE_RATE else StreamResampler(self.sample_rate, name)
        self._vad = VadStream(eager=True)
        self._planner = SegmentPlanner(model.window_samples, min_pause_s=model.min_pause_s,
                                       context_s=model.segment_context_s)
        self._merger = (UtteranceMerger(model.window_samples, merge_pause_s=model.merge_pause_s,
                                        similarity=model.merge_similarity) if model.merge_pause_s > 0 else None)
        self._hysteresis = LabelHysteresis(margin, hold)
        self._label: int | None = None
        self._buffer = np.zeros(0, np.float32)
        self._buffer_start = 0  # position (16 kHz samples) of self._buffer[0]
        self._received = 0  # 16 kHz samples received so far
        self._next_hop = self.hop
        self._chunk_speech = np.zeros(0, bool)  # speech flags of the last chunks (a window's worth)
        self._chunks = 0  # chunks whose probability is known
        self._speech = np.zeros(0, np.float32)  # probabilities of the chunks from self._buffer_start's on
        self._speech_first = 0  # chunk index of self._speech[0]
        self._in_speech = False
        self._seq = 0
        self.closed = False

    # ----------------------------------------------------------------- public
    @property
    def position_s(self) -> float:
        """Audio received so far, in seconds (16 kHz)."""
        return self._received / SAMPLE_RATE

    def push(self, samples: np.ndarray | Sequence[float]) -> list[StreamEvent]:
        """Feed the next samples (float in [-1, 1] or int16, mono, or (N, channels) to be
        downmixed) at the stream's ``sample_rate``; the events they complete, in order."""
        if self.closed:
            raise RuntimeError(f"{self.name}: the stream is closed")
        mono = _mono_float32(samples, self.name)
        if self._resampler is not None:
            mono = self._resampler(mono)
        return self._take(mono)

    def close(self) -> list[StreamEvent]:
        """End the stream: the events of what is still open (the last utterance's final)."""
        if self.closed:
            return []
        events = self._take(self._resampler(np.zeros(0, np.float32), last=True)) if self._resampler else []
        self.closed = True
        rest = self._vad.finish()
        events += self._on_probabilities(rest)
        events += self._finals(self._planner.finish(self._received))
        if self._merger is not None:
            events += self._utterances(self._merger.finish())
        if self._in_speech:
            events.append(self._event("speech.end", self._buffer_start + len(self._buffer)))
            self._in_speech = False
        return events

    def __enter__(self) -> "EmotionStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- internals
    def _take(self, samples: np.ndarray) -> list[StreamEvent]:
        """16 kHz samples, in steps that end at each hop boundary."""
        events: list[StreamEvent] = []
        position = 0
        while position < len(samples):
            step = min(len(samples) - position, self._next_hop - self._received)
            block = samples[position : position + step]
            position += step
            self._buffer = np.concatenate([self._buffer, block])
            self._received += len(block)
            self._vad.push(block)
            events += self._on_probabilities(self._vad.drain())
            if self._received == self._next_hop:
                events += self._provisional()
                self._next_hop += self.hop
            self._trim()
        return events

    def _on_probabilities(self, probabilities: np.ndarray) -> list[StreamEvent]:
        if not len(probabilities):
            return []
        self._chunk_speech = np.concatenate([self._chunk_speech, probabilities >= _SPEECH_PROBABILITY])
        self._chunk_speech = self._chunk_speech[-(self.window // CHUNK_SAMPLES + 1):]
        self._chunks += len(probabilities)
        self._speech = np.concatenate([self._speech, probabilities.astype(np.float32)])
        events: list[StreamEvent] = []
        tracker = self._planner.tracker
        for p in probabilities:  # one at a time: speech.start is known chunk by chunk
            pieces = self._planner.push(p[None])
            if not self._in_speech and tracker.start is not None:
                until = tracker.speech_until()
                if until is not None and until - tracker.start >= tracker.min_speech:
                    self._in_speech = True
                    events.append(self._event("speech.start", tracker.open_start))
            events += self._finals(pieces)
            if self._merger is not None:
                next_start = self._planner.next_speech_from()
                # a cut utterance's next part joins nothing before it: the group before the cut is done
                events += self._utterances(self._merger.finish() if next_start is None
                                           else self._merger.close_before(next_start))
        return events

    def _finals(self, pieces) -> list[StreamEvent]:
        """``speech.end`` for the utterance the planner closed, if any, then an ``utterance`` event
        for each piece it decided (an utterance, or a part of a long one)."""
        events: list[StreamEvent] = []
        for region in self._planner.regions:
            if self._in_speech:
                events.append(self._event("speech.end", region.end, start=region.start))
                self._in_speech = False
        self._planner.regions.clear()
        if pieces:
            probs, embeddings = self._score(pieces)
            alike = self.model.alike_scores(embeddings) if self._merger is not None else probs
            scored = [Scored(piece, row, (reported, embedding))
                      for piece, row, reported, embedding in zip(pieces, alike, probs, embeddings)]
            if self._merger is None:
                events += self._utterances([[item] for item in scored])
            else:
                events += self._utterances([group for item in scored for group in self._merger.push(item)])
        return events

    def _score(self, pieces) -> tuple[np.ndarray, np.ndarray]:
        samples = [self._buffer[p.start - self._buffer_start : p.end - self._buffer_start] for p in pieces]
        return self.model.score_samples(samples, [self._track(p.start) for p in pieces])

    def _utterances(self, groups: list[list[Scored]]) -> list[StreamEvent]:
        """An ``utterance`` event (final) for each closed group: a segment as scored, or alike
        neighbours scored again as one piece."""
        events = []
        for group in groups:
            if len(group) == 1:
                piece, (row, embedding) = group[0].piece, group[0].payload
            else:
                piece = merged_piece(group)
                probs, embeddings = self._score([piece])
                row, embedding = probs[0], embeddings[0]
            events.append(self._event("utterance", piece.speech_end, piece.speech_start, row, final=True,
                                      speech_s=piece.speech / SAMPLE_RATE,
                                      embedding=embedding if self.embeddings else None))
        return events

    def _provisional(self) -> list[StreamEvent]:
        end = self._received
        start = max(0, end - self.window)
        speech_chunks = int(self._chunk_speech[-(self.window // CHUNK_SAMPLES):].sum())
        if speech_chunks < self.min_speech_chunks:
            self._hysteresis.update(None)
            self._label = None
            return [self._event("silence", end, start=start)]
        probs, _ = self.model.score_samples([self._buffer[start - self._buffer_start : end - self._buffer_start]],
                                            [self._track(start)])
        label = self._hysteresis.update(probs[0])
        events = [self._event("emotion", end, start=start, probs=probs[0], label=label)]
        if label != self._label:
            events.append(self._event("emotion.changed", end, start=start, probs=probs[0], label=label))
            self._label = label
        return events

    def _trim(self) -> None:
        """Keep only what a window, the utterance in progress or the group it may join can still need."""
        keep_from = min(self._received - self.window, self._planner.needed_from())
        if self._merger is not None and self._merger.open:
            keep_from = min(keep_from, self._merger.open[0].piece.start)
        drop = keep_from - self._buffer_start
        if drop > SAMPLE_RATE:  # in steps of at least a second: fewer copies
            self._buffer = self._buffer[drop:].copy()
            self._buffer_start += drop
            chunks = self._buffer_start // CHUNK_SAMPLES - self._speech_first
            self._speech = self._speech[chunks:].copy()
            self._speech_first += chunks

    def _track(self, start: int) -> SpeechTrack:
        """The speech probabilities known so far, as seen from a piece starting at sample ``start``
        (what a model that pools only speech needs; the same numbers as an offline pass)."""
        return SpeechTrack(self._speech, self._speech_first * CHUNK_SAMPLES - start)

    def _event(self, kind: str, end: int, start: int | None = None, probs: np.ndarray | None = None, *,
               label: int | None = None, final: bool = False, speech_s: float | None = None,
               embedding: np.ndarray | None = None) -> StreamEvent:
        self._seq += 1
        event = StreamEvent(type=kind, seq=self._seq, start_s=(end if start is None else start) / SAMPLE_RATE,
                            end_s=end / SAMPLE_RATE, final=final, speech_s=speech_s, embedding=embedding)
        if probs is not None:
            best = int(np.argmax(probs)) if label is None else label
            chosen = self._labels[best]
            event.emotion, event.emotion_zh, event.emoji = chosen.english, chosen.chinese, chosen.emoji
            event.confidence = float(probs[best])
            event.scores = {lab.english: float(p) for lab, p in zip(self._labels, probs)}
        return event


def _mono_float32(samples: np.ndarray | Sequence[float], name: str) -> np.ndarray:
    """Float32 mono in [-1, 1] from float or integer samples, (N,) or (N, channels)."""
    array = np.asarray(samples)
    if array.ndim == 2:
        array = array.mean(axis=1) if array.dtype.kind == "f" else array.astype(np.float64).mean(axis=1)
    elif array.ndim != 1:
        raise ValueError(f"{name}: samples must be (N,) or (N, channels), got shape {array.shape}")
    if array.dtype.kind in "iu":
        scale = float(2 ** (8 * array.dtype.itemsize - 1))
        offset = scale if array.dtype.kind == "u" else 0.0
        array = (array.astype(np.float64) - offset) / scale
    elif array.dtype.kind != "f":
        raise ValueError(f"{name}: samples must be numbers, got {array.dtype}")
    array = np.asarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        bad = int(np.flatnonzero(~np.isfinite(array))[0])
        raise InvalidSamplesError(name, f"sample {bad} of the pushed block is NaN or infinite")
    return array


def stream_file(model: StreamingModel, audio: AudioInput, *, realtime: bool = False, block_s: float = 0.1,
                name: str | None = None, **options: Any) -> Iterator[StreamEvent]:
    """The events of a file (or any input ``predict`` takes) streamed through ``model.stream``:
    decoded block by block in a thread, pushed in blocks of ``block_s``, paced at real time when
    ``realtime`` (as a live source would deliver it)."""
    source = describe_source(audio, name)
    blocks: queue.Queue = queue.Queue(maxsize=64)
    stop = threading.Event()
    block = int(round(block_s * SAMPLE_RATE))

    def decode() -> None:
        pending = [np.zeros(0, np.float32)]

        def take(samples: np.ndarray) -> None:
            pending[0] = np.concatenate([pending[0], samples])
            while len(pending[0]) >= block:
                if stop.is_set():
                    raise _Stopped()
                blocks.put(pending[0][:block])
                pending[0] = pending[0][block:]
        try:
            stream_audio(audio, take, name=name, max_duration_s=model.max_duration_s)
            if len(pending[0]):
                blocks.put(pending[0])
            blocks.put(None)
        except _Stopped:
            pass
        except BaseException as exc:  # handed to the consumer, raised there
            blocks.put(exc)

    thread = threading.Thread(target=decode, name="stream-file-decoder", daemon=True)
    thread.start()
    stream = EmotionStream(model, name=source, **options)
    started = time.perf_counter()
    try:
        while True:
            item = blocks.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            if realtime:
                delay = started + stream.position_s + len(item) / SAMPLE_RATE - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            yield from stream.push(item)
        yield from stream.close()
    finally:
        stop.set()
        while thread.is_alive():  # let a blocked put finish
            try:
                blocks.get_nowait()
            except queue.Empty:
                thread.join(0.05)


class _Stopped(Exception):
    """The consumer stopped reading: the decoder thread ends."""

