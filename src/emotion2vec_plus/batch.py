"""Batch jobs: recognise every audio file under some folders or in a list, resumably.

``emotion2vec-plus batch INPUT... --out DIR`` (and :func:`run_batch` in Python) writes to ``DIR``:

- ``results.jsonl`` — one JSON line per file (``path``, ``size``, ``mtime``, ``mtime_ns``,
  ``status``, ``emotion``, ``confidence``, ``scores``, ``duration_s``, ``error``, ``model``,
  ``granularity``, ``embedding_file``, ``warnings``). Each line is appended with one ``write``,
  flushed and ``fsync``-ed, so a job killed at any moment leaves at most a partial last line,
  which the next run drops.
- ``embeddings.parquet`` — one row per successful file: ``path``, ``size``, ``mtime_ns``,
  ``emotion``, ``confidence``, ``scores`` (fixed-size list in the order of the ``labels`` entry of
  the schema metadata), ``duration_s``, ``embedding`` (``fixed_size_list<float32>[D]``; the
  utterance embedding, i.e. the mean of the frames for ``granularity="frame"``), ``num_frames``
  and ``embedding_file``. It is rebuilt at the end of every run from the part files in
  ``embeddings.parquet.parts/``, which are written (temp name, then rename) as results come in.
- ``embeddings/`` — per-file ``.npy`` files mirroring the input tree (relative to the common root
  of the inputs): (D,) with ``--embeddings npy|both``; with ``granularity="frame"`` the (T, D)
  frame features are always written here unless ``--embeddings none``.

Re-running the same command resumes: a file whose (absolute path, size, mtime_ns) already has a
line in ``results.jsonl`` is skipped (a failed one too, unless ``retry_failed``). Per window of
files the ``.npy`` files and the Parquet part are written *before* the JSON lines, and the final
Parquet keeps one row per file that has an ``ok`` line, so every file ends up exactly once in both.

Decoding runs on a thread pool while the model works through length-sorted batches of a
read-ahead window of decoded files.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterator, Sequence

import numpy as np

from .audio import Audio
from .defaults import AUDIO_EXTENSIONS, EMBEDDING_MODES
from .embeddings import utterance_embedding
from .fileio import atomic_write
from .errors import Emotion2VecError
from .results import Result
from .segmentation import LongAudio, load_input
from .terminal import terminal_safe
from .errors import BatchInputError  # defined in errors.py; importable from here too

if TYPE_CHECKING:  # pragma: no cover
    from .inference import Emotion2VecPlus

__all__ = [
    "AUDIO_EXTENSIONS",
    "EMBEDDING_MODES",
    "BatchInputError",
    "BatchPlan",
    "BatchSummary",
    "check_batch_options",
    "discover_inputs",
    "find_audio_files",
    "read_results",
    "run_batch",
    "stage_files",
    "write_results_csv",
    "zip_npy_embeddings",
]

#: Extensions (lower-case) picked up when a directory is searched.
#: An input file with one of these extensions is a list of paths, not audio.
LIST_EXTENSIONS: frozenset[str] = frozenset({".txt", ".csv"})

RESULTS_NAME = "results.jsonl"
RESULTS_CSV_NAME = "results.csv"
NPY_ZIP_NAME = "embeddings_npy.zip"
#: Columns of ``results.csv`` (the scores follow as one ``score_<label>`` column per class).
RESULTS_CSV_COLUMNS: tuple[str, ...] = ("path", "status", "emotion", "confidence", "duration_s", "error",
                                        "model", "granularity", "embedding_file")
PARQUET_NAME = "embeddings.parquet"
PARTS_NAME = "embeddings.parquet.parts"
NPY_DIR = "embeddings"
LOCK_NAME = ".lock"

#: Read-ahead budget: stop queueing decodes once this many bytes of (encoded) files are pending.
_PREFETCH_BYTES = 256 * 1024 * 1024
_PART_RE = re.compile(r"^part-(\d+)\.parquet$")
_UNSAFE_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
_MAX_NAME_BYTES = 200


@dataclass
class BatchSummary:
    """What one :func:`run_batch` call did.

    ``done`` / ``failed``: files processed by this call; ``skipped``: files of the inputs already in
    ``results.jsonl``, of which ``skipped_failed`` have an error line there (not retried without
    ``retry_failed``); ``audio_hours`` and the speeds count this call's files only.
    """

    done: int = 0
    failed: int = 0
    skipped: int = 0
    audio_hours: float = 0.0
    wall_s: float = 0.0
    files_per_s: float = 0.0
    audio_s_per_s: float = 0.0
    skipped_failed: int = 0

    def __str__(self) -> str:
        text = (f"done {self.done}, failed {self.failed}, skipped {self.skipped} (already in results.jsonl); "
                f"{self.audio_hours:.3f} h of audio in {self.wall_s:.1f} s "
                f"({self.files_per_s:.2f} files/s, {self.audio_s_per_s:.1f} audio-s/s)")
        if self.skipped_failed:
            text += f"\n{self.skipped_failed} skipped file(s) failed in an earlier run; --retry-failed retries them"
        return text


# ---------------------------------------------------------------------------------------------- discovery
@dataclass
class BatchPlan:
    """The audio files a batch job will go through (:func:`discover_inputs`)."""

    files: list[Path]
    roots: list[Path]

    @property
    def root(self) -> Path | None:
        """The common folder of all inputs (where the ``.npy`` mirror starts), if there is one."""
        if not self.roots:
            return None
        try:
            return Path(os.path.commonpath([str(r) for r in self.roots]))
        except ValueError:  # e.g. different drives on Windows
            return None


def find_audio_files(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """The audio files named by ``inputs``, as absolute paths.

    Each input is an audio file (taken whatever its extension), a directory (searched
    recursively for files with an extension in :data:`AUDIO_EXTENSIONS`, case-insensitively,
    in sorted order), or a ``.txt`` / ``.csv`` list of paths. A ``.txt`` list has one path per line
    (blank lines and ``#`` comments ignored); a ``.csv`` list uses its ``path`` column, or else its
    first column (a first row that names no existing file and has no audio extension is taken as a
    header). Relative paths in a list are resolved against the list's folder; listed directories are
    searched like directory inputs. Duplicates are dropped (the first occurrence is kept), otherwise
    the order of the inputs is kept.

    Raises:
        BatchInputError: an input or listed path does not exist, or a list cannot be read.
    """
    return discover_inputs(inputs).files


def discover_inputs(inputs: Sequence[str | os.PathLike]) -> BatchPlan:
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if not inputs:
        raise BatchInputError("no inputs given")
    files: list[Path] = []
    roots: list[Path] = []
    seen: set[str] = set()

    def add(path: Path) -> None:
        key = os.path.normcase(os.path.realpath(path))
        if key not in seen:
            seen.add(key)
            files.append(path)

    def add_dir(directory: Path) -> None:
        roots.append(directory)
        for path in _walk_audio(directory):
            add(path)

    for raw in inputs:
        path = _absolute(Path(os.fspath(raw)).expanduser())
        if path.is_dir():
            add_dir(path)
        elif path.is_file():
            if path.suffix.lower() in LIST_EXTENSIONS:
                for entry in _read_list(path):
                    if entry.is_dir():
                        add_dir(entry)
                    else:
                        roots.append(entry.parent)
                        add(entry)
            else:
                roots.append(path.parent)
                add(path)
        else:
            raise BatchInputError(f"input not found: {os.fspath(raw)}")
    return BatchPlan(files, roots)


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))


def _walk_audio(directory: Path) -> list[Path]:
    found: list[Path] = []
    for folder, dirs, names in os.walk(directory, onerror=None, followlinks=False):
        dirs.sort()
        for name in names:
            if os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS:
                path = Path(folder, name)
                if path.is_file():
                    found.append(path)
    return sorted(found)


def _read_list(list_path: Path) -> list[Path]:
    try:
        text = list_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BatchInputError(f"cannot read the list {list_path}: {exc}") from exc
    base = list_path.parent
    entries: list[tuple[int, str]] = []
    if list_path.suffix.lower() == ".csv":
        try:
            rows = [(n, row) for n, row in enumerate(csv.reader(text.splitlines()), 1) if any(c.strip() for c in row)]
        except csv.Error as exc:
            raise BatchInputError(f"cannot read the list {list_path}: {exc}") from exc
        column = 0
        if rows:
            header = [cell.strip().lower() for cell in rows[0][1]]
            if "path" in header:
                column = header.index("path")
                rows = rows[1:]
            elif not _looks_like_entry(rows[0][1][0].strip(), base):
                rows = rows[1:]
        for number, row in rows:
            if column >= len(row) or not row[column].strip():
                raise BatchInputError(f"{list_path}:{number}: no path in this row")
            entries.append((number, row[column].strip()))
    else:
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if line and not line.startswith("#"):
                entries.append((number, line))
    paths = []
    for number, entry in entries:
        path = _absolute(base / Path(entry).expanduser())
        if not path.exists():
            raise BatchInputError(f"{list_path}:{number}: file not found: {entry}")
        paths.append(path)
    return paths


def _looks_like_entry(cell: str, base: Path) -> bool:
    return bool(cell) and (os.path.splitext(cell)[1].lower() in AUDIO_EXTENSIONS or (base / cell).exists())


# ---------------------------------------------------------------------------------------------- output names
def _safe_component(name: str) -> str:
    name = _UNSAFE_CHARS.sub("_", name).strip(" ")
    if name in ("", ".", ".."):
        return "_"
    if name.rstrip(".") != name:  # trailing dots vanish on Windows
        name = name.rstrip(".") + "_"
    if name.split(".")[0].upper() in _WINDOWS_RESERVED:
        name = "_" + name
    if len(name.encode("utf-8")) > _MAX_NAME_BYTES:
        digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
        name = name.encode("utf-8")[: _MAX_NAME_BYTES - 9].decode("utf-8", "ignore") + "-" + digest
    return name


def _npy_names(files: Sequence[Path], root: Path | None) -> dict[Path, str]:
    """Relative ``.npy`` paths (POSIX, under ``embeddings/``) mirroring ``files`` below ``root``.

    ``dir/clip.wav`` becomes ``dir/clip.npy``; files that would collide (``clip.wav`` and ``clip.mp3``,
    or names that differ in case only) keep their extension (``clip.wav.npy``), and a hash of the
    path is added if that still collides. Every component is sanitised, so the result never leaves
    the folder it is joined to.
    """
    parts_of: dict[Path, tuple[str, ...]] = {}
    for path in files:
        try:
            rel = path.relative_to(root).parts if root is not None else path.parts[1:]
        except ValueError:
            rel = path.parts[1:]
        rel = rel or (path.name,)
        parts_of[path] = tuple(_safe_component(p) for p in rel)

    def candidate(parts: tuple[str, ...], level: int, path: Path) -> str:
        *folders, name = parts
        if level == 0:
            stem = name.rsplit(".", 1)[0] if "." in name.strip(".") else name
        elif level == 1:
            stem = name
        else:
            stem = f"{name}-{hashlib.sha1(str(path).encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"
        return "/".join([*folders, _safe_component(stem) + ".npy"])

    names: dict[Path, str] = {}
    pending = list(files)
    for level in range(3):
        counts: dict[str, int] = {}
        proposals = {path: candidate(parts_of[path], level, path) for path in pending}
        taken = {n.lower() for n in names.values()}
        for name in proposals.values():
            counts[name.lower()] = counts.get(name.lower(), 0) + 1
        still = []
        for path, name in proposals.items():
            if (counts[name.lower()] == 1 and name.lower() not in taken) or level == 2:
                names[path] = name
            else:
                still.append(path)
        pending = still
        if not pending:
            break
    return names


# ---------------------------------------------------------------------------------------------- results.jsonl
@dataclass
class _Entry:
    """One file of the job: where it is, its identity for resuming, and its ``.npy`` name."""

    path: Path
    size: int | None
    mtime: float | None
    mtime_ns: int | None
    npy_name: str

    @property
    def key(self) -> tuple[str, int | None, int | None]:
        return (str(self.path), self.size, self.mtime_ns)

    def line(self, **fields: Any) -> dict[str, Any]:
        return {"path": str(self.path), "size": self.size, "mtime": self.mtime, "mtime_ns": self.mtime_ns, **fields}


def _line_key(record: dict[str, Any]) -> tuple[str, int | None, int | None] | None:
    path = record.get("path")
    if not isinstance(path, str):
        return None
    return (path, record.get("size"), record.get("mtime_ns"))


def _read_results(path: Path) -> list[dict[str, Any]]:
    """The complete lines of ``results.jsonl``; a partial last line is cut off the file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    end = data.rfind(b"\n") + 1
    if end < len(data):  # killed in the middle of a write: drop the fragment so appends stay whole lines
        with open(path, "r+b") as handle:
            handle.truncate(end)
            handle.flush()
            os.fsync(handle.fileno())
    return _parse_result_lines(data[:end])


def _parse_result_lines(data: bytes) -> list[dict[str, Any]]:
    """The well-formed result records of complete JSONL lines (others are skipped)."""
    records = []
    for raw in data.splitlines():
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        if isinstance(record, dict) and _line_key(record) is not None:
            records.append(record)
    return records


def _rewrite_results(path: Path, records: list[dict[str, Any]]) -> None:
    with atomic_write(path, durable=True, temp_name=f"{path.name}.tmp-{os.getpid()}") as handle:
        for record in records:
            handle.write(_encode_line(record))


def _encode_line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


class _ResultsLog:
    """Appends whole lines to ``results.jsonl``: one ``write``, flush and ``fsync`` per line."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, record: dict[str, Any]) -> None:
        data = memoryview(_encode_line(record))
        while data:  # one write for a regular file; the loop only guards against a short write
            written = os.write(self._fd, data)
            data = data[written:]
        os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


# ---------------------------------------------------------------------------------------------- parquet
class _ParquetParts:
    """Part files written as results come in, combined into ``embeddings.parquet`` at the end."""

    def __init__(self, out_dir: Path, labels: list[str], dim: int, model: str, granularity: str) -> None:
        import pyarrow as pa

        self.pa = pa
        self.dir = out_dir / PARTS_NAME
        self.final = out_dir / PARQUET_NAME
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.glob("*.tmp-*"):  # a part that was being written when a job was killed
            stale.unlink(missing_ok=True)
        numbers = [int(m.group(1)) for p in self.dir.iterdir() if (m := _PART_RE.match(p.name))]
        self.next_number = max(numbers, default=-1) + 1
        self.labels = labels
        self.dim = dim
        metadata = {
            "labels": json.dumps(labels, ensure_ascii=False),
            "model": model,
            "granularity": granularity,
            "embedding_dim": str(dim),
            "embedding": "utterance mean" if granularity == "frame" else "utterance",
        }
        self.schema = pa.schema(
            [
                pa.field("path", pa.string(), nullable=False),
                pa.field("size", pa.int64()),
                pa.field("mtime_ns", pa.int64()),
                pa.field("emotion", pa.string()),
                pa.field("confidence", pa.float64()),
                pa.field("scores", pa.list_(pa.float32(), len(labels))),
                pa.field("duration_s", pa.float64()),
                pa.field("embedding", pa.list_(pa.float32(), dim), nullable=False),
                pa.field("num_frames", pa.int32()),
                pa.field("embedding_file", pa.string()),
            ],
            metadata=metadata,
        )

    def table(self, rows: list[dict[str, Any]]):
        pa = self.pa
        embedding = np.stack([row["embedding"] for row in rows]).astype(np.float32, copy=False)
        columns = {
            "path": pa.array([row["path"] for row in rows], pa.string()),
            "size": pa.array([row["size"] for row in rows], pa.int64()),
            "mtime_ns": pa.array([row["mtime_ns"] for row in rows], pa.int64()),
            "emotion": pa.array([row["emotion"] for row in rows], pa.string()),
            "confidence": pa.array([row["confidence"] for row in rows], pa.float64()),
            "scores": pa.array([row["scores"] for row in rows], self.schema.field("scores").type),
            "duration_s": pa.array([row["duration_s"] for row in rows], pa.float64()),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(embedding.reshape(-1), pa.float32()), self.dim),
            "num_frames": pa.array([row["num_frames"] for row in rows], pa.int32()),
            "embedding_file": pa.array([row["embedding_file"] for row in rows], pa.string()),
        }
        return pa.Table.from_arrays(list(columns.values()), schema=self.schema)

    def write_part(self, rows: list[dict[str, Any]]) -> Path:
        import pyarrow.parquet as pq

        path = self.dir / f"part-{self.next_number:05d}.parquet"
        self.next_number += 1
        _atomic_write(path, lambda handle: pq.write_table(self.table(rows), handle))
        return path

    def combine(self, keep: set[tuple[str, int | None, int | None]]) -> int:
        """Write ``embeddings.parquet`` with one row per key in ``keep`` (its latest part row)."""
        import pyarrow.parquet as pq

        parts = sorted(p for p in self.dir.iterdir() if _PART_RE.match(p.name))
        latest: dict[tuple, tuple[int, int]] = {}
        for index, part in enumerate(parts):
            keys = pq.read_table(part, columns=["path", "size", "mtime_ns"]).to_pydict()
            for row, key in enumerate(zip(keys["path"], keys["size"], keys["mtime_ns"])):
                if key in keep:
                    latest[key] = (index, row)
        by_part: dict[int, list[int]] = {}
        for index, row in latest.values():
            by_part.setdefault(index, []).append(row)

        def write(handle) -> None:
            with pq.ParquetWriter(handle, self.schema) as writer:
                for index, part in enumerate(parts):
                    rows = sorted(by_part.get(index, []))
                    if rows:
                        table = pq.read_table(part).select(self.schema.names).take(rows)
                        writer.write_table(table.cast(self.schema))
                if not latest:
                    writer.write_table(self.schema.empty_table())

        _atomic_write(self.final, write)
        return len(latest)


def _atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` through ``write(handle)``: complete and on disk, or not at all (a killed job
    leaves ``NAME.tmp-PID``, which the next run deletes)."""
    with atomic_write(path, durable=True, temp_name=f"{path.name}.tmp-{os.getpid()}") as handle:
        write(handle)


def _save_npy(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, lambda handle: np.save(handle, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False))


# ---------------------------------------------------------------------------------------------- decoding
@dataclass
class _Decoded:
    entry: _Entry
    audio: Audio | LongAudio | None = None
    error: str | None = None

    @property
    def num_samples(self) -> int:
        return self.audio.num_samples if isinstance(self.audio, LongAudio) else len(self.audio.samples) if self.audio else 0


def _decode(entry: _Entry, max_duration_s: float | None, hold_in_memory_s: float) -> _Decoded:
    """One file decoded, or, when longer than ``hold_in_memory_s``, scanned for its speech to be
    streamed again when scored (:func:`~emotion2vec_plus.segmentation.load_input`)."""
    if entry.size is None:
        return _Decoded(entry, error=f"{entry.path}: file not found or not readable")
    try:
        return _Decoded(entry, audio=load_input(entry.path, name=str(entry.path), max_duration_s=max_duration_s,
                                                hold_in_memory_s=hold_in_memory_s))
    except Emotion2VecError as exc:
        return _Decoded(entry, error=str(exc))
    except Exception as exc:  # one bad file must not stop the job
        return _Decoded(entry, error=f"{entry.path}: cannot decode: {type(exc).__name__}: {exc}")


def _read_ahead(pool: ThreadPoolExecutor, entries: list[_Entry], window: int,
                max_duration_s: float | None, hold_in_memory_s: float) -> Iterator[list[_Decoded]]:
    """Windows of up to ``window`` decoded files, decoding the next window while one is in use."""
    pending: deque[tuple[_Entry, Future]] = deque()
    source = iter(entries)
    pending_bytes = 0

    def fill() -> None:
        nonlocal pending_bytes
        while len(pending) < 2 * window and (not pending or pending_bytes < _PREFETCH_BYTES):
            entry = next(source, None)
            if entry is None:
                return
            pending.append((entry, pool.submit(_decode, entry, max_duration_s, hold_in_memory_s)))
            pending_bytes += entry.size or 0

    fill()
    while pending:
        group: list[tuple[_Entry, Future]] = []
        group_bytes = 0
        while pending and len(group) < window and (not group or group_bytes < _PREFETCH_BYTES // 2):
            entry, future = pending.popleft()
            group.append((entry, future))
            group_bytes += entry.size or 0
            pending_bytes -= entry.size or 0
        fill()
        yield [future.result() for _, future in group]


# ---------------------------------------------------------------------------------------------- the job
def run_batch(
    model: "Emotion2VecPlus",
    inputs: Sequence[str | os.PathLike] | BatchPlan,
    out_dir: str | os.PathLike,
    *,
    granularity: str = "utterance",
    embeddings: str = "parquet",
    workers: int = 2,
    batch_size: int = 8,
    progress: bool | Callable[[int, int], None] = True,
    retry_failed: bool = False,
) -> BatchSummary:
    """Recognise every file of ``inputs`` (see :func:`find_audio_files`) into ``out_dir``; resumable.

    Args:
        model: a loaded model.
        inputs: files, directories and ``.txt`` / ``.csv`` lists of paths, or their
            :func:`discover_inputs` already done.
        out_dir: where ``results.jsonl``, ``embeddings.parquet`` and ``embeddings/`` go (created).
        granularity: ``"utterance"`` or ``"frame"`` (frame features (T, D) go to ``.npy`` files).
        embeddings: ``"parquet"``, ``"npy"``, ``"both"`` or ``"none"``.
        workers: decoding threads.
        batch_size: files per forward pass (a read-ahead window of ``4 * batch_size`` files is
            sorted by length and cut into batches).
        progress: ``True``: a tqdm progress bar (files/s, audio-seconds/s, ETA) on stderr; a
            function: called with (files finished, files to do) after each batch (e.g. to drive a
            WebUI progress bar); ``False``: nothing.
        retry_failed: process files again whose earlier line is an error.

    Returns:
        Counts and speed of this call; files already in ``results.jsonl`` count as ``skipped``.

    Raises:
        BatchInputError: missing inputs, unreadable lists, or an ``out_dir`` holding results of
            another model or granularity.
    """
    plan = inputs if isinstance(inputs, BatchPlan) else discover_inputs(inputs)
    return _run(model, plan, out_dir, granularity=granularity, embeddings=embeddings, workers=workers,
                batch_size=batch_size, progress=progress, retry_failed=retry_failed)


def check_batch_options(granularity: str, embeddings: str, workers: int, batch_size: int) -> None:
    if granularity not in ("utterance", "frame"):
        raise ValueError(f"granularity must be 'utterance' or 'frame', got {granularity!r}")
    if embeddings not in EMBEDDING_MODES:
        raise ValueError(f"embeddings must be one of {EMBEDDING_MODES}, got {embeddings!r}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")


def _stat_entries(plan: BatchPlan) -> list[_Entry]:
    names = _npy_names(plan.files, plan.root)
    entries = []
    for path in plan.files:
        try:
            st = os.stat(path)
            size, mtime, mtime_ns = st.st_size, st.st_mtime, st.st_mtime_ns
        except OSError:
            size = mtime = mtime_ns = None
        entries.append(_Entry(path, size, mtime, mtime_ns, names[path]))
    return entries


def _run(model: "Emotion2VecPlus", plan: BatchPlan, out_dir: str | os.PathLike, *, granularity: str, embeddings: str,
         workers: int, batch_size: int, progress: bool | Callable[[int, int], None], retry_failed: bool) -> BatchSummary:
    check_batch_options(granularity, embeddings, workers, batch_size)
    started = time.perf_counter()
    with locked_output_dir(out_dir) as out:
        return _run_locked(model, plan, out, granularity=granularity, embeddings=embeddings, workers=workers,
                           batch_size=batch_size, progress=progress, retry_failed=retry_failed, started=started)


@contextmanager
def locked_output_dir(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Create the output folder (absolute path) and hold its lock while the job writes to it."""
    out = _absolute(Path(out_dir).expanduser())
    if out.exists() and not out.is_dir():
        raise BatchInputError(f"--out {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    lock = _lock(out)
    try:
        yield out
    finally:
        os.close(lock)


def _lock(out: Path) -> int:
    """Hold an exclusive lock on ``out/.lock`` so two jobs never append to the same results (POSIX)."""
    fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory lock
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise BatchInputError(f"another batch job is writing to {out}; wait for it or choose another --out") from None
    return fd


def _remove_temporaries(out: Path) -> None:
    """Delete files a killed job was writing (``NAME.tmp-PID``); their final names were never taken."""
    tmp = re.compile(r"\.tmp-\d+$")
    for path in out.iterdir():
        if path.is_file() and tmp.search(path.name):
            path.unlink(missing_ok=True)
    for folder, _, names in os.walk(out / NPY_DIR):
        for name in names:
            if tmp.search(name):
                Path(folder, name).unlink(missing_ok=True)


def _run_locked(model: "Emotion2VecPlus", plan: BatchPlan, out: Path, *, granularity: str, embeddings: str, workers: int,
                batch_size: int, progress: bool | Callable[[int, int], None], retry_failed: bool,
                started: float) -> BatchSummary:
    _remove_temporaries(out)
    entries = _stat_entries(plan)
    results_path = out / RESULTS_NAME
    todo, ok_keys, summary = _resume_plan(entries, results_path, model.model_name, granularity, retry_failed)
    parts, write_npy = _open_outputs(out, model, granularity, embeddings)
    audio_s = 0.0
    bar = _progress_bar(len(todo)) if progress is True and todo else None
    report = progress if callable(progress) else None
    finished = 0

    def advance(count: int) -> None:
        nonlocal finished
        finished += count
        if bar is not None:
            bar.update(count)
        if report is not None:
            report(finished, len(todo))

    log = _ResultsLog(results_path)
    window = 4 * batch_size
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="emotion2vec-decode")
    try:
        for group in _read_ahead(pool, todo, window, model.max_duration_s, model.hold_in_memory_s):
            lines: list[dict[str, Any]] = []
            rows: list[dict[str, Any]] = []
            for item in group:
                if item.audio is None:
                    lines.append(_error_line(item.entry, item.error or "unknown error", model, granularity))
            if lines:
                advance(len(lines))
            decoded = sorted((item for item in group if item.audio is not None),
                             key=lambda item: item.num_samples, reverse=True)
            for start in range(0, len(decoded), batch_size):
                batch = decoded[start:start + batch_size]
                for item, result in zip(batch, _predict(model, batch, granularity, embeddings != "none")):
                    if not result.ok:
                        lines.append(_error_line(item.entry, result.error or "unknown error", model, granularity))
                        continue
                    line, row = _outputs(item.entry, result, out, granularity, write_npy)
                    lines.append(line)
                    if row is not None:
                        rows.append(row)
                    audio_s += result.duration_s
                advance(len(batch))
                if bar is not None:
                    elapsed = max(time.perf_counter() - started, 1e-9)
                    bar.set_postfix_str(f"{audio_s / elapsed:.1f} audio-s/s", refresh=False)
            _commit(parts, log, lines, rows, summary, ok_keys, bar)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        log.close()
        if bar is not None:
            bar.close()
    return _finish(parts, ok_keys, summary, audio_s, started)


# The steps below are shared with the Ray engine (``ray_engine.py``), so both write the same files.
def _resume_plan(entries: list[_Entry], results_path: Path, model_name: str, granularity: str,
                 retry_failed: bool) -> tuple[list[_Entry], set, BatchSummary]:
    """The files still to do, the keys of the ``ok`` lines kept, and a summary with the skipped counts."""
    records = _read_results(results_path)
    for record in records:
        if record.get("model") != model_name or record.get("granularity") != granularity:
            raise BatchInputError(
                f"{results_path} holds results of model {record.get('model')!r} with granularity "
                f"{record.get('granularity')!r}; this run uses {model_name!r} with {granularity!r}: "
                "choose another --out"
            )
    # Lines to drop before redoing files: failed ones with retry_failed, and files changed since.
    current = {str(e.path): e.key for e in entries}
    kept = [r for r in records if not (
        (r["path"] in current and _line_key(r) != current[r["path"]])
        or (retry_failed and r.get("status") != "ok" and r["path"] in current)
    )]
    if len(kept) != len(records):
        _rewrite_results(results_path, kept)
    done_keys = {_line_key(r) for r in kept}
    todo = [e for e in entries if e.key not in done_keys]
    ok_keys = {k for r in kept if r.get("status") == "ok" and (k := _line_key(r)) is not None}
    failed_keys = {_line_key(r) for r in kept if r.get("status") != "ok"}
    summary = BatchSummary(skipped=len(entries) - len(todo),
                           skipped_failed=sum(e.key in failed_keys for e in entries))
    return todo, ok_keys, summary


def _open_outputs(out: Path, model: "Emotion2VecPlus", granularity: str,
                  embeddings: str) -> tuple[_ParquetParts | None, bool]:
    """The Parquet part writer (``None`` without Parquet output) and whether ``.npy`` files are written."""
    labels = [label.english for label in model.labels]
    write_parquet = embeddings in ("parquet", "both")
    write_npy = embeddings in ("npy", "both") or (granularity == "frame" and embeddings != "none")
    parts = _ParquetParts(out, labels, model.embed_dim, model.model_name, granularity) if write_parquet else None
    return parts, write_npy


def _commit(parts: _ParquetParts | None, log: _ResultsLog, lines: list[dict[str, Any]], rows: list[dict[str, Any]],
            summary: BatchSummary, ok_keys: set, bar) -> None:
    """Write one window's Parquet part, then its JSON lines, and count them in ``summary``."""
    # Embeddings first, then the lines: a line is the promise that its outputs exist.
    if parts is not None and rows:
        parts.write_part(rows)
    for line in lines:
        log.append(line)
        if line["status"] == "ok":
            summary.done += 1
            ok_keys.add((line["path"], line["size"], line["mtime_ns"]))
        else:
            summary.failed += 1
            if bar is not None:
                bar.write(f"✗ {terminal_safe(line['error'])}", file=sys.stderr)


def _finish(parts: _ParquetParts | None, ok_keys: set, summary: BatchSummary, audio_s: float,
            started: float) -> BatchSummary:
    """Combine the Parquet parts into ``embeddings.parquet`` and fill in the speeds."""
    if parts is not None:
        parts.combine(ok_keys)
    summary.wall_s = time.perf_counter() - started
    summary.audio_hours = audio_s / 3600.0
    processed = summary.done + summary.failed
    summary.files_per_s = processed / summary.wall_s if summary.wall_s > 0 else 0.0
    summary.audio_s_per_s = audio_s / summary.wall_s if summary.wall_s > 0 else 0.0
    return summary


def _progress_bar(total: int):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency; run without a bar if it is missing
        return None
    return tqdm(total=total, unit="file", file=sys.stderr, dynamic_ncols=True, smoothing=0.05,
                desc="batch")


def _predict(model: "Emotion2VecPlus", batch: list[_Decoded], granularity: str, embedding: bool) -> list[Result]:
    """``model.predict_batch`` on already-decoded audio; if a whole batch fails in the model, its
    files are retried one by one so one file cannot fail the others."""
    try:
        return model.predict_batch([item.audio for item in batch], granularity=granularity,  # type: ignore[misc]
                                   extract_embedding=embedding, batch_size=len(batch), errors="collect")
    except Exception as exc:
        if len(batch) > 1:
            return [_predict(model, [item], granularity, embedding)[0] for item in batch]
        return [Result(source=str(batch[0].entry.path), model=model.model_name, granularity=granularity,
                       error=f"{batch[0].entry.path}: model failed: {type(exc).__name__}: {exc}")]


def _error_line(entry: _Entry, error: str, model: "Emotion2VecPlus", granularity: str) -> dict[str, Any]:
    return entry.line(status="error", emotion=None, confidence=None, scores=None, duration_s=None, error=error,
                      model=model.model_name, granularity=granularity, embedding_file=None, warnings=[])


def _outputs(entry: _Entry, result: Result, out: Path, granularity: str,
             write_npy: bool) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The JSON line of a successful file, its Parquet row (when there is an embedding) and its ``.npy``."""
    embedding_file = None
    row = None
    if result.embedding is not None:
        array = np.asarray(result.embedding, dtype=np.float32)
        utterance = utterance_embedding(array)
        if write_npy:
            embedding_file = f"{NPY_DIR}/{entry.npy_name}"
            _save_npy(out / NPY_DIR / Path(*entry.npy_name.split("/")), array)
        row = {
            "path": str(entry.path), "size": entry.size, "mtime_ns": entry.mtime_ns,
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


# ---------------------------------------------------------------------------------------------- job files for people
def stage_files(named_files: Sequence[tuple[str, str | os.PathLike]], folder: str | os.PathLike) -> list[Path]:
    """Copy files into ``folder`` under safe, unique names made from their display names.

    For inputs whose names come from outside, e.g. a browser upload's file name: only the last
    component of a display name is used, sanitised like the ``.npy`` names (no separators,
    control or reserved characters, no ``..``); equal names get ``-2``, ``-3``... before the
    extension. Nothing is written outside ``folder``, and an existing file is never
    overwritten. Files are hard-linked when possible, else copied. Returns the new paths in
    input order.
    """
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    staged: list[Path] = []
    for display_name, source in named_files:
        base = _safe_component(re.split(r"[\\/]", display_name or "")[-1] or "file")
        stem, dot, extension = base.rpartition(".") if "." in base.strip(".") else (base, "", "")
        number = 1
        while True:
            name = base if number == 1 else _safe_component(f"{stem}-{number}{dot}{extension}")
            destination = target / name
            try:
                os.link(source, destination)
                break
            except FileExistsError:
                number += 1
            except OSError:  # another file system, or links not allowed: copy without overwriting
                try:
                    with open(source, "rb") as reader, open(destination, "xb") as writer:
                        while chunk := reader.read(1 << 20):
                            writer.write(chunk)
                    break
                except FileExistsError:
                    number += 1
        staged.append(destination)
    return staged


def read_results(out_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The lines of ``out_dir/results.jsonl`` (one dict per file, in the order they were written).

    A partial last line (a job killed while writing) is left out; a missing file gives ``[]``.
    """
    path = Path(out_dir) / RESULTS_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    return _parse_result_lines(data[: data.rfind(b"\n") + 1])


def write_results_csv(out_dir: str | os.PathLike, target: str | os.PathLike | None = None) -> Path:
    """Write the job's ``results.jsonl`` as a CSV table (default ``out_dir/results.csv``).

    Columns: :data:`RESULTS_CSV_COLUMNS`, then one ``score_<label>`` column per class (in the order
    the scores were written). UTF-8 with a byte-order mark, so spreadsheet programs show the
    Chinese and emoji correctly. Returns the path written.
    """
    records = read_results(out_dir)
    labels: list[str] = []
    for record in records:
        for label in (record.get("scores") or {}):
            if label not in labels:
                labels.append(label)
    path = Path(target) if target is not None else Path(out_dir) / RESULTS_CSV_NAME

    def write(handle) -> None:
        text = io.TextIOWrapper(handle, encoding="utf-8-sig", newline="")
        writer = csv.writer(text)
        writer.writerow([*RESULTS_CSV_COLUMNS, *(f"score_{label}" for label in labels)])
        for record in records:
            scores = record.get("scores") or {}
            writer.writerow([_csv_cell(record.get(column)) for column in RESULTS_CSV_COLUMNS]
                            + [_csv_cell(scores.get(label)) for label in labels])
        text.flush()
        text.detach()

    _atomic_write(path, write)
    return path


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def zip_npy_embeddings(out_dir: str | os.PathLike, target: str | os.PathLike | None = None) -> Path | None:
    """Zip the job's per-file ``.npy`` embeddings (``out_dir/embeddings/``) into one archive.

    Entries keep their paths below ``embeddings/``. Default target ``out_dir/embeddings_npy.zip``;
    returns ``None`` (and writes nothing) when the job wrote no ``.npy`` files.
    """
    import zipfile

    folder = Path(out_dir) / NPY_DIR
    files = sorted(p for p in folder.rglob("*.npy") if p.is_file()) if folder.is_dir() else []
    if not files:
        return None
    path = Path(target) if target is not None else Path(out_dir) / NPY_ZIP_NAME

    def write(handle) -> None:
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for file in files:
                archive.write(file, file.relative_to(folder).as_posix())

    _atomic_write(path, write)
    return path
