"""Save and safely load embedding vectors as plain ``.npy`` files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import EmbeddingFileError, PickledEmbeddingError

NPY_MAGIC = b"\x93NUMPY"
#: Files at least this large are memory-mapped instead of read into memory.
MMAP_THRESHOLD_BYTES = 64 * 1024 * 1024
_FLOAT_KINDS = (np.float16, np.float32, np.float64)


def utterance_embedding(embedding: np.ndarray) -> np.ndarray:
    """An utterance embedding (D,) from (D,) itself or from frame features (T, D), averaged over the
    frames: exactly how the model pools a clip it scores whole."""
    array = np.asarray(embedding)
    return array.mean(axis=0) if array.ndim == 2 else array


def save_embedding(path: str | os.PathLike, embedding: np.ndarray) -> Path:
    """Write ``embedding`` ((D,) or (T, D)) as a float32 ``.npy`` file; returns the path."""
    array = np.asarray(embedding)
    if array.ndim not in (1, 2) or array.size == 0:
        raise EmbeddingFileError(f"{path}: an embedding must be a non-empty (D,) or (T, D) array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise EmbeddingFileError(f"{path}: an embedding must hold floats, got {array.dtype}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:  # a handle keeps the name as given (np.save would append .npy)
        np.save(handle, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    return path


#: Largest .npy header accepted (NumPy writes a few hundred bytes).
MAX_HEADER_BYTES = 64 * 1024


def _check_header(path: Path) -> None:
    """Read the header alone and refuse what it describes before anything is allocated: Python
    objects (pickle), a shape that is not (D,) or (T, D), or more data than the file holds
    (a header can claim 10^12 elements in a 100-byte file)."""
    size = path.stat().st_size
    try:
        with path.open("rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(handle, max_header_size=MAX_HEADER_BYTES)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(handle, max_header_size=MAX_HEADER_BYTES)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
            data_offset = handle.tell()
    # NumPy's header parser raises many types on damaged input (ValueError, SyntaxError,
    # tokenize.TokenError, ...): every one means the header is unreadable.
    except Exception as exc:
        raise EmbeddingFileError(f"{path}: corrupt .npy header: {type(exc).__name__}: {exc}") from exc
    if dtype.hasobject:
        raise PickledEmbeddingError(f"{path}: refused: the file holds Python objects (pickle), not numbers")
    if len(shape) not in (1, 2) or 0 in shape:
        raise EmbeddingFileError(f"{path}: expected shape (D,) or (T, D), the header says {shape}")
    needed = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if data_offset + needed > size:
        raise EmbeddingFileError(f"{path}: truncated: the header describes a {shape} {dtype} array ({needed:,} bytes) "
                                 f"but only {size - data_offset:,} bytes of data follow it")


def load_embedding(path: str | os.PathLike, *, expected_dim: int | None = None, mmap: bool | None = None) -> np.ndarray:
    """Load an embedding written by :func:`save_embedding` (or any float ``.npy``) safely.

    The file must start with the ``\\x93NUMPY`` magic, holds no pickled objects
    (``allow_pickle=False``: a pickle payload is refused without running anything), and must
    be a float16/32/64 array of shape (D,) or (T, D) — ``expected_dim`` checks D. The
    result is float32; files of 64 MB or more are memory-mapped unless ``mmap=False``.
    """
    path = Path(path)
    if not path.is_file():
        raise EmbeddingFileError(f"{path}: embedding file not found")
    try:
        with path.open("rb") as handle:
            magic = handle.read(len(NPY_MAGIC))
    except OSError as exc:
        raise EmbeddingFileError(f"{path}: cannot read: {exc}") from exc
    if magic != NPY_MAGIC:
        raise EmbeddingFileError(f"{path}: not a NumPy .npy file (missing the \\x93NUMPY header)")
    _check_header(path)
    use_mmap = path.stat().st_size >= MMAP_THRESHOLD_BYTES if mmap is None else mmap
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r" if use_mmap else None)
    except (ValueError, OSError, EOFError) as exc:
        raise EmbeddingFileError(f"{path}: corrupt .npy file: {exc}") from exc
    if not isinstance(array, np.ndarray):
        raise EmbeddingFileError(f"{path}: expected a single array, found {type(array).__name__}")
    if array.dtype.type not in _FLOAT_KINDS:
        raise EmbeddingFileError(f"{path}: embeddings must be float16/float32/float64, found {array.dtype}")
    if array.ndim not in (1, 2) or array.size == 0:
        raise EmbeddingFileError(f"{path}: expected shape (D,) or (T, D), found {array.shape}")
    if expected_dim is not None and array.shape[-1] != expected_dim:
        raise EmbeddingFileError(f"{path}: embedding dimension is {array.shape[-1]}, this model uses {expected_dim}")
    if array.dtype != np.float32:
        array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise EmbeddingFileError(f"{path}: the embedding contains NaN or infinite values")
    return array
