"""Planning what the encoder scores: utterances between pauses, long ones cut at their quietest
points, the same online as offline."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from conftest import speech_clips
from emotion2vec_plus.segmentation import (MIN_PAUSE_S, Piece, Scored, SegmentPlanner, UtteranceMerger, merged_piece,
                                          plan_input)
from emotion2vec_plus.vad import CHUNK_SAMPLES, speech_probabilities

SR = 16000


def probabilities(spans: list[tuple[float, float]], seconds: float, *, dips: dict[float, float] | None = None) -> np.ndarray:
    """Speech probability per 32 ms chunk: 0.95 inside ``spans`` (seconds), 0.02 elsewhere, and
    ``dips`` (time -> probability) inside speech."""
    times = np.arange(int(seconds * SR) // CHUNK_SAMPLES) * CHUNK_SAMPLES / SR
    probs = np.full(len(times), 0.02, np.float32)
    for a, b in spans:
        probs[(times >= a) & (times < b)] = 0.95
    for at, value in (dips or {}).items():
        probs[np.argmin(np.abs(times - at))] = value
    return probs


def spans_s(pieces) -> list[tuple[float, float]]:
    return [(round(p.speech_start / SR, 2), round(p.speech_end / SR, 2)) for p in pieces]


def test_pauses_of_at_least_min_pause_separate_utterances():
    # pauses of 0.2 s (inside an utterance), 0.6 s and 1.5 s (between utterances)
    probs = probabilities([(1.0, 3.0), (3.2, 4.0), (4.6, 6.0), (7.5, 9.0)], 12.0)
    plan = plan_input(len(probs) * CHUNK_SAMPLES, 20 * SR, probs)
    assert [(round(a), round(b)) for a, b in spans_s(plan.segments)] == [(1, 4), (5, 6), (7, 9)]
    looser = plan_input(len(probs) * CHUNK_SAMPLES, 20 * SR, probs, min_pause_s=1.0)
    assert len(looser.segments) == 2  # the 0.6 s pause no longer separates
    assert plan.whole and plan.reported_segments == plan.segments  # several utterances within the window


def test_each_utterance_is_scored_with_some_of_its_pauses_never_more_than_its_share():
    probs = probabilities([(1.0, 3.0), (3.7, 6.0)], 6.0)  # a 0.7 s pause; speech up to the very end
    n = len(probs) * CHUNK_SAMPLES
    first, second = plan_input(n, 20 * SR, probs, context_s=0.5).segments
    assert first.start == pytest.approx(first.speech_start - 0.5 * SR, abs=1)
    # only what is known when the pause has lasted min_pause_s (less the detector's padding)
    assert (MIN_PAUSE_S - 0.1) * SR < first.end - first.speech_end <= MIN_PAUSE_S * SR
    assert second.start == first.end < second.speech_start  # the rest of the pause, not the first's share
    assert second.end == second.speech_end == n
    bare = plan_input(n, 20 * SR, probs, context_s=0.0).segments
    assert all((p.start, p.end) == (p.speech_start, p.speech_end) for p in bare)


def test_a_long_utterance_is_cut_at_its_quietest_points():
    # 25 s of speech without a pause, with dips (quieter moments) at 7 s and 17 s; window 10 s, no context
    probs = probabilities([(1.0, 26.0)], 27.0, dips={7.0: 0.4, 17.0: 0.38, 12.0: 0.45})
    plan = plan_input(len(probs) * CHUNK_SAMPLES, 10 * SR, probs, context_s=0.0)
    cuts = [p.speech_end / SR for p in plan.segments[:-1]]
    assert len(plan.segments) == 3 and cuts == pytest.approx([7.0, 17.0], abs=0.05)  # within a 32 ms chunk
    assert all(p.end - p.start <= 10 * SR for p in plan.segments)
    assert sum(p.speech for p in plan.segments) == plan.regions[0].end - plan.regions[0].start


def test_a_very_long_utterance_gets_parts_of_at_most_one_window():
    probs = probabilities([(0.5, 95.0)], 96.0)  # 94.5 s of speech, flat
    plan = plan_input(len(probs) * CHUNK_SAMPLES, 10 * SR, probs)
    assert all(p.end - p.start <= 10 * SR for p in plan.segments)
    assert min(p.speech_end - p.speech_start for p in plan.segments) >= 2 * SR
    assert all(a.speech_end == b.speech_start for a, b in zip(plan.segments, plan.segments[1:]))


def test_frames_cover_a_long_input_with_pauses_in_between():
    probs = probabilities([(1.0, 3.0), (5.0, 8.0), (12.0, 14.0)], 16.0)
    n = len(probs) * CHUNK_SAMPLES
    plan = plan_input(n, 5 * SR, probs, frames=True)
    pieces = plan.pieces()
    assert pieces[0].start == 0 and pieces[-1].end == n
    assert all(a.end == b.start for a, b in zip(pieces, pieces[1:]))
    assert [p.speech > 0 for p in pieces].count(True) == 3 and plan.pauses
    assert max(p.end - p.start for p in pieces) <= 5 * SR


def test_no_speech_in_a_long_input_gives_equal_parts():
    n = 25 * SR
    plan = plan_input(n, 10 * SR, np.zeros(n // CHUNK_SAMPLES, np.float32))
    assert not plan.speech_found and len(plan.segments) == 3
    assert plan.segments[0].start == 0 and plan.segments[-1].end == n
    assert all(a.end == b.start and abs((a.end - a.start) - n / 3) <= 2 for a, b in zip(plan.segments, plan.segments[1:]))
    short = plan_input(5 * SR, 10 * SR, np.zeros(5 * SR // CHUNK_SAMPLES, np.float32))
    assert not short.speech_found and short.whole and short.pieces() == [short.whole_piece]


@pytest.mark.parametrize("window_s", [4.0, 10.0])
def test_online_planning_gives_the_offline_segments_whatever_the_blocks(window_s):
    """Real speech with pauses and a long stretch; probabilities pushed a few at a time give the
    offline plan's segments, each as soon as it is decided (never after the recording has moved on
    by more than two windows and a pause)."""
    clips = [sf.read(p, dtype="float32")[0] for p in speech_clips(10)]
    rng = np.random.default_rng(0)
    parts = []
    for clip in clips:
        parts += [clip[int(0.5 * SR) : -int(0.5 * SR)], np.zeros(int(rng.uniform(0.05, 1.5) * SR), np.float32)]
    wav = np.concatenate(parts)
    probs = speech_probabilities(wav)
    offline = plan_input(len(wav), int(window_s * SR), probs)
    planner = SegmentPlanner(int(window_s * SR))
    online, position = [], 0
    while position < len(probs):
        step = int(rng.integers(1, 40))
        decided = planner.push(probs[position : position + step])
        position = min(position + step, len(probs))
        for piece in decided:
            assert position * CHUNK_SAMPLES - piece.speech_end <= 2 * window_s * SR + 0.5 * SR
        online += decided
    online += planner.finish(len(wav))
    assert online == offline.segments and len(online) >= 5


def scored(speech_start_s: float, speech_end_s: float, scores: list[float], context_s: float = 0.2) -> Scored:
    return Scored(Piece(int((speech_start_s - context_s) * SR), int((speech_end_s + context_s) * SR),
                        int((speech_end_s - speech_start_s) * SR), int(speech_start_s * SR), int(speech_end_s * SR)),
                  np.array(scores))


def merge_all(merger: UtteranceMerger, items: list[Scored]) -> list[list[float]]:
    groups = [group for item in items for group in merger.push(item)] + merger.finish()
    return [[item.piece.speech_start / SR for item in group] for group in groups]


ANGRY, ANGRY_TOO, SAD = [0.9, 0.05, 0.05], [0.75, 0.15, 0.1], [0.1, 0.15, 0.75]


def test_alike_neighbours_across_a_short_pause_are_one_group():
    items = [scored(1.0, 3.0, ANGRY), scored(3.4, 5.0, ANGRY_TOO),  # alike, 0.4 s apart: one
             scored(5.4, 7.0, SAD),  # unlike the one before
             scored(7.5, 8.0, SAD),  # alike, 0.5 s apart: joins
             scored(8.6, 9.5, SAD)]  # alike but 0.6 s apart: its own
    assert merge_all(UtteranceMerger(10 * SR), items) == [[1.0, 3.4], [5.4, 7.5], [8.6]]
    merged = merged_piece(items[:2])
    assert (merged.start, merged.end) == (items[0].piece.start, items[1].piece.end)
    assert (merged.speech_start, merged.speech_end) == (1 * SR, 5 * SR) and merged.speech == int(3.6 * SR)
    assert merge_all(UtteranceMerger(10 * SR, merge_pause_s=0.0), items) == [[1.0], [3.4], [5.4], [7.5], [8.6]]


def test_a_group_never_outgrows_the_window_nor_joins_the_parts_of_a_cut_utterance():
    items = [scored(1.0, 3.0, ANGRY), scored(3.4, 5.0, ANGRY_TOO)]  # 0.8-5.2 s scored together: 4.4 s
    assert merge_all(UtteranceMerger(4 * SR), items) == [[1.0], [3.4]]
    assert merge_all(UtteranceMerger(5 * SR), items) == [[1.0, 3.4]]
    parts = [scored(1.0, 3.0, ANGRY, context_s=0.0), scored(3.0, 5.0, ANGRY, context_s=0.0)]  # cut: no pause
    assert merge_all(UtteranceMerger(10 * SR), parts) == [[1.0], [3.0]]


def test_a_group_closes_once_no_neighbour_can_start_close_enough():
    merger = UtteranceMerger(10 * SR)
    assert merger.push(scored(1.0, 3.0, ANGRY)) == []
    assert merger.close_before(int(3.55 * SR)) == []  # speech starting now would still be 0.55 s away
    [group] = merger.close_before(int(3.6 * SR))
    assert [item.piece.speech_start for item in group] == [1 * SR] and merger.open == []
