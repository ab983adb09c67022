"""What a batch job writes and reads back: results.jsonl, the Parquet parts and the final Parquet, the
.npy mirror, the folder lock, resume rules, and the files offered to people (CSV, zip)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterator, Sequence

import numpy as np

from ..errors import BatchInputError
from ..fileio import atomic_write
from ..outputs import BATCH_NPY_ZIP, BATCH_PARQUET, BATCH_RESULTS, BATCH_RESULTS_CSV
from ..terminal import terminal_safe

from .discovery import absolute_path

if TYPE_CHECKING:  # pragma: no cover
    from ..inference import Emotion2VecPlus


# The file names are the batch run folder's (outputs.py defines every kind of run folder).
RESULTS_NAME = BATCH_RESULTS


RESULTS_CSV_NAME = BATCH_RESULTS_CSV


NPY_ZIP_NAME = BATCH_NPY_ZIP


#: Columns of ``results.csv`` (the scores follow as one ``score_<label>`` column per class).
RESULTS_CSV_COLUMNS: tuple[str, ...] = ("path", "status", "emotion", "confidence", "duration_s", "error",
                                        "model", "granularity", "embedding_file")


PARQUET_NAME = BATCH_PARQUET


PARTS_NAME = "embeddings.parquet.parts"


NPY_DIR = "embeddings"


LOCK_NAME = ".lock"


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


def npy_names(files: Sequence[Path], root: Path | None) -> dict[Path, str]:
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


@dataclass
class Entry:
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


class ResultsLog:
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


class ParquetParts:
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


def save_npy(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, lambda handle: np.save(handle, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False))


@contextmanager
def locked_output_dir(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Create the output folder (absolute path) and hold its lock while the job writes to it."""
    out = absolute_path(Path(out_dir).expanduser())
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


def remove_temporaries(out: Path) -> None:
    """Delete files a killed job was writing (``NAME.tmp-PID``); their final names were never taken."""
    tmp = re.compile(r"\.tmp-\d+$")
    for path in out.iterdir():
        if path.is_file() and tmp.search(path.name):
            path.unlink(missing_ok=True)
    for folder, _, names in os.walk(out / NPY_DIR):
        for name in names:
            if tmp.search(name):
                Path(folder, name).unlink(missing_ok=True)


def resume_plan(entries: list[Entry], results_path: Path, model_name: str, granularity: str,
                 retry_failed: bool) -> tuple[list[Entry], set, BatchSummary]:
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


def open_outputs(out: Path, model: "Emotion2VecPlus", granularity: str,
                  embeddings: str) -> tuple[ParquetParts | None, bool]:
    """The Parquet part writer (``None`` without Parquet output) and whether ``.npy`` files are written."""
    labels = [label.english for label in model.labels]
    write_parquet = embeddings in ("parquet", "both")
    write_npy = embeddings in ("npy", "both") or (granularity == "frame" and embeddings != "none")
    parts = ParquetParts(out, labels, model.embed_dim, model.model_name, granularity) if write_parquet else None
    return parts, write_npy


def commit_window(parts: ParquetParts | None, log: ResultsLog, lines: list[dict[str, Any]], rows: list[dict[str, Any]],
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


def finish_job(parts: ParquetParts | None, ok_keys: set, summary: BatchSummary, audio_s: float,
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


def write_results_csv(out_dir: str | os.PathLike, target: str | os.PathLike | None = None,
                      order: Sequence[str | os.PathLike] | None = None) -> Path:
    """Write the job's ``results.jsonl`` as a CSV table (default ``out_dir/results.csv``).

    Columns: :data:`RESULTS_CSV_COLUMNS`, then one ``score_<label>`` column per class (in the order
    the scores were written). Rows follow ``order`` (the inputs as the user gave them; files are
    processed in length-sorted batches, so ``results.jsonl`` is in processing order), files not in
    ``order`` after them as written; without ``order``, as written. UTF-8 with a byte-order mark, so
    spreadsheet programs show the Chinese and emoji correctly. Returns the path written.
    """
    records = read_results(out_dir)
    if order is not None:
        position: dict[str, int] = {}
        for rank, path in enumerate(order):
            for key in (str(path), str(Path(path).resolve())):
                position.setdefault(key, rank)
        records.sort(key=lambda record: position.get(str(record.get("path")), len(position)))
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
