"""Structured recognition results that serialise to the documented ``result.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Bumped only on incompatible changes to the JSON layout (see schemas/result.schema.json).
#: 2: frames outside speech have ``speech: false`` and no emotion; segments are utterances;
#: ``compute_type``, ``backend`` and ``compute_type_reason`` say how the encoder ran.
SCHEMA_VERSION = 2


@dataclass
class FrameScores:
    """Class probabilities of one 20 ms frame (each frame covers 25 ms of audio).

    A frame outside the speech (``speech`` False) has no emotion: ``emotion`` and ``confidence``
    are ``None``; its ``scores`` are still the model's output there."""

    start_s: float
    end_s: float
    emotion: str | None
    confidence: float | None
    scores: list[float]
    speech: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "speech": self.speech,
            "emotion": self.emotion,
            "confidence": self.confidence,
            "scores": self.scores,
        }


@dataclass
class Segment:
    """The emotion of one utterance (speech between pauses; a part of one longer than the
    model's window), scored whole."""

    start_s: float
    end_s: float
    emotion: str | None
    emotion_zh: str | None
    emoji: str | None
    confidence: float | None
    scores: dict[str, float]
    speech_s: float | None = None
    """Seconds of speech in the segment: the weight of its scores in the utterance's."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "speech_s": None if self.speech_s is None else round(self.speech_s, 3),
            "emotion": self.emotion,
            "emotion_zh": self.emotion_zh,
            "emoji": self.emoji,
            "confidence": self.confidence,
            "scores": self.scores,
        }


@dataclass
class AudioSummary:
    """What the input was before conversion to 16 kHz mono."""

    format: str
    sample_rate: int
    channels: int
    duration_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "duration_s": round(self.duration_s, 3),
        }


@dataclass
class Result:
    """Recognition result for one input.

    ``emotion``/``confidence``/``scores`` describe the whole input (an input longer than the
    model's window: its segments' scores weighted by their speech time). ``embedding`` is (D,)
    for ``granularity="utterance"`` and (T, D) frame features for ``"frame"``; it is ``None``
    unless an embedding was asked for. ``frames`` (frame granularity) and ``segments`` (the
    utterances of an input longer than the window, or of one that holds several) add
    time-resolved emotions.
    A failed input in a batch has ``error`` set and no emotion.
    """

    source: str
    model: str
    granularity: str
    emotion: str | None = None
    emotion_zh: str | None = None
    emoji: str | None = None
    confidence: float | None = None
    scores: dict[str, float] = field(default_factory=dict)
    duration_s: float = 0.0
    embedding: np.ndarray | None = None
    embedding_dim: int | None = None
    frames: list[FrameScores] | None = None
    segments: list[Segment] | None = None
    audio: AudioSummary | None = None
    warnings: list[str] = field(default_factory=list)
    processing_time_s: float = 0.0
    error: str | None = None
    output_dir: str | None = None
    compute_type: str | None = None
    """What ran the encoder: ``float32``, ``int8`` or ``bfloat16``."""
    backend: str | None = None
    """``torch`` or ``onnx``."""
    compute_type_reason: str | None = None
    """Why that compute type: ``auto: <the CPU's features and the rule>``, ``asked for``, or the
    environment variable that set it."""
    adapter: str | None = None
    """The adapter the compact model ran with (its file name and digest), or ``"none"``."""

    @property
    def ok(self) -> bool:
        """True unless this input failed."""
        return self.error is None

    @property
    def labels(self) -> list[str]:
        """Class names in model output order (the order of each frame's ``scores``)."""
        return list(self.scores)

    def to_dict(self, include_embedding: bool = False) -> dict[str, Any]:
        """A JSON-ready dict following ``schemas/result.schema.json``."""
        embedding_shape = list(self.embedding.shape) if self.embedding is not None else None
        data: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "source": self.source,
            "status": "ok" if self.ok else "error",
            "error": self.error,
            "model": self.model,
            "granularity": self.granularity,
            "emotion": self.emotion,
            "emotion_zh": self.emotion_zh,
            "emoji": self.emoji,
            "confidence": self.confidence,
            "scores": self.scores,
            "labels": self.labels,
            "duration_s": round(self.duration_s, 3),
            "embedding_dim": self.embedding_dim,
            "embedding_shape": embedding_shape,
            "embedding": self.embedding.astype(float).tolist() if include_embedding and self.embedding is not None else None,
            "frames": [f.to_dict() for f in self.frames] if self.frames is not None else None,
            "segments": [s.to_dict() for s in self.segments] if self.segments is not None else None,
            "audio": self.audio.to_dict() if self.audio is not None else None,
            "warnings": list(self.warnings),
            "processing_time_s": round(self.processing_time_s, 4),
            "output_dir": self.output_dir,
            "compute_type": self.compute_type,
            "backend": self.backend,
            "compute_type_reason": self.compute_type_reason,
            "adapter": self.adapter,
        }
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], embedding: np.ndarray | None = None) -> "Result":
        """The result a :meth:`to_dict` dict describes (times as rounded there); ``embedding`` is
        taken from the dict when it holds one, else from the argument."""
        if data.get("embedding") is not None:
            embedding = np.asarray(data["embedding"], dtype=np.float32).reshape(data["embedding_shape"])
        audio = data.get("audio")
        return cls(
            source=data["source"], model=data["model"], granularity=data["granularity"], emotion=data.get("emotion"),
            emotion_zh=data.get("emotion_zh"), emoji=data.get("emoji"), confidence=data.get("confidence"),
            scores=dict(data.get("scores") or {}), duration_s=data.get("duration_s") or 0.0, embedding=embedding,
            embedding_dim=data.get("embedding_dim"),
            frames=None if data.get("frames") is None else [FrameScores(**f) for f in data["frames"]],
            segments=None if data.get("segments") is None else [Segment(**g) for g in data["segments"]],
            audio=None if audio is None else AudioSummary(**audio), warnings=list(data.get("warnings") or []),
            processing_time_s=data.get("processing_time_s") or 0.0, error=data.get("error"),
            output_dir=data.get("output_dir"), compute_type=data.get("compute_type"), backend=data.get("backend"),
            compute_type_reason=data.get("compute_type_reason"), adapter=data.get("adapter"),
        )

    def to_json(self, include_embedding: bool = False, indent: int | None = 2) -> str:
        """``to_dict`` as JSON text (UTF-8 characters kept, e.g. the Chinese label)."""
        return json.dumps(self.to_dict(include_embedding), ensure_ascii=False, indent=indent)
