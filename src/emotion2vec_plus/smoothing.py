"""Labels over time that a person can read: moving averages and hysteresis.

Class probabilities of consecutive frames (20 ms) or live windows jump between close classes; a
label that flips on every small change is unreadable. :class:`LabelHysteresis` keeps the current
label until another class leads it by a margin for a while, and :func:`moving_average` smooths
probabilities first. Frame-level runs (:func:`emotion2vec_plus.analytics.emotion_runs`) and the
live stream's provisional labels (:mod:`emotion2vec_plus.streaming`) both use them.
"""

from __future__ import annotations

import numpy as np

#: How far another class must lead the current label before the label changes.
SWITCH_MARGIN = 0.1


def moving_average(probs: np.ndarray, width: int) -> np.ndarray:
    """Each column of (T, C) ``probs`` averaged over ``width`` neighbouring rows (edges repeated)."""
    if width <= 1 or len(probs) < 2:
        return probs
    kernel = np.ones(width) / width
    padded = np.pad(probs, ((width // 2, width - 1 - width // 2), (0, 0)), mode="edge")
    return np.stack([np.convolve(padded[:, c], kernel, mode="valid") for c in range(probs.shape[1])], axis=1)


class LabelHysteresis:
    """The current label of a sequence of probability rows, changed only with evidence.

    ``update`` takes one row of class probabilities (or ``None``: no speech, which clears the
    label) and gives the label (class index) after it. The first row with speech sets the label
    to its best class; after that the label moves to another class only when that class has led
    the current one by at least ``margin`` for ``hold`` consecutive rows.
    """

    def __init__(self, margin: float = SWITCH_MARGIN, hold: int = 1) -> None:
        if margin < 0 or hold < 1:
            raise ValueError(f"margin must be >= 0 and hold >= 1, got {margin} and {hold}")
        self.margin = margin
        self.hold = hold
        self.label: int | None = None
        self._challenger: int | None = None
        self._streak = 0

    def update(self, probs: np.ndarray | None) -> int | None:
        """The label after one more row (``None``: no speech)."""
        if probs is None:
            self.label, self._challenger, self._streak = None, None, 0
            return None
        best = int(np.argmax(probs))
        if self.label is None:
            self.label = best
        elif best != self.label and probs[best] - probs[self.label] >= self.margin:
            self._streak = self._streak + 1 if best == self._challenger else 1
            self._challenger = best
            if self._streak >= self.hold:
                self.label, self._challenger, self._streak = best, None, 0
        else:
            self._challenger, self._streak = None, 0
        return self.label

    def labels(self, rows: np.ndarray) -> np.ndarray:
        """The label after each row of (T, C) ``rows`` (all speech), continuing from the current state."""
        return np.array([self.update(row) for row in rows], dtype=np.int64)
