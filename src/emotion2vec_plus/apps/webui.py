"""The WebUI: a Gradio page (``emotion2vec-plus webui``, http://127.0.0.1:7860 by default).

A thin layer over the Python API. Tabs:

- **Recognise** — one clip (upload or microphone) → emoji, bilingual label, confidence, a bar chart
  of every class score, for frame granularity or long audio a timeline and a segments table; the
  run is saved as ``outputs/outputs_YYYYMMDD_HHMMSS/`` (:func:`emotion2vec_plus.outputs.write_run`)
  and its files offered for download; a processing log.
- **Batch** — many files → :func:`emotion2vec_plus.jobs.run_batch` into ``outputs/batch_*/``, a
  table and downloads (CSV, JSONL, Parquet, zip of ``.npy``).
- **Compare** — two clips or ``.npy`` embeddings → :func:`emotion2vec_plus.analytics.compare_inputs`.
- **Explore** — clips or an embeddings Parquet → :func:`emotion2vec_plus.analytics.cluster_embeddings`.
- **History** — earlier runs from :func:`emotion2vec_plus.outputs.list_runs`.

The functions behind the buttons are methods of :class:`EmotionWebUI` and can be called directly
(the tests do). They never raise for bad input: the message is shown in the page. Interface text
is in Chinese and English (``webui_text``) with a switch; emotion labels are always bilingual.
Uploads are read where Gradio stored them; everything written goes to server-chosen folders
under the outputs root (upload names only appear, sanitised, as names inside those folders).
"""

from __future__ import annotations

import html
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Sequence

import numpy as np

from ..defaults import AUDIO_EXTENSIONS, SERVER_MAX_DURATION_S, WEBUI_MAX_UPLOAD_MB, WEBUI_PORT
from ..runtime.compute import on_model_thread
from ..errors import Emotion2VecError
from ..labels import EMOJI, EMOTIONS, EMOTIONS_ZH
from ..outputs import servable_file
from .webui_text import DEFAULT_LANGUAGE, LANGUAGE_NAMES, LANGUAGES, Language, pick_language, similarity_reading, text

if TYPE_CHECKING:  # pragma: no cover
    import gradio as gr
    import pandas as pd
    import plotly.graph_objects as go

    from ..inference import Emotion2VecPlus
    from ..results import Result

__all__ = [
    "DEFAULT_PORT", "EmotionWebUI", "ModelProvider", "WebUISettings", "build_app",
    "emotion_name",
]

log = logging.getLogger(__name__)

