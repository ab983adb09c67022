"""Clustering embeddings: UMAP layouts from one exact neighbour graph, HDBSCAN on the 10-D one."""

from __future__ import annotations

import math
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .index import EmbeddingIndex


#: Dimensions of the UMAP embedding that HDBSCAN clusters (the map itself is always 2-D).
CLUSTER_DIMS = 10


#: Up to this many rows the neighbour graph for UMAP is computed exactly with NumPy.
EXACT_KNN_MAX = 16384


#: Smallest set drawn with UMAP; smaller sets (2-4) are drawn with PCA and not clustered.
UMAP_MIN_EMBEDDINGS = 5


#: The largest cluster size :func:`suggested_min_cluster_size` picks (what 400 or more embeddings get).
MAX_SUGGESTED_CLUSTER_SIZE = 15
#: Sets up to this many embeddings retry smaller cluster sizes while half or more of them are noise
#: (each clip is a visible point on the map); larger sets only while all of them are.
SMALL_SET_MAX = 200


def suggested_min_cluster_size(n: int) -> int:
    """HDBSCAN's smallest cluster for a set of ``n`` embeddings: 0.75 * sqrt(n), at least 2, at most 15.

    A fixed size does not fit every set: HDBSCAN also takes it as ``min_samples``, so on small sets
    a size that suits hundreds of clips leaves every point as noise. Measured with the bundled model
    on real speech (40-clip sets of RAVDESS, CASIA and EMOVO, the first n clips of each): a size of 5
    gave no cluster at all for 5-17 clips of RAVDESS and 5-12 of CASIA and EMOVO (everything noise),
    4 failed on 5-12 clips, 3 on 5-8; the sizes this rule picks (2 for 5-8 clips, 3 for 12-19, 4-5 for
    30-40) found 2-4 clusters on every one of those sets, with at most 2 noise points (compact v2.1).
    With v3's embedding the same rule left three of those sets all noise (RAVDESS 12 clips, CASIA 6,
    EMOVO 5), which is why :func:`cluster_embeddings` lowers a size it picked until something
    clusters. From 400 embeddings on it is 15, the size the clustering was tuned with (see
    :func:`cluster_embeddings`).
    """
    return max(2, min(MAX_SUGGESTED_CLUSTER_SIZE, round(0.75 * math.sqrt(max(n, 0)))))


#: Up to this many embeddings are clustered by UMAP + HDBSCAN directly (about a minute on two cores).
#: Of a larger index a seeded random sample of this size is; every other embedding then joins the
#: cluster of its nearest sampled neighbours (and sits beside them on the map). UMAP and HDBSCAN
#: grow faster than linearly: 200,000 rows clustered directly ran over 600 s and reached 2.9 GB.
MAX_CLUSTERED = 20_000


#: Sampled neighbours an embedding outside the sample is placed by (majority vote; mean position).
ASSIGN_NEIGHBOURS = 5


@dataclass
class ClusterReport:
    """Result of :func:`cluster_embeddings`.

    ``labels`` (N,) cluster ids (0 = largest cluster, -1 = noise, or not clustered); ``coords``
    (N, 2) the map (UMAP, or PCA for fewer than :data:`UMAP_MIN_EMBEDDINGS`: see ``map_method``);
    ``summary`` one dict per cluster (``cluster``, ``size``, ``dominant_emotion``,
    ``mean_confidence``, ``examples``, ``emotions``), noise last as cluster -1 when there is any.
    ``params`` records how it was made, ``min_cluster_size`` the size used (``None`` when the set
    was too small to cluster).
    """

    labels: np.ndarray
    coords: np.ndarray
    summary: list[dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)
    clustered_rows: np.ndarray | None = None
    """The rows UMAP + HDBSCAN ran on when the index was sampled (``None``: all of them)."""

    @property
    def map_method(self) -> str:
        """``"umap"`` or ``"pca"`` (sets too small for UMAP)."""
        return str(self.params.get("map_space", "umap-2d")).split("-")[0]

    @property
    def clustered(self) -> bool:
        """Whether HDBSCAN ran (sets too small for UMAP are only drawn, every label -1)."""
        return self.params.get("cluster_space") is not None

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


