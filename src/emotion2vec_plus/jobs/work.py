"""The work of a batch job: files decoded ahead on threads, batches through the model, one result line
and one Parquet row per file."""

from __future__ import annotations

import sys
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from ..audio import Audio
from ..embeddings import utterance_embedding
from ..errors import Emotion2VecError
from ..results import Result
from ..segmentation import LongAudio, load_input

from .store import NPY_DIR, Entry, save_npy

if TYPE_CHECKING:  # pragma: no cover
    from ..inference import Emotion2VecPlus


#: Read-ahead budget: stop queueing decodes once this many bytes of (encoded) files are pending.
_PREFETCH_BYTES = 256 * 1024 * 1024


@dataclass
class Decoded:
    entry: Entry
    audio: Audio | LongAudio | None = None
    error: str | None = None
    error_type: str | None = None
    """The class name of the :mod:`emotion2vec_plus.errors` error behind ``error`` (``None`` for others)."""

    @property
    def num_samples(self) -> int:
        return self.audio.num_samples if self.audio is not None else 0


def decode_entry(entry: Entry, max_duration_s: float | None, hold_in_memory_s: float) -> Decoded:
    """One file decoded, or, when longer than ``hold_in_memory_s``, scanned for its speech to be
    streamed again when scored (:func:`~emotion2vec_plus.segmentation.load_input`)."""
    if entry.name_error is not None:
        return Decoded(entry, error=entry.name_error)
    if entry.size is None:
        return Decoded(entry, error=f"{entry.path}: file not found or not readable")
    try:
        return Decoded(entry, audio=load_input(entry.path, name=str(entry.path), max_duration_s=max_duration_s,
                                                hold_in_memory_s=hold_in_memory_s))
    except Emotion2VecError as exc:
        return Decoded(entry, error=str(exc), error_type=type(exc).__name__)
    except Exception as exc:  # one bad file must not stop the job
        return Decoded(entry, error=f"{entry.path}: cannot decode: {type(exc).__name__}: {exc}")


def read_ahead(pool: ThreadPoolExecutor, entries: list[Entry], window: int,
                max_duration_s: float | None, hold_in_memory_s: float) -> Iterator[list[Decoded]]:
    """Windows of up to ``window`` decoded files, decoding the next window while one is in use."""
    pending: deque[tuple[Entry, Future]] = deque()
    source = iter(entries)
    pending_bytes = 0

    def fill() -> None:
        nonlocal pending_bytes
        while len(pending) < 2 * window and (not pending or pending_bytes < _PREFETCH_BYTES):
            entry = next(source, None)
            if entry is None:
                return
            pending.append((entry, pool.submit(decode_entry, entry, max_duration_s, hold_in_memory_s)))
            pending_bytes += entry.size or 0

    fill()
    while pending:
        group: list[tuple[Entry, Future]] = []
        group_bytes = 0
        while pending and len(group) < window and (not group or group_bytes < _PREFETCH_BYTES // 2):
            entry, future = pending.popleft()
            group.append((entry, future))
            group_bytes += entry.size or 0
            pending_bytes -= entry.size or 0
        fill()
        yield [future.result() for _, future in group]


def progress_bar(total: int):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency; run without a bar if it is missing
        return None
    return tqdm(total=total, unit="file", file=sys.stderr, dynamic_ncols=True, smoothing=0.05,
                desc="batch")


def predict_decoded(model: "Emotion2VecPlus", batch: list[Decoded], granularity: str, embedding: bool) -> list[Result]:
    """``model.predict_batch`` on already-decoded audio; if a whole batch fails in the model, its
    files are retried one by one so one file cannot fail the others. Without segments: a batch
    run's outputs hold each file's utterance-level result (and frames), never its segments."""
    try:
        return model.predict_batch([item.audio for item in batch], granularity=granularity,  # type: ignore[misc]
                                   extract_embedding=embedding, batch_size=len(batch), errors="collect",
                                   segments=False)
    except Exception as exc:
        if len(batch) > 1:
            return [predict_decoded(model, [item], granularity, embedding)[0] for item in batch]
        return [Result(source=str(batch[0].entry.path), model=model.model_name, granularity=granularity,
                       error=f"{batch[0].entry.path}: model failed: {type(exc).__name__}: {exc}")]


def error_line(entry: Entry, error: str, model: "Emotion2VecPlus", granularity: str,
               error_type: str | None = None) -> dict[str, Any]:
    return entry.line(status="error", emotion=None, confidence=None, scores=None, duration_s=None, error=error,
                      error_type=error_type, model=model.model_name, granularity=granularity, embedding_file=None,
                      warnings=[])


def result_outputs(entry: Entry, result: Result, out: Path, granularity: str,
             write_npy: bool) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The JSON line of a successful file, its Parquet row (when there is an embedding) and its ``.npy``."""
    embedding_file = None
    row = None
    if result.embedding is not None:
        array = np.asarray(result.embedding, dtype=np.float32)
        utterance = utterance_embedding(array)
        if write_npy:
            embedding_file = f"{NPY_DIR}/{entry.npy_name}"
            save_npy(out / NPY_DIR / Path(*entry.npy_name.split("/")), array)
        row = {
            "path": entry.name, "size": entry.size, "mtime_ns": entry.mtime_ns,
            "emotion": result.emotion, "confidence": result.confidence,
            "scores": list(result.scores.values()) if result.scores else None,
            "duration_s": result.duration_s, "embedding": utterance,
            "num_frames": int(array.shape[0]) if array.ndim == 2 else None,
            "embedding_file": embedding_file,
        }
    line = entry.line(
        status="ok", emotion=result.emotion, confidence=result.confidence, scores=result.scores or None,
        duration_s=round(result.duration_s, 3), error=None, model=result.model, granularity=granularity,
        embedding_file=embedding_file, warnings=list(result.warnings),
    )
    return line, row
