"""Batch jobs: recognise every audio file under some folders or in a list, resumably.

Modules: :mod:`.discovery` (which files), :mod:`.store` (what is written and read back, resume
rules), :mod:`.work` (decoding ahead, model batches, result lines), :mod:`.local` (:func:`run_batch`
in this process) and :mod:`.ray` (:func:`run_batch_ray` on Ray Data, same files, same rules).

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

from .discovery import LIST_EXTENSIONS, BatchPlan, discover_inputs, find_audio_files
from .local import check_batch_options, run_batch
from .store import (NPY_ZIP_NAME, PARQUET_NAME, RESULTS_CSV_NAME, RESULTS_NAME, BatchSummary, locked_output_dir,
                    read_results, stage_files, write_results_csv, zip_npy_embeddings)
from ..defaults import AUDIO_EXTENSIONS, EMBEDDING_MODES
from ..errors import BatchInputError

__all__ = [
    "AUDIO_EXTENSIONS", "EMBEDDING_MODES", "LIST_EXTENSIONS", "NPY_ZIP_NAME", "PARQUET_NAME", "RESULTS_CSV_NAME",
    "RESULTS_NAME", "BatchInputError", "BatchPlan", "BatchSummary", "check_batch_options", "discover_inputs",
    "find_audio_files", "locked_output_dir", "read_results", "run_batch", "stage_files", "write_results_csv",
    "zip_npy_embeddings",
]
