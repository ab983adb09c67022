"""Train a custom classifier head from labelled audio: ``emotion2vec-plus train-head DATA --out head.safetensors``.

The data is either a folder with one sub-folder per label (``data/angry/*.wav``,
``data/neutral/**/*.flac``) or a CSV with a header and the columns ``path,label`` and
optionally ``group`` (or ``speaker``)::

    model = Emotion2VecPlus("compact")
    report = train_head_from_data(model, "clips.csv", "angry_vs_neutral.safetensors")
    print(report.metrics.unweighted_accuracy)   # cross-validated UA
    head = EmotionHead.load(report.head_path)

Every clip is embedded once per model: embeddings are cached in one ``.npz`` per model name
(default ``~/.cache/emotion2vec_plus/embeddings``) keyed by the clip's absolute path, size and
modification time, so re-training with other settings or more clips only embeds what is new.
Clips that cannot be decoded are reported and skipped. The head is cross-validated (grouped by
``group`` when the data has groups, so no speaker is in both a training and a test fold,
otherwise stratified), then trained on all clips and saved with its metrics and training
settings; a confusion-matrix PNG is written next to it.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .defaults import AUDIO_EXTENSIONS, EMBEDDING_CACHE
from .embeddings import utterance_embedding
from .fileio import atomic_write
from .heads import KINDS, EmotionHead, HeadMetrics, cross_validate, train_head
from .errors import TrainingDataError  # defined in errors.py; importable from here too

__all__ = [
    "AUDIO_EXTENSIONS",
    "DEFAULT_EMBEDDING_CACHE",
    "EmbedStats",
    "LabelledClip",
    "TrainHeadReport",
    "TrainingDataError",
    "confusion_png_path",
    "embed_clips",
    "format_confusion",
    "read_labelled_data",
    "train_head_from_data",
    "write_confusion_png",
]

logger = logging.getLogger(__name__)

#: File extensions taken as audio when scanning a folder of labels (case-insensitive).
#: Where embeddings are cached when no ``cache_dir`` is given.
DEFAULT_EMBEDDING_CACHE = EMBEDDING_CACHE
#: Column names accepted for the group (speaker) of a clip in a CSV, in order of preference.
GROUP_COLUMNS: tuple[str, ...] = ("group", "speaker")
_CACHE_FORMAT = 1


# --------------------------------------------------------------------------- reading the data
@dataclass
class LabelledClip:
    """One training example: an audio file, its label and optionally its group (e.g. the speaker)."""

    path: Path
    label: str
    group: str | None = None


def read_labelled_data(source: str | os.PathLike) -> list[LabelledClip]:
    """The labelled clips of a folder of label sub-folders or of a CSV, checked for training.

    * A folder: each sub-folder is a label; every audio file (by extension, see
      :data:`AUDIO_EXTENSIONS`) anywhere inside it is a clip of that label. Hidden files and
      folders are ignored; clips have no group.
    * A CSV file: a header with ``path`` and ``label`` and optionally ``group`` or ``speaker``
      (other columns are ignored); relative paths are resolved against the CSV's folder.

    Raises :class:`TrainingDataError` naming the file (and CSV line) when the source is missing
    or empty, the header lacks the needed columns, a cell is empty, an audio file does not
    exist, there are fewer than 2 labels, or a label has fewer than 2 clips.
    """
    path = Path(source).expanduser()
    if not path.exists():
        raise TrainingDataError(f"{path}: training data not found (expected a folder of label sub-folders or a CSV)")
    clips = _read_folder(path) if path.is_dir() else _read_csv(path)
    _check_clips(clips, str(path))
    return clips


def _read_folder(root: Path) -> list[LabelledClip]:
    clips: list[LabelledClip] = []
    label_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for label_dir in label_dirs:
        for dirpath, dirnames, filenames in os.walk(label_dir):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if not name.startswith(".") and os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS:
                    clips.append(LabelledClip(Path(dirpath) / name, label_dir.name))
    if not clips:
        loose = [p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS]
        hint = (f"; found {len(loose)} audio file(s) directly in it: put them in one sub-folder per label"
                if loose else "")
        raise TrainingDataError(f"{root}: no audio files in label sub-folders (expected {root}/LABEL/*.wav ...){hint}")
    return clips


def _read_csv(path: Path) -> list[LabelledClip]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TrainingDataError(f"{path}: not a UTF-8 text CSV ({exc})") from exc
    except OSError as exc:
        raise TrainingDataError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if not text.strip():
        raise TrainingDataError(f"{path}: empty CSV (expected a header path,label[,group] and one row per clip)")
    first_line = text.splitlines()[0]
    delimiter = "\t" if "\t" in first_line and "," not in first_line else ","
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    header = [cell.strip().lower() for cell in next(reader)]
    missing = [name for name in ("path", "label") if name not in header]
    if missing:
        raise TrainingDataError(
            f"{path}, line 1: the header must name the columns path,label[,group]; "
            f"missing {', '.join(missing)} (found columns: {', '.join(h or '<empty>' for h in header)})")
    duplicates = sorted({h for h in header if h and header.count(h) > 1})
    if duplicates:
        raise TrainingDataError(f"{path}, line 1: duplicate column(s) {', '.join(duplicates)}")
    path_col, label_col = header.index("path"), header.index("label")
    group_col = next((header.index(name) for name in GROUP_COLUMNS if name in header), None)
    base = path.resolve().parent
    clips: list[LabelledClip] = []
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise TrainingDataError(f"{path}, line {line}: {len(row)} cells but the header has {len(header)} columns")
        cells = {"path": row[path_col].strip(), "label": row[label_col].strip()}
        if group_col is not None:
            cells[header[group_col]] = row[group_col].strip()
        empty = [name for name, value in cells.items() if not value]
        if empty:
            raise TrainingDataError(f"{path}, line {line}: empty {', '.join(empty)}")
        clip_path = Path(cells["path"]).expanduser()
        if not clip_path.is_absolute():
            clip_path = base / clip_path
        if not clip_path.is_file():
            raise TrainingDataError(f"{path}, line {line}: audio file not found: {clip_path}")
        group = cells[header[group_col]] if group_col is not None else None
        clips.append(LabelledClip(clip_path, cells["label"], group))
    if not clips:
        raise TrainingDataError(f"{path}: the CSV has a header but no clips")
    return clips


def _check_clips(clips: Sequence[LabelledClip], source: str, after: str = "") -> None:
    """Refuse data with fewer than 2 labels or a label with fewer than 2 clips."""
    counts = Counter(clip.label for clip in clips)
    if len(counts) < 2:
        only = f"only {next(iter(counts))!r}" if counts else "none"
        raise TrainingDataError(f"{source}: a head needs clips of at least 2 labels{after}, found {only}")
    few = sorted(label for label, n in counts.items() if n < 2)
    if few:
        detail = ", ".join(f"{label!r} ({counts[label]})" for label in few)
        raise TrainingDataError(f"{source}: every label needs at least 2 clips{after}; too few for {detail}")


# --------------------------------------------------------------------------- embedding + cache
@dataclass
class EmbedStats:
    """What :func:`embed_clips` did; pass one in to have it filled."""

    cache_hits: int = 0
    """Clips whose embedding came from the cache."""
    embedded: int = 0
    """Clips run through the model (successfully)."""
    failures: list[tuple[str, str]] = field(default_factory=list)
    """``(path, error)`` of every clip that could not be embedded."""
    cache_path: Path | None = None
    """The cache file used (``None`` without a cache)."""


def _cache_file(cache_dir: Path, model_name: str) -> Path:
    name = str(model_name)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"
    if safe != name:  # hub ids, local directories: keep names distinct and short
        safe = f"{safe[-60:]}-{hashlib.sha1(name.encode()).hexdigest()[:10]}"
    return cache_dir / f"{safe}.npz"


def _clip_key(path: Path) -> str | None:
    try:
        absolute = path.expanduser().resolve()
        stat = absolute.stat()
    except OSError:
        return None
    return f"{absolute}|{stat.st_size}|{stat.st_mtime_ns}"


def _load_cache(path: Path, embed_dim: int) -> dict[str, np.ndarray]:
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as data:
            keys, vectors = data["keys"], data["embeddings"]
            version = int(data["format"]) if "format" in data else 0
        if version != _CACHE_FORMAT or vectors.ndim != 2 or len(keys) != len(vectors):
            raise ValueError("unexpected layout")
        if vectors.shape[1] != embed_dim:
            logger.warning("%s: cached embeddings are %d-d, the model gives %d-d; ignoring the cache",
                           path, vectors.shape[1], embed_dim)
            return {}
        return {str(key): vector for key, vector in zip(keys, vectors)}
    except Exception as exc:  # a damaged cache must never stop training: it is only rebuilt
        logger.warning("%s: unreadable embedding cache (%s); rebuilding it", path, exc)
        return {}


def _save_cache(path: Path, entries: dict[str, np.ndarray]) -> None:
    """Write the cache atomically (temporary file in the same folder, then ``os.replace``)."""
    keys = np.array(list(entries), dtype=str)
    vectors = np.stack([entries[key] for key in entries]).astype(np.float32)
    with atomic_write(path) as stream:
        np.savez(stream, keys=keys, embeddings=vectors, format=np.array(_CACHE_FORMAT))


def embed_clips(
    model: Any,
    clips: Sequence[LabelledClip | str | os.PathLike],
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 8,
    *,
    use_cache: bool = True,
    stats: EmbedStats | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, list[int]]:
    """Utterance embeddings of clips: ``(N_ok, D)`` float32 and the indices (into ``clips``) that worked.

    ``model`` is an :class:`~emotion2vec_plus.Emotion2VecPlus` (anything with ``model_name``,
    ``embed_dim`` and ``predict_batch``). A clip that cannot be decoded or embedded is logged,
    added to ``stats.failures`` as ``(path, error)`` and skipped. With ``use_cache`` the
    embeddings are cached in ``cache_dir`` (default ``~/.cache/emotion2vec_plus/embeddings``),
    one ``.npz`` per model name, keyed by absolute path + size + mtime, so an unchanged clip is
    never embedded twice; the cache file is replaced atomically. ``progress(done, total)`` is
    called after each batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    stats = stats if stats is not None else EmbedStats()
    paths = [Path(clip.path if isinstance(clip, LabelledClip) else clip) for clip in clips]
    embed_dim = int(model.embed_dim)
    cache: dict[str, np.ndarray] = {}
    cache_path: Path | None = None
    if use_cache:
        # int8 / bf16 / onnx embeddings differ slightly from float32 ones: each mode keeps its own file.
        mode = (getattr(model, "compute_type", "float32"), getattr(model, "backend", "torch"))
        name = model.model_name if mode == ("float32", "torch") else f"{model.model_name}@{'-'.join(mode)}"
        cache_path = _cache_file(Path(cache_dir or DEFAULT_EMBEDDING_CACHE).expanduser(), name)
        stats.cache_path = cache_path
        cache = _load_cache(cache_path, embed_dim)
    keys = [_clip_key(path) for path in paths]
    vectors: dict[int, np.ndarray] = {}
    todo: list[int] = []
    for index, key in enumerate(keys):
        if key is not None and key in cache:
            vectors[index] = cache[key]
            stats.cache_hits += 1
        else:
            todo.append(index)
    added = 0

    def fail(index: int, error: str) -> None:
        stats.failures.append((str(paths[index]), error))
        logger.warning("skipping %s: %s", paths[index], error)

    try:
        done = len(vectors)
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            try:
                results = model.predict_batch([paths[i] for i in batch], extract_embedding=True, errors="collect",
                                              segments=False)
            except Exception:  # noqa: BLE001 - isolate the clip that breaks the batch
                results = []
                for i in batch:
                    try:
                        results.extend(model.predict_batch([paths[i]], extract_embedding=True, errors="collect",
                                                           segments=False))
                    except Exception as exc:  # noqa: BLE001
                        results.append(exc)
            for index, result in zip(batch, results):
                if isinstance(result, Exception):
                    fail(index, f"{type(result).__name__}: {result}")
                    continue
                if not result.ok or result.embedding is None:
                    error = str(result.error or "no embedding")
                    prefix = f"{result.source}: "
                    fail(index, error[len(prefix):] if error.startswith(prefix) else error)
                    continue
                vector = utterance_embedding(np.asarray(result.embedding, dtype=np.float32))
                if vector.shape != (embed_dim,) or not np.isfinite(vector).all():
                    fail(index, f"bad embedding of shape {vector.shape}")
                    continue
                vectors[index] = vector
                stats.embedded += 1
                if keys[index] is not None:
                    cache[keys[index]] = vector
                    added += 1
            done += len(batch)
            if progress is not None:
                progress(done, len(paths))
    finally:
        if cache_path is not None and added:
            try:
                _save_cache(cache_path, cache)
            except OSError as exc:
                logger.warning("%s: could not write the embedding cache (%s)", cache_path, exc)
    ok = sorted(vectors)
    if not ok:
        return np.zeros((0, embed_dim), dtype=np.float32), []
    return np.stack([vectors[i] for i in ok]).astype(np.float32), ok


