"""``emotion2vec-plus similarity | search | cluster``: compare, search and map emotion embeddings."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .options import add_model_options, model_from_args


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    add_model_options(parser, "model for audio inputs: compact (bundled, default), large, base, seed, ..., "
                              "a hub id or a local directory; loaded only if an input is audio")


class _LazyModel:
    """Loads the model on first use (only when an input is audio), then keeps it."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.model = None

    def __call__(self):
        if self.model is None:
            self.model = model_from_args(self.args)
        return self.model


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``similarity``, ``search`` and ``cluster`` subcommands."""
    similarity = subparsers.add_parser(
        "similarity", help="cosine similarity of two clips' emotion embeddings",
        description="Cosine similarity of two emotion embeddings. A and B are audio files or .npy "
                    "embeddings (recognised by content); a model is loaded only for audio.")
    similarity.add_argument("a", metavar="A", help="audio file or .npy embedding")
    similarity.add_argument("b", metavar="B", help="audio file or .npy embedding")
    _add_model_options(similarity)
    similarity.add_argument("--json", action="store_true", help="print the result as JSON")
    similarity.set_defaults(run=_run_similarity)

    search_parser = subparsers.add_parser(
        "search", help="find the files whose emotion embeddings are closest to a query",
        description="Exact cosine nearest neighbours of QUERY (audio or .npy) in an embeddings Parquet index.")
    search_parser.add_argument("query", metavar="QUERY", help="audio file or .npy embedding")
    search_parser.add_argument("--index", required=True, metavar="PARQUET",
                               help="embeddings.parquet (columns path, embedding, emotion, confidence)")
    search_parser.add_argument("--top", type=int, default=10, help="number of results (default 10)")
    _add_model_options(search_parser)
    search_parser.add_argument("--json", action="store_true", help="print the results as JSON")
    search_parser.set_defaults(run=_run_search)

    cluster = subparsers.add_parser(
        "cluster", help="cluster embeddings (UMAP + HDBSCAN) and write a report with maps",
        description="Cluster the embeddings of a Parquet index; writes clusters.csv, map.png, map.html "
                    "and summary.json to --out and prints the summary.")
    cluster.add_argument("index", metavar="PARQUET", help="embeddings.parquet")
    cluster.add_argument("--out", required=True, metavar="DIR", help="directory for the report files")
    cluster.add_argument("--min-cluster-size", type=int, default=None,
                         help="smallest cluster (default: by the number of embeddings, 0.75 x sqrt(n) within 2-15)")
    cluster.add_argument("--seed", type=int, default=0, help="random seed of UMAP (default 0)")
    cluster.add_argument("--n-neighbors", type=int, default=15, help="UMAP neighbourhood size (default 15)")
    cluster.add_argument("--json", action="store_true", help="print summary.json instead of a table")
    cluster.set_defaults(run=_run_cluster)


def _fmt_conf(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _run_similarity(args: argparse.Namespace) -> int:
    from ..analytics import compare_inputs

    model = _LazyModel(args)
    comparison = compare_inputs(args.a, args.b, model)
    dim = int(comparison.a.vector.shape[0])
    if args.json:
        print(json.dumps({"a": args.a, "b": args.b, "cosine_similarity": comparison.similarity,
                          "reading": comparison.reading, "reading_calibrated": comparison.calibrated, "dim": dim,
                          "model": model.model.model_name if model.model is not None else None}, ensure_ascii=False))
    else:
        from ..analytics import CALIBRATED_DIM

        print(f"cosine similarity: {comparison.similarity:.4f}")
        print(f"reading: {comparison.reading}")
        if not comparison.calibrated:
            print(f"note: the reading is calibrated on the compact model ({CALIBRATED_DIM}-d); for "
                  f"{dim}-d embeddings compare values with each other, not with the bands")
    return 0


def _run_search(args: argparse.Namespace) -> int:
    from ..analytics import IndexFileError, is_embedding_file, load_index, load_vector, search
    from ..errors import EmbeddingFileError

    if args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}")
    index = load_index(args.index)
    query_path = Path(args.query)
    if query_path.is_file() and not is_embedding_file(query_path):
        model = _LazyModel(args)()
        if model.embed_dim != index.dim:
            raise IndexFileError(f"{index.source}: holds {index.dim}-d embeddings but model {model.model_name} gives "
                                 f"{model.embed_dim}-d; pass the --model that made the index")
        query = load_vector(query_path, lambda: model)
    else:
        query = load_vector(query_path)
        if query.shape[0] != index.dim:
            raise EmbeddingFileError(f"{query_path}: embedding is {query.shape[0]}-d but {index.source} holds "
                                     f"{index.dim}-d embeddings (made by different models?)")
    hits = search(index, query, top=args.top)
    if args.json:
        print(json.dumps({"query": str(query_path), "index": index.source, "dim": index.dim,
                          "hits": [h.to_dict() for h in hits]}, ensure_ascii=False))
        return 0
    print(f"{'rank':>4}  {'similarity':>10}  {'emotion':10} {'conf':>6}  path")
    for h in hits:
        print(f"{h.rank:>4}  {h.similarity:>10.4f}  {(h.emotion or '-'):10} {_fmt_conf(h.confidence):>6}  {h.path}")
    return 0


def _run_cluster(args: argparse.Namespace) -> int:
    from ..analytics import cluster_embeddings, load_index, write_cluster_report

    index = load_index(args.index)
    report = cluster_embeddings(index, min_cluster_size=args.min_cluster_size, seed=args.seed,
                                n_neighbors=args.n_neighbors)
    written = write_cluster_report(report, index, args.out)
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
        return 0
    if report.clustered:
        print(f"{len(index)} embeddings ({index.dim}-d): {report.n_clusters} clusters, {report.n_noise} noise "
              f"(smallest cluster {report.params['min_cluster_size']})")
    else:
        print(f"{len(index)} embeddings ({index.dim}-d): drawn with PCA and not clustered "
              "(UMAP and clusters need at least 5)")
    print(f"{'cluster':>7}  {'size':>5}  {'dominant emotion':18} {'mean conf':>9}  example")
    for entry in report.summary:
        name = "noise" if entry["cluster"] == -1 else str(entry["cluster"])
        dominant = entry["dominant_emotion"] or "-"
        if entry["dominant_share"] is not None:
            dominant += f" ({entry['dominant_share'] * 100:.0f}%)"
        example = entry["examples"][0] if entry["examples"] else ""
        print(f"{name:>7}  {entry['size']:>5}  {dominant:18} {_fmt_conf(entry['mean_confidence']):>9}  {example}")
    print("wrote " + ", ".join(str(p) for p in written.values()))
    return 0


