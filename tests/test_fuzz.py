"""Property-based fuzzing of the file loaders (bounded, so it runs in CI): mutated audio, ``.npy``
and head files either load or raise this package's typed errors, never anything else."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from emotion2vec_plus import load_audio  # noqa: E402
from emotion2vec_plus.embeddings import load_embedding  # noqa: E402
from emotion2vec_plus.errors import Emotion2VecError  # noqa: E402
from emotion2vec_plus.heads import EmotionHead  # noqa: E402

#: Examples per loader in CI (derandomised: the same ones every run); EMOTION2VEC_FUZZ_EXAMPLES=N
#: with a random seed for a longer hunt.
EXAMPLES = int(os.environ.get("EMOTION2VEC_FUZZ_EXAMPLES", "120"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="EMOTION2VEC_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _audio_seed(fmt: str) -> bytes:
    t = np.arange(8000) / 16000
    buffer = io.BytesIO()
    sf.write(buffer, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000, format=fmt)
    return buffer.getvalue()


def _npy_seed() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.linspace(-1, 1, 64, dtype=np.float32).reshape(4, 16), allow_pickle=False)
    return buffer.getvalue()


def _head_seed(tmp: Path) -> bytes:
    rng = np.random.default_rng(0)
    head = EmotionHead(["a", "b"], "logreg", 8, "compact",
                       {"mean": np.zeros(8, np.float32), "scale": np.ones(8, np.float32),
                        "weight": rng.standard_normal((2, 8)).astype(np.float32), "bias": np.zeros(2, np.float32)})
    return head.save(tmp / "seed.safetensors").read_bytes()


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    """The seed with a few bytes overwritten, a slice cut out or duplicated, and/or truncated."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(0, 6))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        start = draw(st.integers(0, len(data) - 1))
        end = draw(st.integers(start, min(len(data), start + 64)))
        data[start:end] = data[start:end] * draw(st.integers(0, 3))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def _typed_or_ok(call) -> None:
    try:
        call()
    except Emotion2VecError:
        pass


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG"])
def test_mutated_audio_bytes_load_or_raise_typed_errors(fmt):
    seed = _audio_seed(fmt)

    @FUZZ
    @given(mutated(seed))
    def check(data: bytes) -> None:
        _typed_or_ok(lambda: load_audio(data, max_duration_s=60))

    check()


def test_mutated_npy_files_load_or_raise_typed_errors(tmp_path):
    seed = _npy_seed()
    target = tmp_path / "fuzz.npy"

    @FUZZ
    @given(mutated(seed))
    def check(data: bytes) -> None:
        target.write_bytes(data)
        _typed_or_ok(lambda: load_embedding(target))

    check()


def test_mutated_head_files_load_or_raise_typed_errors(tmp_path):
    seed = _head_seed(tmp_path)
    target = tmp_path / "fuzz.safetensors"

    @FUZZ
    @given(mutated(seed))
    def check(data: bytes) -> None:
        target.write_bytes(data)
        _typed_or_ok(lambda: EmotionHead.load(target))

    check()
