"""Emotion-embedding analytics: similarity, nearest-neighbour search and clustering.

Library first, command line second::

    from emotion2vec_plus.analytics import cosine_similarity, load_index, search, cluster_embeddings

    cosine_similarity(emb_a, emb_b)                 # 0.9731
    index = load_index("embeddings.parquet")        # written by the batch job
    for hit in search(index, query_embedding, top=5):
        print(hit.rank, hit.similarity, hit.path, hit.emotion)
    report = cluster_embeddings(index, min_cluster_size=15, seed=0)
    write_cluster_report(report, index, "report/")  # clusters.csv, map.png, map.html, summary.json

The index file is Parquet with the columns ``path`` (string), ``embedding`` (a list of floats,
normally ``fixed_size_list<float32, D>``) and, optionally, ``emotion`` (string, may be null) and
``confidence`` (float, may be null); other columns (``scores`` ...) are ignored. It is read with
pyarrow only.

Clustering: UMAP (umap-learn, cosine metric) lays the vectors out twice from one shared exact
neighbour graph and the same ``seed``: into 2-D for the map and into :data:`CLUSTER_DIMS` (10)
dimensions for HDBSCAN (``sklearn.cluster.HDBSCAN``). Clustering the 10-D layout rather than the
2-D map was chosen by measurement (numbers in :func:`cluster_embeddings`).

Heavy dependencies (pyarrow, umap-learn, scikit-learn, matplotlib, plotly, the model itself) are
imported only by the functions that need them.

Command line (:mod:`emotion2vec_plus.cli.analytics`)::

    emotion2vec-plus similarity a.wav b.npy [--model NAME] [--json]
    emotion2vec-plus search query.wav --index embeddings.parquet [--top 10] [--json]
    emotion2vec-plus cluster embeddings.parquet --out report/ [--min-cluster-size 15] [--seed 0]
"""

from __future__ import annotations

import csv
import html
import json
import math
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .embeddings import NPY_MAGIC, load_embedding, utterance_embedding
from .errors import EmbeddingFileError
from .errors import IndexFileError  # defined in errors.py; importable from here too

__all__ = [
    "ANALYTICS_COMMANDS", "CLUSTER_DIMS", "FAISS_THRESHOLD", "SIMILARITY_BANDS", "ClusterReport", "ComparedInput",
    "Comparison", "EmbeddingIndex", "EmotionRun", "EmotionTimeline", "IndexFileError", "SearchHit",
    "cluster_embeddings", "compare_inputs", "cosine_similarity", "describe_similarity",
    "emotion_runs", "emotion_timeline", "is_embedding_file", "load_index", "load_vector", "search",
    "write_cluster_report",
]

#: Subcommands of ``emotion2vec-plus`` (:mod:`emotion2vec_plus.cli.analytics`).
ANALYTICS_COMMANDS: tuple[str, ...] = ("similarity", "search", "cluster")
#: Above this many rows :func:`search` uses FAISS (exact inner product) when it is installed.
FAISS_THRESHOLD = 100_000
#: Dimensions of the UMAP embedding that HDBSCAN clusters (the map itself is always 2-D).
CLUSTER_DIMS = 10
#: Up to this many rows the neighbour graph for UMAP is computed exactly with NumPy.
EXACT_KNN_MAX = 16384
#: Lower bounds of the bands of :func:`describe_similarity`, highest first (calibrated on the compact model).
SIMILARITY_BANDS: tuple[tuple[float, str], ...] = (
    (0.99, "practically identical (the same clip, or the same embedding saved twice)"),
    (0.70, "very similar emotional profile"),
    (0.40, "similar emotional profile"),
    (0.20, "somewhat similar emotional profile"),
    (-0.10, "different emotional profile"),
    (-1.0, "opposite emotional profile"),
)
#: Embedding dimension of the model the bands were calibrated on (the bundled compact model).
CALIBRATED_DIM = 256
REQUIRED_COLUMNS = ("path", "embedding")
OPTIONAL_COLUMNS = ("emotion", "confidence")
PARQUET_MAGIC = b"PAR1"


