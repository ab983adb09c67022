"""An embeddings Parquet index (written by batch jobs) and exact cosine nearest-neighbour search."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import IndexFileError
from .similarity import checked_vector


#: Above this many rows :func:`search` uses FAISS (exact inner product) when it is installed.
FAISS_THRESHOLD = 100_000


REQUIRED_COLUMNS = ("path", "embedding")


OPTIONAL_COLUMNS = ("emotion", "confidence")


PARQUET_MAGIC = b"PAR1"


@dataclass
class EmbeddingIndex:
    """Embeddings of many files, one row each, ready for :func:`search` and :func:`cluster_embeddings`.

    ``embeddings`` is (N, D) float32 with every row L2-normalised, so a dot product is a cosine.
    """

    paths: list[str]
    embeddings: np.ndarray
    emotions: list[str | None]
    confidences: list[float | None]
    source: str | None = None
    _faiss: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.paths)
        if self.embeddings.ndim != 2 or self.embeddings.shape[0] != n:
            raise ValueError(f"embeddings must be ({n}, D), got {self.embeddings.shape}")
        if len(self.emotions) != n or len(self.confidences) != n:
            raise ValueError("paths, emotions and confidences must have one entry per embedding")

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def dim(self) -> int:
        """Embedding dimension D."""
        return int(self.embeddings.shape[1])

    @classmethod
    def from_arrays(cls, paths: Sequence[str], embeddings: np.ndarray, emotions: Sequence[str | None] | None = None,
                    confidences: Sequence[float | None] | None = None, source: str | None = None) -> "EmbeddingIndex":
        """Build an index from in-memory embeddings (normalised here; zero or NaN rows are refused)."""
        name = source or "<arrays>"
        matrix = np.array(embeddings, dtype=np.float32, copy=True)
        if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
            raise ValueError(f"{name}: embeddings must be a non-empty (N, D) array, got shape {matrix.shape}")
        _normalise_rows(matrix, list(paths), name)
        n = matrix.shape[0]
        return cls(list(map(str, paths)), matrix, list(emotions) if emotions is not None else [None] * n,
                   list(confidences) if confidences is not None else [None] * n, source)


def _normalise_rows(matrix: np.ndarray, paths: Sequence[str], name: str, chunk: int = 65536) -> None:
    """L2-normalise ``matrix`` in place; NaN/inf or all-zero rows are an error naming the row."""
    for start in range(0, matrix.shape[0], chunk):
        block = matrix[start:start + chunk]
        finite = np.isfinite(block).all(axis=1)
        if not finite.all():
            row = start + int(np.argmin(finite))
            raise IndexFileError(f"{name}: the embedding of row {row} ({paths[row]}) contains NaN or infinite values")
        norms = np.linalg.norm(block.astype(np.float64), axis=1)
        if (norms == 0).any():
            row = start + int(np.argmax(norms == 0))
            raise IndexFileError(f"{name}: the embedding of row {row} ({paths[row]}) is all zeros")
        block /= norms[:, None].astype(np.float32)


def _embedding_matrix(column, name: str, paths: list[str]) -> np.ndarray:
    """(N, D) float32 from a pyarrow list / fixed-size-list / large-list column, chunk by chunk."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if not (pa.types.is_fixed_size_list(kind) or pa.types.is_list(kind) or pa.types.is_large_list(kind)):
        raise IndexFileError(f"{name}: column 'embedding' has type {kind}; expected a list of floats "
                             "(fixed_size_list<float32, D>)")
    if not pa.types.is_floating(kind.value_type):
        raise IndexFileError(f"{name}: column 'embedding' holds {kind.value_type}; expected floats")
    if column.null_count:
        row = next(i for i, v in enumerate(column.is_null().to_pylist()) if v)
        raise IndexFileError(f"{name}: row {row} ({paths[row]}) has no embedding (null)")
    if pa.types.is_fixed_size_list(kind):
        dims = {kind.list_size}
    else:
        lengths = pc.list_value_length(column)
        low, high = pc.min(lengths).as_py(), pc.max(lengths).as_py()
        if low != high:
            lengths_np = np.asarray(lengths.to_numpy(zero_copy_only=False))
            first = int(lengths_np[0])
            row = int(np.argmax(lengths_np != first))
            raise IndexFileError(f"{name}: embeddings have different lengths (ragged): row 0 ({paths[0]}) has "
                                 f"{first} values, row {row} ({paths[row]}) has {int(lengths_np[row])}")
        dims = {low}
    dim = dims.pop()
    if not dim:
        raise IndexFileError(f"{name}: embeddings are empty (0 values per row)")
    matrix = np.empty((len(column), dim), dtype=np.float32)
    offset = 0
    for chunk in column.chunks:
        values = chunk.flatten()
        if values.null_count:
            raise IndexFileError(f"{name}: column 'embedding' contains null values inside a vector")
        block = values.to_numpy(zero_copy_only=False).reshape(len(chunk), dim)
        matrix[offset:offset + len(chunk)] = block
        offset += len(chunk)
    return matrix


