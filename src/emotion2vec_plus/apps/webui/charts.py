"""What the WebUI draws: bilingual emotion names, percentages, the scores bar chart, the timeline
and the cluster map (Plotly)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ...labels import EMOJI, EMOTIONS, EMOTIONS_ZH
from .text import text

if TYPE_CHECKING:  # pragma: no cover
    import plotly.graph_objects as go

    from ...results import Result


def percent_text(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def emotion_name(emotion: str | None, emoji: str | None = None, emotion_zh: str | None = None) -> str:
    """``"😊 开心 happy"``: an emotion with its emoji, Chinese and English names (custom labels as they are)."""
    if not emotion:
        return "-"
    zh = emotion_zh or EMOTIONS_ZH.get(emotion)
    face = emoji if emoji is not None else EMOJI.get(emotion, "")
    parts = [face] if face else []
    if zh and zh != emotion:
        parts.append(zh)
    parts.append(emotion)
    return " ".join(parts)


#: One colour per emotion, used by every chart.
EMOTION_COLOURS: dict[str, str] = {
    "angry": "#d62728", "disgusted": "#8c564b", "fearful": "#9467bd", "happy": "#ffbf00", "neutral": "#7f7f7f",
    "other": "#17becf", "sad": "#1f77b4", "surprised": "#ff7f0e", "unknown": "#bcbd22",
}


_FALLBACK_COLOURS = ("#2ca02c", "#e377c2", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")


#: Seconds of moving average on the frame timeline and its segments (single 20 ms frames jump between classes).
TIMELINE_SMOOTH_S = 0.5


def _colour(emotion: str, index: int) -> str:
    return EMOTION_COLOURS.get(emotion, _FALLBACK_COLOURS[index % len(_FALLBACK_COLOURS)])


def scores_figure(scores: dict[str, float], lang: str) -> "go.Figure":
    """Horizontal bars of every class probability, in model order, labelled in both languages."""
    import plotly.graph_objects as go

    names = list(scores)
    values = [scores[n] * 100 for n in names]
    fig = go.Figure(go.Bar(
        x=values, y=[emotion_name(n) for n in names], orientation="h",
        marker_color=[_colour(n, i) for i, n in enumerate(names)],
        text=[f"{v:.1f}%" for v in values], textposition="auto", hovertemplate="%{y}: %{x:.2f}%<extra></extra>",
    ))
    fig.update_layout(title=text("scores_plot", lang), xaxis={"title": "%", "range": [0, 100]},
                      yaxis={"autorange": "reversed"}, height=360, margin={"l": 10, "r": 10, "t": 40, "b": 30},
                      template="plotly_white", showlegend=False)
    return fig


#: Fill of the stretches without speech: light grey, hatched (never mistaken for "neutral", a solid grey).
NO_SPEECH_COLOUR = "#d9d9d9"


def _add_band(fig: "go.Figure", runs: Sequence[Any], lang: str, opacity: float = 0.9) -> None:
    """The dominant emotion over time: one bar per run, as wide as the run, as high as its
    confidence, in its emotion's colour with its emoji; runs without speech (``emotion`` None)
    hatched grey at full height. One legend entry per emotion ("dominant emotion" group)."""
    import plotly.graph_objects as go

    group = text("chart_band", lang)
    by_emotion: dict[str | None, list[Any]] = {}
    for run in runs:
        by_emotion.setdefault(run.emotion or None, []).append(run)
    order = sorted(by_emotion, key=lambda e: (e is None, EMOTIONS.index(e) if e in EMOTIONS else len(EMOTIONS), e or ""))
    for position, emotion in enumerate(order):
        chosen = by_emotion[emotion]
        centres = [(r.start_s + r.end_s) / 2 for r in chosen]
        widths = [max(r.end_s - r.start_s, 1e-3) for r in chosen]
        spans = [f"{r.start_s:.2f}–{r.end_s:.2f} s" for r in chosen]
        if emotion is None:
            name = text("no_speech", lang)
            fig.add_trace(go.Bar(
                x=centres, y=[100.0] * len(chosen), width=widths, name=name, legendgroup="band",
                legendgrouptitle_text=group if position == 0 else None, opacity=0.6,
                marker={"color": "rgba(0,0,0,0)", "line": {"width": 0},
                        "pattern": {"shape": "/", "fgcolor": NO_SPEECH_COLOUR, "bgcolor": "#f4f4f4", "size": 8}},
                customdata=spans, hovertemplate="%{customdata}: " + html.escape(name) + "<extra></extra>"))
            continue
        name = emotion_name(emotion)
        confidences = [float(r.confidence or 0.0) * 100 for r in chosen]
        fig.add_trace(go.Bar(
            x=centres, y=confidences, width=widths, name=name, legendgroup="band",
            legendgrouptitle_text=group if position == 0 else None, opacity=opacity,
            marker={"color": _colour(emotion, position), "line": {"width": 0.5, "color": "white"}},
            text=[EMOJI.get(emotion, "")] * len(chosen), textposition="inside", insidetextanchor="middle",
            customdata=spans, hovertemplate="%{customdata}: " + html.escape(name) + " %{y:.1f}%<extra></extra>"))


def _curve_buttons(curves: list[int], lang: str, shown: bool) -> list[dict[str, Any]]:
    """A button in the chart that shows or hides the class curves (traces ``curves``) without the server."""
    return [{"type": "buttons", "direction": "left", "showactive": False, "active": -1, "x": 1.0, "xanchor": "right",
             "y": 1.02, "yanchor": "bottom", "pad": {"t": 0, "r": 0}, "font": {"size": 12},
             "buttons": [{"label": text("chart_curves_toggle", lang), "method": "restyle",
                          "args": [{"visible": "legendonly" if shown else True}, curves],
                          "args2": [{"visible": True if shown else "legendonly"}, curves]}]}]


def timeline_figure(result: "Result", lang: str, runs: Sequence[Any] | None = None,
                    show_curves: bool = False) -> "go.Figure | None":
    """Emotion over time, readable at a glance: the dominant emotion as a coloured band (its height
    the confidence; ``runs`` from :func:`~emotion2vec_plus.analytics.emotion_runs`, computed if not
    given; stretches without speech hatched grey), and each class's probability (0.5 s moving
    average; gaps where there is no speech) as curves that are hidden until asked for (the button
    above the chart, or a click on a name in the legend). ``None`` without frames or segments."""
    import plotly.graph_objects as go

    from ...analytics import emotion_runs, emotion_timeline

    timeline = emotion_timeline(result, smooth_s=TIMELINE_SMOOTH_S)
    if timeline is None:
        return None
    if runs is None:
        runs = emotion_runs(result, smooth_s=TIMELINE_SMOOTH_S)
    fig = go.Figure()
    _add_band(fig, runs, lang)
    segments = timeline.source == "segments"
    x = timeline.starts_s if segments else timeline.centres_s
    speech = timeline.speech if timeline.speech is not None else np.ones(len(x), bool)
    curves: list[int] = []
    for index, name in enumerate(timeline.labels):
        y = timeline.probabilities[:, index] * 100
        if not np.any(y[speech] > 0):
            continue  # classes the model never gives (e.g. the compact model's untrained ones)
        values = [float(v) if s else None for v, s in zip(y, speech)]  # no curve where there is no speech
        xs = x.tolist()
        if segments:  # a step per segment, closed at the last one's end
            xs, values = xs + [float(timeline.ends_s[-1])], values + [values[-1]]
        curves.append(len(fig.data))
        fig.add_trace(go.Scatter(
            x=xs, y=values, mode="lines", name=emotion_name(name), legendgroup="curves",
            legendgrouptitle_text=text("chart_curves", lang) if not curves[:-1] else None,
            visible=True if show_curves else "legendonly", connectgaps=False,
            line={"color": _colour(name, index), "shape": "hv" if segments else "linear", "width": 2},
            hovertemplate="%{x:.2f} s: %{y:.1f}%<extra>" + html.escape(emotion_name(name)) + "</extra>"))
    end = float(max(timeline.ends_s[-1], max((r.end_s for r in runs), default=0.0)))
    fig.update_layout(title={"text": text("timeline_plot", lang), "x": 0, "xanchor": "left"},
                      xaxis={"title": "s", "range": [0, end]}, yaxis={"title": text("chart_percent", lang), "range": [0, 100]},
                      barmode="overlay", bargap=0, height=360, margin={"l": 10, "r": 10, "t": 50, "b": 30},
                      template="plotly_white", legend={"orientation": "h", "y": -0.22, "groupclick": "toggleitem"},
                      uniformtext={"minsize": 9, "mode": "hide"},
                      updatemenus=_curve_buttons(curves, lang, show_curves) if curves else [])
    return fig


#: Up to this many points the map writes each file's name beside its point.
MAP_NAMES_MAX = 12


def cluster_map_figure(index: Any, report: Any, colour_by: str, lang: str) -> "go.Figure":
    """The 2-D map (UMAP, or PCA for tiny sets), one trace per cluster (noise grey) or per predicted
    emotion, with a legend; hover shows the file, small maps also write it beside the point."""
    import plotly.graph_objects as go

    fig = go.Figure()
    names = [Path(p).name for p in index.paths]
    outside = text("noise" if report.clustered else "not_grouped", lang)
    if colour_by == "emotion":
        groups = sorted({e or "-" for e in index.emotions}, key=lambda e: (e not in EMOTIONS, e))
        keys = [e or "-" for e in index.emotions]
        legend = {g: emotion_name(g) if g != "-" else "-" for g in groups}
        colours = {g: _colour(g, i) for i, g in enumerate(groups)}
        legend_title = text("colour_emotion", lang)
    else:
        groups = sorted(set(report.labels.tolist()), key=lambda c: (c == -1, c))
        keys = report.labels.tolist()
        legend = {g: f"{text('col_cluster', lang)} {g}" if g != -1 else outside for g in groups}
        colours = {g: ("#b0b0b0" if g == -1 else _FALLBACK_COLOURS[g % len(_FALLBACK_COLOURS)]) for g in groups}
        legend_title = text("col_cluster", lang)
    label_points = len(names) <= MAP_NAMES_MAX
    for group in groups:
        rows = [r for r, k in enumerate(keys) if k == group]
        hover = [f"{html.escape(names[r])}<br>{html.escape(emotion_name(index.emotions[r]))} "
                 f"{percent_text(index.confidences[r])}<br>{text('col_cluster', lang)}: "
                 f"{report.labels[r] if report.labels[r] != -1 else outside}" for r in rows]
        fig.add_trace(go.Scatter(x=report.coords[rows, 0].tolist(), y=report.coords[rows, 1].tolist(),
                                 mode="markers+text" if label_points else "markers", name=legend[group],
                                 text=[html.escape(names[r]) for r in rows] if label_points else None,
                                 textposition="top center", textfont={"size": 11},
                                 hovertext=hover, hovertemplate="%{hovertext}<extra></extra>",
                                 marker={"size": 11, "color": colours[group], "line": {"width": 0.5, "color": "#333"}}))
    axis = report.map_method.upper()
    if label_points:  # room for the names beside the outermost points
        for name, values in (("xaxis", report.coords[:, 0]), ("yaxis", report.coords[:, 1])):
            low, high = float(np.min(values)), float(np.max(values))
            pad = (high - low) * (0.3 if name == "xaxis" else 0.12) or 1.0
            fig.update_layout({name: {"range": [low - pad, high + pad]}})
    fig.update_layout(title=text("explore_map", lang), xaxis_title=f"{axis} 1", yaxis_title=f"{axis} 2", height=520,
                      template="plotly_white", margin={"l": 10, "r": 10, "t": 40, "b": 30}, showlegend=True,
                      legend={"title": {"text": legend_title}, "orientation": "h", "y": -0.18, "x": 0})
    return fig


def live_figure(hops: Sequence[Any], finals: Sequence[Any], labels: Sequence[str], now_s: float, window_s: float,
                lang: str) -> "go.Figure":
    """The Live tab's rolling chart of the last ``window_s`` seconds: each class's provisional
    probability every hop (gaps where the window held no speech), over the utterances' final
    labels as a pale band (colour = emotion, height = confidence)."""
    import plotly.graph_objects as go

    start = max(0.0, now_s - window_s)
    fig = go.Figure()
    _add_band(fig, [f for f in finals if f.end_s > start], lang, opacity=0.35)
    x = [hop.end_s for hop in hops]
    first = True
    for index, name in enumerate(labels):
        values = [float(hop.probabilities[index]) * 100 if hop.probabilities is not None else None for hop in hops]
        if not any(v for v in values if v is not None):
            continue  # classes the model never gives here
        fig.add_trace(go.Scatter(
            x=x, y=values, mode="lines", name=emotion_name(name), legendgroup="curves",
            legendgrouptitle_text=text("live_curves", lang) if first else None, connectgaps=False,
            line={"color": _colour(name, index), "width": 2},
            hovertemplate="%{x:.1f} s: %{y:.1f}%<extra>" + html.escape(emotion_name(name)) + "</extra>"))
        first = False
    fig.update_layout(title={"text": text("live_chart", lang), "x": 0, "xanchor": "left"},
                      xaxis={"title": "s", "range": [start, max(start + window_s, now_s)]},
                      yaxis={"title": text("chart_percent", lang), "range": [0, 100]},
                      barmode="overlay", bargap=0, height=340, margin={"l": 10, "r": 10, "t": 40, "b": 30},
                      template="plotly_white", legend={"orientation": "h", "y": -0.22, "groupclick": "toggleitem"},
                      uniformtext={"minsize": 9, "mode": "hide"}, uirevision="live")
    return fig
