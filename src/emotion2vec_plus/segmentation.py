"""How an input is cut into the pieces the encoder scores: its utterances.

An utterance is a stretch of speech between pauses of at least ``min_pause_s`` (0.3 s by default),
found by the voice-activity detector (:mod:`emotion2vec_plus.vad`). Each utterance is scored
whole and becomes one of the result's segments; two neighbours whose pause is shorter than
``merge_pause_s`` (0.6 s) and whose emotions look alike (:class:`UtteranceMerger`) are one
segment, scored whole again; only an utterance longer than the model's window
(``window_s``) is split, at its quietest points (the lowest speech probability), into parts of at
most one window. The utterance-level result of an input longer than the window pools its
segments, each weighted by its speech time. An input no longer than the window is also scored
whole, as FunASR scores it (its own numbers exactly); when it holds several utterances they are
scored as well and reported as its segments. (``plan_input(..., whole_within_window=False)``
scores it by its utterances like a longer one, so an utterance alone and the same utterance in a
recording are scored alike.)

This is what keeps a recording's emotion over time the one a listener would give it: heads are
trained on clips of one sentence, and a window packing several utterances of different emotions
into one vector is outside what they have seen.

The planning is online (:class:`SegmentPlanner`): fed the speech probabilities as they come, it
gives each segment as soon as it is decided (a pause of ``min_pause_s`` after it, or, inside a
very long utterance, as soon as a cut is certain). The offline plan runs the same planner over the
whole input, so a live stream's finished utterances are exactly an offline pass's segments.

Merging needs the neighbours' scores, so it runs after they are scored (:class:`UtteranceMerger`,
online too: a live stream holds an utterance's final until the pause after it reaches
``merge_pause_s`` or its next neighbour proves unlike it). A sentence read with short pauses
inside it is one clip's emotion; cut at every 0.3 s pause its parts are each scored on less
speech than the models were trained on, and at a fixed 0.6 s the pause between two sentences of
different emotions is often shorter (``bench/segmentation_merge.py``).

For frame-level output the pauses between segments are pieces too (weight 0), so frames cover the
whole input. Memory does not grow with an input's length (:func:`load_input`): an input longer
than :data:`HOLD_IN_MEMORY_S` is decoded twice, streamed both times: once through the
voice-activity detector to plan its pieces, once to cut them out as they pass and score them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .audio import (DEFAULT_MAX_DURATION_S, MIN_SAMPLES, SAMPLE_RATE, Audio, AudioInfo, AudioInput, load_audio,
                    replayable_input, stream_audio)
from .vad import CHUNK_SAMPLES, RegionTracker, SpeechRegion, VadStream, speech_probabilities

#: Inputs up to this long are decoded into memory whole; longer ones are streamed (:class:`LongAudio`).
HOLD_IN_MEMORY_S = 600.0
#: A pause at least this long separates two utterances.
MIN_PAUSE_S = 0.3
#: Neighbouring utterances closer than this whose emotions look alike are one segment (0: never merge).
MERGE_PAUSE_S = 0.6
#: Emotions look alike when the cosine similarity of the two class-score vectors is at least this.
MERGE_SIMILARITY = 0.8
#: Pause scored with an utterance on each side, at most (see :class:`SegmentPlanner`).
SEGMENT_CONTEXT_S = 0.5
#: Chunks (32 ms each) on either side averaged when looking for the quietest point of an utterance.
_QUIET_SMOOTH_CHUNKS = 2


@dataclass(frozen=True)
class Piece:
    """A stretch of one input that the encoder sees whole, in samples at 16 kHz."""

    start: int
    end: int
    speech: int
    """Samples of speech inside (the pooling weight); 0 for a pause kept only for frame output."""
    speech_start: int
    speech_end: int
    """Where the speech inside begins and ends (the reported segment)."""


def _segment(start: int, end: int) -> Piece:
    return Piece(start, end, end - start, start, end)


def _equal_parts(start: int, end: int, most: int) -> list[tuple[int, int]]:
    """[start, end) in near-equal consecutive parts of at most ``most`` samples."""
    count = max(1, math.ceil((end - start) / most))
    size = math.ceil((end - start) / count)
    return [(a, min(a + size, end)) for a in range(start, end, size)]


class SegmentPlanner:
    """The segments of a recording, decided online from its speech probabilities.

    ``push`` the probabilities of consecutive 32 ms chunks (:class:`~emotion2vec_plus.vad.VadStream`)
    as they come; it returns the segments decided so far (:class:`Piece`, in time order), and
    ``finish`` the rest once the recording's length is known. A segment is an utterance (speech
    between pauses of at least ``min_pause_s``); an utterance longer than the window is cut at
    its quietest points into parts: while more than two windows of it remain, a cut at the
    quietest point between half a window and a window from the last cut; then one cut at the
    quietest point that leaves both parts at most a window long and at least a quarter of what
    remained. Every cut depends only on the audio before it plus what proves the utterance goes
    on, so it is made as early online as offline.

    Each utterance is scored with up to ``context_s`` of the pause before it and after it (the
    models were trained on clips with some silence around the speech; scoring the bare speech
    loses accuracy: ``bench/segmentation.py``), never reaching into the neighbour's share of a
    pause, and after it only as much as is known when the utterance ends (``min_pause_s`` less
    the detector's padding), so a live stream scores the same samples. The parts of a cut
    utterance meet at the cut without context, and the window bounds the whole scored piece
    (an utterance nearly a window long gets less context).
    """

    def __init__(self, window_samples: int, *, min_pause_s: float = MIN_PAUSE_S,
                 context_s: float = SEGMENT_CONTEXT_S) -> None:
        if window_samples < MIN_SAMPLES:
            raise ValueError(f"window_samples must be at least {MIN_SAMPLES}, got {window_samples}")
        self.context = int(round(context_s * SAMPLE_RATE))
        self.window = window_samples
        #: The longest part of an utterance.
        self.longest = window_samples
        self.tracker = RegionTracker(min_silence_s=min_pause_s)
        self._probabilities = np.zeros(0, np.float32)
        self._offset = 0  # chunk index of self._probabilities[0]
        self._cut: int | None = None  # where the open utterance's next part starts, once cut
        self._scored_until = 0  # end of the last piece given out: context never reaches back past it
        #: Every utterance (speech region) closed so far, uncut.
        self.regions: list[SpeechRegion] = []

    def push(self, probabilities: np.ndarray) -> list[Piece]:
        """Take the next chunks' probabilities; the segments decided by them."""
        new = np.asarray(probabilities, dtype=np.float32).reshape(-1)
        self._probabilities = np.concatenate([self._probabilities, new])
        pieces: list[Piece] = []
        for p in new:
            for region in self.tracker.push(p[None]):
                pieces += self._close(region, total=None)
            pieces += self._early_cuts()
        self._forget()
        return pieces

    def finish(self, num_samples: int) -> list[Piece]:
        """End of the recording: the segments still open."""
        pieces: list[Piece] = []
        for region in self.tracker.finish(num_samples):
            pieces += self._close(region, total=num_samples)
        return pieces

    def needed_from(self) -> int:
        """The earliest sample a segment not given out yet can begin at (what a live stream must
        still hold): the utterance in progress, or the context before one starting now."""
        if self._cut is not None:
            return self._cut
        start = self.tracker.open_start
        if start is None:
            start = self.tracker.position - self.tracker.pad
        return max(self._scored_until, start - self.context)

    def next_speech_from(self) -> int | None:
        """The earliest a segment not given out yet can begin its speech (``speech_start``), or None
        when the next one continues an utterance cut at its quietest point (no pause before it)."""
        if self._cut is not None:
            return None
        start = self.tracker.open_start
        return start if start is not None else self.tracker.position - self.tracker.pad

    def _piece(self, start: int, end: int, *, first: bool, last: bool, total: int | None = None) -> Piece:
        """A part [start, end) of an utterance, with its context where it meets a pause (as much
        as the window leaves room for)."""
        context = min(self.context, (self.window - (end - start)) // 2)
        low = max(self._scored_until, start - context) if first else start
        if last:
            known = self.tracker.position if total is None else total
            high = min(end + context, known)
        else:
            high = end
        self._scored_until = high
        return Piece(low, high, end - start, start, end)

    def _early_cuts(self) -> list[Piece]:
        """Parts of the open utterance that are certain: more than two parts' worth of it is speech."""
        open_start = self.tracker.open_start
        if open_start is None:
            return []
        start = open_start if self._cut is None else self._cut
        certain = self.tracker.speech_until()
        pieces = []
        while certain is not None and certain - start > 2 * self.longest and self._have(start + self.longest):
            cut = self._quietest(start + self.longest // 2, start + self.longest)
            pieces.append(self._piece(start, cut, first=self._cut is None, last=False))
            start = self._cut = cut
        return pieces

    def _close(self, region: SpeechRegion, total: int | None) -> list[Piece]:
        self.regions.append(region)
        first = self._cut is None
        start = region.start if first else self._cut
        self._cut = None
        end = region.end
        parts = []
        while end - start > 2 * self.longest:
            cut = self._quietest(start + self.longest // 2, start + self.longest)
            parts.append((start, cut))
            start = cut
        if end - start > self.longest:
            quarter = (end - start) // 4
            cut = self._quietest(max(end - self.longest, start + quarter), min(start + self.longest, end - quarter))
            parts.append((start, cut))
            start = cut
        parts.append((start, end))
        return [self._piece(a, b, first=first and i == 0, last=i == len(parts) - 1, total=total)
                for i, (a, b) in enumerate(parts)]

    def _have(self, position: int) -> bool:
        """Are the probabilities around ``position`` (for the smoothing) already known?"""
        return position // CHUNK_SAMPLES + _QUIET_SMOOTH_CHUNKS < self.tracker.chunks

    def _quietest(self, low: int, high: int) -> int:
        """The middle of the chunk whose middle lies in [low, high] with the lowest speech
        probability averaged over its neighbours (ties: the lowest of its own, then the earliest)."""
        first = max(0, -(-(low - CHUNK_SAMPLES // 2) // CHUNK_SAMPLES))
        last = (high - CHUNK_SAMPLES // 2) // CHUNK_SAMPLES
        if last < first:
            return (low + high) // 2
        known = self.tracker.chunks  # what an online caller has seen by now, whatever was pushed at once
        candidates = []
        for index in range(first, last + 1):
            lo = max(index - _QUIET_SMOOTH_CHUNKS, self._offset, 0)
            hi = min(index + _QUIET_SMOOTH_CHUNKS + 1, known)
            around = self._probabilities[lo - self._offset : hi - self._offset]
            own = self._probabilities[index - self._offset] if index < known else 1.0
            candidates.append((round(float(around.mean()), 6) if hi > lo else 1.0, float(own), index))
        best = min(candidates)[2]
        return best * CHUNK_SAMPLES + CHUNK_SAMPLES // 2

    def _forget(self) -> None:
        """Drop probabilities no cut can need again (before the open utterance, or recent ones only)."""
        start = self.tracker.open_start if self._cut is None else self._cut
        keep_from = (start if start is not None else self.tracker.position) // CHUNK_SAMPLES - 2 * _QUIET_SMOOTH_CHUNKS
        drop = keep_from - self._offset
        if drop > 4096:
            self._probabilities = self._probabilities[drop:].copy()
            self._offset += drop


@dataclass
class Scored:
    """A segment and its class scores (and whatever the caller keeps with it, e.g. its encoding)."""

    piece: Piece
    scores: np.ndarray
    payload: object = None


def merged_piece(group: Sequence[Scored]) -> Piece:
    """The one piece a group of neighbouring segments is scored as: from the first's start (with
    its context) to the last's end, weighted by the speech of all of them."""
    first, last = group[0].piece, group[-1].piece
    return Piece(first.start, last.end, sum(item.piece.speech for item in group), first.speech_start, last.speech_end)


def scores_alike(first: np.ndarray, second: np.ndarray, similarity: float = MERGE_SIMILARITY) -> bool:
    """Do two class-score vectors look alike (cosine similarity at least ``similarity``)?"""
    a, b = np.asarray(first, np.float64), np.asarray(second, np.float64)
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return norm > 0 and float(a @ b) / norm >= similarity


class UtteranceMerger:
    """Groups of neighbouring segments to score as one, decided online from their scores.

    ``push`` each scored segment (:class:`Scored`, in time order); a segment joins the open group
    when the pause before it is shorter than ``merge_pause_s``, its class scores look alike with
    the previous segment's (:func:`scores_alike`) and the group with it still fits the window;
    otherwise the open group is closed and returned, and the segment starts the next one. Parts
    of one utterance cut at its quietest points (no pause between them) are never merged back.
    ``close_before(position)``: the open group is closed too once no segment can start close
    enough to join it (the next speech cannot start before ``position``); ``finish`` at the end.
    A group of one is the segment as it was scored; a longer one is scored again as
    :func:`merged_piece`. Offline and live runs get the same groups: a decision depends only on
    the segments and their scores, never on when they arrived.
    """

    def __init__(self, window_samples: int, *, merge_pause_s: float = MERGE_PAUSE_S,
                 similarity: float = MERGE_SIMILARITY) -> None:
        self.window = window_samples
        self.merge_pause = int(round(merge_pause_s * SAMPLE_RATE))
        self.similarity = similarity
        #: The group that later segments may still join.
        self.open: list[Scored] = []

    def push(self, item: Scored) -> list[list[Scored]]:
        """Take the next segment; the group it closed, if any."""
        if self.open and self._joins(item):
            self.open.append(item)
            return []
        closed, self.open = ([self.open] if self.open else []), [item]
        return closed

    def close_before(self, position: int) -> list[list[Scored]]:
        """No segment can start before ``position``: the open group, if none can join it now."""
        if self.open and position - self.open[-1].piece.speech_end >= self.merge_pause:
            return self.finish()
        return []

    def finish(self) -> list[list[Scored]]:
        """End of the input: the open group."""
        closed, self.open = ([self.open] if self.open else []), []
        return closed

    def _joins(self, item: Scored) -> bool:
        last = self.open[-1]
        pause = item.piece.speech_start - last.piece.speech_end
        return (0 < pause < self.merge_pause and item.piece.end - self.open[0].piece.start <= self.window
                and scores_alike(last.scores, item.scores, self.similarity))


@dataclass
class Plan:
    """What the encoder scores of one input, and how the results are put together."""

    num_samples: int
    segments: list[Piece]
    """The utterances (or their parts), in time order."""
    whole: bool
    """The input is no longer than one window and is scored whole (its utterance-level result)."""
    speech_found: bool
    regions: list[SpeechRegion] = field(default_factory=list)
    """The utterances found by the voice-activity detector (where frames are speech)."""
    pauses: list[Piece] = field(default_factory=list)
    """Frame-level output of a long input: the stretches between segments (weight 0)."""
    within_window: bool = True
    """The input is no longer than one window (whether or not it is scored whole)."""

    @property
    def whole_piece(self) -> Piece:
        return Piece(0, self.num_samples, self.num_samples, 0, self.num_samples)

    def reports_segments(self, count: int) -> bool:
        """Does a result report its ``count`` segments? Always for a long input; for a short one
        only when it holds more than one (one utterance is the whole input's result)."""
        return not self.within_window or count > 1

    @property
    def reported_segments(self) -> list[Piece]:
        """The planned segments a result reports (:meth:`reports_segments`)."""
        return self.segments if self.reports_segments(len(self.segments)) else []

    def pieces(self, segments: bool = True) -> list[Piece]:
        """Every piece to run through the encoder, in time order where it matters (frames):
        the whole input first when it is scored whole, then the reported segments (unless
        ``segments`` is False: only the whole); for a long input the segments and (frame output)
        the pauses between them, which its result is pooled from whatever ``segments`` says."""
        if self.whole:
            return [self.whole_piece, *(self.reported_segments if segments else [])]
        return sorted(self.segments + self.pauses, key=lambda piece: piece.start)


def plan_input(num_samples: int, window_samples: int, probabilities: np.ndarray, *,
               min_pause_s: float = MIN_PAUSE_S, context_s: float = SEGMENT_CONTEXT_S, frames: bool = False,
               whole_within_window: bool = True) -> Plan:
    """The plan of one input from its speech probabilities (:func:`~emotion2vec_plus.vad.speech_probabilities`).

    ``frames`` adds, for an input scored by its utterances, the pauses between its segments as
    weight-0 pieces so that frame-level output covers it all. Without any speech a long input is
    cut into equal parts weighted by length (and ``speech_found`` is False). An input within the
    window is scored whole unless ``whole_within_window`` is False: then, like a longer one, by
    its utterances (pooled by speech time), so an utterance gets the same score alone as inside a
    recording (one without speech is still scored whole).
    """
    planner = SegmentPlanner(window_samples, min_pause_s=min_pause_s, context_s=context_s)
    segments = planner.push(probabilities) + planner.finish(num_samples)
    within_window = num_samples <= window_samples
    if not segments:
        parts = [] if within_window else [_segment(a, b) for a, b in _equal_parts(0, num_samples, window_samples)]
        return Plan(num_samples, parts, within_window, speech_found=False, within_window=within_window)
    whole = within_window and whole_within_window
    plan = Plan(num_samples, segments, whole, speech_found=True, regions=planner.regions, within_window=within_window)
    if frames and not whole:
        plan.pauses = _pauses(segments, num_samples, window_samples)
    return plan


def _pauses(segments: list[Piece], n: int, window_samples: int) -> list[Piece]:
    """Weight-0 pieces for every stretch between ``segments`` (and before / after them) that the
    encoder can take (a pause shorter than one 25 ms frame is left out)."""
    out: list[Piece] = []
    position = 0
    for piece in segments + [Piece(n, n, 0, n, n)]:
        if piece.start - position >= MIN_SAMPLES:
            out.extend(Piece(a, b, 0, a, a) for a, b in _equal_parts(position, piece.start, window_samples)
                       if b - a >= MIN_SAMPLES)
        position = max(position, piece.end)
    return out


@dataclass
class LongAudio:
    """An input too long to hold in memory, as a first streamed pass over it found it: what it is,
    how long, and its speech probabilities. The samples are decoded again, piece by piece, when scored."""

    audio: AudioInput
    """The input, in a form that can be decoded again (:func:`~emotion2vec_plus.audio.replayable_input`)."""
    info: AudioInfo
    warnings: list[str]
    num_samples: int
    probabilities: np.ndarray
    """Speech probability of every 32 ms chunk (:class:`~emotion2vec_plus.vad.VadStream`): 1.8 MB for 4 hours."""
    max_duration_s: float | None

    @property
    def duration_s(self) -> float:
        """Duration at 16 kHz in seconds."""
        return self.num_samples / SAMPLE_RATE

    def stream(self, on_samples: Callable[[np.ndarray], None]) -> None:
        """Decode the input again, handing its 16 kHz blocks to ``on_samples``."""
        stream_audio(self.audio, on_samples, name=self.info.source, max_duration_s=self.max_duration_s)


def load_input(audio: AudioInput, *, sample_rate: int | None = None, name: str | None = None,
               max_duration_s: float | None = DEFAULT_MAX_DURATION_S,
               hold_in_memory_s: float = HOLD_IN_MEMORY_S) -> Audio | LongAudio:
    """Decode an input for scoring with memory bounded whatever its length.

    An input up to ``hold_in_memory_s`` long comes back decoded (:class:`~emotion2vec_plus.audio.Audio`,
    as :func:`~emotion2vec_plus.audio.load_audio` gives it). A longer encoded input is streamed through
    the voice-activity detector instead, and comes back as a :class:`LongAudio` holding its speech
    probabilities but no samples. Arrays are already in memory and always come back decoded.
    Raises what :func:`~emotion2vec_plus.audio.load_audio` raises.
    """
    if isinstance(audio, (np.ndarray, tuple)):
        return load_audio(audio, sample_rate=sample_rate, name=name, max_duration_s=max_duration_s)
    replayable = replayable_input(audio, name)
    limit = int(hold_in_memory_s * SAMPLE_RATE)
    held: list[np.ndarray] = []
    count = 0
    vad: VadStream | None = None

    def take(block: np.ndarray) -> None:
        nonlocal count, vad
        if vad is None:
            held.append(block)
            count += len(block)
            if count > limit:
                vad = VadStream()
                for part in held:
                    vad.push(part)
                held.clear()
        else:
            vad.push(block)

    streamed = stream_audio(replayable, take, sample_rate=sample_rate, name=name, max_duration_s=max_duration_s)
    if vad is None:
        return Audio(np.concatenate(held), streamed.info, streamed.warnings)
    return LongAudio(replayable, streamed.info, streamed.warnings, streamed.num_samples, vad.finish(), max_duration_s)