# --------------------------------------------------------------------------- similarity
def _as_vector(x: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(x, dtype=np.float64)
    if array.ndim == 2:
        if array.shape[0] == 0:
            raise ValueError(f"{name}: frame embedding has no frames (shape {array.shape})")
        array = utterance_embedding(array)
    if array.ndim != 1 or array.shape[0] == 0:
        raise ValueError(f"{name}: expected an embedding of shape (D,) or (T, D), got {np.shape(x)}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: the embedding contains NaN or infinite values")
    return array


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings, in [-1, 1].

    Each argument is an utterance embedding (D,) or frame features (T, D); frames are averaged
    first, as the model does for a whole clip. The dimensions must match and neither vector may
    be zero (``ValueError`` otherwise).
    """
    va, vb = _as_vector(a, "first embedding"), _as_vector(b, "second embedding")
    if va.shape[0] != vb.shape[0]:
        raise ValueError(f"embedding dimensions differ: {va.shape[0]} vs {vb.shape[0]} "
                         "(were they made by different models?)")
    na, nb = float(np.linalg.norm(va)), float(np.linalg.norm(vb))
    if na == 0.0 or nb == 0.0:
        raise ValueError(f"{'first' if na == 0.0 else 'second'} embedding is all zeros; cosine similarity is undefined")
    return float(np.clip(np.dot(va, vb) / (na * nb), -1.0, 1.0))


def describe_similarity(value: float) -> str:
    """A short plain-language reading of a cosine similarity between two emotion embeddings.

    A cosine has no absolute meaning: it depends on the model and is only worth comparing with
    other values from the same model (``search`` ranks that way). Embeddings that are not
    centred, such as emotion2vec+'s (768/1024-d), share a common direction, so even unrelated
    clips score high and the useful range is squeezed towards 1. The bundled compact model's
    256-d embedding is trained so that clips of one emotion are close across speakers and
    languages. The bands are calibrated on it with held-out speakers (``bench/embedding_similarity.py
    --fold-models ... --folds 0``: 360 RAVDESS, 300 CASIA, 1528 nEMO and 196 EMOVO clips that the
    model never saw; ranges over the four corpora):

    - a random pair of clips: median 0.10-0.30 (90 % of pairs within about -0.3 to 0.6);
    - two clips of different emotions: median 0.06-0.26;
    - the same emotion by two different speakers: median 0.21-0.32;
    - two clips of the same speaker and emotion: median 0.39-0.61;
    - a clip and its nearest neighbour among the others: median 0.62-0.78 (95th pct 0.76-0.91);
    - clips of two different corpora (languages): median 0.03.

    ==============  ===================================================================
    cosine          reading (with the compact model this is like ...)
    ==============  ===================================================================
    >= 0.99         practically identical (the same clip, or the same embedding saved twice)
    0.70 - 0.99     very similar emotional profile (a clip's nearest neighbour)
    0.40 - 0.70     similar emotional profile (same speaker and emotion)
    0.20 - 0.40     somewhat similar emotional profile (same emotion, another speaker)
    -0.10 - 0.20    different emotional profile (a typical unrelated pair)
    < -0.10         opposite emotional profile
    ==============  ===================================================================

    For emotion2vec+ embeddings these bands over-state similarity (they are not calibrated
    for them here: no weights offline); compare such values with each other only.
    """
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"similarity must be a finite number, got {value}")
    for bound, reading in SIMILARITY_BANDS:
        if value >= bound:
            return reading
    return SIMILARITY_BANDS[-1][1]


# --------------------------------------------------------------------------- the index
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


# --------------------------------------------------------------------------- search
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
    vector = _as_vector(query, "query")
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


# --------------------------------------------------------------------------- clustering
@dataclass
class ClusterReport:
    """Result of :func:`cluster_embeddings`.

    ``labels`` (N,) cluster ids (0 = largest cluster, -1 = noise); ``coords`` (N, 2) UMAP map;
    ``summary`` one dict per cluster (``cluster``, ``size``, ``dominant_emotion``,
    ``mean_confidence``, ``examples``, ``emotions``), noise last as cluster -1 when there is any.
    """

    labels: np.ndarray
    coords: np.ndarray
    summary: list[dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def n_clusters(self) -> int:
        return int(len(set(self.labels.tolist()) - {-1}))

    @property
    def n_noise(self) -> int:
        return int((self.labels == -1).sum())

    def to_dict(self) -> dict[str, Any]:
        return {"n_embeddings": int(len(self.labels)), "n_clusters": self.n_clusters, "n_noise": self.n_noise,
                "params": self.params, "clusters": self.summary}


def _knn(data: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest neighbours (self included) of each row of L2-normalised ``data`` by cosine distance.

    Exact (blocked NumPy matrix products) up to :data:`EXACT_KNN_MAX` rows: at 3584-d (v1 embeddings) that was
    about 15 s for 16k rows on two cores, faster than compiling pynndescent, which is used
    (seeded, single-threaded) beyond that. Computed once and shared by both UMAP runs.
    """
    n = data.shape[0]
    if n > EXACT_KNN_MAX:
        from pynndescent import NNDescent

        indices, distances = NNDescent(data, n_neighbors=k, metric="cosine", random_state=seed, n_jobs=1,
                                       low_memory=True).neighbor_graph
        return np.asarray(indices, dtype=np.int32), np.asarray(distances, dtype=np.float32)
    indices = np.empty((n, k), dtype=np.int32)
    distances = np.empty((n, k), dtype=np.float32)
    block = max(1, min(n, (64 * 1024 * 1024) // (4 * n)))  # ~64 MB of similarities at a time
    for start in range(0, n, block):
        sims = data[start:start + block] @ data.T
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = np.inf  # self first, even among duplicates
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (len(rows), 1))
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1, kind="stable")
        part = np.take_along_axis(part, order, axis=1)
        sims[rows, start + rows] = 1.0
        indices[start:start + block] = part
        distances[start:start + block] = np.maximum(1.0 - np.take_along_axis(sims, part, axis=1), 0.0)
    return indices, distances


def _umap(data: np.ndarray, n_components: int, n_neighbors: int, seed: int,
          knn: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    import umap  # umap-learn

    if knn is None:
        knn = _knn(data, n_neighbors, seed)
    with warnings.catch_warnings():
        # "n_jobs value 1 overridden to 1 by setting random_state" (a seed makes UMAP single-threaded) and
        # "knn_search_index is not an NNDescent object" (only needed to transform new points).
        warnings.simplefilter("ignore", UserWarning)
        reducer = umap.UMAP(n_components=n_components, n_neighbors=n_neighbors, min_dist=0.0, metric="cosine",
                            random_state=seed, n_jobs=1, init="spectral" if len(data) > n_components + 1 else "random",
                            precomputed_knn=(knn[0].copy(), knn[1].copy(), None))  # UMAP edits them in place
        return np.asarray(reducer.fit_transform(data), dtype=np.float32)


def _relabel_by_size(raw: np.ndarray) -> np.ndarray:
    """Cluster ids ordered by size (0 = largest; ties by first appearance); noise stays -1."""
    ids = [c for c in dict.fromkeys(raw.tolist()) if c != -1]
    ids.sort(key=lambda c: -int((raw == c).sum()))
    mapping = {old: new for new, old in enumerate(ids)}
    return np.array([mapping.get(c, -1) for c in raw.tolist()], dtype=np.int64)


def _summarise(index: EmbeddingIndex, labels: np.ndarray, examples: int = 5) -> list[dict[str, Any]]:
    summary = []
    clusters = sorted(set(labels.tolist()) - {-1}) + ([-1] if (labels == -1).any() else [])
    for cluster in clusters:
        rows = np.flatnonzero(labels == cluster)
        emotions = Counter(e for e in (index.emotions[r] for r in rows) if e is not None)
        dominant = min(emotions.items(), key=lambda kv: (-kv[1], kv[0]))[0] if emotions else None
        confidences = [c for c in (index.confidences[r] for r in rows) if c is not None]
        # Examples: the members closest to the cluster's mean direction (its most typical files).
        centre = index.embeddings[rows].mean(axis=0)
        closeness = index.embeddings[rows] @ centre
        picked = rows[np.lexsort((rows, -closeness))[:examples]]
        summary.append({
            "cluster": int(cluster),
            "size": int(len(rows)),
            "dominant_emotion": dominant,
            "dominant_share": round(emotions[dominant] / len(rows), 4) if dominant is not None else None,
            "mean_confidence": round(float(np.mean(confidences)), 4) if confidences else None,
            "examples": [index.paths[r] for r in picked],
            "emotions": dict(sorted(emotions.items(), key=lambda kv: (-kv[1], kv[0]))),
        })
    return summary


def cluster_embeddings(index: EmbeddingIndex, *, min_cluster_size: int = 15, seed: int = 0,
                       n_neighbors: int = 15) -> ClusterReport:
    """Group similar embeddings: UMAP to 2-D for the map, HDBSCAN on a 10-D UMAP for the clusters.

    The ``n_neighbors`` nearest neighbours by cosine are found once (exactly, see ``_knn``) and
    shared by both UMAP runs (``min_dist=0``, ``random_state=seed``), so the same index and seed
    give identical labels and coordinates (a seeded UMAP is single-threaded). HDBSCAN
    (``min_samples`` = ``min_cluster_size``) finds the number of clusters itself and leaves
    outliers as noise (-1). Clusters are numbered by size, 0 the largest.

    Why cluster a 10-D UMAP and not the 2-D map or the embeddings themselves (HDBSCAN with
    min_cluster_size 15; mean over 5 seeds; ARI = adjusted Rand index against the known groups):

    ===========================================  ======================  ======================  ===============
    data                                         2-D map                 10-D UMAP (chosen)      raw, normalised
    ===========================================  ======================  ======================  ===============
    3 Gaussian blobs, 64-d, 3 x 60               3 clusters, ARI 1.00    3 clusters, ARI 1.00    ARI 1.00
    6 unequal anisotropic blobs, 256-d, 500      5 found, ARI 0.963      6 found, ARI 0.972      all noise
    RAVDESS + CASIA clips (compact, 780):        ARI 0.86 +- 0.12,       ARI 0.95 +- 0.10,       ARI 0.99
    English vs Mandarin                          6.8 % noise             1.9 % noise
    RAVDESS alone (480) vs emotion               ARI 0.00                ARI 0.03                all noise
    ===========================================  ======================  ======================  ===============

    The 2-D map merges neighbouring groups that 10-D keeps apart; HDBSCAN on the raw high-dimensional
    vectors finds only gross splits (distances concentrate in high dimensions) and marks
    everything else noise. Within one corpus, v1 compact-model embeddings (3584-d) had no strong cluster
    structure: no variant recovers emotions or speakers without supervision (ARI <= 0.04 for
    emotion, <= 0.11 for speaker), and cluster counts vary with the seed there. Clusters are
    groups of similar-sounding clips, not emotion labels; ``dominant_emotion`` says how they
    relate to the model's predictions.
    """
    from sklearn.cluster import HDBSCAN

    n = len(index)
    if min_cluster_size < 2:
        raise ValueError(f"min_cluster_size must be at least 2, got {min_cluster_size}")
    if n_neighbors < 2:
        raise ValueError(f"n_neighbors must be at least 2, got {n_neighbors}")
    where = f" in {index.source}" if index.source else ""
    if n < max(min_cluster_size, 5):
        raise ValueError(f"only {n} embeddings{where}: clustering needs at least {max(min_cluster_size, 5)} "
                         f"(lower --min-cluster-size, now {min_cluster_size})")
    neighbours = min(n_neighbors, n - 1)
    data = index.embeddings
    knn = _knn(data, neighbours, seed)
    coords = _umap(data, 2, neighbours, seed, knn)
    space = _umap(data, CLUSTER_DIMS, neighbours, seed, knn) if CLUSTER_DIMS != 2 else coords
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # sklearn 1.9: default of copy= will change
        raw = HDBSCAN(min_cluster_size=min_cluster_size, min_samples=None).fit_predict(space.astype(np.float64))
    labels = _relabel_by_size(np.asarray(raw))
    params = {"method": "umap+hdbscan", "cluster_space": f"umap-{CLUSTER_DIMS}d", "map_space": "umap-2d",
              "metric": "cosine", "min_cluster_size": int(min_cluster_size), "seed": int(seed),
              "n_neighbors": int(neighbours), "source": index.source}
    return ClusterReport(labels, coords, _summarise(index, labels), params)


# --------------------------------------------------------------------------- report files
_NOISE_GREY = "#b0b0b0"


def _palette(k: int) -> list[str]:
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["tab10" if k <= 10 else "tab20"]
    base = [to_hex(cmap(i)) for i in range(cmap.N)]
    if k <= len(base):
        return base[:k]
    turbo = colormaps["turbo"]
    return [to_hex(turbo(i / max(k - 1, 1))) for i in range(k)]


def _cluster_name(entry: dict[str, Any]) -> str:
    if entry["cluster"] == -1:
        return f"noise (n={entry['size']})"
    emotion = f", {entry['dominant_emotion']} {entry['dominant_share'] * 100:.0f}%" if entry["dominant_emotion"] else ""
    return f"cluster {entry['cluster']} (n={entry['size']}{emotion})"


def _write_png(report: ClusterReport, target: Path, colours: dict[int, str]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 7), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    size = max(6.0, min(30.0, 6000.0 / max(len(report.labels), 1)))
    order = [e for e in report.summary if e["cluster"] == -1] + [e for e in report.summary if e["cluster"] != -1]
    for entry in order:
        mask = report.labels == entry["cluster"]
        show_label = entry["cluster"] < 20  # a readable legend; further clusters are still drawn
        ax.scatter(report.coords[mask, 0], report.coords[mask, 1], s=size, c=colours[entry["cluster"]],
                   alpha=0.5 if entry["cluster"] == -1 else 0.85, linewidths=0,
                   label=_cluster_name(entry) if show_label else None)
    ax.set_title(f"{len(report.labels)} embeddings, {report.n_clusters} clusters, {report.n_noise} noise")
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")
    if report.summary:
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, markerscale=1.5, frameon=False)
    fig.tight_layout()
    fig.savefig(target, format="png")


def _write_html(report: ClusterReport, index: EmbeddingIndex, target: Path, colours: dict[int, str]) -> None:
    import plotly.graph_objects as go

    fig = go.Figure()
    order = [e for e in report.summary if e["cluster"] != -1] + [e for e in report.summary if e["cluster"] == -1]
    for entry in order:
        rows = np.flatnonzero(report.labels == entry["cluster"])
        text = []
        for r in rows.tolist():
            confidence = index.confidences[r]
            text.append("<br>".join([
                html.escape(Path(index.paths[r]).name),
                f"emotion: {html.escape(index.emotions[r] or '-')}",
                f"confidence: {'-' if confidence is None else f'{confidence:.3f}'}",
                f"cluster: {entry['cluster'] if entry['cluster'] != -1 else 'noise'}",
            ]))
        fig.add_trace(go.Scattergl(
            x=report.coords[rows, 0].tolist(), y=report.coords[rows, 1].tolist(), mode="markers",
            name=html.escape(_cluster_name(entry)), text=text, hovertemplate="%{text}<extra></extra>",
            marker={"color": colours[entry["cluster"]], "size": 6, "opacity": 0.6 if entry["cluster"] == -1 else 0.9},
        ))
    fig.update_layout(title=f"Emotion embedding map: {len(report.labels)} files, {report.n_clusters} clusters",
                      xaxis_title="UMAP 1", yaxis_title="UMAP 2", template="plotly_white", legend_title="cluster")
    fig.write_html(str(target), include_plotlyjs=True, full_html=True, div_id="emotion-map")


def write_cluster_report(report: ClusterReport, index: EmbeddingIndex, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``clusters.csv``, ``map.png``, ``map.html`` (self-contained) and ``summary.json``.

    ``clusters.csv``: one row per file (``path, cluster, emotion, confidence, x, y``; noise is -1).
    ``map.png``: the 2-D UMAP coloured by cluster, noise grey, with a legend. ``map.html``: the
    same map in plotly, hover shows file name, emotion, confidence and cluster; plotly.js is
    embedded so it opens offline. ``summary.json``: :meth:`ClusterReport.to_dict`.
    Returns ``{"csv": ..., "png": ..., "html": ..., "json": ...}``.
    """
    if len(report.labels) != len(index):
        raise ValueError(f"the report has {len(report.labels)} labels but the index {len(index)} rows")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "clusters.csv", "png": out / "map.png", "html": out / "map.html", "json": out / "summary.json"}

    with paths["csv"].open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "cluster", "emotion", "confidence", "x", "y"])
        for r, (label, (x, y)) in enumerate(zip(report.labels.tolist(), report.coords.tolist())):
            confidence = index.confidences[r]
            writer.writerow([index.paths[r], label, index.emotions[r] or "",
                             "" if confidence is None else f"{confidence:.6g}", f"{x:.5f}", f"{y:.5f}"])

    clusters = [e["cluster"] for e in report.summary if e["cluster"] != -1]
    colours = dict(zip(clusters, _palette(len(clusters))))
    colours[-1] = _NOISE_GREY
    _write_png(report, paths["png"], colours)
    _write_html(report, index, paths["html"], colours)
    paths["json"].write_text(json.dumps(report.to_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return paths


# --------------------------------------------------------------------------- emotions over time
@dataclass
class EmotionTimeline:
    """Class probabilities over time: ``probabilities[i]`` holds the scores (in ``labels`` order)
    of the stretch ``starts_s[i]``..``ends_s[i]``."""

    starts_s: np.ndarray
    ends_s: np.ndarray
    probabilities: np.ndarray
    labels: list[str]
    source: str  # "frames" or "segments"

    @property
    def centres_s(self) -> np.ndarray:
        """The middle of each stretch (where a line plot puts its points)."""
        return (self.starts_s + self.ends_s) / 2.0


@dataclass
class EmotionRun:
    """A stretch of a recording with one emotion: its bounds, that emotion and its mean probability."""

    start_s: float
    end_s: float
    emotion: str
    confidence: float


def _frame_hop_s(starts: np.ndarray, ends: np.ndarray) -> float:
    return float(np.median(np.diff(starts))) if len(starts) > 1 else max(float(ends[0] - starts[0]), 1e-3)


def _moving_average(probs: np.ndarray, width: int) -> np.ndarray:
    """Each column of (T, C) ``probs`` averaged over ``width`` neighbouring rows (edges repeated)."""
    if width <= 1 or len(probs) < 2:
        return probs
    kernel = np.ones(width) / width
    padded = np.pad(probs, ((width // 2, width - 1 - width // 2), (0, 0)), mode="edge")
    return np.stack([np.convolve(padded[:, c], kernel, mode="valid") for c in range(probs.shape[1])], axis=1)


def emotion_timeline(result: Any, max_points: int = 1000, smooth_s: float = 0.0) -> EmotionTimeline | None:
    """The emotion probabilities of a :class:`~emotion2vec_plus.results.Result` over time.

    From the 50 Hz ``frames`` of a frame-granularity result — smoothed with a moving average of
    ``smooth_s`` seconds when given (single frames jump between classes; 0.5 s reads well), then
    averaged over groups of frames so that at most ``max_points`` points remain — otherwise from
    the per-window ``segments`` of a long input; ``None`` when the result has neither.
    """
    if max_points < 1:
        raise ValueError(f"max_points must be at least 1, got {max_points}")
    labels = list(result.scores)
    if result.frames:
        starts = np.array([f.start_s for f in result.frames], dtype=np.float64)
        ends = np.array([f.end_s for f in result.frames], dtype=np.float64)
        probs = np.array([f.scores for f in result.frames], dtype=np.float64)
        if smooth_s > 0:
            probs = _moving_average(probs, int(round(smooth_s / _frame_hop_s(starts, ends))))
        group = max(1, math.ceil(len(starts) / max_points))
        if group > 1:
            edges = np.arange(0, len(starts), group)
            counts = np.diff(np.append(edges, len(starts)))
            probs = np.add.reduceat(probs, edges, axis=0) / counts[:, None]
            ends = ends[np.minimum(edges + counts - 1, len(ends) - 1)]
            starts = starts[edges]
        return EmotionTimeline(starts, ends, probs, labels, "frames")
    if result.segments:
        segments = result.segments
        return EmotionTimeline(np.array([s.start_s for s in segments], dtype=np.float64),
                               np.array([s.end_s for s in segments], dtype=np.float64),
                               np.array([[s.scores.get(name, 0.0) for name in labels] for s in segments], dtype=np.float64),
                               labels, "segments")
    return None


def emotion_runs(result: Any, smooth_s: float = 0.5, min_run_s: float = 0.3) -> list[EmotionRun]:
    """Cut a result into stretches of one emotion (the segments table of a timeline).

    Frame results: each class probability is smoothed with a moving average of ``smooth_s``
    seconds, every frame takes the emotion with the highest smoothed probability, neighbouring
    frames with the same emotion form a run, and runs shorter than ``min_run_s`` are merged
    into the neighbour they resemble most (the longer one). ``confidence`` is the mean
    (unsmoothed) probability of the run's emotion. Long inputs without frames: one run per
    window ``segment``. Otherwise ``[]``.
    """
    if result.frames:
        labels = list(result.scores)
        probs = np.array([f.scores for f in result.frames], dtype=np.float64)
        starts = np.array([f.start_s for f in result.frames], dtype=np.float64)
        ends = np.array([f.end_s for f in result.frames], dtype=np.float64)
        hop = _frame_hop_s(starts, ends)
        smoothed = _moving_average(probs, int(round(smooth_s / hop)))
        best = smoothed.argmax(axis=1)
        bounds = [0, *(np.flatnonzero(np.diff(best)) + 1).tolist(), len(best)]
        runs = [[bounds[i], bounds[i + 1], int(best[bounds[i]])] for i in range(len(bounds) - 1)]
        min_frames = max(1, int(round(min_run_s / hop)))
        while len(runs) > 1:
            lengths = [end - start for start, end, _ in runs]
            shortest = int(np.argmin(lengths))
            if lengths[shortest] >= min_frames:
                break
            if shortest == 0:
                neighbour = 1
            elif shortest == len(runs) - 1:
                neighbour = shortest - 1
            else:
                neighbour = shortest - 1 if lengths[shortest - 1] >= lengths[shortest + 1] else shortest + 1
            low, high = sorted((shortest, neighbour))
            runs[low:high + 1] = [[runs[low][0], runs[high][1], runs[neighbour][2]]]
            # neighbours that now share an emotion become one run
            merged: list[list[int]] = []
            for run in runs:
                if merged and merged[-1][2] == run[2]:
                    merged[-1][1] = run[1]
                else:
                    merged.append(run)
            runs = merged
        return [EmotionRun(float(starts[start]), float(ends[end - 1]), labels[cls], float(probs[start:end, cls].mean()))
                for start, end, cls in runs]
    if result.segments:
        return [EmotionRun(s.start_s, s.end_s, s.emotion or "", float(s.confidence or 0.0)) for s in result.segments]
    return []


# --------------------------------------------------------------------------- comparing two inputs
@dataclass
class ComparedInput:
    """One side of :func:`compare_inputs`: an audio file (with its ``result``) or a ``.npy`` embedding.

    ``scores``/``emotion``/``confidence`` come from the result, or for an embedding from the
    model's classifier when the dimensions match (``None`` otherwise, or for a model without head).
    """

    source: str
    kind: str  # "audio" or "embedding"
    vector: np.ndarray
    shape: tuple[int, ...]
    result: Any = None
    scores: dict[str, float] | None = None
    emotion: str | None = None
    confidence: float | None = None


@dataclass
class Comparison:
    """The cosine similarity of two inputs with a plain reading (see :func:`describe_similarity`);
    ``calibrated`` says whether the reading's bands were measured for this embedding size."""

    a: ComparedInput
    b: ComparedInput
    similarity: float
    reading: str
    calibrated: bool


def _embedding_side(path: Path, name: str) -> ComparedInput:
    try:
        array = load_embedding(path, mmap=False)
    except EmbeddingFileError as exc:
        raise EmbeddingFileError(str(exc).replace(str(path), name)) from None
    return ComparedInput(name, "embedding", utterance_embedding(array), tuple(array.shape))


def _classify_side(item: ComparedInput, model: Any) -> None:
    if model is not None and getattr(model, "has_head", False) and item.vector.shape[0] == model.embed_dim:
        item.scores = model.classify_embedding(item.vector)
        item.emotion, item.confidence = max(item.scores.items(), key=lambda kv: kv[1])


def compare_inputs(a: str | os.PathLike, b: str | os.PathLike, model: Any = None, *, names: tuple[str, str] | None = None,
                   output_dir: str | os.PathLike | None = None) -> Comparison:
    """Compare two inputs, each an audio file or a ``.npy`` embedding (recognised by content): the one
    comparison behind the CLI's ``similarity``, the REST ``/v1/similarity`` and the WebUI's Compare tab.

    Audio is recognised by ``model``: an :class:`~emotion2vec_plus.Emotion2VecPlus`, or a function
    returning one, called only when an input is audio (each run is saved under ``output_dir`` when
    given). Embeddings are loaded first, with the safe loader (no pickle), and, when a model is at
    hand and their size fits it, classified by it. ``names`` are the display names used in messages
    (e.g. upload names) instead of the paths. Raises
    :class:`~emotion2vec_plus.errors.EmbeddingFileError` / ``AudioError`` for a bad file or an
    embedding the model cannot have made, and ``ValueError`` when the two embeddings differ in size.
    """
    display = names or (str(a), str(b))
    paths = (Path(a), Path(b))
    for path, name in zip(paths, display):
        if not path.is_file():
            raise EmbeddingFileError(f"{name}: file not found" if not path.exists() else f"{name}: not a file")
    sides: list[ComparedInput | None] = [None, None]
    for i, path in enumerate(paths):  # embeddings first: cheap, and their errors come before any model load
        if is_embedding_file(path):
            sides[i] = _embedding_side(path, display[i])
    embedded = [side for side in sides if side is not None]
    if len(embedded) == 2 and embedded[0].vector.shape[0] != embedded[1].vector.shape[0]:
        raise ValueError(f"{display[1]}: embedding is {embedded[1].vector.shape[0]}-d but {display[0]} is "
                         f"{embedded[0].vector.shape[0]}-d (made by different models?)")
    loaded = model if model is None or not callable(model) else None
    for i, path in enumerate(paths):
        if sides[i] is not None:
            continue
        if model is None:
            raise EmbeddingFileError(f"{display[i]}: not a .npy embedding, and no model to embed audio with")
        loaded = loaded if loaded is not None else model()
        for side in embedded:
            if side.vector.shape[0] != loaded.embed_dim:
                raise EmbeddingFileError(f"{side.source}: embedding is {side.vector.shape[0]}-d but model "
                                         f"{loaded.model_name} gives {loaded.embed_dim}-d embeddings; use the model "
                                         "that made it")
        result = loaded.predict(str(path), extract_embedding=True, name=display[i], output_dir=output_dir)
        vector = np.asarray(result.embedding, dtype=np.float32)
        sides[i] = ComparedInput(display[i], "audio", vector, tuple(vector.shape), result=result,
                                 scores=result.scores or None, emotion=result.emotion, confidence=result.confidence)
    for side in embedded:
        _classify_side(side, loaded)
    first, second = sides
    assert first is not None and second is not None
    if first.vector.shape[0] != second.vector.shape[0]:
        raise ValueError(f"{display[1]}: embedding is {second.vector.shape[0]}-d but {display[0]} is "
                         f"{first.vector.shape[0]}-d (made by different models?)")
    value = cosine_similarity(first.vector, second.vector)
    return Comparison(first, second, value, describe_similarity(value), int(first.vector.shape[0]) == CALIBRATED_DIM)


# --------------------------------------------------------------------------- inputs for the CLI
def _is_npy(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(len(NPY_MAGIC)) == NPY_MAGIC
    except OSError as exc:
        raise EmbeddingFileError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def is_embedding_file(path: str | os.PathLike) -> bool:
    """Whether an existing file is to be read as a ``.npy`` embedding rather than decoded as audio:
    it starts with the ``\\x93NUMPY`` magic, or is named ``.npy`` (then a damaged one gets
    :func:`~emotion2vec_plus.embeddings.load_embedding`'s precise error instead of an audio error)."""
    file = Path(path)
    return _is_npy(file) or file.suffix.lower() == ".npy"


def load_vector(path: str | os.PathLike, model_factory: Callable[[], Any] | None = None) -> np.ndarray:
    """An utterance embedding (D,) from a ``.npy`` file or, via ``model_factory()``, an audio file.

    ``.npy`` files are recognised by their ``\\x93NUMPY`` magic number, not by the extension
    (a (T, D) file is averaged over frames). Anything else is decoded as audio by the model that
    ``model_factory`` returns (called only then); without a factory, audio is an error.
    """
    file = Path(path)
    if not file.exists():
        raise EmbeddingFileError(f"{file}: file not found")
    if not file.is_file():
        raise EmbeddingFileError(f"{file}: not a file")
    if is_embedding_file(file):
        array = load_embedding(file)  # a .npy without the magic gets load_embedding's precise error
        return utterance_embedding(array)
    if model_factory is None:
        raise EmbeddingFileError(f"{file}: not a .npy embedding, and no model to embed audio with")
    model = model_factory()
    return np.asarray(model.extract_embedding(str(file)), dtype=np.float32)
