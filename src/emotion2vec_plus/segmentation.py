"""How an input is cut into the pieces the encoder scores.

A clip no longer than the model's window (``window_s``) is one piece, exactly as FunASR scores it.
A longer one is cut where the speech is (:mod:`emotion2vec_plus.vad`): consecutive speech regions
are grouped into pieces of at most one window, a single region longer than a window is split
into equal parts, and each piece is weighted by the speech it holds when the per-piece results
are pooled into the utterance's. This is what keeps a long recording's emotion the one a listener
would give it: heads are trained on clips of a few seconds, and a window of 30 s of speech and
silence averaged into one vector is outside what they have seen.

For frame-level output the pauses between pieces are pieces too (weight 0), so frames cover the
whole input.

Memory does not grow with an input's length (:func:`load_input`): an input longer than
:data:`HOLD_IN_MEMORY_S` is decoded twice, streamed both times: once through the voice-activity
detector to plan its pieces, once to cut them out as they pass and score them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .audio import (DEFAULT_MAX_DURATION_S, MIN_SAMPLES, SAMPLE_RATE, Audio, AudioInfo, AudioInput, load_audio,
                    replayable_input, stream_audio)
from .vad import SpeechRegion, VadStream, speech_regions

#: Inputs up to this long are decoded into memory whole; longer ones are streamed (:class:`LongAudio`).
HOLD_IN_MEMORY_S = 600.0


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


def _equal_parts(start: int, end: int, most: int) -> list[tuple[int, int]]:
    """[start, end) in near-equal consecutive parts of at most ``most`` samples."""
    count = max(1, math.ceil((end - start) / most))
    size = math.ceil((end - start) / count)
    return [(a, min(a + size, end)) for a in range(start, end, size)]


def plan_pieces(samples: np.ndarray | int, window_samples: int, *, cover_all: bool = False,
                regions: list[SpeechRegion] | None = None) -> tuple[list[Piece], bool]:
    """The pieces of one input, in time order, and whether speech was found.

    ``samples`` are the input's 16 kHz samples, or only their number when ``regions`` are given.
    ``cover_all`` adds the pauses between speech as weight-0 pieces (frame-level output).
    ``regions`` may be given (already detected); otherwise the VAD runs on inputs longer than
    ``window_samples``. Without any speech the input is cut into equal pieces weighted by length.
    """
    n = samples if isinstance(samples, int) else len(samples)
    if n <= window_samples:
        return [Piece(0, n, n, 0, n)], True
    if regions is None:
        if isinstance(samples, int):
            raise ValueError("plan_pieces needs the samples, or the speech regions with their number")
        regions = speech_regions(samples)
    if not regions:
        return [Piece(a, b, b - a, a, b) for a, b in _equal_parts(0, n, window_samples)], False
    pieces: list[Piece] = []
    group: list[SpeechRegion] = []

    def close_group() -> None:
        if group:
            speech = sum(r.end - r.start for r in group)
            pieces.append(Piece(group[0].start, group[-1].end, speech, group[0].start, group[-1].end))
            group.clear()

    for region in regions:
        if region.end - region.start > window_samples:
            close_group()
            pieces.extend(Piece(a, b, b - a, a, b) for a, b in _equal_parts(region.start, region.end, window_samples))
        elif group and region.end - group[0].start > window_samples:
            close_group()
            group.append(region)
        else:
            group.append(region)
    close_group()
    if cover_all:
        pieces = _with_pauses(pieces, n, window_samples)
    return _without_tiny_pieces(pieces), True


def _with_pauses(speech: list[Piece], n: int, window_samples: int) -> list[Piece]:
    """``speech`` plus weight-0 pieces for every stretch between them (and before/after)."""
    out: list[Piece] = []
    position = 0
    for piece in speech + [Piece(n, n, 0, n, n)]:
        if piece.start > position:
            out.extend(Piece(a, b, 0, a, a) for a, b in _equal_parts(position, piece.start, window_samples))
        if piece.end > piece.start:
            out.append(piece)
        position = piece.end
    return out


def _without_tiny_pieces(pieces: list[Piece]) -> list[Piece]:
    """Pieces the encoder can take: a pause shorter than one 25 ms frame is left out (speech
    regions are at least 0.25 s long, so only pauses can be that short)."""
    return [piece for piece in pieces if piece.end - piece.start >= MIN_SAMPLES]


@dataclass
class LongAudio:
    """An input too long to hold in memory, as a first streamed pass over it found it: what it is,
    how long, and where its speech is. The samples are decoded again, piece by piece, when scored."""

    audio: AudioInput
    """The input, in a form that can be decoded again (:func:`~emotion2vec_plus.audio.replayable_input`)."""
    info: AudioInfo
    warnings: list[str]
    num_samples: int
    regions: list[SpeechRegion]
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
    regions but no samples. Arrays are already in memory and always come back decoded.
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
    regions = speech_regions(num_samples=streamed.num_samples, probabilities=vad.finish())
    return LongAudio(replayable, streamed.info, streamed.warnings, streamed.num_samples, regions, max_duration_s)
