"""A batch job in this process: :func:`run_batch` (what ``emotion2vec-plus batch`` runs)."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..defaults import EMBEDDING_MODES

from .discovery import BatchPlan, discover_inputs
from .store import (BatchSummary, ResultsLog, commit_window, finish_job, locked_output_dir, npy_names, open_outputs,
                    remove_temporaries, resume_plan, Entry, RESULTS_NAME)
from .work import error_line, predict_decoded, progress_bar, read_ahead, result_outputs

if TYPE_CHECKING:  # pragma: no cover
    from ..inference import Emotion2VecPlus


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


def stat_entries(plan: BatchPlan) -> list[Entry]:
    names = npy_names(plan.files, plan.root)
    entries = []
    for path in plan.files:
        try:
            st = os.stat(path)
            size, mtime, mtime_ns = st.st_size, st.st_mtime, st.st_mtime_ns
        except OSError:
            size = mtime = mtime_ns = None
        entries.append(Entry(path, size, mtime, mtime_ns, names[path]))
    return entries


def _run(model: "Emotion2VecPlus", plan: BatchPlan, out_dir: str | os.PathLike, *, granularity: str, embeddings: str,
         workers: int, batch_size: int, progress: bool | Callable[[int, int], None], retry_failed: bool) -> BatchSummary:
    check_batch_options(granularity, embeddings, workers, batch_size)
    started = time.perf_counter()
    with locked_output_dir(out_dir) as out:
        return _run_locked(model, plan, out, granularity=granularity, embeddings=embeddings, workers=workers,
                           batch_size=batch_size, progress=progress, retry_failed=retry_failed, started=started)


def _run_locked(model: "Emotion2VecPlus", plan: BatchPlan, out: Path, *, granularity: str, embeddings: str, workers: int,
                batch_size: int, progress: bool | Callable[[int, int], None], retry_failed: bool,
                started: float) -> BatchSummary:
    remove_temporaries(out)
    entries = stat_entries(plan)
    results_path = out / RESULTS_NAME
    todo, ok_keys, summary = resume_plan(entries, results_path, model.model_name, granularity, retry_failed)
    parts, write_npy = open_outputs(out, model, granularity, embeddings)
    audio_s = 0.0
    bar = progress_bar(len(todo)) if progress is True and todo else None
    report = progress if callable(progress) else None
    finished = 0

    def advance(count: int) -> None:
        nonlocal finished
        finished += count
        if bar is not None:
            bar.update(count)
        if report is not None:
            report(finished, len(todo))

    log = ResultsLog(results_path)
    window = 4 * batch_size
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="emotion2vec-decode")
    try:
        for group in read_ahead(pool, todo, window, model.max_duration_s, model.hold_in_memory_s):
            lines: list[dict[str, Any]] = []
            rows: list[dict[str, Any]] = []
            for item in group:
                if item.audio is None:
                    lines.append(error_line(item.entry, item.error or "unknown error", model, granularity,
                                            item.error_type))
            if lines:
                advance(len(lines))
            decoded = sorted((item for item in group if item.audio is not None),
                             key=lambda item: item.num_samples, reverse=True)
            for start in range(0, len(decoded), batch_size):
                batch = decoded[start:start + batch_size]
                for item, result in zip(batch, predict_decoded(model, batch, granularity, embeddings != "none")):
                    if not result.ok:
                        lines.append(error_line(item.entry, result.error or "unknown error", model, granularity))
                        continue
                    line, row = result_outputs(item.entry, result, out, granularity, write_npy)
                    lines.append(line)
                    if row is not None:
                        rows.append(row)
                    audio_s += result.duration_s
                advance(len(batch))
                if bar is not None:
                    elapsed = max(time.perf_counter() - started, 1e-9)
                    bar.set_postfix_str(f"{audio_s / elapsed:.1f} audio-s/s", refresh=False)
            commit_window(parts, log, lines, rows, summary, ok_keys, bar)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        log.close()
        if bar is not None:
            bar.close()
    return finish_job(parts, ok_keys, summary, audio_s, started)
