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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .audio import MIN_SAMPLES
from .vad import SpeechRegion, speech_regions


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


def plan_pieces(samples: np.ndarray, window_samples: int, *, cover_all: bool = False,
                regions: list[SpeechRegion] | None = None) -> tuple[list[Piece], bool]:
    """The pieces of one input, in time order, and whether speech was found.

    ``cover_all`` adds the pauses between speech as weight-0 pieces (frame-level output).
    ``regions`` may be given (already detected); otherwise the VAD runs on inputs longer than
    ``window_samples``. Without any speech the input is cut into equal pieces weighted by length.
    """
    n = len(samples)
    if n <= window_samples:
        return [Piece(0, n, n, 0, n)], True
    regions = speech_regions(samples) if regions is None else regions
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
