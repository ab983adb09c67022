"""Emotions over time from a frame-level or segmented result: smoothed curves and runs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..smoothing import SWITCH_MARGIN, LabelHysteresis, moving_average


@dataclass
class EmotionTimeline:
    """Class probabilities over time: ``probabilities[i]`` holds the scores (in ``labels`` order)
    of the stretch ``starts_s[i]``..``ends_s[i]``."""

    starts_s: np.ndarray
    ends_s: np.ndarray
    probabilities: np.ndarray
    labels: list[str]
    source: str  # "frames" or "segments"
    speech: np.ndarray | None = None
    """Whether each stretch is (mostly) speech; None: all of them are."""

    @property
    def centres_s(self) -> np.ndarray:
        """The middle of each stretch (where a line plot puts its points)."""
        return (self.starts_s + self.ends_s) / 2.0


@dataclass
class EmotionRun:
    """A stretch of a recording with one emotion: its bounds, that emotion and its mean probability.
    A stretch without speech has ``emotion`` and ``confidence`` ``None``."""

    start_s: float
    end_s: float
    emotion: str | None
    confidence: float | None

    @property
    def speech(self) -> bool:
        return self.emotion is not None


def _frame_hop_s(starts: np.ndarray, ends: np.ndarray) -> float:
    return float(np.median(np.diff(starts))) if len(starts) > 1 else max(float(ends[0] - starts[0]), 1e-3)


def emotion_timeline(result: Any, max_points: int = 1000, smooth_s: float = 0.0) -> EmotionTimeline | None:
    """The emotion probabilities of a :class:`~emotion2vec_plus.results.Result` over time.

    From the 50 Hz ``frames`` of a frame-granularity result — smoothed with a moving average of
    ``smooth_s`` seconds when given (single frames jump between classes; 0.5 s reads well), then
    averaged over groups of frames so that at most ``max_points`` points remain — otherwise from
    the ``segments`` (utterances); ``None`` when the result has neither. ``speech`` says which
    points are speech (frames outside speech have scores but no emotion).
    """
    if max_points < 1:
        raise ValueError(f"max_points must be at least 1, got {max_points}")
    labels = list(result.scores)
    if result.frames:
        starts = np.array([f.start_s for f in result.frames], dtype=np.float64)
        ends = np.array([f.end_s for f in result.frames], dtype=np.float64)
        probs = np.array([f.scores for f in result.frames], dtype=np.float64)
        speech = np.array([getattr(f, "speech", True) for f in result.frames], dtype=np.float64)
        if smooth_s > 0:
            probs = moving_average(probs, int(round(smooth_s / _frame_hop_s(starts, ends))))
        group = max(1, math.ceil(len(starts) / max_points))
        if group > 1:
            edges = np.arange(0, len(starts), group)
            counts = np.diff(np.append(edges, len(starts)))
            probs = np.add.reduceat(probs, edges, axis=0) / counts[:, None]
            speech = np.add.reduceat(speech, edges) / counts
            ends = ends[np.minimum(edges + counts - 1, len(ends) - 1)]
            starts = starts[edges]
        return EmotionTimeline(starts, ends, probs, labels, "frames", speech=speech >= 0.5)
    if result.segments:
        segments = result.segments
        return EmotionTimeline(np.array([s.start_s for s in segments], dtype=np.float64),
                               np.array([s.end_s for s in segments], dtype=np.float64),
                               np.array([[s.scores.get(name, 0.0) for name in labels] for s in segments], dtype=np.float64),
                               labels, "segments")
    return None


def emotion_runs(result: Any, smooth_s: float = 0.5, min_run_s: float = 0.5,
                 margin: float = SWITCH_MARGIN) -> list[EmotionRun]:
    """Cut a result into stretches of one emotion, and of no speech (the segments table of a timeline).

    Frame results: the frames outside speech form "no speech" runs (``emotion`` None). Within each
    stretch of speech, class probabilities are smoothed with a moving average of ``smooth_s``
    seconds, and the label follows them with hysteresis (:class:`~emotion2vec_plus.smoothing.LabelHysteresis`:
    it changes only when another class leads by ``margin``); runs of one label shorter than
    ``min_run_s`` are merged into the neighbour they resemble most (the longer one), inside the
    same stretch of speech. ``confidence`` is the mean (unsmoothed) probability of the run's
    emotion. Results without frames: one run per segment. Otherwise ``[]``.
    """
    if result.frames:
        labels = list(result.scores)
        probs = np.array([f.scores for f in result.frames], dtype=np.float64)
        starts = np.array([f.start_s for f in result.frames], dtype=np.float64)
        ends = np.array([f.end_s for f in result.frames], dtype=np.float64)
        speech = np.array([getattr(f, "speech", True) for f in result.frames], dtype=bool)
        hop = _frame_hop_s(starts, ends)
        width = int(round(smooth_s / hop))
        min_frames = max(1, int(round(min_run_s / hop)))
        runs: list[EmotionRun] = []
        bounds = [0, *(np.flatnonzero(np.diff(speech.astype(np.int8))) + 1).tolist(), len(speech)]
        for first, last in zip(bounds, bounds[1:]):
            if not speech[first]:
                runs.append(EmotionRun(float(starts[first]), float(ends[last - 1]), None, None))
                continue
            best = LabelHysteresis(margin).labels(moving_average(probs[first:last], width))
            for start, end, cls in _merged_runs(best, min_frames):
                runs.append(EmotionRun(float(starts[first + start]), float(ends[first + end - 1]), labels[cls],
                                       float(probs[first + start : first + end, cls].mean())))
        return runs
    if result.segments:
        return [EmotionRun(s.start_s, s.end_s, s.emotion or "", float(s.confidence or 0.0)) for s in result.segments]
    return []


def _merged_runs(best: np.ndarray, min_frames: int) -> list[list[int]]:
    """[start, end, label] runs of equal labels, those shorter than ``min_frames`` merged into a
    neighbour (the longer one) until none is left or one run remains."""
    bounds = [0, *(np.flatnonzero(np.diff(best)) + 1).tolist(), len(best)]
    runs = [[bounds[i], bounds[i + 1], int(best[bounds[i]])] for i in range(len(bounds) - 1)]
    while len(runs) > 1:
        lengths = [end - start for start, end, _ in runs]
        shortest = int(np.argmin(lengths))
        if lengths[shortest] >= min_frames:
            break
        if shortest == 0:
            neighbour = 1
        elif shortest == len(runs) - 1:
            neighbour = shortest - 1
        else:
            neighbour = shortest - 1 if lengths[shortest - 1] >= lengths[shortest + 1] else shortest + 1
        low, high = sorted((shortest, neighbour))
        runs[low:high + 1] = [[runs[low][0], runs[high][1], runs[neighbour][2]]]
        merged: list[list[int]] = []  # neighbours that now share an emotion become one run
        for run in runs:
            if merged and merged[-1][2] == run[2]:
                merged[-1][1] = run[1]
            else:
                merged.append(run)
        runs = merged
    return runs
