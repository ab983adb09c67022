"""Unlabelled adaptation of the bundled compact model to a user's recordings.

The compact model's projection reads x, the concatenated layer-normalised Whisper hidden states of
each frame (2048-d), and maps it linearly (``W x + b``) to the emotion embedding. Training
standardised the clip-pooled x with the training set's mean and scale (mu_t, sigma_t) and folded
them into ``W`` and ``b``. An :class:`Adapter` holds the same statistics of a user's utterances
(mu_u, sigma_u, no labels needed) and re-maps x' = (x - mu_u) / sigma_u * sigma_t + mu_t before
the projection, i.e. ``W' = W * (sigma_t / sigma_u)`` per input column and
``b' = b + W mu_t - W' mu_u`` (:func:`adapted_projection`). Being linear, it holds per frame too:
frame scores, live streams and ONNX exports follow.

Files: safetensors with ``input_mean`` and ``input_scale`` (float32, one value per projection
input) and JSON metadata under ``"adapter"`` (format, utterances, the model file's sha256, source).
The training statistics of the bundled model ship in the same format
(``assets/compact_v2_input_stats.safetensors``), so applying them is the identity.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save

from .errors import AdapterError
from .fileio import atomic_write
from .models.compact import CompactEmotionModel
from .models.registry import asset_path

ADAPTER_FORMAT = "emotion2vec-plus/adapter"
ADAPTER_FORMAT_VERSION = 1
#: Fewest utterances :meth:`Emotion2VecPlus.adapt` accepts: a mean and a scale per input from
#: fewer are mostly noise.
MIN_UTTERANCES = 20
#: Added to every standard deviation (as in training, ``training/v3_loco.py``), so a constant input
#: cannot divide by zero.
SCALE_EPSILON = 1e-6
#: The bundled model's training statistics (an adapter file; applying it changes nothing).
TRAINING_STATISTICS_ASSET = "compact_v2_input_stats.safetensors"


@dataclass
class Adapter:
    """Statistics of the projection inputs of a set of utterances, for one compact model file."""

    input_mean: np.ndarray
    """(I,) float32: the mean over utterances of each utterance's mean projection input."""
    input_scale: np.ndarray
    """(I,) float32: their standard deviation plus :data:`SCALE_EPSILON` (all positive)."""
    num_utterances: int
    model_sha256: str
    """sha256 of the compact model file the statistics were computed with."""
    source: str
    """How the statistics were made (e.g. ``"42 utterances from 12 files"``)."""
    num_files: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """Inputs :meth:`Emotion2VecPlus.adapt` could not use, with the reason (not saved)."""
    path: Path | None = None
    """The file it was loaded from or last saved to."""

    @classmethod
    def from_projection_inputs(cls, rows: np.ndarray, model_sha256: str, source: str, num_files: int = 0) -> "Adapter":
        """The statistics of (N, I) pooled projection inputs, one row per utterance."""
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[0] < 2:
            raise ValueError(f"need at least 2 utterances' projection inputs as (N, I) rows, got shape {rows.shape}")
        return cls(input_mean=rows.mean(0).astype(np.float32),
                   input_scale=(rows.std(0) + SCALE_EPSILON).astype(np.float32),
                   num_utterances=int(rows.shape[0]), model_sha256=model_sha256, source=source, num_files=num_files)

    @property
    def digest(self) -> str:
        """sha256 of the statistics themselves (the same for a file and the adapter it was saved from)."""
        h = hashlib.sha256(np.ascontiguousarray(self.input_mean, np.float32).tobytes())
        h.update(np.ascontiguousarray(self.input_scale, np.float32).tobytes())
        return h.hexdigest()

    def describe(self) -> str:
        """What results record as the adapter in use: its file name (or ``in memory``) and digest."""
        name = self.path.name if self.path is not None else "in memory"
        return f"{name} (sha256 {self.digest[:12]}, {self.num_utterances} utterances)"

    def metadata(self) -> dict[str, Any]:
        return {"format": ADAPTER_FORMAT, "format_version": ADAPTER_FORMAT_VERSION,
                "num_utterances": self.num_utterances, "num_files": self.num_files,
                "model_sha256": self.model_sha256, "source": self.source}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the adapter as safetensors (atomically); returns the path."""
        path = Path(path)
        tensors = {"input_mean": np.ascontiguousarray(self.input_mean, np.float32),
                   "input_scale": np.ascontiguousarray(self.input_scale, np.float32)}
        with atomic_write(path) as stream:
            stream.write(save(tensors, metadata={"adapter": json.dumps(self.metadata(), sort_keys=True)}))
        self.path = path
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Adapter":
        """Read an adapter file (no pickle); anything else is an :class:`AdapterError` naming the file."""
        path = Path(path)
        if not path.is_file():
            raise AdapterError(f"{path}: adapter file not found")
        try:
            with safe_open(str(path), framework="np") as handle:
                raw = (handle.metadata() or {}).get("adapter")
                tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        except Exception as exc:  # safetensors raises several types for a damaged or foreign file
            raise AdapterError(f"{path}: not an adapter file (not readable as safetensors: {exc})") from exc
        try:
            meta = json.loads(raw) if raw else None
        except ValueError:
            meta = None
        if not isinstance(meta, dict) or meta.get("format") != ADAPTER_FORMAT:
            raise AdapterError(f"{path}: not an adapter file (no {ADAPTER_FORMAT} metadata); make one with "
                               "emotion2vec-plus adapt")
        if meta.get("format_version") != ADAPTER_FORMAT_VERSION:
            raise AdapterError(f"{path}: adapter format version {meta.get('format_version')} is not readable "
                               f"(this version reads {ADAPTER_FORMAT_VERSION})")
        mean, scale = tensors.get("input_mean"), tensors.get("input_scale")
        if mean is None or scale is None:
            raise AdapterError(f"{path}: adapter file lacks input_mean or input_scale")
        if mean.ndim != 1 or mean.shape != scale.shape:
            raise AdapterError(f"{path}: input_mean {mean.shape} and input_scale {scale.shape} must be equal 1-d shapes")
        if not (np.isfinite(mean).all() and np.isfinite(scale).all()):
            raise AdapterError(f"{path}: adapter statistics contain NaN or infinite values")
        if not (scale > 0).all():
            raise AdapterError(f"{path}: adapter input_scale has values <= 0")
        return cls(input_mean=mean.astype(np.float32), input_scale=scale.astype(np.float32),
                   num_utterances=int(meta.get("num_utterances", 0)), model_sha256=str(meta.get("model_sha256", "")),
                   source=str(meta.get("source", "")), num_files=int(meta.get("num_files", 0)), path=path)


def training_statistics(model_sha256: str) -> Adapter:
    """The training statistics shipped for the compact model file with this sha256; an
    :class:`AdapterError` for any other model (only the bundled model ships them)."""
    stats = Adapter.load(asset_path(TRAINING_STATISTICS_ASSET))
    if stats.model_sha256 != model_sha256:
        raise AdapterError(f"adaptation needs the training statistics of the model file (sha256 {model_sha256[:12]}); "
                           f"only the bundled compact model (sha256 {stats.model_sha256[:12]}) ships them")
    return stats


def adapted_projection(weight: np.ndarray, bias: np.ndarray, training: Adapter,
                       adapter: Adapter) -> tuple[np.ndarray, np.ndarray]:
    """``(W', b')``: the projection ``(W, b)`` with the inputs re-mapped from the adapter's
    statistics onto the training statistics (see the module docstring); float32."""
    w = np.asarray(weight, np.float64)
    ratio = np.asarray(training.input_scale, np.float64) / np.asarray(adapter.input_scale, np.float64)
    adapted = w * ratio[None, :]
    shift = w @ np.asarray(training.input_mean, np.float64) - adapted @ np.asarray(adapter.input_mean, np.float64)
    return adapted.astype(np.float32), (np.asarray(bias, np.float64) + shift).astype(np.float32)


def check_adapter(adapter: Adapter, training: Adapter) -> None:
    """Refuse an adapter made for another model or of another input size (the message names its file)."""
    where = str(adapter.path) if adapter.path is not None else "adapter"
    if adapter.model_sha256 != training.model_sha256:
        raise AdapterError(f"{where}: made for another model (sha256 {adapter.model_sha256[:12] or 'unknown'}), "
                           f"not this one (sha256 {training.model_sha256[:12]}); run emotion2vec-plus adapt again")
    if adapter.input_mean.shape != training.input_mean.shape:
        raise AdapterError(f"{where}: statistics of {adapter.input_mean.shape[0]} inputs, the model's projection "
                           f"reads {training.input_mean.shape[0]}")


def apply_adapter(model: CompactEmotionModel, adapter: Adapter | None, training: Adapter) -> None:
    """Set ``model``'s projection weights in place: adapted with ``adapter``, or the model file's
    own weights when ``adapter`` is None (so adapters replace each other, never stack)."""
    weight = model.spec.projection["project.linear.weight"]
    bias = model.spec.projection["project.linear.bias"]
    if weight.shape[1] != training.input_mean.shape[0]:
        raise AdapterError(f"the training statistics have {training.input_mean.shape[0]} inputs, the model's "
                           f"projection reads {weight.shape[1]}")
    if adapter is not None:
        check_adapter(adapter, training)
        weight, bias = adapted_projection(weight, bias, training, adapter)
    model.adapter_digest = adapter.digest if adapter is not None else None
    linear = model.project.linear
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(np.asarray(weight, np.float32)))
        linear.bias.copy_(torch.from_numpy(np.asarray(bias, np.float32)))
