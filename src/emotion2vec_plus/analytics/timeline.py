"""Emotions over time from a frame-level or segmented result: smoothed curves and runs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np



@dataclass
class EmotionTimeline:
    """Class probabilities over time: ``probabilities[i]`` holds the scores (in ``labels`` order)
    of the stretch ``starts_s[i]``..``ends_s[i]``."""

    starts_s: np.ndarray
    ends_s: np.ndarray
    probabilities: np.ndarray
    labels: list[str]
    source: str  # "frames" or "segments"

    @property
    def centres_s(self) -> np.ndarray:
        """The middle of each stretch (where a line plot puts its points)."""
        return (self.starts_s + self.ends_s) / 2.0


@dataclass
class EmotionRun:
    """A stretch of a recording with one emotion: its bounds, that emotion and its mean probability."""

    start_s: float
    end_s: float
    emotion: str
    confidence: float


def _frame_hop_s(starts: np.ndarray, ends: np.ndarray) -> float:
    return float(np.median(np.diff(starts))) if len(starts) > 1 else max(float(ends[0] - starts[0]), 1e-3)


def _moving_average(probs: np.ndarray, width: int) -> np.ndarray:
    """Each column of (T, C) ``probs`` averaged over ``width`` neighbouring rows (edges repeated)."""
    if width <= 1 or len(probs) < 2:
        return probs
    kernel = np.ones(width) / width
    padded = np.pad(probs, ((width // 2, width - 1 - width // 2), (0, 0)), mode="edge")
    return np.stack([np.convolve(padded[:, c], kernel, mode="valid") for c in range(probs.shape[1])], axis=1)


def emotion_timeline(result: Any, max_points: int = 1000, smooth_s: float = 0.0) -> EmotionTimeline | None:
    """The emotion probabilities of a :class:`~emotion2vec_plus.results.Result` over time.

    From the 50 Hz ``frames`` of a frame-granularity result — smoothed with a moving average of
    ``smooth_s`` seconds when given (single frames jump between classes; 0.5 s reads well), then
    averaged over groups of frames so that at most ``max_points`` points remain — otherwise from
    the per-window ``segments`` of a long input; ``None`` when the result has neither.
    """
    if max_points < 1:
        raise ValueError(f"max_points must be at least 1, got {max_points}")
    labels = list(result.scores)
    if result.frames:
        starts = np.array([f.start_s for f in result.frames], dtype=np.float64)
        ends = np.array([f.end_s for f in result.frames], dtype=np.float64)
        probs = np.array([f.scores for f in result.frames], dtype=np.float64)
        if smooth_s > 0:
            probs = _moving_average(probs, int(round(smooth_s / _frame_hop_s(starts, ends))))
        group = max(1, math.ceil(len(starts) / max_points))
        if group > 1:
            edges = np.arange(0, len(starts), group)
            counts = np.diff(np.append(edges, len(starts)))
            probs = np.add.reduceat(probs, edges, axis=0) / counts[:, None]
            ends = ends[np.minimum(edges + counts - 1, len(ends) - 1)]
            starts = starts[edges]
        return EmotionTimeline(starts, ends, probs, labels, "frames")
    if result.segments:
        segments = result.segments
        return EmotionTimeline(np.array([s.start_s for s in segments], dtype=np.float64),
                               np.array([s.end_s for s in segments], dtype=np.float64),
                               np.array([[s.scores.get(name, 0.0) for name in labels] for s in segments], dtype=np.float64),
                               labels, "segments")
    return None


def emotion_runs(result: Any, smooth_s: float = 0.5, min_run_s: float = 0.3) -> list[EmotionRun]:
    """Cut a result into stretches of one emotion (the segments table of a timeline).

    Frame results: each class probability is smoothed with a moving average of ``smooth_s``
    seconds, every frame takes the emotion with the highest smoothed probability, neighbouring
    frames with the same emotion form a run, and runs shorter than ``min_run_s`` are merged
    into the neighbour they resemble most (the longer one). ``confidence`` is the mean
    (unsmoothed) probability of the run's emotion. Long inputs without frames: one run per
    window ``segment``. Otherwise ``[]``.
    """
    if result.frames:
        labels = list(result.scores)
        probs = np.array([f.scores for f in result.frames], dtype=np.float64)
        starts = np.array([f.start_s for f in result.frames], dtype=np.float64)
        ends = np.array([f.end_s for f in result.frames], dtype=np.float64)
        hop = _frame_hop_s(starts, ends)
        smoothed = _moving_average(probs, int(round(smooth_s / hop)))
        best = smoothed.argmax(axis=1)
        bounds = [0, *(np.flatnonzero(np.diff(best)) + 1).tolist(), len(best)]
        runs = [[bounds[i], bounds[i + 1], int(best[bounds[i]])] for i in range(len(bounds) - 1)]
        min_frames = max(1, int(round(min_run_s / hop)))
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
            # neighbours that now share an emotion become one run
            merged: list[list[int]] = []
            for run in runs:
                if merged and merged[-1][2] == run[2]:
                    merged[-1][1] = run[1]
                else:
                    merged.append(run)
            runs = merged
        return [EmotionRun(float(starts[start]), float(ends[end - 1]), labels[cls], float(probs[start:end, cls].mean()))
                for start, end, cls in runs]
    if result.segments:
        return [EmotionRun(s.start_s, s.end_s, s.emotion or "", float(s.confidence or 0.0)) for s in result.segments]
    return []
