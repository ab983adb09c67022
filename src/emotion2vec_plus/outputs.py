"""Run folders under an outputs root: ``outputs_YYYYMMDD_HHMMSS/`` (one recognition: the processed
audio, JSON and embedding), ``batch_YYYYMMDD_HHMMSS/`` (a batch job started from the WebUI),
``live_YYYYMMDD_HHMMSS/`` (a live session: its audio, every event, the utterances' embeddings;
:class:`LiveRecorder`), and the listing of every kind of run (:data:`RUN_KINDS`, :func:`list_runs`)
that the WebUI's History shows."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np
import soundfile as sf

from .audio import SAMPLE_RATE
from .embeddings import save_embedding
from .fileio import atomic_write, move_into_place
from .results import Result

if TYPE_CHECKING:  # pragma: no cover
    from .streaming import StreamEvent

RUN_PREFIX = "outputs_"
PROCESSED_AUDIO = "processed_audio.wav"
RESULT_JSON = "result.json"
EMBEDDING_NPY = "embedding.npy"

#: A batch job's folder: the WebUI's Batch tab makes ``batch_YYYYMMDD_HHMMSS``; the ``batch`` command
#: writes the same files into the folder it is given. :mod:`emotion2vec_plus.jobs.store` writes them.
BATCH_PREFIX = "batch_"
BATCH_RESULTS = "results.jsonl"
BATCH_RESULTS_CSV = "results.csv"
BATCH_PARQUET = "embeddings.parquet"
BATCH_NPY_ZIP = "embeddings_npy.zip"

#: A live session saved from the WebUI: ``live_YYYYMMDD_HHMMSS`` with the 16 kHz audio, every event
#: (``StreamEvent.to_dict()``, one JSON object a line, without embeddings) and the embeddings of its
#: utterances, row i for the i-th ``utterance`` event.
LIVE_PREFIX = "live_"
LIVE_EVENTS = "events.jsonl"
LIVE_EMBEDDINGS = "utterances.npy"
#: Hidden folders under the outputs root where live sessions keep their files while they run.
LIVE_WORK_PREFIX = ".live-"


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


class LiveRecorder:
    """The files of a live session, written as it runs, and saved as a ``live_YYYYMMDD_HHMMSS`` run.

    While the session runs, its 16 kHz audio (PCM16), its events (JSON lines) and its utterances'
    embeddings (float32 rows) are appended to files in a private hidden folder under the outputs
    root (``.live-*``), so an hour-long session holds none of them in memory. :meth:`save` copies
    what has arrived so far into a fresh run folder (atomic writes: a reader sees each file whole
    or not at all), and can be called again later; :meth:`discard` removes the working folder.
    Working folders left behind by a process that died are removed once a day old.
    Not thread-safe: one session's pushes and saves must not overlap (the WebUI holds a lock).
    """

    #: A working folder unchanged for this long belongs to a session that is gone.
    STALE_AFTER_S = 24 * 3600.0

    def __init__(self, outputs_root: str | os.PathLike = "outputs") -> None:
        self.outputs_root = Path(outputs_root)
        self.outputs_root.mkdir(parents=True, exist_ok=True)
        remove_stale_live_folders(self.outputs_root, self.STALE_AFTER_S)
        self.folder = Path(tempfile.mkdtemp(dir=self.outputs_root, prefix=LIVE_WORK_PREFIX))
        self._audio: sf.SoundFile | None = sf.SoundFile(self.folder / "audio.pcm", "w", SAMPLE_RATE, 1, "PCM_16",
                                                        format="RAW")
        self._events = (self.folder / LIVE_EVENTS).open("wb")
        self._embeddings = (self.folder / "utterances.f32").open("wb")
        self.samples = 0
        """16 kHz samples recorded."""
        self.events = 0
        self.utterances = 0
        self.embedding_dim: int | None = None

    @property
    def duration_s(self) -> float:
        return self.samples / SAMPLE_RATE

    def add_audio(self, samples: np.ndarray) -> None:
        """Append 16 kHz mono float samples (the audio the stream scored)."""
        if self._audio is None:
            raise RuntimeError("the live recorder was discarded")
        self._audio.write(np.clip(np.asarray(samples, np.float32), -1.0, 1.0))
        self.samples += len(samples)

    def add_events(self, events: Iterable["StreamEvent"]) -> None:
        """Append events (each line ``event.to_dict(include_embedding=False)``); an ``utterance``
        event's embedding becomes the next row of ``utterances.npy``."""
        for event in events:
            self._events.write(json.dumps(event.to_dict(include_embedding=False), ensure_ascii=False).encode("utf-8")
                               + b"\n")
            self.events += 1
            if event.type == "utterance":
                self.utterances += 1
                if event.embedding is not None:
                    row = np.asarray(event.embedding, np.float32).reshape(-1)
                    if self.embedding_dim is None:
                        self.embedding_dim = len(row)
                    self._embeddings.write(row.tobytes())

    def save(self, now: datetime | None = None) -> Path:
        """Write everything recorded so far to a new ``live_YYYYMMDD_HHMMSS`` folder: ``processed_audio.wav``
        (16 kHz mono PCM16), ``events.jsonl`` and, when utterances have embeddings, ``utterances.npy`` (N, D)."""
        if self._audio is None:
            raise RuntimeError("the live recorder was discarded")
        self._audio.flush()
        self._events.flush()
        self._embeddings.flush()
        run_dir = create_run_dir(self.outputs_root, now=now, prefix=LIVE_PREFIX)
        with atomic_write(run_dir / PROCESSED_AUDIO) as stream, \
                sf.SoundFile(stream, "w", SAMPLE_RATE, 1, "PCM_16", format="WAV") as wav, \
                sf.SoundFile(self.folder / "audio.pcm", "r", SAMPLE_RATE, 1, "PCM_16", format="RAW") as recorded:
            for block in recorded.blocks(SAMPLE_RATE * 10, dtype="int16", frames=self.samples):
                wav.write(block)
        with atomic_write(run_dir / LIVE_EVENTS) as stream, (self.folder / LIVE_EVENTS).open("rb") as events:
            shutil.copyfileobj(events, stream)
        if self.embedding_dim is not None:
            rows = np.fromfile(self.folder / "utterances.f32", dtype=np.float32).reshape(-1, self.embedding_dim)
            with atomic_write(run_dir / LIVE_EMBEDDINGS) as stream:
                np.save(stream, rows, allow_pickle=False)
        return run_dir

    def discard(self) -> None:
        """Close and remove the working files (what was saved stays)."""
        if self._audio is not None:
            self._audio.close()
            self._audio = None
            self._events.close()
            self._embeddings.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def remove_stale_live_folders(outputs_root: str | os.PathLike, older_than_s: float) -> None:
    """Remove the live working folders (``.live-*``) under ``outputs_root`` unchanged for ``older_than_s``."""
    cutoff = time.time() - older_than_s
    for folder in Path(outputs_root).glob(LIVE_WORK_PREFIX + "*"):
        try:
            if folder.is_dir() and not folder.is_symlink() and folder.stat().st_mtime < cutoff and \
                    all(f.stat().st_mtime < cutoff for f in folder.iterdir()):
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue


