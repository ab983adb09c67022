"""Result folders: ``outputs/outputs_YYYYMMDD_HHMMSS/`` with the processed audio, JSON and embedding."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import numpy as np
import soundfile as sf

from .audio import SAMPLE_RATE
from .embeddings import save_embedding
from .fileio import atomic_write
from .results import Result

RUN_PREFIX = "outputs_"
PROCESSED_AUDIO = "processed_audio.wav"
RESULT_JSON = "result.json"
EMBEDDING_NPY = "embedding.npy"


def create_run_dir(outputs_root: str | os.PathLike = "outputs", now: datetime | None = None) -> Path:
    """Create a new, empty ``outputs_YYYYMMDD_HHMMSS`` folder under ``outputs_root``.

    Never reuses a folder: a second run in the same second gets ``..._HHMMSS_2`` and so on
    (``mkdir`` is atomic, so concurrent runs cannot take the same name).
    """
    root = Path(outputs_root)
    root.mkdir(parents=True, exist_ok=True)
    stamp = (now or datetime.now()).strftime("%Y%m%d_%H%M%S")
    suffix = 1
    while True:
        name = f"{RUN_PREFIX}{stamp}" if suffix == 1 else f"{RUN_PREFIX}{stamp}_{suffix}"
        try:
            (root / name).mkdir()
            return root / name
        except FileExistsError:
            suffix += 1


def write_run(result: Result, samples: np.ndarray, outputs_root: str | os.PathLike = "outputs") -> Path:
    """Write one recognition run: ``processed_audio.wav`` (16 kHz mono PCM16), ``result.json``
    and, when the result carries one, ``embedding.npy``. Sets ``result.output_dir``."""
    run_dir = create_run_dir(outputs_root)
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
