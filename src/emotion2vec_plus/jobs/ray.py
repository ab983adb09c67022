"""The ``batch`` job on Ray Data: ``emotion2vec-plus batch ... --engine ray [--address ADDR]``.

:func:`run_batch_ray` does the same job as :func:`emotion2vec_plus.jobs.run_batch` and writes the
same files (``results.jsonl``, ``embeddings.parquet``, ``embeddings/*.npy``) with the same
resume rules, through the same writer code in :mod:`emotion2vec_plus.jobs`:

- the driver discovers the inputs, takes the ``out`` lock and drops the files already in
  ``results.jsonl`` *before* anything is sent to Ray;
- the pending files become a dataset (``ray.data.from_items``) mapped by ``map_batches`` with a
  callable class, so each of the ``num_workers`` actors loads the model once; each call decodes its
  ``batch_size`` files and runs ``predict_batch``, returning plain columns;
- the driver iterates the results and writes ``.npy`` files, a Parquet part, then the JSON lines of
  every block, exactly as the local engine does per window.

Without ``address`` a local Ray instance is started bound to 127.0.0.1 only (and shut down at the
end); with ``address`` the job connects to that cluster (every worker must see the input paths
and be able to load the model).

Needs the ``ray`` extra (``pip install "emotion2vec-plus[ray]"``).
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .discovery import discover_inputs
from .local import check_batch_options, stat_entries
from .store import (RESULTS_NAME, BatchSummary, ResultsLog, commit_window, finish_job, locked_output_dir, open_outputs,
                    remove_temporaries, resume_plan, Entry)
from .work import decode_entry, error_line, predict_decoded, progress_bar, result_outputs
from ..results import Result
from ..errors import RayEngineError

__all__ = ["RayEngineError", "run_batch_ray"]

#: CPUs of the local Ray instance started when no ``address`` is given.
LOCAL_NUM_CPUS = 2
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


# ---------------------------------------------------------------------------------------------- worker side
class _Recognizer:
    """The ``map_batches`` callable: one per Ray actor, loading the model once in ``__init__``."""

    def __init__(self, model_name: str, model_kwargs: dict[str, Any], granularity: str, extract_embedding: bool,
                 batch_size: int, decode_threads: int = 2) -> None:
        from ..inference import Emotion2VecPlus

        self.model = Emotion2VecPlus(model_name, **model_kwargs)
        self.granularity = granularity
        self.extract_embedding = extract_embedding
        self.batch_size = batch_size
        self.pool = ThreadPoolExecutor(max_workers=max(1, decode_threads), thread_name_prefix="emotion2vec-decode")

    def __call__(self, batch: dict[str, Any]):
        import pyarrow as pa

        indices = [int(i) for i in batch["index"]]
        # Only the path and whether the file could be stat-ed matter to decoding and the model.
        entries = [Entry(Path(str(path)), None if missing else 0, None, None, "")
                   for path, missing in zip(batch["path"], batch["missing"])]
        decoded = list(self.pool.map(
            lambda entry: decode_entry(entry, self.model.max_duration_s, self.model.hold_in_memory_s), entries))
        outcome: list[Result | str] = [item.error or "unknown error" if item.audio is None else "" for item in decoded]
        error_types = [item.error_type for item in decoded]
        good = sorted((n for n, item in enumerate(decoded) if item.audio is not None),
                      key=lambda n: decoded[n].num_samples, reverse=True)
        for start in range(0, len(good), self.batch_size):
            chunk = good[start:start + self.batch_size]
            results = predict_decoded(self.model, [decoded[n] for n in chunk], self.granularity, self.extract_embedding)
            for n, result in zip(chunk, results):
                outcome[n] = result if result.ok else (result.error or "unknown error")

        # Each result travels as its own documented JSON (Result.to_dict) plus the embedding as floats.
        columns: dict[str, list] = {name: [] for name in ("index", "status", "error", "error_type", "result",
                                                          "embedding", "embedding_shape")}
        for index, item, error_type in zip(indices, outcome, error_types):
            result = item if isinstance(item, Result) else None
            embedding = None if result is None or result.embedding is None else np.asarray(result.embedding,
                                                                                          dtype=np.float32)
            columns["index"].append(index)
            columns["status"].append("ok" if result is not None else "error")
            columns["error"].append(None if result is not None else str(item))
            columns["error_type"].append(None if result is not None else error_type)
            columns["result"].append(None if result is None else json.dumps(result.to_dict(), ensure_ascii=False))
            columns["embedding"].append(None if embedding is None else embedding.reshape(-1))
            columns["embedding_shape"].append(None if embedding is None else list(embedding.shape))
        return pa.table({
            "index": pa.array(columns["index"], pa.int64()),
            "status": pa.array(columns["status"], pa.string()),
            "error": pa.array(columns["error"], pa.string()),
            "error_type": pa.array(columns["error_type"], pa.string()),
            "result": pa.array(columns["result"], pa.string()),
            "embedding": pa.array(columns["embedding"], pa.list_(pa.float32())),
            "embedding_shape": pa.array(columns["embedding_shape"], pa.list_(pa.int64())),
        })


def _result_of(row: dict[str, Any]) -> Result:
    """The :class:`Result` of an ``ok`` output row."""
    embedding = None
    if row["embedding"] is not None:
        embedding = np.asarray(row["embedding"], dtype=np.float32).reshape(row["embedding_shape"])
    return Result.from_dict(json.loads(row["result"]), embedding=embedding)


# ---------------------------------------------------------------------------------------------- Ray session
def _import_ray(local: bool):
    if local:
        # On Linux Ray turns "127.0.0.1" into the machine's external address unless this is off;
        # it must be set before ray is imported (ray_constants reads it once), and is patched below.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RayEngineError(f"--engine ray needs Ray Data: pip install 'ray[data]' ({exc})") from None
    return ray


def _start_ray(address: str | None) -> tuple[Any, bool]:
    """Connect to ``address`` or start a local instance on 127.0.0.1; returns (ray, whether we started it)."""
    host = (address or "").rsplit(":", 1)[0].removeprefix("ray://").strip("[]")
    loopback = address is None or host in _LOOPBACK
    ray = _import_ray(local=loopback)
    if ray.is_initialized():  # the caller's own Ray session: use it, leave it running
        return ray, False
    if loopback:
        from ray._private import ray_constants

        # Keep the node address on the loopback interface (else Ray rewrites 127.0.0.1 to the external IP).
        ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        if address is None:
            ray.init(address=None, include_dashboard=False, num_cpus=LOCAL_NUM_CPUS, ignore_reinit_error=True,
                     log_to_driver=False, _node_ip_address="127.0.0.1", configure_logging=False)
            node_ip = ray.util.get_node_ip_address()
            if node_ip not in _LOOPBACK:
                ray.shutdown()
                raise RayEngineError(f"the local Ray instance did not bind to 127.0.0.1 (got {node_ip}); stopped it")
        else:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, configure_logging=False)
    except RayEngineError:
        raise
    except Exception as exc:
        where = f"connect to the Ray cluster at {address}" if address else "start a local Ray instance"
        raise RayEngineError(f"cannot {where}: {type(exc).__name__}: {exc}") from exc
    return ray, True


# ---------------------------------------------------------------------------------------------- the job
def run_batch_ray(
    model_name: str,
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    address: str | None = None,
    granularity: str = "utterance",
    embeddings: str = "parquet",
    batch_size: int = 8,
    num_workers: int | None = None,
    cpus_per_worker: float | None = None,
    workers: int = 2,
    progress: bool = True,
    retry_failed: bool = False,
    model_kwargs: dict[str, Any] | None = None,
) -> BatchSummary:
    """:func:`~emotion2vec_plus.jobs.run_batch` on Ray Data; same outputs, same resume rules.

    Args:
        model_name: the model every worker loads (``"compact"``, ``"large"``, a hub id, a local directory).
        inputs: files, directories and ``.txt`` / ``.csv`` lists of paths.
        out_dir: the output folder (see :mod:`emotion2vec_plus.jobs`).
        address: a running Ray cluster (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``); ``None``
            starts a local instance on 127.0.0.1 with 2 CPUs and shuts it down at the end.
        granularity, embeddings, retry_failed: as for ``run_batch``.
        batch_size: files per ``map_batches`` call (and per forward pass).
        num_workers: model workers (Ray actors), each loading the model once; default 1.
        cpus_per_worker: CPUs each worker reserves (also its PyTorch threads unless ``model_kwargs``
            sets ``num_threads``); default: the local instance's CPUs split among the workers, or 1
            on a cluster.
        workers: decoding threads in each worker.
        progress: a tqdm progress bar on stderr.
        model_kwargs: more :class:`~emotion2vec_plus.inference.Emotion2VecPlus` arguments (``device``,
            ``window_s``, ``max_duration_s``, ``head``, ...).

    Raises:
        BatchInputError: as ``run_batch``.
        RayEngineError: Ray is not installed, cannot start or connect, or a worker failed.
    """
    from ..inference import Emotion2VecPlus

    check_batch_options(granularity, embeddings, workers, batch_size)
    num_workers = 1 if num_workers is None else int(num_workers)
    if num_workers < 1:
        raise ValueError(f"num_workers must be at least 1, got {num_workers}")
    if cpus_per_worker is None:
        cpus_per_worker = max(1, LOCAL_NUM_CPUS // num_workers) if address is None else 1
    model_kwargs = dict(model_kwargs or {})
    plan = discover_inputs(inputs)
    started = time.perf_counter()
    with locked_output_dir(out_dir) as out:
        remove_temporaries(out)
        entries = stat_entries(plan)
        # The driver's copy of the model gives the name, labels and size the outputs are checked against.
        model = Emotion2VecPlus(model_name, **model_kwargs)
        results_path = out / RESULTS_NAME
        todo, ok_keys, summary = resume_plan(entries, results_path, model.model_name, granularity, retry_failed)
        parts, write_npy = open_outputs(out, model, granularity, embeddings)
        audio_s = 0.0
        if todo:
            worker_kwargs = dict(model_kwargs)
            if worker_kwargs.get("num_threads") is None:
                worker_kwargs["num_threads"] = max(1, int(cpus_per_worker))
            worker_kwargs["max_duration_s"] = model.max_duration_s
            audio_s = _run_on_ray(todo, out, model, address, worker_kwargs, granularity=granularity,
                                  embeddings=embeddings, batch_size=batch_size, num_workers=num_workers,
                                  cpus_per_worker=cpus_per_worker, parts=parts, write_npy=write_npy,
                                  summary=summary, ok_keys=ok_keys, progress=progress, started=started,
                                  model_name=str(model_name), decode_threads=workers)
        return finish_job(parts, ok_keys, summary, audio_s, started)


def _run_on_ray(todo: list[Entry], out: Path, model, address: str | None, worker_kwargs: dict[str, Any], *,
                granularity: str, embeddings: str, batch_size: int, num_workers: int, cpus_per_worker: float,
                parts, write_npy: bool, summary: BatchSummary, ok_keys: set, progress: bool, started: float,
                model_name: str, decode_threads: int) -> float:
    ray, started_ray = _start_ray(address)
    audio_s = 0.0
    bar = progress_bar(len(todo)) if progress else None
    log = ResultsLog(out / RESULTS_NAME)
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        items = [{"index": n, "path": str(entry.path), "missing": entry.size is None} for n, entry in enumerate(todo)]
        dataset = ray.data.from_items(items, override_num_blocks=max(1, -(-len(items) // batch_size)))
        results = dataset.map_batches(
            _Recognizer,
            fn_constructor_kwargs={"model_name": model_name, "model_kwargs": worker_kwargs,
                                   "granularity": granularity, "extract_embedding": embeddings != "none",
                                   "batch_size": batch_size, "decode_threads": decode_threads},
            # A fixed pool of num_workers actors (what ``concurrency=num_workers`` meant before Ray 2.51).
            batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=num_workers), num_cpus=cpus_per_worker,
            batch_format="numpy", zero_copy_batch=True,
        )
        try:
            for block in results.iter_batches(batch_size=None, batch_format="pyarrow"):
                lines: list[dict[str, Any]] = []
                rows: list[dict[str, Any]] = []
                for row in block.to_pylist():
                    entry = todo[row["index"]]
                    if row["status"] != "ok":
                        lines.append(error_line(entry, row["error"] or "unknown error", model, granularity,
                                                row.get("error_type")))
                        continue
                    result = _result_of(row)
                    line, parquet_row = result_outputs(entry, result, out, granularity, write_npy)
                    lines.append(line)
                    if parquet_row is not None:
                        rows.append(parquet_row)
                    audio_s += result.duration_s
                commit_window(parts, log, lines, rows, summary, ok_keys, bar)
                if bar is not None:
                    bar.update(len(lines))
                    elapsed = max(time.perf_counter() - started, 1e-9)
                    bar.set_postfix_str(f"{audio_s / elapsed:.1f} audio-s/s", refresh=False)
        except ray.exceptions.RayError as exc:
            message = str(exc).strip().splitlines()
            raise RayEngineError(f"a Ray worker failed: {type(exc).__name__}: "
                                 f"{message[-1] if message else ''}") from exc
    finally:
        log.close()
        if bar is not None:
            bar.close()
        if started_ray:
            ray.shutdown()
    return audio_s
