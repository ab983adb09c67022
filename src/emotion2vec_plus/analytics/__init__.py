"""Emotion-embedding analytics: similarity, nearest-neighbour search and clustering.

Modules: :mod:`.similarity` (cosine, readings, comparing two inputs), :mod:`.index` (the Parquet
index and search), :mod:`.cluster` (UMAP + HDBSCAN), :mod:`.report` (report files) and
:mod:`.timeline` (emotions over time).

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
    emotion2vec-plus cluster embeddings.parquet --out report/ [--min-cluster-size N] [--seed 0]
"""

from .cluster import CLUSTER_DIMS, UMAP_MIN_EMBEDDINGS, ClusterReport, cluster_embeddings, suggested_min_cluster_size
from .index import FAISS_THRESHOLD, EmbeddingIndex, SearchHit, load_index, search
from .report import write_cluster_report
from .similarity import (CALIBRATED_DIM, SIMILARITY_BANDS, ComparedInput, Comparison, compare_inputs,
                         cosine_similarity, describe_similarity, is_embedding_file, load_vector)
from .timeline import EmotionRun, EmotionTimeline, emotion_runs, emotion_timeline
from ..errors import IndexFileError

#: Subcommands of ``emotion2vec-plus`` (:mod:`emotion2vec_plus.cli.analytics`).
ANALYTICS_COMMANDS: tuple[str, ...] = ("similarity", "search", "cluster")

__all__ = [
    "ANALYTICS_COMMANDS", "CALIBRATED_DIM", "CLUSTER_DIMS", "FAISS_THRESHOLD", "SIMILARITY_BANDS", "UMAP_MIN_EMBEDDINGS",
    "ClusterReport",
    "ComparedInput", "Comparison", "EmbeddingIndex", "EmotionRun", "EmotionTimeline", "IndexFileError", "SearchHit",
    "cluster_embeddings", "compare_inputs", "cosine_similarity", "describe_similarity", "emotion_runs",
    "emotion_timeline", "is_embedding_file", "load_index", "load_vector", "search", "suggested_min_cluster_size",
    "write_cluster_report",
]