# --------------------------------------------------------------------------- confusion matrix
def confusion_png_path(head_path: str | os.PathLike) -> Path:
    """``<dir>/<stem>.confusion.png`` next to a head file."""
    head_path = Path(head_path)
    return head_path.with_name(f"{head_path.stem}.confusion.png")


def format_confusion(metrics: HeadMetrics) -> str:
    """The confusion matrix as a text table (rows: truth, columns: prediction) with per-class recall."""
    labels = metrics.labels
    corner = "true \\ predicted"
    first = max(len(corner), *(len(label) for label in labels))
    cell = max(6, *(len(label) for label in labels), *(len(str(n)) for row in metrics.confusion for n in row))
    lines = [f"{corner:<{first}}  " + " ".join(f"{label:>{cell}}" for label in labels) + "  recall"]
    for i, (label, row) in enumerate(zip(labels, metrics.confusion)):
        total = sum(row)
        recall = f"{row[i] / total * 100:5.1f}%" if total else "     -"
        lines.append(f"{label:<{first}}  " + " ".join(f"{n:>{cell}}" for n in row) + f"  {recall}")
    return "\n".join(lines)


def write_confusion_png(metrics: HeadMetrics, path: str | os.PathLike, title: str | None = None) -> Path:
    """Plot the row-normalised confusion matrix with counts to a PNG (matplotlib Agg, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    confusion = np.asarray(metrics.confusion, dtype=np.float64)
    totals = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(confusion, totals, out=np.zeros_like(confusion), where=totals > 0)
    n = len(metrics.labels)
    size = max(4.0, 1.0 + 0.9 * n)
    figure = Figure(figsize=(size + 1.2, size), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    image = axes.imshow(normalised, vmin=0.0, vmax=1.0, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="fraction of the true class")
    axes.set_xticks(range(n), labels=metrics.labels, rotation=45 if n > 3 else 0, ha="right" if n > 3 else "center")
    axes.set_yticks(range(n), labels=metrics.labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            value = normalised[i, j]
            axes.text(j, i, f"{value:.2f}\n({int(confusion[i, j])})", ha="center", va="center", fontsize=9,
                      color="white" if value > 0.5 else "black")
    axes.set_title(title or (f"UA {metrics.unweighted_accuracy * 100:.1f}%  WA {metrics.weighted_accuracy * 100:.1f}%"
                             f"  ({metrics.n_samples} clips, {metrics.n_folds} folds)"), fontsize=10)
    figure.tight_layout()
    with atomic_write(path) as stream:
        figure.savefig(stream, format="png")
    return path


# --------------------------------------------------------------------------- training
@dataclass
class TrainHeadReport:
    """The outcome of :func:`train_head_from_data`."""

    head_path: Path
    metrics: HeadMetrics
    """Cross-validated (out-of-fold) UA / WA / confusion."""
    n_clips: int
    """Clips in the data (including those that failed)."""
    n_failed: int
    failures: list[tuple[str, str]]
    """``(path, error)`` of each clip that could not be embedded and was skipped."""
    confusion_png: Path
    labels: list[str]
    cv: str = "stratified"
    """``"grouped"`` (no group in both train and test) or ``"stratified"``."""
    n_groups: int | None = None
    cache_hits: int = 0
    n_embedded: int = 0
    head: EmotionHead | None = None


def train_head_from_data(
    model: Any,
    source: str | os.PathLike | Sequence[LabelledClip],
    out: str | os.PathLike,
    *,
    kind: str = "logreg",
    folds: int = 5,
    l2: float = 1e-2,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    seed: int = 0,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
    data_source: str | None = None,
) -> TrainHeadReport:
    """Embed labelled clips, cross-validate a head, train it on all clips, save it and its confusion PNG.

    ``model`` is an :class:`~emotion2vec_plus.Emotion2VecPlus` or a model name (loaded here);
    ``source`` a folder of labels or a CSV (see :func:`read_labelled_data`) or a list of
    :class:`LabelledClip`. When every clip has a group the cross-validation is grouped (no
    group in both a training and a test fold; at most one fold per group), else stratified.
    The final head stores the CV metrics and the training info (n per class, kind, folds, CV
    strategy, date, data source) and is written with :meth:`EmotionHead.save` to ``out``; the
    confusion matrix goes to ``<out stem>.confusion.png``. ``data_source`` overrides the
    description of the data recorded in the head (default: the resolved ``source`` path).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    if not l2 >= 0:
        raise ValueError(f"l2 must be >= 0, got {l2}")
    out = Path(out).expanduser()
    if out.is_dir():
        raise ValueError(f"{out}: --out must be a file path (e.g. head.safetensors), not a folder")
    if isinstance(source, (str, os.PathLike)):
        clips = read_labelled_data(source)
        source_name = str(Path(source).expanduser().resolve())
    else:
        clips = list(source)
        source_name = "<clips>"
        _check_clips(clips, data_source or source_name)
    source_name = data_source or source_name
    if isinstance(model, (str, os.PathLike)):
        from .inference import Emotion2VecPlus

        model = Emotion2VecPlus(model)

    stats = EmbedStats()
    embeddings, ok = embed_clips(model, clips, cache_dir, batch_size, use_cache=use_cache, stats=stats,
                                 progress=progress)
    used = [clips[i] for i in ok]
    if stats.failures:
        _check_clips(used, source_name, after=f" after skipping {len(stats.failures)} clip(s) that failed")
    labels = [clip.label for clip in used]
    groups = [clip.group for clip in used]
    grouped = all(group is not None for group in groups) and len(set(groups)) >= 2
    n_groups = len(set(groups)) if all(group is not None for group in groups) else None
    if grouped:
        # each fold's training set must still have >= 2 classes
        try:
            metrics = cross_validate(embeddings, labels, groups, n_folds=folds, seed=seed, kind=kind, l2=l2)
        except ValueError as exc:
            raise TrainingDataError(f"{source_name}: grouped cross-validation failed: {exc}") from exc
    else:
        n_folds = min(folds, len(labels))
        metrics = cross_validate(embeddings, labels, None, n_folds=n_folds, seed=seed, kind=kind, l2=l2)

    head = train_head(embeddings, labels, kind=kind, embedding_model=model.model_name, l2=l2, seed=seed)
    head.metrics = metrics.to_dict()
    head.training.update({
        "folds": metrics.n_folds,
        "cv": "grouped" if grouped else "stratified",
        "n_groups": n_groups,
        "data_source": source_name,
        "n_clips": len(clips),
        "n_failed": len(stats.failures),
        "embed_dim": int(model.embed_dim),
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
    head_path = head.save(out)
    png = write_confusion_png(metrics, confusion_png_path(head_path),
                              title=(f"{out.stem}: UA {metrics.unweighted_accuracy * 100:.1f}%  "
                                     f"WA {metrics.weighted_accuracy * 100:.1f}%\n"
                                     f"{metrics.n_folds}-fold {'grouped' if grouped else 'stratified'} CV, "
                                     f"{metrics.n_samples} clips, {model.model_name}"))
    return TrainHeadReport(
        head_path=head_path, metrics=metrics, n_clips=len(clips), n_failed=len(stats.failures),
        failures=list(stats.failures), confusion_png=png, labels=list(metrics.labels),
        cv="grouped" if grouped else "stratified", n_groups=n_groups, cache_hits=stats.cache_hits,
        n_embedded=stats.embedded, head=head,
    )