def load_index(parquet_path: str | os.PathLike) -> EmbeddingIndex:
    """Read an embeddings Parquet file (see the module docstring) into an :class:`EmbeddingIndex`.

    Raises :class:`IndexFileError` naming the file when it is missing, unreadable, not Parquet,
    lacks the ``path`` or ``embedding`` column, holds null, ragged, empty, NaN/infinite or
    all-zero embeddings, or has no rows. ``emotion`` and ``confidence`` are optional columns.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(parquet_path)
    name = str(path)
    if not path.exists():
        raise IndexFileError(f"{name}: index file not found")
    if not path.is_file():
        raise IndexFileError(f"{name}: not a file")
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
            size = path.stat().st_size
            handle.seek(max(size - 4, 0))
            tail = handle.read(4)
    except OSError as exc:
        raise IndexFileError(f"{name}: cannot read: {exc.strerror or exc}") from exc
    if head != PARQUET_MAGIC or tail != PARQUET_MAGIC or size < 12:
        raise IndexFileError(f"{name}: not a Parquet file (expected the PAR1 header and footer)")
    try:
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
        missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
        if missing:
            raise IndexFileError(f"{name}: missing column(s) {', '.join(missing)}; found {', '.join(schema.names) or 'none'}")
        columns = list(REQUIRED_COLUMNS) + [c for c in OPTIONAL_COLUMNS if c in schema.names]
        table = parquet.read(columns=columns)
    except IndexFileError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise IndexFileError(f"{name}: cannot read Parquet: {exc}") from exc
    if table.num_rows == 0:
        raise IndexFileError(f"{name}: the index has no rows")

    path_column = table.column("path")
    if not (pa.types.is_string(path_column.type) or pa.types.is_large_string(path_column.type)):
        raise IndexFileError(f"{name}: column 'path' has type {path_column.type}; expected strings")
    paths = path_column.to_pylist()
    if path_column.null_count:
        raise IndexFileError(f"{name}: row {paths.index(None)} has no path (null)")
    matrix = _embedding_matrix(table.column("embedding"), name, paths)
    _normalise_rows(matrix, paths, name)

    emotions: list[str | None] = [None] * len(paths)
    if "emotion" in table.column_names:
        column = table.column("emotion")
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type) or pa.types.is_null(column.type)):
            raise IndexFileError(f"{name}: column 'emotion' has type {column.type}; expected strings")
        emotions = column.to_pylist()
    confidences: list[float | None] = [None] * len(paths)
    if "confidence" in table.column_names:
        column = table.column("confidence")
        if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type) or pa.types.is_null(column.type)):
            raise IndexFileError(f"{name}: column 'confidence' has type {column.type}; expected numbers")
        confidences = [None if v is None or not math.isfinite(v) else float(v) for v in column.to_pylist()]
    return EmbeddingIndex(paths, matrix, emotions, confidences, name)


@dataclass
class SearchHit:
    """One result of :func:`search`: ``rank`` 1 is the most similar; ``row`` is its row in the index."""

    rank: int
    row: int
    path: str
    similarity: float
    emotion: str | None
    confidence: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "row": self.row, "path": self.path, "similarity": self.similarity,
                "emotion": self.emotion, "confidence": self.confidence}


def _query_vector(index: EmbeddingIndex, query: np.ndarray) -> np.ndarray:
    vector = checked_vector(query, "query")
    if vector.shape[0] != index.dim:
        where = f" in {index.source}" if index.source else ""
        raise ValueError(f"query embedding is {vector.shape[0]}-d but the embeddings{where} are {index.dim}-d "
                         "(made by a different model?)")
    norm = float(np.linalg.norm(vector))
    if norm == 0.0:
        raise ValueError("query embedding is all zeros; cosine similarity is undefined")
    return (vector / norm).astype(np.float32)


def _faiss_search(index: EmbeddingIndex, q: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        import faiss  # type: ignore[import-not-found]
    except ImportError:
        return None
    if index._faiss is None:
        flat = faiss.IndexFlatIP(index.dim)
        flat.add(np.ascontiguousarray(index.embeddings))
        index._faiss = flat
    scores, rows = index._faiss.search(q[None], top)
    return rows[0].astype(np.int64), scores[0].astype(np.float64)


def search(index: EmbeddingIndex, query: np.ndarray, top: int = 10) -> list[SearchHit]:
    """The ``top`` rows most similar to ``query`` ((D,) or (T, D)) by exact cosine similarity.

    NumPy: one matrix-vector product and ``argpartition``; ties keep index order. With more than
    :data:`FAISS_THRESHOLD` rows and ``faiss`` installed, an exact FAISS inner-product index is
    used instead (built once per index).
    """
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    q = _query_vector(index, query)
    n = len(index)
    top = min(int(top), n)
    found = _faiss_search(index, q, top) if n > FAISS_THRESHOLD else None
    if found is not None:
        rows, scores = found
    else:
        all_scores = index.embeddings @ q
        if top < n:
            candidates = np.argpartition(-all_scores, top - 1)[:top]
        else:
            candidates = np.arange(n)
        order = np.lexsort((candidates, -all_scores[candidates].astype(np.float64)))
        rows = candidates[order]
        scores = all_scores[rows].astype(np.float64)
    return [SearchHit(rank, int(row), index.paths[row], float(np.clip(score, -1.0, 1.0)),
                      index.emotions[row], index.confidences[row])
            for rank, (row, score) in enumerate(zip(rows, scores), start=1)]
