"""Result folders: ``outputs/outputs_YYYYMMDD_HHMMSS/`` with the processed audio, JSON and embedding."""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import soundfile as sf

from .audio import SAMPLE_RATE
from .embeddings import save_embedding
from .fileio import atomic_write, move_into_place
from .results import Result

RUN_PREFIX = "outputs_"
PROCESSED_AUDIO = "processed_audio.wav"
RESULT_JSON = "result.json"
EMBEDDING_NPY = "embedding.npy"


def create_run_dir(outputs_root: str | os.PathLike = "outputs", now: datetime | None = None,
                   prefix: str = RUN_PREFIX) -> Path:
    """Create a new, empty ``outputs_YYYYMMDD_HHMMSS`` folder under ``outputs_root``.

    Never reuses a folder: a second run in the same second gets ``..._HHMMSS_2`` and so on
    (``mkdir`` is atomic, so concurrent runs cannot take the same name). ``prefix`` names other
    kinds of runs (the WebUI's batch jobs use ``batch_``).
    """
    if not re.fullmatch(r"[A-Za-z0-9_-]+", prefix):
        raise ValueError(f"a run folder prefix may hold letters, digits, '_' and '-' only, got {prefix!r}")
    root = Path(outputs_root)
    root.mkdir(parents=True, exist_ok=True)
    stamp = (now or datetime.now()).strftime("%Y%m%d_%H%M%S")
    suffix = 1
    while True:
        name = f"{prefix}{stamp}" if suffix == 1 else f"{prefix}{stamp}_{suffix}"
        try:
            (root / name).mkdir()
            return root / name
        except FileExistsError:
            suffix += 1


class ProcessedAudioWriter:
    """``processed_audio.wav`` written block by block while a long input is scored, before its run
    folder exists (so a failed run leaves no folder); :func:`write_run` moves it into the folder.
    Use as a context manager: the partial file is removed if it was not moved."""

    def __init__(self, outputs_root: str | os.PathLike = "outputs") -> None:
        root = Path(outputs_root)
        root.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=root, prefix=f".{PROCESSED_AUDIO}.", suffix=".partial")
        os.close(handle)
        self.path = Path(partial)
        self._file: sf.SoundFile | None = sf.SoundFile(partial, "w", SAMPLE_RATE, 1, "PCM_16", format="WAV")

    def write(self, samples: np.ndarray) -> None:
        """Append 16 kHz mono float samples."""
        assert self._file is not None, "the processed audio was already finished"
        self._file.write(np.clip(samples, -1.0, 1.0))

    def finish(self) -> Path:
        """Close the file and give its (still temporary) path."""
        if self._file is not None:
            self._file.close()
            self._file = None
        return self.path

    def __enter__(self) -> "ProcessedAudioWriter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.finish()
        self.path.unlink(missing_ok=True)