def _nearest_sampled(data: np.ndarray, rows: np.ndarray, sample: np.ndarray, k: int,
                     block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``rows``, its ``k`` most cosine-similar rows of ``sample`` (positions in ``sample``,
    most similar first) and their similarities; blocked matrix products, ~``block`` x len(sample) at a time."""
    reference = data[sample]
    k = min(k, len(sample))
    nearest = np.empty((len(rows), k), dtype=np.int64)
    similarity = np.empty((len(rows), k), dtype=np.float32)
    for start in range(0, len(rows), block):
        sims = data[rows[start:start + block]] @ reference.T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < sims.shape[1] else np.tile(
            np.arange(sims.shape[1]), (sims.shape[0], 1))
        values = np.take_along_axis(sims, part, axis=1)
        order = np.argsort(-values, axis=1, kind="stable")
        nearest[start:start + block] = np.take_along_axis(part, order, axis=1)
        similarity[start:start + block] = np.take_along_axis(values, order, axis=1)
    return nearest, similarity


def _assign_to_sample(data: np.ndarray, sample: np.ndarray, sample_labels: np.ndarray,
                      sample_coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels and map positions of every row, the sample's own kept: each other row takes the
    majority label of its :data:`ASSIGN_NEIGHBOURS` nearest sampled neighbours (the nearest one's
    on a tie) and their similarity-weighted mean position."""
    n = data.shape[0]
    labels = np.full(n, -1, dtype=np.int64)
    coords = np.zeros((n, sample_coords.shape[1]), dtype=np.float32)
    labels[sample] = sample_labels
    coords[sample] = sample_coords
    others = np.setdiff1d(np.arange(n), sample, assume_unique=True)
    nearest, similarity = _nearest_sampled(data, others, sample, ASSIGN_NEIGHBOURS)
    votes = sample_labels[nearest]
    for position, (row, candidates) in enumerate(zip(others.tolist(), votes)):
        counts = Counter(candidates.tolist())
        best = max(counts.values())
        labels[row] = next(c for c in candidates.tolist() if counts[c] == best)  # nearest first among ties
    weights = np.maximum(similarity, 1e-6)
    coords[others] = (sample_coords[nearest] * weights[:, :, None]).sum(axis=1) / weights.sum(axis=1, keepdims=True)
    return labels, coords


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


def _pca_map(data: np.ndarray) -> np.ndarray:
    """(N, 2) the first two principal components of the rows (a second coordinate of 0 when the rows
    span one direction only, e.g. two embeddings), signs fixed so the largest entry of each
    component is positive (the same input always gives the same picture)."""
    centred = data - data.mean(axis=0, keepdims=True)
    _, singular, vt = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
    coords = np.zeros((len(data), 2))
    for k in range(min(2, len(singular))):
        if singular[k] > 1e-9 * max(singular[0], 1e-30):
            direction = vt[k] * np.sign(vt[k][np.argmax(np.abs(vt[k]))])
            coords[:, k] = centred @ direction
    return coords.astype(np.float32)


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


def cluster_embeddings(index: EmbeddingIndex, *, min_cluster_size: int | None = None, seed: int = 0,
                       n_neighbors: int = 15, max_clustered: int = MAX_CLUSTERED,
                       progress: Callable[[str], None] | None = None) -> ClusterReport:
    """Group similar embeddings: UMAP to 2-D for the map, HDBSCAN on a 10-D UMAP for the clusters.

    Any set of 2 or more embeddings gives a map. ``min_cluster_size`` ``None`` picks one for the
    set's size (:func:`suggested_min_cluster_size`, of the rows clustered); a size larger than the
    set is lowered to it. Sets smaller than :data:`UMAP_MIN_EMBEDDINGS` (2-4: UMAP cannot lay them
    out) are drawn with PCA of the L2-normalised embeddings and not clustered (every label -1;
    ``report.clustered`` is False): HDBSCAN finds no cluster in so few points.

    An index of more than ``max_clustered`` rows is clustered on a seeded random sample of that
    many (:data:`MAX_CLUSTERED`); every other row joins the cluster most of its
    :data:`ASSIGN_NEIGHBOURS` nearest sampled neighbours (by cosine) are in, and is drawn at their
    mean position. ``min_cluster_size`` then counts sampled members. ``progress``, if given, is
    called with a line before each stage (neighbour graph, each UMAP, HDBSCAN, assignment).

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
    if min_cluster_size is not None and min_cluster_size < 2:
        raise ValueError(f"min_cluster_size must be at least 2, got {min_cluster_size}")
    if n_neighbors < 2:
        raise ValueError(f"n_neighbors must be at least 2, got {n_neighbors}")
    where = f" in {index.source}" if index.source else ""
    if n < 2:
        raise ValueError(f"only {n} embedding{where}: a map needs at least 2")
    if max_clustered < UMAP_MIN_EMBEDDINGS:
        raise ValueError(f"max_clustered must be at least {UMAP_MIN_EMBEDDINGS}, got {max_clustered}")
    if n < UMAP_MIN_EMBEDDINGS:
        labels = np.full(n, -1, dtype=np.int64)
        params = {"method": "pca", "cluster_space": None, "map_space": "pca-2d", "metric": "cosine",
                  "min_cluster_size": None, "seed": int(seed), "n_neighbors": None, "source": index.source}
        return ClusterReport(labels, _pca_map(index.embeddings), _summarise(index, labels), params)
    started = time.perf_counter()

    def say(stage: str) -> None:
        if progress is not None:
            progress(f"[{time.perf_counter() - started:6.1f} s] {stage}")

    sample = None
    if n > max_clustered:
        sample = np.sort(np.random.default_rng(seed).choice(n, max_clustered, replace=False))
        say(f"{n:,} embeddings: clustering a random sample of {max_clustered:,} (max_clustered); the rest join "
            "the cluster of their nearest sampled neighbours")
    data = index.embeddings if sample is None else index.embeddings[sample]
    size = min(int(min_cluster_size) if min_cluster_size is not None else suggested_min_cluster_size(len(data)),
               len(data))
    neighbours = min(n_neighbors, len(data) - 1)
    say(f"neighbour graph of {len(data):,} embeddings ({neighbours} neighbours each)")
    knn = _knn(data, neighbours, seed)
    say("UMAP to 2-D (the map)")
    coords = _umap(data, 2, neighbours, seed, knn)
    say(f"UMAP to {CLUSTER_DIMS}-D (the clustering space)")
    space = _umap(data, CLUSTER_DIMS, neighbours, seed, knn) if CLUSTER_DIMS != 2 else coords
    say("HDBSCAN")
    # A size picked for the set can still leave a small set all noise, or half of it (a map mostly
    # grey): then smaller sizes are tried, down to 2, then at 2 the leaves of the cluster tree
    # ("leaf" selection) instead of its most persistent branches, and last the whole set may be one
    # cluster ("single": it has no finer structure HDBSCAN can find); the first attempt that leaves
    # less than half of the set as noise is kept, else the one with the least noise. A large set
    # (over SMALL_SET_MAX) only goes on while all of it is noise; a size the caller gave is kept.
    attempts = [(size, "eom")]
    if min_cluster_size is None:
        attempts += [(smaller, "eom") for smaller in range(size - 1, 1, -1)] + [(2, "leaf"), (2, "single")]
    enough = (len(data) + 1) // 2 if len(data) <= SMALL_SET_MAX else len(data)  # noise that calls for another try
    best: tuple[int, int, str, np.ndarray] | None = None
    previous: tuple[int, int] | None = None  # (noise, size) of the attempt before
    for attempt, (size, selection) in enumerate(attempts):
        if previous is not None:
            say(f"{previous[0]} of {len(data)} left as noise at {previous[1]}: trying {size}" if selection == "eom" else
                f"{previous[0]} of {len(data)} left as noise: trying " + (
                    "the leaves of the cluster tree" if selection == "leaf" else "the whole set as one cluster"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # sklearn 1.9: default of copy= will change
            raw = np.asarray(HDBSCAN(min_cluster_size=size, min_samples=None,
                                     cluster_selection_method="leaf" if selection == "leaf" else "eom",
                                     allow_single_cluster=selection == "single").fit_predict(space.astype(np.float64)))
        noise = int((raw < 0).sum())
        previous = (noise, size)
        if best is None or noise < best[0]:
            best = (noise, size, selection, raw)
        if noise < enough:
            break
    assert best is not None
    _, size, selection, raw = best
    labels = _relabel_by_size(raw)
    if sample is not None:
        say(f"assigning the other {n - len(sample):,} embeddings to clusters")
        labels, coords = _assign_to_sample(index.embeddings, sample, labels, coords)
        labels = _relabel_by_size(labels)
    params = {"method": "umap+hdbscan", "cluster_space": f"umap-{CLUSTER_DIMS}d", "map_space": "umap-2d",
              "metric": "cosine", "min_cluster_size": int(size),
              "min_cluster_size_chosen": "given" if min_cluster_size is not None else (
                  "by set size" if (size, selection) == attempts[0]
                  else f"by set size ({attempts[0][0]}), lowered: at {attempts[0][0]} half of the set or more was noise"),
              "cluster_selection": selection,
              "seed": int(seed), "n_neighbors": int(neighbours), "source": index.source,
              "clustered": int(len(data)), "assigned_by_nearest_sampled": int(n - len(data))}
    say("summary")
    summary = _summarise(index, labels)
    say("done")
    return ClusterReport(labels, coords, summary, params, clustered_rows=sample)