DEFAULT_PORT = WEBUI_PORT
DEFAULT_MAX_UPLOAD_MB = WEBUI_MAX_UPLOAD_MB
DEFAULT_MAX_DURATION_S = SERVER_MAX_DURATION_S
BATCH_PREFIX = "batch_"
BATCH_INPUTS = "inputs"
#: File types offered by the upload dialogs (the decoder sniffs content, not the extension).
AUDIO_FILE_TYPES: tuple[str, ...] = AUDIO_EXTENSIONS
#: One colour per emotion, used by every chart.
EMOTION_COLOURS: dict[str, str] = {
    "angry": "#d62728", "disgusted": "#8c564b", "fearful": "#9467bd", "happy": "#ffbf00", "neutral": "#7f7f7f",
    "other": "#17becf", "sad": "#1f77b4", "surprised": "#ff7f0e", "unknown": "#bcbd22",
}
_FALLBACK_COLOURS = ("#2ca02c", "#e377c2", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")
_MB = 1024 * 1024
#: Seconds of moving average on the frame timeline and its segments (single 20 ms frames jump between classes).
TIMELINE_SMOOTH_S = 0.5

CSS = """
#result-card { text-align: center; padding: 12px 8px; }
#result-emoji, .compare-card .emoji {
  font-family: "Noto Color Emoji", "Apple Color Emoji", "Segoe UI Emoji", "Twemoji Mozilla", sans-serif;
}
#result-emoji { font-size: 88px; line-height: 1.1; }
#result-label { font-size: 28px; font-weight: 600; margin-top: 4px; }
#result-confidence { font-size: 20px; opacity: 0.85; margin-top: 2px; }
.error-box { border: 1px solid #d62728; background: rgba(214, 39, 40, 0.08); border-radius: 8px; padding: 12px 14px; }
.error-box b { color: #d62728; }
.placeholder-box { opacity: 0.7; text-align: center; padding: 24px 8px; }
#embedding-notice { font-weight: 600; }
.compare-card { text-align: center; padding: 8px; border-radius: 8px; border: 1px solid rgba(128,128,128,0.3); }
.compare-card .emoji { font-size: 56px; }
#compare-similarity { font-size: 36px; font-weight: 700; text-align: center; }
"""


# --------------------------------------------------------------------------------------------- labels
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


def _colour(emotion: str, index: int) -> str:
    return EMOTION_COLOURS.get(emotion, _FALLBACK_COLOURS[index % len(_FALLBACK_COLOURS)])


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def shape_text(shape: Sequence[int]) -> str:
    """A shape as Python writes it: ``(256,)``, ``(147, 256)``."""
    return "(" + ", ".join(str(int(n)) for n in shape) + ("," if len(shape) == 1 else "") + ")"


def _display_name(path: str | os.PathLike) -> str:
    """The base name of an upload (Gradio keeps the browser's file name), without control characters."""
    from .service import sanitise_filename

    return sanitise_filename(Path(path).name)


# --------------------------------------------------------------------------------------------- models
@dataclass
class WebUISettings:
    """Options of one WebUI server."""

    outputs_root: Path = Path("outputs")
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    max_duration_s: float = DEFAULT_MAX_DURATION_S
    language: Language | None = None
    """Interface language; ``None`` follows the browser (``?lang=zh|en`` in the address always wins)."""
    seed: int = 0


class ModelProvider:
    """Loads each model once and keeps it: the default model always, plus the last other one used.

    ``choices()`` is what the model dropdown offers: the default model, the bundled compact model
    and the emotion2vec+ models cached on this machine (:func:`emotion2vec_plus.models.hub.list_models`;
    nothing is downloaded from the page). Models load and run on the process's one model thread
    (:func:`emotion2vec_plus.runtime.compute.model_thread`), so model calls run one at a time.
    """

    def __init__(self, default_model: str = "compact", *, device: str = "cpu", hub: str | None = None,
                 cache_dir: str | os.PathLike | None = None, num_threads: int | None = None,
                 max_duration_s: float = DEFAULT_MAX_DURATION_S, compute_type: str = "auto",
                 backend: str = "torch", preloaded: "Emotion2VecPlus | None" = None) -> None:
        self.default_name = str(default_model)
        self._options: dict[str, Any] = {"device": device, "hub": hub, "cache_dir": cache_dir,
                                         "num_threads": num_threads, "max_duration_s": max_duration_s,
                                         "compute_type": compute_type, "backend": backend}
        self._models: dict[str, Emotion2VecPlus] = {}
        self._load_lock = threading.Lock()
        if preloaded is not None:
            self._models[self.default_name] = preloaded

    def load_default(self) -> "Emotion2VecPlus":
        """Load the default model now (the server does this before it starts listening)."""
        return self.get(self.default_name)

    def choices(self) -> list[str]:
        """Model names for the dropdown: the default first, then compact, then cached emotion2vec+ models."""
        from ..models.hub import list_models
        from ..models.registry import COMPACT_NAME

        names = [self.default_name]
        if COMPACT_NAME not in names:
            names.append(COMPACT_NAME)
        try:
            statuses = list_models(hub=self._options["hub"], cache_dir=self._options["cache_dir"])
        except Exception as exc:  # a broken cache must not break the page
            log.warning("could not list cached models: %s", exc)
            statuses = []
        names += [s.spec.name for s in statuses if s.cached and s.spec.name not in names]
        return names

    def get(self, name: str | None, on_load: Callable[[str], None] | None = None) -> "Emotion2VecPlus":
        """The loaded model ``name`` (default model for ``None``/empty), loading it on first use.

        Only names from :meth:`choices` are accepted (the page never downloads a model);
        ``on_load(name)`` is called before a load starts (to show progress).
        """
        from ..errors import ModelError

        name = name or self.default_name
        with self._load_lock:
            if name in self._models:
                return self._models[name]
            if name != self.default_name and name not in self.choices():
                raise ModelError(f"model {name!r} is not available here; choose one of {', '.join(self.choices())}")
            if on_load is not None:
                on_load(name)
            from ..inference import Emotion2VecPlus

            # Loaded and run on one thread: see compute.model_thread.
            model = on_model_thread(Emotion2VecPlus, name, download=name == self.default_name, **self._options)
            for loaded in [n for n in self._models if n != self.default_name]:
                del self._models[loaded]  # keep the default plus one other model in memory
            self._models[name] = model
            return model


# --------------------------------------------------------------------------------------------- outputs
class RecognitionView(NamedTuple):
    """What the Recognise button shows (one entry per output component)."""

    result_html: str
    scores_plot: Any
    timeline_plot: Any
    segments_table: Any
    embedding_notice: Any
    downloads: Any
    log_text: str


class BatchView(NamedTuple):
    """What the Batch button shows, and (kept on the server) the run's embeddings for Explore."""

    table: Any
    summary: str
    downloads: Any
    parquet: str | None = None


class ExploreView(NamedTuple):
    """What the Explore button shows."""

    map_plot: Any
    clusters_table: Any
    summary: str


class HistoryView(NamedTuple):
    """What the History tab shows."""

    table: Any
    run_picker: Any
    files: Any


def _error_html(message: str, lang: str, hint: str | None = None) -> str:
    extra = f'<div class="error-hint">{html.escape(hint)}</div>' if hint else ""
    return (f'<div class="error-box" id="error-message"><b>{html.escape(text("error_title", lang))}</b>'
            f"<div>{html.escape(message)}</div>{extra}</div>")


#: Gradio's own texts (the drop zone's "Drop Audio Here", "Click to Upload", ...) follow the browser's
#: locale, not the page's language switch. Its i18n module exports ``changeLocale``; this file name
#: (hashed per Gradio release) is looked up in the installed Gradio, and the module imported by URL
#: is the very instance the page runs, so switching it relabels every built-in text.
_GRADIO_LOCALES: dict[str, str] = {"zh": "zh-CN", "en": "en"}


def _gradio_i18n_module() -> str | None:
    """``assets/core-<hash>.js`` of the installed Gradio's front end, or None if not found."""
    import gradio

    found = sorted((Path(gradio.__file__).parent / "templates" / "frontend" / "assets").glob("core-*.js"))
    return f"assets/{found[0].name}" if len(found) == 1 else None


def _set_gradio_locale_js() -> str:
    """Client-side function of the language radio: set Gradio's locale to the page's language."""
    module = _gradio_i18n_module()
    if module is None:
        return "(lang) => lang"
    locales = {lang: _GRADIO_LOCALES[lang] for lang in LANGUAGES}
    return ("(lang) => { const locales = " + json.dumps(locales) + "; "
            "import(new URL(" + json.dumps(module) + ", document.baseURI).href)"
            ".then((m) => m.changeLocale(locales[lang] || 'en')).catch(() => {}); return lang; }")


_PLACEHOLDER_START = '<div class="placeholder-box">'


def _placeholder_html(lang: str) -> str:
    return f'{_PLACEHOLDER_START}{html.escape(text("result_placeholder", lang))}</div>'


def _is_placeholder(value: Any) -> bool:
    """Whether the result box still shows :func:`_placeholder_html` (in any language), not a result."""
    return isinstance(value, str) and value.startswith(_PLACEHOLDER_START)


def _user_message(exc: BaseException, lang: str) -> str:
    """A one-paragraph message for the page: library errors as they are, anything else briefly."""
    if isinstance(exc, (Emotion2VecError, ValueError, OSError)):
        return " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
    return text("error_unexpected", lang).format(kind=type(exc).__name__, message=str(exc)[:300])


def _frame(rows: list[list[Any]], columns: list[str]) -> "pd.DataFrame":
    import pandas as pd

    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------------------------- charts
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


def timeline_figure(result: "Result", lang: str) -> "go.Figure | None":
    """Lines of each class probability over time (frames, or windows of long audio); ``None`` without either."""
    import plotly.graph_objects as go

    from ..analytics import emotion_timeline

    timeline = emotion_timeline(result, smooth_s=TIMELINE_SMOOTH_S)
    if timeline is None:
        return None
    fig = go.Figure()
    shape = "hv" if timeline.source == "segments" else "linear"
    x = timeline.starts_s if timeline.source == "segments" else timeline.centres_s
    for index, name in enumerate(timeline.labels):
        y = timeline.probabilities[:, index] * 100
        if timeline.source == "segments":  # a step per window, closed at the last window's end
            xs, ys = np.append(x, timeline.ends_s[-1]), np.append(y, y[-1])
        else:
            xs, ys = x, y
        if not np.any(ys > 0):
            continue  # classes the model never gives (e.g. the compact model's untrained ones)
        fig.add_trace(go.Scatter(x=xs.tolist(), y=ys.tolist(), mode="lines", name=emotion_name(name),
                                 line={"color": _colour(name, index), "shape": shape, "width": 2},
                                 hovertemplate="%{x:.2f} s: %{y:.1f}%<extra>" + html.escape(emotion_name(name)) + "</extra>"))
    fig.update_layout(title=text("timeline_plot", lang), xaxis_title="s", yaxis={"title": "%", "range": [0, 100]},
                      height=340, margin={"l": 10, "r": 10, "t": 40, "b": 30}, template="plotly_white",
                      legend={"orientation": "h", "y": -0.25})
    return fig


def cluster_map_figure(index: Any, report: Any, colour_by: str, lang: str) -> "go.Figure":
    """The 2-D UMAP map, one trace per cluster (noise grey) or per predicted emotion; hover shows the file."""
    import plotly.graph_objects as go

    fig = go.Figure()
    names = [Path(p).name for p in index.paths]
    if colour_by == "emotion":
        groups = sorted({e or "-" for e in index.emotions}, key=lambda e: (e not in EMOTIONS, e))
        keys = [e or "-" for e in index.emotions]
        legend = {g: emotion_name(g) if g != "-" else "-" for g in groups}
        colours = {g: _colour(g, i) for i, g in enumerate(groups)}
    else:
        groups = sorted(set(report.labels.tolist()), key=lambda c: (c == -1, c))
        keys = report.labels.tolist()
        legend = {g: f"{text('col_cluster', lang)} {g}" if g != -1 else text("noise", lang) for g in groups}
        colours = {g: ("#b0b0b0" if g == -1 else _FALLBACK_COLOURS[g % len(_FALLBACK_COLOURS)]) for g in groups}
    for group in groups:
        rows = [r for r, k in enumerate(keys) if k == group]
        hover = [f"{html.escape(names[r])}<br>{html.escape(emotion_name(index.emotions[r]))} "
                 f"{_percent(index.confidences[r])}<br>{text('col_cluster', lang)}: {report.labels[r]}" for r in rows]
        fig.add_trace(go.Scatter(x=report.coords[rows, 0].tolist(), y=report.coords[rows, 1].tolist(), mode="markers",
                                 name=legend[group], text=hover, hovertemplate="%{text}<extra></extra>",
                                 marker={"size": 10, "color": colours[group], "line": {"width": 0.5, "color": "#333"}}))
    fig.update_layout(title=text("explore_map", lang), xaxis_title="UMAP 1", yaxis_title="UMAP 2", height=520,
                      template="plotly_white", margin={"l": 10, "r": 10, "t": 40, "b": 30})
    return fig


# --------------------------------------------------------------------------------------------- the callbacks
class EmotionWebUI:
    """The functions behind the page's buttons, over a :class:`ModelProvider` and an outputs folder."""

    def __init__(self, provider: ModelProvider, settings: WebUISettings | None = None) -> None:
        self.provider = provider
        self.settings = settings or WebUISettings()
        self.outputs_root = Path(self.settings.outputs_root).resolve()

    # ------------------------------------------------------------------ helpers
    def _model(self, name: str | None, progress: Any, lang: str) -> "Emotion2VecPlus":
        def announce(model_name: str) -> None:
            if progress is not None:
                progress(0.0, desc=text("loading_model", lang).format(model=model_name))
        return self.provider.get(name, on_load=announce)

    def _too_large(self, path: str | os.PathLike, lang: str) -> str | None:
        size = os.path.getsize(path)
        if size > self.settings.max_upload_mb * _MB:
            return text("error_too_large", lang).format(name=_display_name(path), size=size / _MB,
                                                        limit=self.settings.max_upload_mb)
        return None

    # ------------------------------------------------------------------ recognise
    def recognise(self, audio_path: str | None, granularity: str = "utterance", extract_embedding: bool = False,
                  model_name: str | None = None, lang: str = DEFAULT_LANGUAGE, progress: Any = None) -> RecognitionView:
        """Recognise one uploaded or recorded clip and save the run; never raises for bad input."""
        import gradio as gr

        started = time.perf_counter()
        hidden = gr.update(value=None, visible=False)
        if not audio_path:
            return RecognitionView(_error_html(text("error_no_audio", lang), lang), None, hidden, hidden,
                                   gr.update(value="", visible=False), None, "")
        name = _display_name(audio_path)
        try:
            refusal = self._too_large(audio_path, lang)
            if refusal is not None:
                raise ValueError(refusal)
            model = self._model(model_name, progress, lang)
            if progress is not None:
                progress(0.3, desc=text("recognising", lang))
            result = on_model_thread(model.predict, audio_path, granularity=granularity,
                                     extract_embedding=bool(extract_embedding), name=name,
                                     output_dir=self.outputs_root)
        except Exception as exc:  # bad input: a message in the page, never a stack trace
            if not isinstance(exc, (Emotion2VecError, ValueError, OSError)):
                log.exception("recognise failed for %s", name)
            message = _user_message(exc, lang)
            log_text = f"{text('log_file', lang)}: {name}\n✗ {message}\n{text('log_time', lang)}: {time.perf_counter() - started:.2f} s"
            return RecognitionView(_error_html(message, lang, text("error_hint", lang)), None, hidden, hidden,
                                   gr.update(value="", visible=False), None, log_text)
        return self._recognition_view(result, model, lang)

    def _recognition_view(self, result: "Result", model: "Emotion2VecPlus", lang: str) -> RecognitionView:
        import gradio as gr

        from ..analytics import emotion_runs
        from ..outputs import EMBEDDING_NPY, PROCESSED_AUDIO, RESULT_JSON

        if result.emotion is not None:
            card = (f'<div id="result-card"><div id="result-emoji">{html.escape(result.emoji or "")}</div>'
                    f'<div id="result-label">{html.escape(result.emotion_zh or "")} · {html.escape(result.emotion)}</div>'
                    f'<div id="result-confidence">{html.escape(text("confidence", lang))} '
                    f'{_percent(result.confidence)}</div></div>')
            scores = scores_figure(result.scores, lang)
        else:
            card = f'<div id="result-card"><div id="result-label">{html.escape(text("no_head", lang))}</div></div>'
            scores = None
        timeline = timeline_figure(result, lang) if result.emotion is not None else None
        runs = emotion_runs(result, smooth_s=TIMELINE_SMOOTH_S) if result.emotion is not None else []
        columns = [text(k, lang) for k in ("col_start", "col_end", "col_emotion", "col_confidence")]
        table = _frame([[round(r.start_s, 2), round(r.end_s, 2), emotion_name(r.emotion), _percent(r.confidence)]
                        for r in runs], columns)
        run_dir = Path(result.output_dir) if result.output_dir else None
        files = [str(f) for n in (EMBEDDING_NPY, RESULT_JSON, PROCESSED_AUDIO)
                 if run_dir is not None and (f := servable_file(run_dir / n, self.outputs_root)) is not None]
        if result.embedding is not None:
            notice = gr.update(value=text("embedding_notice", lang).format(name=EMBEDDING_NPY,
                                                                           shape=shape_text(result.embedding.shape)),
                               visible=True)
        else:
            notice = gr.update(value="", visible=False)
        audio = result.audio
        lines = [f"{text('log_file', lang)}: {result.source}"]
        if audio is not None:
            lines.append(f"{text('log_format', lang)}: " + text("log_audio", lang).format(
                format=audio.format, rate=audio.sample_rate, channels=audio.channels, duration=audio.duration_s))
        compute = ", ".join(v for v in (getattr(model, "compute_type", "float32"), getattr(model, "backend", "torch"))
                            if v not in ("float32", "torch"))
        lines += [f"{text('log_model', lang)}: {model.model_name} ({model.embed_dim}-d{', ' + compute if compute else ''})",
                  f"{text('log_granularity', lang)}: {result.granularity}",
                  f"{text('log_time', lang)}: {result.processing_time_s:.2f} s"]
        if run_dir is not None:
            lines.append(f"{text('log_saved', lang)}: {run_dir}")
        lines += [f"{text('log_warning', lang)}: {w}" for w in result.warnings]
        return RecognitionView(
            card, scores,
            gr.update(value=timeline, visible=timeline is not None),
            gr.update(value=table, visible=bool(runs)),
            notice, files, "\n".join(lines),
        )

    # ------------------------------------------------------------------ batch
    def run_batch_job(self, files: Sequence[str] | None, model_name: str | None = None, lang: str = DEFAULT_LANGUAGE,
                      progress: Any = None) -> BatchView:
        """Recognise many uploads with :func:`emotion2vec_plus.jobs.run_batch` into ``outputs/batch_*/``."""
        from ..jobs import (LIST_EXTENSIONS, NPY_ZIP_NAME, PARQUET_NAME, RESULTS_NAME, read_results, run_batch,
                            stage_files, write_results_csv, zip_npy_embeddings)
        from ..outputs import create_run_dir

        columns = [text(k, lang) for k in ("col_file", "col_emotion", "col_confidence", "col_duration", "col_status")]
        if not files:
            return BatchView(_frame([], columns), _error_html(text("error_no_files", lang), lang), None)
        started = time.perf_counter()
        try:
            model = self._model(model_name, progress, lang)
            names = [_display_name(f) for f in files]
            refused: dict[int, str] = {}
            for position, path in enumerate(files):
                reason = self._too_large(path, lang)
                if reason is None and Path(path).suffix.lower() in LIST_EXTENSIONS:
                    reason = f"{names[position]}: not an audio file (a {Path(path).suffix} file)"
                if reason is not None:
                    refused[position] = reason
            batch_dir = create_run_dir(self.outputs_root, prefix=BATCH_PREFIX)
            accepted = [p for p in range(len(files)) if p not in refused]
            staged = stage_files([(names[p], files[p]) for p in accepted], batch_dir / BATCH_INPUTS)
            staged_of = dict(zip(accepted, staged))
            def report(finished: int, total: int) -> None:
                progress(finished / max(total, 1), desc=f"{text('batch_progress', lang)} {finished}/{total}")

            if progress is not None:
                report(0, len(staged))
            if staged:
                on_model_thread(run_batch, model, staged, batch_dir, embeddings="both", workers=1,
                                batch_size=4, progress=report if progress is not None else False)
            records = {record["path"]: record for record in read_results(batch_dir)}
            rows: list[list[Any]] = []
            done = failed = 0
            for position in range(len(files)):
                if position in refused:
                    rows.append([names[position], "-", "-", "-", f"✗ {refused[position]}"])
                    failed += 1
                    continue
                staged_path = staged_of[position]
                record = records.get(str(staged_path.resolve())) or records.get(str(staged_path)) or {}
                if record.get("status") == "ok":
                    done += 1
                    rows.append([names[position], emotion_name(record.get("emotion")), _percent(record.get("confidence")),
                                 record.get("duration_s"), text("status_ok", lang)])
                else:
                    failed += 1
                    error = str(record.get("error") or "not processed")
                    error = error.replace(str(staged_path.resolve()), names[position]).replace(str(staged_path), names[position])
                    rows.append([names[position], "-", "-", "-", f"✗ {error}"])
            downloads = [str(write_results_csv(batch_dir))]
            if (batch_dir / RESULTS_NAME).is_file():
                downloads.append(str(batch_dir / RESULTS_NAME))
            if done and (batch_dir / PARQUET_NAME).is_file():
                downloads.append(str(batch_dir / PARQUET_NAME))
            archive = zip_npy_embeddings(batch_dir, batch_dir / NPY_ZIP_NAME)
            if archive is not None:
                downloads.append(str(archive))
        except Exception as exc:
            if not isinstance(exc, (Emotion2VecError, ValueError, OSError)):
                log.exception("batch failed")
            return BatchView(_frame([], columns), _error_html(_user_message(exc, lang), lang), None, None)
        summary = text("batch_summary", lang).format(done=done, failed=failed, seconds=time.perf_counter() - started,
                                                     folder=batch_dir)
        downloads = [str(f) for d in downloads if (f := servable_file(d, self.outputs_root)) is not None]
        parquet = next((d for d in downloads if Path(d).name == PARQUET_NAME), None)
        return BatchView(_frame(rows, columns), f'<div id="batch-summary">{html.escape(summary)}</div>', downloads,
                         parquet)

    def embeddings_for_explore(self, parquet: str | None) -> list[str] | None:
        """The batch run's ``embeddings.parquet`` for Explore, as Batch recorded it on the server (the
        download box holds Gradio's copies, elsewhere); only a file under the outputs root."""
        from ..jobs import PARQUET_NAME

        served = servable_file(parquet, self.outputs_root) if parquet else None
        return [str(served)] if served is not None and served.name == PARQUET_NAME else None

    # ------------------------------------------------------------------ compare
    def compare(self, file_a: str | None, file_b: str | None, model_name: str | None = None,
                lang: str = DEFAULT_LANGUAGE, progress: Any = None) -> str:
        """Cosine similarity of two clips or ``.npy`` embeddings with both results and a reading (HTML)."""
        from ..analytics import CALIBRATED_DIM, compare_inputs

        if not file_a or not file_b:
            return _error_html(text("error_no_files", lang), lang)
        try:
            for path in (file_a, file_b):
                refusal = self._too_large(path, lang)
                if refusal is not None:
                    raise ValueError(refusal)
            model = self._model(model_name, progress, lang)
            comparison = on_model_thread(compare_inputs, file_a, file_b, model,
                                         names=(_display_name(file_a), _display_name(file_b)))
        except Exception as exc:
            if not isinstance(exc, (Emotion2VecError, ValueError, OSError)):
                log.exception("compare failed")
            return _error_html(_user_message(exc, lang), lang)

        def card(item: Any, letter: str) -> str:
            kind = text("kind_audio" if item.kind == "audio" else "kind_embedding", lang)
            shape = shape_text(item.shape)
            if item.emotion is not None:
                face = EMOJI.get(item.emotion, "")
                label = f'{html.escape(EMOTIONS_ZH.get(item.emotion, item.emotion))} · {html.escape(item.emotion)}'
                emotion = f'<div class="emoji">{face}</div><div>{label} {_percent(item.confidence)}</div>'
            else:
                emotion = f"<div>{html.escape(text('no_emotion', lang))}</div>"
            return (f'<div class="compare-card" id="compare-{letter.lower()}"><b>{letter}: {html.escape(item.source)}</b>'
                    f"<div>{html.escape(kind)} {shape}</div>{emotion}</div>")

        note = ""
        if not comparison.calibrated:
            note = f"<p><i>{html.escape(text('compare_uncalibrated', lang).format(dim=comparison.a.vector.shape[0], calibrated=CALIBRATED_DIM))}</i></p>"
        return (f'<div style="display:flex;gap:12px"><div style="flex:1">{card(comparison.a, "A")}</div>'
                f'<div style="flex:1">{card(comparison.b, "B")}</div></div>'
                f'<div id="compare-similarity">{html.escape(text("similarity", lang))}: {comparison.similarity:.4f}</div>'
                f'<p id="compare-reading" style="text-align:center">{html.escape(similarity_reading(comparison.reading, lang))}</p>'
                f"{note}")

    # ------------------------------------------------------------------ explore
    def explore(self, files: Sequence[str] | None, min_cluster_size: float = 5, colour_by: str = "cluster",
                model_name: str | None = None, lang: str = DEFAULT_LANGUAGE, progress: Any = None) -> ExploreView:
        """UMAP map and HDBSCAN clusters of a set of clips or of one embeddings Parquet file."""
        from ..analytics import EmbeddingIndex, cluster_embeddings, load_index

        columns = [text(k, lang) for k in ("col_cluster", "col_size", "col_dominant", "col_members")]
        empty = _frame([], columns)
        if not files:
            return ExploreView(None, empty, _error_html(text("error_no_files", lang), lang))
        skipped: list[str] = []
        try:
            parquet = [f for f in files if Path(f).suffix.lower() == ".parquet"]
            if parquet and len(files) > 1:
                raise ValueError(text("explore_mixed", lang))
            if parquet:
                index = load_index(parquet[0])
                index.paths = [Path(p).name for p in index.paths]
            else:
                accepted = []
                for path in files:
                    refusal = self._too_large(path, lang)
                    if refusal is not None:
                        skipped.append(refusal)
                    else:
                        accepted.append(path)
                model = self._model(model_name, progress, lang)
                if progress is not None:
                    progress(0.2, desc=text("recognising", lang))
                results = on_model_thread(model.predict_batch, accepted, extract_embedding=True)
                good = [r for r in results if r.ok]
                skipped += [str(r.error) for r in results if not r.ok]
                if not good:
                    raise ValueError("; ".join(skipped) or text("error_no_files", lang))
                index = EmbeddingIndex.from_arrays([_display_name(p) for p, r in zip(accepted, results) if r.ok],
                                                   np.stack([r.embedding for r in good]),
                                                   [r.emotion for r in good], [r.confidence for r in good], "uploads")
            if progress is not None:
                progress(0.6, desc="UMAP + HDBSCAN")
            report = cluster_embeddings(index, min_cluster_size=int(min_cluster_size), seed=self.settings.seed)
        except Exception as exc:
            if not isinstance(exc, (Emotion2VecError, ValueError, OSError)):
                log.exception("explore failed")
            return ExploreView(None, empty, _error_html(_user_message(exc, lang), lang))
        rows = []
        for entry in report.summary:
            members = [Path(index.paths[r]).name for r in np.flatnonzero(report.labels == entry["cluster"])]
            shown = ", ".join(members[:30]) + (f" … (+{len(members) - 30})" if len(members) > 30 else "")
            dominant = emotion_name(entry["dominant_emotion"])
            if entry["dominant_share"] is not None:
                dominant += f" ({entry['dominant_share'] * 100:.0f}%)"
            rows.append([text("noise", lang) if entry["cluster"] == -1 else entry["cluster"], entry["size"], dominant, shown])
        summary = text("explore_summary", lang).format(n=len(index), dim=index.dim, clusters=report.n_clusters,
                                                       noise=report.n_noise)
        if skipped:
            summary += "<br>" + "<br>".join("✗ " + html.escape(s) for s in skipped)
        return ExploreView(cluster_map_figure(index, report, colour_by, lang), _frame(rows, columns),
                           f'<div id="explore-summary">{summary}</div>')

    # ------------------------------------------------------------------ history
    def history(self, lang: str = DEFAULT_LANGUAGE) -> HistoryView:
        """The newest 200 runs of the outputs folder with links to their files."""
        import gradio as gr

        from ..outputs import list_runs

        columns = [text(k, lang) for k in ("col_time", "col_file", "col_emotion", "col_confidence", "col_links")]
        runs = list_runs(self.outputs_root, limit=200)
        rows = []
        choices = []
        for run in runs:
            stamp = run.started.strftime("%Y-%m-%d %H:%M:%S")
            links = " ".join(f"[{f.name}](/gradio_api/file={f.as_posix()})" for f in run.files)
            emotion = emotion_name(run.emotion, run.emoji, run.emotion_zh) if run.emotion else (
                f"✗ {run.error}" if run.error else "-")
            rows.append([stamp, run.source or "-", emotion, _percent(run.confidence), links])
            choices.append((f"{stamp} · {run.source or run.run_dir.name}", run.run_dir.name))
        first = choices[0][1] if choices else None
        return HistoryView(_frame(rows, columns), gr.update(choices=choices, value=first),
                           self.run_files(first))

    def run_files(self, run_name: str | None) -> list[str] | None:
        """The files of one run folder (by its name under the outputs root) for download."""
        from ..outputs import RUN_PREFIX, list_runs

        if not run_name or not run_name.startswith(RUN_PREFIX) or "/" in run_name or "\\" in run_name:
            return None
        for run in list_runs(self.outputs_root):
            if run.run_dir.name == run_name:
                return [str(f) for f in run.files]
        return None


# --------------------------------------------------------------------------------------------- the page
def _granularity_choices(lang: str) -> list[tuple[str, str]]:
    return [(text("granularity_utterance", lang), "utterance"), (text("granularity_frame", lang), "frame")]


def _colour_choices(lang: str) -> list[tuple[str, str]]:
    return [(text("colour_cluster", lang), "cluster"), (text("colour_emotion", lang), "emotion")]


def _samples() -> list[Path]:
    folder = Path(__file__).resolve().parents[1] / "samples"
    return sorted(folder.glob("*.wav"))


class _Page:
    """Builds the Gradio page over ``ui``'s callbacks, one method per tab; every component whose text
    depends on the language is registered in :attr:`relabel` (component, update for a language)."""

    def __init__(self, ui: EmotionWebUI) -> None:
        import gradio as gr

        self.gr = gr
        self.ui = ui
        self.start_lang: Language = ui.settings.language or DEFAULT_LANGUAGE
        self.relabel: list[tuple[Any, Callable[[str], Any]]] = []
        self.model_choices = ui.provider.choices()

    def T(self, key: str) -> str:  # noqa: N802 - short name for the initial text
        return text(key, self.start_lang)

    def label(self, component: Any, key: str) -> Any:
        """Register ``component`` to get the text ``key`` as its label in each language."""
        self.relabel.append((component, lambda lang, k=key: self.gr.update(label=text(k, lang))))
        return component

    def value(self, component: Any, key: str, fmt: Callable[[str], str] | None = None) -> Any:
        """Register ``component`` to get the text ``key`` (or ``fmt(lang)``) as its value in each language."""
        self.relabel.append((component, lambda lang, k=key: self.gr.update(value=fmt(lang) if fmt else text(k, lang))))
        return component

    def header(self) -> Any:
        """Title, subtitle and the language radio (returned)."""
        gr, ui = self.gr, self.ui
        with gr.Row():
            with gr.Column(scale=5):
                self.value(gr.Markdown(f"# {self.T('title')}", elem_id="page-title"), "title",
                           lambda lang: f"# {text('title', lang)}")
                self.value(gr.Markdown(self.T("subtitle").format(model=ui.provider.default_name)), "subtitle",
                           lambda lang: text("subtitle", lang).format(model=ui.provider.default_name))
            with gr.Column(scale=1, min_width=180):
                return gr.Radio([(LANGUAGE_NAMES[code], code) for code in LANGUAGES], value=self.start_lang,
                                label=self.T("language"), elem_id="language")

    def recognise_tab(self, language: Any) -> SimpleNamespace:
        gr = self.gr
        with self.label(gr.Tab(self.T("tab_recognise"), id="recognise", elem_id="tab-recognise"), "tab_recognise"):
            with gr.Row():
                with gr.Column(scale=1):
                    audio = self.label(gr.Audio(sources=["upload", "microphone"], type="filepath", label=self.T("audio_input"),
                                           elem_id="audio-input"), "audio_input")
                    examples = gr.Examples(examples=[[str(p)] for p in _samples()], inputs=[audio],
                                           label=self.T("examples"), elem_id="examples")
                    self.label(examples.dataset, "examples")
                    granularity = gr.Radio(_granularity_choices(self.start_lang), value="utterance", label=self.T("granularity"),
                                           elem_id="granularity")
                    self.relabel.append((granularity, lambda lang: gr.update(label=text("granularity", lang),
                                                                        choices=_granularity_choices(lang))))
                    embedding = self.label(gr.Checkbox(False, label=self.T("extract_embedding"), elem_id="extract-embedding"),
                                      "extract_embedding")
                    model = gr.Dropdown(self.model_choices, value=self.model_choices[0], label=self.T("model"), info=self.T("model_info"),
                                        elem_id="model")
                    self.relabel.append((model, lambda lang: gr.update(label=text("model", lang), info=text("model_info", lang))))
                    start = self.value(gr.Button(self.T("start"), variant="primary", elem_id="start"), "start")
                with gr.Column(scale=1):
                    result_html = gr.HTML(_placeholder_html(self.start_lang), elem_id="result")
                    notice = gr.Markdown("", visible=False, elem_id="embedding-notice")
                    downloads = self.label(gr.File(label=self.T("downloads"), file_count="multiple", interactive=False,
                                              elem_id="downloads"), "downloads")
                    scores = self.label(gr.Plot(label=self.T("scores_plot"), elem_id="scores-plot"), "scores_plot")
                    timeline = self.label(gr.Plot(label=self.T("timeline_plot"), visible=False, elem_id="timeline-plot"),
                                     "timeline_plot")
                    segments = self.label(gr.Dataframe(label=self.T("segments"), visible=False, interactive=False,
                                                  elem_id="segments"), "segments")
                    log_box = self.label(gr.Textbox(label=self.T("log"), lines=7, interactive=False, elem_id="log"), "log")
            start.click(
                lambda a, g, e, m, lang, progress=gr.Progress(): self.ui.recognise(a, g, e, m, lang, progress),
                inputs=[audio, granularity, embedding, model, language],
                outputs=[result_html, scores, timeline, segments, notice, downloads, log_box],
            )
        return SimpleNamespace(audio=audio, examples=examples, model=model, result_html=result_html)

    def batch_tab(self, model: Any, language: Any) -> SimpleNamespace:
        gr = self.gr
        with self.label(gr.Tab(self.T("tab_batch"), id="batch", elem_id="tab-batch"), "tab_batch"):
            self.value(gr.Markdown(self.T("batch_intro")), "batch_intro")
            with gr.Row():
                with gr.Column(scale=1):
                    batch_files = self.label(gr.File(file_count="multiple", file_types=list(AUDIO_FILE_TYPES),
                                                label=self.T("batch_files"), elem_id="batch-files"), "batch_files")
                    batch_start = self.value(gr.Button(self.T("batch_start"), variant="primary", elem_id="batch-start"),
                                        "batch_start")
                    batch_summary = gr.HTML("", elem_id="batch-summary-box")
                    batch_downloads = self.label(gr.File(label=self.T("batch_downloads"), file_count="multiple",
                                                    interactive=False, elem_id="batch-downloads"), "batch_downloads")
                    batch_to_explore = self.value(gr.Button(self.T("batch_to_explore"), elem_id="batch-to-explore"),
                                             "batch_to_explore")
                with gr.Column(scale=2):
                    batch_table = self.label(gr.Dataframe(label=self.T("batch_table"), interactive=False, wrap=True,
                                                     column_widths=["25%", "17%", "13%", "13%", "32%"],
                                                     max_height=1200, elem_id="batch-table"), "batch_table")
            batch_parquet = gr.State(None)  # server side: the client cannot point Explore elsewhere
            batch_start.click(
                lambda f, m, lang, progress=gr.Progress(): self.ui.run_batch_job(f, m, lang, progress),
                inputs=[batch_files, model, language],
                outputs=[batch_table, batch_summary, batch_downloads, batch_parquet],
            )
        return SimpleNamespace(to_explore=batch_to_explore, parquet=batch_parquet)

    def compare_tab(self, model: Any, language: Any) -> None:
        gr = self.gr
        with self.label(gr.Tab(self.T("tab_compare"), id="compare", elem_id="tab-compare"), "tab_compare"):
            self.value(gr.Markdown(self.T("compare_intro")), "compare_intro")
            with gr.Row():
                file_a = self.label(gr.File(label=self.T("compare_a"), file_types=[*AUDIO_FILE_TYPES, ".npy"],
                                       elem_id="compare-file-a"), "compare_a")
                file_b = self.label(gr.File(label=self.T("compare_b"), file_types=[*AUDIO_FILE_TYPES, ".npy"],
                                       elem_id="compare-file-b"), "compare_b")
            compare_start = self.value(gr.Button(self.T("compare_start"), variant="primary", elem_id="compare-start"),
                                  "compare_start")
            compare_html = gr.HTML("", elem_id="compare-result")
            compare_start.click(
                lambda a, b, m, lang, progress=gr.Progress(): self.ui.compare(a, b, m, lang, progress),
                inputs=[file_a, file_b, model, language], outputs=[compare_html],
            )

    def explore_tab(self, model: Any, language: Any, tabs: Any, batch: SimpleNamespace) -> None:
        gr = self.gr
        batch_to_explore, batch_parquet = batch.to_explore, batch.parquet
        with self.label(gr.Tab(self.T("tab_explore"), id="explore", elem_id="tab-explore"), "tab_explore"):
            self.value(gr.Markdown(self.T("explore_intro")), "explore_intro")
            with gr.Row():
                with gr.Column(scale=1):
                    explore_files = self.label(gr.File(file_count="multiple", label=self.T("explore_files"),
                                                  file_types=[*AUDIO_FILE_TYPES, ".parquet"],
                                                  elem_id="explore-files"), "explore_files")
                    min_cluster = self.label(gr.Slider(2, 50, value=5, step=1, label=self.T("explore_min_cluster"),
                                                  elem_id="explore-min-cluster"), "explore_min_cluster")
                    colour_by = gr.Radio(_colour_choices(self.start_lang), value="cluster", label=self.T("explore_colour"),
                                         elem_id="explore-colour")
                    self.relabel.append((colour_by, lambda lang: gr.update(label=text("explore_colour", lang),
                                                                      choices=_colour_choices(lang))))
                    explore_start = self.value(gr.Button(self.T("explore_start"), variant="primary", elem_id="explore-start"),
                                          "explore_start")
                    explore_summary = gr.HTML("", elem_id="explore-summary-box")
                with gr.Column(scale=2):
                    explore_map = self.label(gr.Plot(label=self.T("explore_map"), elem_id="explore-map"), "explore_map")
                    explore_table = self.label(gr.Dataframe(label=self.T("explore_table"), interactive=False, wrap=True,
                                                       elem_id="explore-table"), "explore_table")
            explore_start.click(
                lambda f, n, c, m, lang, progress=gr.Progress(): self.ui.explore(f, n, c, m, lang, progress),
                inputs=[explore_files, min_cluster, colour_by, model, language],
                outputs=[explore_map, explore_table, explore_summary],
            )
            batch_to_explore.click(
                lambda parquet: (self.ui.embeddings_for_explore(parquet), gr.Tabs(selected="explore")),
                inputs=[batch_parquet], outputs=[explore_files, tabs],
            )

    def history_tab(self, language: Any) -> None:
        gr = self.gr
        with self.label(gr.Tab(self.T("tab_history"), id="history", elem_id="tab-history"), "tab_history") as history_tab:
            self.value(gr.Markdown(self.T("history_intro")), "history_intro")
            history_refresh = self.value(gr.Button(self.T("history_refresh"), elem_id="history-refresh"), "history_refresh")
            history_table = self.label(gr.Dataframe(label=self.T("history_table"), interactive=False, wrap=True,
                                               datatype=["str", "str", "str", "str", "markdown"],
                                               elem_id="history-table"), "history_table")
            with gr.Row():
                run_picker = self.label(gr.Dropdown([], label=self.T("history_pick"), elem_id="history-pick"), "history_pick")
                run_files = self.label(gr.File(label=self.T("history_files"), file_count="multiple", interactive=False,
                                          elem_id="history-files"), "history_files")
            history_outputs = [history_table, run_picker, run_files]
            history_refresh.click(self.ui.history, inputs=[language], outputs=history_outputs)
            history_tab.select(self.ui.history, inputs=[language], outputs=history_outputs)
            run_picker.input(self.ui.run_files, inputs=[run_picker], outputs=[run_files])

    def follow_language(self, demo: Any, language: Any, recognise: SimpleNamespace) -> None:
        """Relabel every registered component when the language changes, keep Gradio's own texts
        in step, and set the language at page load from ``?lang=`` or the browser."""
        gr = self.gr
        audio, examples, result_html = recognise.audio, recognise.examples, recognise.result_html
        components = [component for component, _ in self.relabel]
        language.change(lambda lang: [make(lang) for _, make in self.relabel], inputs=[language], outputs=components)
        set_gradio_locale = _set_gradio_locale_js()

        def sync_gradio_texts(event: Any, when: Callable[..., Any]) -> None:
            """Set Gradio's locale to the page's language, then, if ``when`` says so, mount the upload
            box anew (hidden, then shown; its value is kept): it reads its texts only when mounted."""
            event.then(None, inputs=[language], outputs=None, js=set_gradio_locale, queue=False,
                       show_progress="hidden").then(
                when, inputs=[language], outputs=[audio], queue=False, show_progress="hidden").then(
                lambda: gr.update(visible=True), outputs=[audio], queue=False, show_progress="hidden")

        def hide_always(lang: str) -> Any:
            return gr.update(visible=False)

        def hide_unless_browser_language(lang: str, request: gr.Request) -> Any:
            """At page load the box was mounted in the browser's locale: only remount it if that differs."""
            header = (request.headers.get("accept-language") or "") if request is not None else ""
            primary = header.split(",")[0].split(";")[0].strip().lower()
            browser_lang = "zh" if primary.startswith("zh") else "en" if primary.startswith("en") else None
            return gr.update() if browser_lang == lang else gr.update(visible=False)

        hide_unless_browser_language.__annotations__["request"] = gr.Request  # this module defers annotations
        sync_gradio_texts(language.input(lambda lang: lang, inputs=[language], outputs=None, queue=False,
                                         show_progress="hidden"), hide_always)
        # The result box shows the placeholder in the chosen language until there is a result.
        language.change(lambda lang, current: _placeholder_html(lang) if _is_placeholder(current) else gr.update(),
                        inputs=[language, result_html], outputs=[result_html], queue=False, show_progress="hidden")
        # Gradio re-applies the audio box's construction-time label when a sample is clicked.
        examples.load_input_event.then(lambda lang: gr.update(label=text("audio_input", lang)), inputs=[language],
                                       outputs=[audio], queue=False, show_progress="hidden")

        def initial_language(request: gr.Request) -> str:
            query = request.query_params.get("lang") if request is not None else None
            header = request.headers.get("accept-language") if request is not None and self.ui.settings.language is None else None
            return pick_language(query, header, self.start_lang)

        initial_language.__annotations__["request"] = gr.Request  # resolved here: this module defers annotations

        sync_gradio_texts(demo.load(initial_language, inputs=None, outputs=[language]), hide_unless_browser_language)


def build_app(ui: EmotionWebUI) -> "gr.Blocks":
    """The Gradio page over ``ui``'s callbacks (call ``.launch()`` on it, see :func:`launch_kwargs`)."""
    import gradio as gr

    page = _Page(ui)
    # delete_cache: uploads in Gradio's cache older than a day are removed every hour (runs in outputs/ are kept).
    with gr.Blocks(title="emotion2vec+ WebUI", analytics_enabled=False, delete_cache=(3600, 86400)) as demo:
        language = page.header()
        with gr.Tabs(elem_id="tabs") as tabs:
            recognise = page.recognise_tab(language)
            batch = page.batch_tab(recognise.model, language)
            page.compare_tab(recognise.model, language)
            page.explore_tab(recognise.model, language, tabs, batch)
            page.history_tab(language)
        page.follow_language(demo, language, recognise)
    return demo


def launch_kwargs(ui: EmotionWebUI) -> dict[str, Any]:
    """Arguments for ``Blocks.launch``: upload size limit, the folders the page may serve, CSS."""
    return {
        "max_file_size": f"{ui.settings.max_upload_mb:g}mb",
        "allowed_paths": [str(ui.outputs_root), str(Path(__file__).resolve().parents[1] / "samples")],
        "css": CSS,
        "share": False,
        "ssr_mode": False,
        "show_error": False,
    }