@dataclass(frozen=True)
class RunKind:
    """One kind of run folder, ``<prefix>YYYYMMDD_HHMMSS[_N]`` under the outputs root.

    ``files``: the files offered for download, in this order, when present. ``read(run_dir)``:
    the :class:`RunSummary` fields this kind can tell (``source``, ``emotion``, ``items``, ...),
    read from the folder; for a missing or damaged record it raises ``ValueError`` (its message
    naming the file and the problem) or ``OSError``. A new kind of run is one more entry in
    :data:`RUN_KINDS`.
    """

    name: str
    prefix: str
    files: tuple[str, ...]
    read: Callable[[Path], dict[str, Any]]


@dataclass(frozen=True)
class RunSummary:
    """One earlier run found by :func:`list_runs`.

    ``kind`` is its :class:`RunKind`'s name (``"recognition"``, ``"batch"``, ``"live"``); ``files`` the
    kind's files that exist, in the kind's order. A recognition tells ``source`` (the input),
    ``emotion``, ``confidence`` ...; a batch ``items`` (files in the job) and ``failed``; a live
    session ``items`` (its utterances), ``duration_s`` and the emotion of its speech.
    ``error`` is set when the run's record is missing or unreadable (what it would have told is
    then ``None``).
    """

    run_dir: Path
    started: datetime
    kind: str = "recognition"
    files: tuple[Path, ...] = ()
    source: str | None = None
    emotion: str | None = None
    emotion_zh: str | None = None
    emoji: str | None = None
    confidence: float | None = None
    model: str | None = None
    granularity: str | None = None
    duration_s: float | None = None
    embedding_shape: tuple[int, ...] | None = None
    items: int | None = None
    failed: int | None = None
    error: str | None = None


