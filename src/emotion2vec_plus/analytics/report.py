"""A clustering report on disk: clusters.csv, map.png, map.html (offline) and summary.json."""

from __future__ import annotations

import csv
import html
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .cluster import UMAP_MIN_EMBEDDINGS, ClusterReport
from .index import EmbeddingIndex


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


def _title(report: ClusterReport) -> str:
    if not report.clustered:
        return (f"{len(report.labels)} embeddings, drawn with PCA and not clustered "
                f"(UMAP and clusters need at least {UMAP_MIN_EMBEDDINGS})")
    return f"{len(report.labels)} embeddings, {report.n_clusters} clusters, {report.n_noise} noise"


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
    ax.set_title(_title(report))
    axis = report.map_method.upper()
    ax.set_xlabel(f"{axis} 1")
    ax.set_ylabel(f"{axis} 2")
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
    axis = report.map_method.upper()
    fig.update_layout(title=f"Emotion embedding map: {_title(report)}", xaxis_title=f"{axis} 1",
                      yaxis_title=f"{axis} 2", template="plotly_white", legend_title="cluster", showlegend=True)
    fig.write_html(str(target), include_plotlyjs=True, full_html=True, div_id="emotion-map")


def write_cluster_report(report: ClusterReport, index: EmbeddingIndex, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``clusters.csv``, ``map.png``, ``map.html`` (self-contained) and ``summary.json``.

    ``clusters.csv``: one row per file (``path, cluster, emotion, confidence, x, y``; noise is -1).
    ``map.png``: the 2-D map (UMAP; PCA for sets under 5) coloured by cluster, noise grey, with a legend. ``map.html``: the
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
