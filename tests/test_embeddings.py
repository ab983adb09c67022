"""Saving and safely loading .npy embeddings."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from emotion2vec_plus import EmbeddingFileError, load_embedding, save_embedding


def test_roundtrip_utterance_and_frame_embeddings(tmp_path):
    utterance = np.random.default_rng(0).standard_normal(1024).astype(np.float32)
    frames = np.random.default_rng(1).standard_normal((50, 768)).astype(np.float32)
    assert np.array_equal(load_embedding(save_embedding(tmp_path / "u.npy", utterance)), utterance)
    loaded = load_embedding(save_embedding(tmp_path / "sub" / "f.npy", frames), expected_dim=768)
    assert loaded.dtype == np.float32 and loaded.shape == (50, 768)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_other_float_widths_become_float32(tmp_path, dtype):
    np.save(tmp_path / "e.npy", np.ones(8, dtype=dtype))
    assert load_embedding(tmp_path / "e.npy").dtype == np.float32


class WritesAFile:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


def test_pickle_payload_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    payload = np.array([WritesAFile(marker)], dtype=object)
    np.save(tmp_path / "evil.npy", payload, allow_pickle=True)
    with pytest.raises(EmbeddingFileError, match="pickle"):
        load_embedding(tmp_path / "evil.npy")
    assert not marker.exists()


def test_raw_pickle_renamed_npy_is_refused(tmp_path):
    (tmp_path / "p.npy").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(EmbeddingFileError, match="not a NumPy .npy file"):
        load_embedding(tmp_path / "p.npy")


@pytest.mark.parametrize("array, message", [
    (np.arange(10, dtype=np.int64), "float16/float32/float64"),
    (np.zeros((2, 3, 4), dtype=np.float32), "shape"),
    (np.zeros(0, dtype=np.float32), "shape"),
    (np.array([1.0, np.nan], dtype=np.float32), "NaN"),
])
def test_wrong_content_is_named(tmp_path, array, message):
    np.save(tmp_path / "x.npy", array)
    with pytest.raises(EmbeddingFileError, match=message):
        load_embedding(tmp_path / "x.npy")


def test_dimension_check_and_missing_and_truncated(tmp_path):
    save_embedding(tmp_path / "e.npy", np.ones(768, dtype=np.float32))
    with pytest.raises(EmbeddingFileError, match="768.*1024"):
        load_embedding(tmp_path / "e.npy", expected_dim=1024)
    with pytest.raises(EmbeddingFileError, match="not found"):
        load_embedding(tmp_path / "missing.npy")
    data = (tmp_path / "e.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:200])
    with pytest.raises(EmbeddingFileError, match="cut.npy"):
        load_embedding(tmp_path / "cut.npy")


def test_large_files_are_memory_mapped(tmp_path):
    save_embedding(tmp_path / "big.npy", np.ones((10, 4), dtype=np.float32))
    assert isinstance(load_embedding(tmp_path / "big.npy", mmap=True), np.memmap)
    assert not isinstance(load_embedding(tmp_path / "big.npy"), np.memmap)


def test_save_keeps_the_name_given(tmp_path):
    path = save_embedding(tmp_path / "vector.emb", np.ones(4, dtype=np.float32))
    assert path == tmp_path / "vector.emb" and path.is_file()
    assert np.array_equal(load_embedding(path), np.ones(4, dtype=np.float32))


def _npy_with_header(path, shape, data: bytes = b"\0" * 16) -> None:
    """A .npy file whose header claims ``shape`` float32, followed by ``data``."""
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}"
    header += " " * (118 - len(header)) + "\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + data)


def test_a_header_claiming_more_than_the_file_holds_is_refused_before_allocating(tmp_path):
    """10^12 float32 in a 150-byte file: a typed error naming the claim, never numpy's MemoryError."""
    _npy_with_header(tmp_path / "huge.npy", (10**12,))
    with pytest.raises(EmbeddingFileError, match=r"truncated: the header describes a \(1000000000000,\) float32 array"):
        load_embedding(tmp_path / "huge.npy")
    _npy_with_header(tmp_path / "rows.npy", (10**6, 1024))
    with pytest.raises(EmbeddingFileError, match="truncated"):
        load_embedding(tmp_path / "rows.npy", mmap=True)


def test_truncated_data_is_called_truncated_not_pickle(tmp_path):
    save_embedding(tmp_path / "e.npy", np.ones(768, dtype=np.float32))
    data = (tmp_path / "e.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:-100])
    with pytest.raises(EmbeddingFileError, match="truncated") as error:
        load_embedding(tmp_path / "cut.npy")
    assert "pickle" not in str(error.value)