def _read_recognition(run_dir: Path) -> dict[str, Any]:
    data = _read_json_record(run_dir / RESULT_JSON)
    shape = data.get("embedding_shape")
    confidence = data.get("confidence")
    duration = data.get("duration_s")
    return {
        "source": _text_or_none(data.get("source")),
        "emotion": _text_or_none(data.get("emotion")),
        "emotion_zh": _text_or_none(data.get("emotion_zh")),
        "emoji": _text_or_none(data.get("emoji")),
        "confidence": float(confidence) if isinstance(confidence, (int, float)) else None,
        "model": _text_or_none(data.get("model")),
        "granularity": _text_or_none(data.get("granularity")),
        "duration_s": float(duration) if isinstance(duration, (int, float)) else None,
        "embedding_shape": tuple(int(n) for n in shape) if isinstance(shape, list) else None,
        "error": _text_or_none(data.get("error")),
    }


def _read_batch(run_dir: Path) -> dict[str, Any]:
    data = _read_run_file(run_dir / BATCH_RESULTS)
    lines = []
    for raw in data[: data.rfind(b"\n") + 1].splitlines():  # a partial last line: a job still writing
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict):
            lines.append(line)
    models = {line.get("model") for line in lines} - {None}
    return {"items": len(lines), "failed": sum(line.get("status") != "ok" for line in lines),
            "model": _text_or_none(next(iter(models))) if len(models) == 1 else None,
            "granularity": _text_or_none(lines[0].get("granularity")) if lines else None}


def _read_live(run_dir: Path) -> dict[str, Any]:
    """A live session: its utterances (``items``), length, and the emotion of its speech (the
    utterances' scores weighted by their speech time, as a long recording's overall result is)."""
    path = run_dir / LIVE_EVENTS
    data = _read_run_file(path)
    end_s = 0.0
    utterances: list[dict[str, Any]] = []
    for raw in data.splitlines():
        try:
            event = json.loads(raw)
        except ValueError:
            raise ValueError(f"{path}: a line is not JSON: {raw[:80]!r}") from None
        if not isinstance(event, dict):
            raise ValueError(f"{path}: a line is not an event object")
        if isinstance(event.get("end_s"), (int, float)):
            end_s = max(end_s, float(event["end_s"]))
        if event.get("type") == "utterance" and isinstance(event.get("scores"), dict):
            utterances.append(event)
    fields: dict[str, Any] = {"items": len(utterances), "duration_s": end_s}
    weights = [float(u.get("speech_s") or 0.0) for u in utterances]
    if utterances and sum(weights) > 0:
        labels = list(utterances[0]["scores"])
        totals = {label: sum(w * float(u["scores"].get(label, 0.0)) for u, w in zip(utterances, weights))
                  for label in labels}
        best = max(totals, key=totals.__getitem__)
        named = next((u for u in utterances if u.get("emotion") == best), {})
        fields.update(emotion=best, confidence=totals[best] / sum(weights),
                      emotion_zh=_text_or_none(named.get("emotion_zh")), emoji=_text_or_none(named.get("emoji")))
    return fields