def write_run(result: Result, samples: np.ndarray | ProcessedAudioWriter,
              outputs_root: str | os.PathLike = "outputs") -> Path:
    """Write one recognition run: ``processed_audio.wav`` (16 kHz mono PCM16; from ``samples``, or
    moved from a :class:`ProcessedAudioWriter`), ``result.json`` and, when the result carries one,
    ``embedding.npy``. Sets ``result.output_dir``."""
    run_dir = create_run_dir(outputs_root)
    if isinstance(samples, ProcessedAudioWriter):
        move_into_place(samples.finish(), run_dir / PROCESSED_AUDIO)
    else:
        sf.write(run_dir / PROCESSED_AUDIO, np.clip(samples, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")
    if result.embedding is not None:
        save_embedding(run_dir / EMBEDDING_NPY, result.embedding)
    result.output_dir = str(run_dir)
    with atomic_write(run_dir / RESULT_JSON) as stream:
        stream.write(result.to_json().encode("utf-8"))
    return run_dir


def read_run(run_dir: str | os.PathLike) -> dict:
    """Load a run folder's ``result.json``."""
    return json.loads((Path(run_dir) / RESULT_JSON).read_text(encoding="utf-8"))


_RUN_NAME = re.compile(r"^" + re.escape(RUN_PREFIX) + r"(\d{8}_\d{6})(?:_(\d+))?$")


@dataclass(frozen=True)
class RunSummary:
    """One earlier recognition run found by :func:`list_runs`.

    ``files`` are the run's files that exist (``processed_audio.wav``, ``result.json``,
    ``embedding.npy``), in that order. ``error`` is set when ``result.json`` is missing or
    unreadable (the other fields are then ``None``).
    """

    run_dir: Path
    started: datetime
    source: str | None
    emotion: str | None
    emotion_zh: str | None
    emoji: str | None
    confidence: float | None
    model: str | None
    granularity: str | None
    duration_s: float | None
    embedding_shape: tuple[int, ...] | None
    files: tuple[Path, ...]
    error: str | None = None


def servable_file(path: str | os.PathLike, outputs_root: str | os.PathLike) -> Path | None:
    """``path`` resolved, if it is a regular file inside ``outputs_root`` reached without any
    symbolic link (the file itself and every folder below the root); else ``None``.

    Anything an interface offers for download goes through this: a link planted in a run folder
    (to /etc/passwd, or to a file under the server's working directory) is never followed.
    """
    root = Path(outputs_root).resolve()
    candidate = Path(os.path.abspath(path))
    try:
        relative = candidate.relative_to(root)
    except ValueError:
        try:  # a root given through a link (e.g. /tmp -> /private/tmp): compare the real paths
            relative = Path(os.path.realpath(candidate.parent)).joinpath(candidate.name).relative_to(root)
        except ValueError:
            return None
    current = root
    for part in relative.parts:
        current = current / part
        if current.is_symlink():
            return None
    return current if current.is_file() else None


def list_runs(outputs_root: str | os.PathLike = "outputs", limit: int | None = None) -> list[RunSummary]:
    """The ``outputs_YYYYMMDD_HHMMSS[_N]`` run folders under ``outputs_root``, newest first.

    Other folders and files are ignored; a run whose ``result.json`` is missing or damaged is
    still listed, with ``error`` saying so. A missing ``outputs_root`` gives an empty list.
    ``limit`` keeps only the newest runs (``result.json`` is read for those only).
    """
    root = Path(outputs_root)
    if not root.is_dir():
        return []
    found: list[tuple[datetime, int, Path]] = []
    for entry in root.iterdir():
        match = _RUN_NAME.match(entry.name)
        if match is None or entry.is_symlink() or not entry.is_dir():
            continue
        try:
            started = datetime.strptime(match.group(1), "%Y%m%d_%H%M%S")
        except ValueError:
            continue
        found.append((started, int(match.group(2) or 1), entry))
    found.sort(key=lambda item: (item[0], item[1]), reverse=True)
    if limit is not None:
        found = found[:max(limit, 0)]
    return [_summarise_run(run_dir, started) for started, _, run_dir in found]


def _summarise_run(run_dir: Path, started: datetime) -> RunSummary:
    files = tuple(found for name in (PROCESSED_AUDIO, RESULT_JSON, EMBEDDING_NPY)
                  if (found := servable_file(run_dir / name, run_dir.parent)) is not None)
    empty = dict(source=None, emotion=None, emotion_zh=None, emoji=None, confidence=None, model=None,
                 granularity=None, duration_s=None, embedding_shape=None)
    if (run_dir / RESULT_JSON).is_symlink():
        return RunSummary(run_dir, started, files=files, error=f"{run_dir / RESULT_JSON}: a link, not read", **empty)
    try:
        data = read_run(run_dir)
    except FileNotFoundError:
        return RunSummary(run_dir, started, files=files, error=f"{run_dir}: no {RESULT_JSON}", **empty)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return RunSummary(run_dir, started, files=files, error=f"{run_dir / RESULT_JSON}: unreadable: {exc}", **empty)
    if not isinstance(data, dict):
        return RunSummary(run_dir, started, files=files, error=f"{run_dir / RESULT_JSON}: not a result object", **empty)
    shape = data.get("embedding_shape")
    confidence = data.get("confidence")
    duration = data.get("duration_s")
    return RunSummary(
        run_dir=run_dir,
        started=started,
        source=_text_or_none(data.get("source")),
        emotion=_text_or_none(data.get("emotion")),
        emotion_zh=_text_or_none(data.get("emotion_zh")),
        emoji=_text_or_none(data.get("emoji")),
        confidence=float(confidence) if isinstance(confidence, (int, float)) else None,
        model=_text_or_none(data.get("model")),
        granularity=_text_or_none(data.get("granularity")),
        duration_s=float(duration) if isinstance(duration, (int, float)) else None,
        embedding_shape=tuple(int(n) for n in shape) if isinstance(shape, list) else None,
        files=files,
        error=_text_or_none(data.get("error")),
    )


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