#: Every kind of run folder :func:`list_runs` finds, by name.
RUN_KINDS: dict[str, RunKind] = {kind.name: kind for kind in (
    RunKind("recognition", RUN_PREFIX, (PROCESSED_AUDIO, RESULT_JSON, EMBEDDING_NPY), _read_recognition),
    RunKind("batch", BATCH_PREFIX, (BATCH_RESULTS_CSV, BATCH_RESULTS, BATCH_PARQUET, BATCH_NPY_ZIP), _read_batch),
    RunKind("live", LIVE_PREFIX, (PROCESSED_AUDIO, LIVE_EVENTS, LIVE_EMBEDDINGS), _read_live),
)}


def _run_name_pattern(kind: RunKind) -> re.Pattern[str]:
    return re.compile(r"^" + re.escape(kind.prefix) + r"(\d{8}_\d{6})(?:_(\d+))?$")


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


def list_runs(outputs_root: str | os.PathLike = "outputs", limit: int | None = None,
              kinds: tuple[str, ...] | None = None) -> list[RunSummary]:
    """The run folders under ``outputs_root`` of every kind in :data:`RUN_KINDS` (or of ``kinds``),
    newest first.

    Other folders and files are ignored, as are links; a run whose record is missing or damaged
    is still listed, with ``error`` saying so. A missing ``outputs_root`` gives an empty list.
    ``limit`` keeps only the newest runs (their records are read for those only).
    """
    root = Path(outputs_root)
    if not root.is_dir():
        return []
    chosen = [RUN_KINDS[name] for name in (kinds or tuple(RUN_KINDS))]
    patterns = [(kind, _run_name_pattern(kind)) for kind in chosen]
    found: list[tuple[datetime, int, Path, RunKind]] = []
    for entry in root.iterdir():
        for kind, pattern in patterns:
            match = pattern.match(entry.name)
            if match is not None:
                break
        else:
            continue
        if entry.is_symlink() or not entry.is_dir():
            continue
        try:
            started = datetime.strptime(match.group(1), "%Y%m%d_%H%M%S")
        except ValueError:
            continue
        found.append((started, int(match.group(2) or 1), entry, kind))
    # Runs of one second: by their number (_2, _3 ...), and across kinds by when the folder last changed.
    found.sort(key=lambda item: (item[0], item[1], _mtime_ns(item[2]), item[2].name), reverse=True)
    if limit is not None:
        found = found[:max(limit, 0)]
    return [_summarise_run(run_dir, started, kind) for started, _, run_dir, kind in found]


def _mtime_ns(folder: Path) -> int:
    try:
        return folder.stat().st_mtime_ns
    except OSError:
        return 0


def find_run(outputs_root: str | os.PathLike, run_name: str | None) -> RunSummary | None:
    """The run folder named ``run_name`` (a bare folder name, of any kind) under ``outputs_root``."""
    if not run_name or "/" in run_name or "\\" in run_name or run_name in (".", ".."):
        return None
    kinds = tuple(kind.name for kind in RUN_KINDS.values() if _run_name_pattern(kind).match(run_name))
    if not kinds:
        return None
    return next((run for run in list_runs(outputs_root, kinds=kinds) if run.run_dir.name == run_name), None)


def _summarise_run(run_dir: Path, started: datetime, kind: RunKind) -> RunSummary:
    files = tuple(found for name in kind.files
                  if (found := servable_file(run_dir / name, run_dir.parent)) is not None)
    try:
        fields = kind.read(run_dir)
    except ValueError as exc:  # UnicodeDecodeError and JSON errors included
        return RunSummary(run_dir, started, kind.name, files, error=str(exc))
    except OSError as exc:
        return RunSummary(run_dir, started, kind.name, files, error=f"{run_dir}: unreadable: {exc}")
    return RunSummary(run_dir, started, kind.name, files, **fields)


def _read_run_file(path: Path) -> bytes:
    """The bytes of a file in a run folder; ``ValueError`` for a link (never followed) or a missing file."""
    if path.is_symlink():
        raise ValueError(f"{path}: a link, not read")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{path.parent}: no {path.name}") from None


def _read_json_record(path: Path) -> dict[str, Any]:
    """A run's JSON record; ``ValueError`` for a link, a missing file, damaged JSON or not an object."""
    try:
        raw = _read_run_file(path)
    except OSError as exc:
        raise ValueError(f"{path}: unreadable: {exc}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a result object")
    return data


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
