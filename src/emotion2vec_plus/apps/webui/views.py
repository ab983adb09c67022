"""The WebUI's callbacks (:class:`EmotionWebUI`: what each button does, callable without a browser),
the models it serves (:class:`ModelProvider`) and the views they return."""

from __future__ import annotations

import html
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Sequence

import numpy as np

from ...defaults import (AUDIO_EXTENSIONS, LIVE_MAX_MINUTES, LIVE_SESSIONS, SERVER_MAX_DURATION_S, WEBUI_MAX_UPLOAD_MB,
                         WEBUI_PORT)
from ...runtime.compute import on_model_thread
from ...errors import Emotion2VecError
from ...labels import EMOJI, EMOTIONS_ZH
from ...outputs import BATCH_PREFIX, servable_file
from .messages import PageMessage, page_error, recorded_error
from .text import DEFAULT_LANGUAGE, TEXT, Language, similarity_reading, text
from .charts import (TIMELINE_SMOOTH_S, cluster_map_figure, emotion_name, live_figure, percent_text, scores_figure,
                     timeline_figure)
from .live import (LIVE_CHART_S, LIVE_IDLE_NEW_S, LIVE_MISSED_MIN_S, LIVE_MISSED_MIN_SHARE, LiveSession, LiveSnapshot,
                   read_chunk)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from ...analytics import ClusterReport, Comparison, EmbeddingIndex
    from ...inference import Emotion2VecPlus
    from ...results import Result

log = logging.getLogger(__name__)


DEFAULT_PORT = WEBUI_PORT


DEFAULT_MAX_UPLOAD_MB = WEBUI_MAX_UPLOAD_MB


DEFAULT_MAX_DURATION_S = SERVER_MAX_DURATION_S


BATCH_INPUTS = "inputs"


#: File types offered by the upload dialogs (the decoder sniffs content, not the extension).
AUDIO_FILE_TYPES: tuple[str, ...] = AUDIO_EXTENSIONS


_MB = 1024 * 1024


def shape_text(shape: Sequence[int]) -> str:
    """A shape as Python writes it: ``(256,)``, ``(147, 256)``."""
    return "(" + ", ".join(str(int(n)) for n in shape) + ("," if len(shape) == 1 else "") + ")"


def _display_name(path: str | os.PathLike) -> str:
    """The base name of an upload (Gradio keeps the browser's file name), without control characters."""
    from ..service import sanitise_filename

    return sanitise_filename(Path(path).name)


@dataclass
class WebUISettings:
    """Options of one WebUI server."""

    outputs_root: Path = Path("outputs")
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    max_duration_s: float = DEFAULT_MAX_DURATION_S
    language: Language | None = None
    """Interface language; ``None`` follows the browser (``?lang=zh|en`` in the address always wins)."""
    seed: int = 0
    live_max_s: float = 60 * LIVE_MAX_MINUTES
    """Most audio one live session takes (``--live-max-minutes``)."""
    live_sessions: int = LIVE_SESSIONS
    """Browser sessions streaming on the Live tab at once (``--live-sessions``); more wait their turn."""


class ModelProvider:
    """Loads each model once and keeps it: the default model always, plus the last other one used.

    ``choices()`` is what the model dropdown offers: the default model, the bundled compact model
    and the emotion2vec+ models cached on this machine (:func:`emotion2vec_plus.models.hub.list_models`;
    nothing is downloaded from the page). Models load and run on the process's one model thread
    (:func:`emotion2vec_plus.runtime.compute.model_thread`), so model calls run one at a time.
    """

    def __init__(self, default_model: str = "compact", *, device: str = "cpu", hub: str | None = None,
                 cache_dir: str | os.PathLike | None = None, num_threads: int | None = None,
                 max_duration_s: float = DEFAULT_MAX_DURATION_S, compute_type: str | None = None,
                 backend: str = "torch", preloaded: "Emotion2VecPlus | None" = None,
                 adapter: str | os.PathLike | None = None) -> None:
        self.default_name = str(default_model)
        #: Applied to the default model only (adapters are for the bundled compact model).
        self.adapter = adapter
        self._options: dict[str, Any] = {"device": device, "hub": hub, "cache_dir": cache_dir,
                                         "num_threads": num_threads, "max_duration_s": max_duration_s,
                                         "compute_type": compute_type, "backend": backend}
        self._models: dict[str, Emotion2VecPlus] = {}
        self._load_lock = threading.Lock()
        if preloaded is not None:
            self._models[self.default_name] = preloaded

    @property
    def max_duration_s(self) -> float | None:
        """The longest audio the models accept, in seconds (what the page names as the limit)."""
        return self._options["max_duration_s"]

    def load_default(self) -> "Emotion2VecPlus":
        """Load the default model now (the server does this before it starts listening)."""
        return self.get(self.default_name)

    def choices(self) -> list[str]:
        """Model names for the dropdown: the default first, then compact, then cached emotion2vec+ models."""
        from ...models.hub import list_models
        from ...models.registry import COMPACT_NAME

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
        from ...errors import ModelError

        name = name or self.default_name
        with self._load_lock:
            if name in self._models:
                return self._models[name]
            if name != self.default_name and name not in self.choices():
                raise ModelError(f"model {name!r} is not available here; choose one of {', '.join(self.choices())}")
            if on_load is not None:
                on_load(name)
            from ...inference import Emotion2VecPlus

            # Loaded and run on one thread: see compute.model_thread.
            adapter = self.adapter if name == self.default_name else None
            model = on_model_thread(Emotion2VecPlus, name, download=name == self.default_name, adapter=adapter,
                                    **self._options)
            for loaded in [n for n in self._models if n != self.default_name]:
                del self._models[loaded]  # keep the default plus one other model in memory
            self._models[name] = model
            return model


# ---------------------------------------------------------------------------------------------- what is shown
# Each tab keeps what it shows (a result, a batch run, a comparison, a map) per browser session, in
# language-free form: switching the language draws it again in the other language.


@dataclass
class Recognition:
    """What the Recognise tab shows: a result, or a message about the input ``name``."""

    name: str
    result: "Result | None" = None
    model_text: str | None = None
    """The model as the log names it, e.g. ``compact (256-d, int8)``."""
    error: PageMessage | None = None
    elapsed_s: float = 0.0


@dataclass
class BatchRow:
    """One file of a batch run: its line of ``results.jsonl``, or why it failed or was refused."""

    name: str
    record: dict[str, Any] | None = None
    error: PageMessage | None = None


@dataclass
class BatchRun:
    """What the Batch tab shows."""

    rows: list[BatchRow] = field(default_factory=list)
    seconds: float = 0.0
    folder: Path | None = None
    downloads: list[str] = field(default_factory=list)
    parquet: str | None = None
    error: PageMessage | None = None

    @property
    def done(self) -> int:
        return sum(row.error is None for row in self.rows)


@dataclass
class CompareOutcome:
    """What the Compare tab shows."""

    comparison: "Comparison | None" = None
    error: PageMessage | None = None


@dataclass
class ExploreMap:
    """What the Explore tab shows: the embeddings, their map and clusters, and the files left out."""

    index: "EmbeddingIndex | None" = None
    report: "ClusterReport | None" = None
    skipped: list[PageMessage] = field(default_factory=list)
    size_chosen: bool = True
    """Whether the smallest cluster size was chosen for the set (0 on the slider) or given."""
    embedded: int = 0
    """How many clips were run through the model for this map (the others came from the session's cache)."""
    error: PageMessage | None = None


class RecognitionView(NamedTuple):
    """What the Recognise button shows (one entry per output component), and what to keep."""

    result_html: str
    scores_plot: Any
    timeline_plot: Any
    segments_table: Any
    embedding_notice: Any
    downloads: Any
    log_text: str
    shown: Recognition | None = None


class BatchView(NamedTuple):
    """What the Batch button shows, and (kept on the server) the run's embeddings for Explore."""

    table: Any
    summary: str
    downloads: Any
    parquet: str | None = None
    shown: BatchRun | None = None


class CompareView(NamedTuple):
    """What the Compare button shows."""

    html: str
    shown: CompareOutcome | None = None


class ExploreView(NamedTuple):
    """What the Explore button shows; ``cache`` holds the session's embeddings by file."""

    map_plot: Any
    clusters_table: Any
    summary: str
    shown: ExploreMap | None = None
    cache: dict | None = None


class LiveView(NamedTuple):
    """What the Live tab shows (one entry per output component), and the session (or the message
    why there is none) to keep in the browser session's state."""

    now_html: str
    chart: Any
    finals_table: Any
    status_html: str
    session: "LiveSession | PageMessage | None" = None


class LiveSaved(NamedTuple):
    """What "Save session" shows."""

    status_html: str
    files: Any
    session: "LiveSession | PageMessage | None" = None


class HistoryView(NamedTuple):
    """What the History tab shows."""

    table: Any
    run_picker: Any
    files: Any


class _Refusal(Exception):
    """An input the page refuses before the library sees it (too large, a list of paths)."""

    def __init__(self, error: PageMessage) -> None:
        super().__init__(error.key)
        self.error = error


_PLACEHOLDER_START = '<div class="placeholder-box">'


def placeholder_html(lang: str) -> str:
    return f'{_PLACEHOLDER_START}{html.escape(text("result_placeholder", lang))}</div>'


def _frame(rows: list[list[Any]], columns: list[str]) -> "pd.DataFrame":
    import pandas as pd

    return pd.DataFrame(rows, columns=columns)


def _columns(lang: str, *keys: str) -> list[str]:
    return [text(key, lang) for key in keys]


#: Warnings the library gives (``result.warnings``, "silent: ...") that the page words itself.
_WARNING_KEYS = {"silent": "warn_silent", "clipped": "warn_clipped"}


def _warning_text(warning: str, lang: str) -> str:
    key = _WARNING_KEYS.get(warning.split(":", 1)[0].strip())
    return text(key, lang) if key else warning


def _model_text(model: "Emotion2VecPlus") -> str:
    compute = ", ".join(v for v in (getattr(model, "compute_type", "float32"), getattr(model, "backend", "torch"))
                        if v not in ("float32", "torch"))
    return f"{model.model_name} ({model.embed_dim}-d{', ' + compute if compute else ''})"


def _hidden() -> Any:
    import gradio as gr

    return gr.update(value=None, visible=False)


def _live_now_html(shown: LiveSnapshot, lang: str) -> str:
    """The current provisional label (emoji, Chinese · English, confidence) or silence."""
    event = shown.current_event
    window = f'<div id="live-window">{html.escape(text("live_now", lang))}</div>'
    if event is None:
        return (f'<div id="live-card"><div id="live-emoji" class="live-quiet">…</div><div id="live-label">'
                f'{html.escape(text("live_listening", lang))}</div>{window}</div>')
    if event.get("emotion") is None:
        return (f'<div id="live-card" class="silent"><div id="live-emoji" class="live-quiet">🔇</div>'
                f'<div id="live-label">{html.escape(text("live_silence", lang))}</div>{window}</div>')
    label = " · ".join(html.escape(part) for part in dict.fromkeys(
        p for p in (event.get("emotion_zh"), event.get("emotion")) if p))
    return (f'<div id="live-card"><div id="live-emoji">{html.escape(event.get("emoji") or "")}</div>'
            f'<div id="live-label">{label}</div><div id="live-confidence">{html.escape(text("confidence", lang))} '
            f'{percent_text(event.get("confidence"))}</div>{window}</div>')


def _live_status_html(shown: LiveSnapshot, lang: str, max_s: float) -> str:
    """The session's state: listening or stopped (length, utterances), where it was saved, and any message."""
    key = "live_status_stopped" if shown.closed else "live_status_recording"
    lines = [html.escape(text(key, lang).format(duration=shown.position_s, utterances=shown.utterances,
                                                rate=shown.sample_rate, model=shown.model_name))]
    if shown.utterances > len(shown.finals):
        lines.append(html.escape(text("live_finals_more", lang).format(shown=len(shown.finals), total=shown.utterances)))
    if shown.saved is not None:
        lines.append('<span id="live-saved">' + html.escape(text("live_saved", lang).format(
            folder=shown.saved.name, utterances=shown.saved_utterances, duration=shown.saved_s)) + "</span>")
    status = f'<div id="live-status">{"<br>".join(lines)}</div>'
    if shown.limit_reached:
        status += PageMessage("error_live_limit", {"minutes": max_s / 60}).html(lang)
    if shown.missed_s >= max(LIVE_MISSED_MIN_S, LIVE_MISSED_MIN_SHARE * shown.recorded_s):
        status += PageMessage("error_live_missed", {"seconds": shown.missed_s, "recorded": shown.recorded_s}).html(lang)
    if shown.dropped_s > 0:
        status += PageMessage("error_live_busy", {"seconds": shown.dropped_s}).html(lang)
    if shown.error is not None:
        status += shown.error.html(lang)
    return status


class EmotionWebUI:
    """The functions behind the page's buttons, over a :class:`ModelProvider` and an outputs folder.

    Each button's method does the work and returns a view; ``render_*`` draws a kept outcome again
    (in another language) without running anything.
    """

    def __init__(self, provider: ModelProvider, settings: WebUISettings | None = None) -> None:
        self.provider = provider
        self.settings = settings or WebUISettings()
        self.outputs_root = Path(self.settings.outputs_root).resolve()

    # ------------------------------------------------------------------ helpers
    def _model(self, name: str | None, progress: Any, lang: str) -> "Emotion2VecPlus":
        if name and name != self.provider.default_name and name not in self.provider.choices():
            raise _Refusal(PageMessage("error_model_unavailable", {"model": name}))

        def announce(model_name: str) -> None:
            if progress is not None:
                progress(0.0, desc=text("loading_model", lang).format(model=model_name))
        return self.provider.get(name, on_load=announce)

    def _check_size(self, path: str | os.PathLike, name: str) -> None:
        size = os.path.getsize(path)
        if size > self.settings.max_upload_mb * _MB:
            raise _Refusal(PageMessage("error_too_large", {"name": name, "size": size / _MB,
                                                         "limit": self.settings.max_upload_mb}))

    def _max_duration_s(self) -> float:
        """The duration limit the models enforce (the server's ``--max-duration``)."""
        return self.provider.max_duration_s or self.settings.max_duration_s

    def _error(self, exc: BaseException, name: str, *paths: str | os.PathLike) -> PageMessage:
        """The page's message for ``exc`` about the input ``name`` (stored on the server at ``paths``)."""
        if isinstance(exc, _Refusal):
            return exc.error
        if not isinstance(exc, (Emotion2VecError, ValueError, OSError)):
            log.exception("unexpected error for %s", name)
        server_paths = tuple(sorted({str(p) for p in paths} | {str(Path(p).resolve()) for p in paths}, key=len,
                                    reverse=True))
        return page_error(exc, name, max_duration_s=self._max_duration_s(), server_paths=server_paths)

    # ------------------------------------------------------------------ recognise
    def recognise(self, audio_path: str | None, granularity: str = "utterance", extract_embedding: bool = False,
                  model_name: str | None = None, lang: str = DEFAULT_LANGUAGE, progress: Any = None) -> RecognitionView:
        """Recognise one uploaded or recorded clip and save the run; never raises for bad input."""
        started = time.perf_counter()
        if not audio_path:
            return self.render_recognition(Recognition("", error=PageMessage("error_no_audio")), lang)
        name = _display_name(audio_path)
        try:
            self._check_size(audio_path, name)
            model = self._model(model_name, progress, lang)
            if progress is not None:
                progress(0.3, desc=text("recognising", lang))
            result = on_model_thread(model.predict, audio_path, granularity=granularity,
                                     extract_embedding=bool(extract_embedding), name=name,
                                     output_dir=self.outputs_root)
        except Exception as exc:  # bad input: a message in the page, never a stack trace
            shown = Recognition(name, error=self._error(exc, name, audio_path),
                                elapsed_s=time.perf_counter() - started)
        else:
            shown = Recognition(name, result, _model_text(model), elapsed_s=time.perf_counter() - started)
        return self.render_recognition(shown, lang)

    def render_recognition(self, shown: Recognition | None, lang: str) -> RecognitionView:
        """What the Recognise tab shows for ``shown`` (the placeholder for ``None``) in ``lang``."""
        import gradio as gr

        no_notice = gr.update(value="", visible=False)
        if shown is None:
            return RecognitionView(placeholder_html(lang), None, _hidden(), _hidden(), no_notice, None, "", None)
        if shown.error is not None or shown.result is None:
            error = shown.error or PageMessage("error_no_audio")
            lines = ([f"{text('log_file', lang)}: {shown.name}"] if shown.name else []) + [
                f"✗ {error.message(lang)}"]
            if shown.name:
                lines.append(f"{text('log_time', lang)}: {shown.elapsed_s:.2f} s")
            return RecognitionView(error.html(lang), None, _hidden(), _hidden(), no_notice, None, "\n".join(lines),
                                   shown)
        return self._result_view(shown, lang)

    def _result_view(self, shown: Recognition, lang: str) -> RecognitionView:
        import gradio as gr

        from ...analytics import emotion_runs
        from ...outputs import EMBEDDING_NPY, PROCESSED_AUDIO, RESULT_JSON

        result = shown.result
        assert result is not None
        if result.emotion is not None:
            card = (f'<div id="result-card"><div id="result-emoji">{html.escape(result.emoji or "")}</div>'
                    f'<div id="result-label">{html.escape(result.emotion_zh or "")} · {html.escape(result.emotion)}</div>'
                    f'<div id="result-confidence">{html.escape(text("confidence", lang))} '
                    f'{percent_text(result.confidence)}</div></div>')
            scores = scores_figure(result.scores, lang)
        else:
            card = f'<div id="result-card"><div id="result-label">{html.escape(text("no_head", lang))}</div></div>'
            scores = None
        runs = emotion_runs(result, smooth_s=TIMELINE_SMOOTH_S) if result.emotion is not None else []
        timeline = timeline_figure(result, lang, runs) if result.emotion is not None else None
        table = _frame([[round(r.start_s, 2), round(r.end_s, 2),
                         emotion_name(r.emotion) if r.speech else text("no_speech", lang), percent_text(r.confidence)]
                        for r in runs], _columns(lang, "col_start", "col_end", "col_emotion", "col_confidence"))
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
        granularity = f"granularity_{result.granularity}"
        lines += [f"{text('log_model', lang)}: {shown.model_text or result.model}",
                  f"{text('log_granularity', lang)}: "
                  f"{text(granularity, lang) if granularity in TEXT else result.granularity}",
                  f"{text('log_time', lang)}: {result.processing_time_s:.2f} s"]
        if run_dir is not None:
            lines.append(f"{text('log_saved', lang)}: {run_dir}")
        lines += [f"{text('log_warning', lang)}: {_warning_text(w, lang)}" for w in result.warnings]
        return RecognitionView(
            card, scores,
            gr.update(value=timeline, visible=timeline is not None),
            gr.update(value=table, visible=bool(runs)),
            notice, files, "\n".join(lines), shown,
        )

    # ------------------------------------------------------------------ batch
    def run_batch_job(self, files: Sequence[str] | None, model_name: str | None = None, lang: str = DEFAULT_LANGUAGE,
                      progress: Any = None) -> BatchView:
        """Recognise many uploads with :func:`emotion2vec_plus.jobs.run_batch` into ``outputs/batch_*/``."""
        from ...jobs import (LIST_EXTENSIONS, NPY_ZIP_NAME, PARQUET_NAME, RESULTS_NAME, read_results, run_batch,
                            stage_files, write_results_csv, zip_npy_embeddings)
        from ...outputs import create_run_dir

        if not files:
            return self.render_batch(BatchRun(error=PageMessage("error_no_files")), lang)
        started = time.perf_counter()
        names = [_display_name(f) for f in files]
        try:
            model = self._model(model_name, progress, lang)
            refused: dict[int, PageMessage] = {}
            for position, path in enumerate(files):
                try:
                    self._check_size(path, names[position])
                    suffix = Path(path).suffix.lower()
                    if suffix in LIST_EXTENSIONS:  # a list would make the server read other files
                        raise _Refusal(PageMessage("error_list_file", {"name": names[position], "suffix": suffix}))
                except _Refusal as refusal:
                    refused[position] = refusal.error
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
            rows: list[BatchRow] = []
            for position in range(len(files)):
                if position in refused:
                    rows.append(BatchRow(names[position], error=refused[position]))
                    continue
                staged_path = staged_of[position]
                record = records.get(str(staged_path.resolve())) or records.get(str(staged_path)) or {}
                if record.get("status") == "ok":
                    rows.append(BatchRow(names[position], record))
                else:
                    rows.append(BatchRow(names[position], record or None, recorded_error(
                        record.get("error_type"), str(record.get("error") or "not processed"), names[position],
                        max_duration_s=self._max_duration_s(),
                        server_paths=(str(staged_path.resolve()), str(staged_path)))))
            downloads = [str(write_results_csv(batch_dir, order=staged))]
            if (batch_dir / RESULTS_NAME).is_file():
                downloads.append(str(batch_dir / RESULTS_NAME))
            if any(row.error is None for row in rows) and (batch_dir / PARQUET_NAME).is_file():
                downloads.append(str(batch_dir / PARQUET_NAME))
            archive = zip_npy_embeddings(batch_dir, batch_dir / NPY_ZIP_NAME)
            if archive is not None:
                downloads.append(str(archive))
        except Exception as exc:
            return self.render_batch(BatchRun(error=self._error(exc, ", ".join(names))), lang)
        served = [str(f) for d in downloads if (f := servable_file(d, self.outputs_root)) is not None]
        parquet = next((d for d in served if Path(d).name == PARQUET_NAME), None)
        return self.render_batch(BatchRun(rows, time.perf_counter() - started, batch_dir, served, parquet), lang)

    def render_batch(self, shown: BatchRun | None, lang: str) -> BatchView:
        """The Batch tab's table and summary for ``shown`` in ``lang`` (and its downloads)."""
        columns = _columns(lang, "col_file", "col_emotion", "col_confidence", "col_duration", "col_status")
        if shown is None:
            return BatchView(_frame([], columns), "", None, None, None)
        if shown.error is not None:
            return BatchView(_frame([], columns), shown.error.html(lang), None, None, shown)
        rows = []
        for row in shown.rows:
            if row.error is not None:
                rows.append([row.name, "-", "-", "-", f"✗ {row.error.message(lang)}"])
            else:
                record = row.record or {}
                rows.append([row.name, emotion_name(record.get("emotion")), percent_text(record.get("confidence")),
                             record.get("duration_s"), text("status_ok", lang)])
        summary = text("batch_summary", lang).format(done=shown.done, failed=len(shown.rows) - shown.done,
                                                     seconds=shown.seconds, folder=shown.folder)
        return BatchView(_frame(rows, columns), f'<div id="batch-summary">{html.escape(summary)}</div>',
                         shown.downloads or None, shown.parquet, shown)

    def embeddings_for_explore(self, parquet: str | None) -> list[str] | None:
        """The batch run's ``embeddings.parquet`` for Explore, as Batch recorded it on the server (the
        download box holds Gradio's copies, elsewhere); only a file under the outputs root."""
        from ...jobs import PARQUET_NAME

        served = servable_file(parquet, self.outputs_root) if parquet else None
        return [str(served)] if served is not None and served.name == PARQUET_NAME else None

    # ------------------------------------------------------------------ compare
    def compare(self, file_a: str | None, file_b: str | None, model_name: str | None = None,
                lang: str = DEFAULT_LANGUAGE, progress: Any = None) -> CompareView:
        """Cosine similarity of two clips or ``.npy`` embeddings with both results and a reading."""
        from ...analytics import compare_inputs

        if not file_a or not file_b:
            return self.render_compare(CompareOutcome(error=PageMessage("error_no_files")), lang)
        names = (_display_name(file_a), _display_name(file_b))
        try:
            for path, name in zip((file_a, file_b), names):
                self._check_size(path, name)
            model = self._model(model_name, progress, lang)
            comparison = on_model_thread(compare_inputs, file_a, file_b, model, names=names)
        except Exception as exc:
            culprit = getattr(exc, "source", None)  # typed errors name the input they are about
            if culprit not in names:
                culprit = next((n for n in names if str(exc).startswith(n)), names[0])
            name = culprit
            return self.render_compare(CompareOutcome(error=self._error(exc, name, file_a, file_b)), lang)
        return self.render_compare(CompareOutcome(comparison), lang)

    def render_compare(self, shown: CompareOutcome | None, lang: str) -> CompareView:
        """The Compare tab's result for ``shown`` in ``lang`` (empty for ``None``)."""
        from ...analytics import CALIBRATED_DIM

        if shown is None:
            return CompareView("", None)
        if shown.error is not None or shown.comparison is None:
            return CompareView((shown.error or PageMessage("error_no_files")).html(lang), shown)
        comparison = shown.comparison

        def card(item: Any, letter: str) -> str:
            kind = text("kind_audio" if item.kind == "audio" else "kind_embedding", lang)
            shape = shape_text(item.shape)
            if item.emotion is not None:
                face = EMOJI.get(item.emotion, "")
                label = f'{html.escape(EMOTIONS_ZH.get(item.emotion, item.emotion))} · {html.escape(item.emotion)}'
                emotion = f'<div class="emoji">{face}</div><div>{label} {percent_text(item.confidence)}</div>'
            else:
                emotion = f"<div>{html.escape(text('no_emotion', lang))}</div>"
            return (f'<div class="compare-card" id="compare-{letter.lower()}"><b>{letter}: {html.escape(item.source)}</b>'
                    f"<div>{html.escape(kind)} {shape}</div>{emotion}</div>")

        note = ""
        if not comparison.calibrated:
            note = (f"<p><i>{html.escape(text('compare_uncalibrated', lang).format(dim=comparison.a.vector.shape[0], calibrated=CALIBRATED_DIM))}"
                    "</i></p>")
        return CompareView(
            f'<div class="compare-cards"><div>{card(comparison.a, "A")}</div><div>{card(comparison.b, "B")}</div></div>'
            f'<div id="compare-similarity">{html.escape(text("similarity", lang))}: {comparison.similarity:.4f}</div>'
            f'<p id="compare-reading">{html.escape(similarity_reading(comparison.reading, lang))}</p>'
            f'<p class="compare-note">{html.escape(text("compare_reading_note", lang))}</p>'
            f"{note}", shown)

    # ------------------------------------------------------------------ explore
    def explore(self, files: Sequence[str] | None, min_cluster_size: float = 0, colour_by: str = "cluster",
                model_name: str | None = None, lang: str = DEFAULT_LANGUAGE, progress: Any = None,
                cache: dict | None = None) -> ExploreView:
        """The map and clusters of a set of clips or of one embeddings Parquet file.

        ``min_cluster_size`` 0 lets the library choose it for the set's size. ``cache`` (the
        session's, returned in the view) keeps each clip's embedding by file and model, so drawing
        the same clips again (another cluster size) runs no model.
        """
        from ...analytics import EmbeddingIndex, cluster_embeddings, load_index

        cache = {} if cache is None else cache
        if not files:
            return self.render_explore(ExploreMap(error=PageMessage("error_no_files")), colour_by, lang, cache)
        skipped: list[PageMessage] = []
        embedded = 0
        try:
            parquet = [f for f in files if Path(f).suffix.lower() == ".parquet"]
            if parquet and len(files) > 1:
                raise _Refusal(PageMessage("explore_mixed"))
            if parquet:
                name = _display_name(parquet[0])
                try:
                    index = load_index(parquet[0])
                except Exception as exc:
                    raise _Refusal(self._error(exc, name, parquet[0])) from None
                index.paths = [Path(p).name for p in index.paths]
            else:
                model = self._model(model_name, progress, lang)
                rows, embedded = self._embed_for_explore(files, model, cache, progress, lang)
                good = [row for row in rows if isinstance(row, tuple)]
                skipped = [row for row in rows if isinstance(row, PageMessage)]
                if len(good) < 2:
                    raise _Refusal(PageMessage("error_explore_too_few", {"n": len(good)}))
                index = EmbeddingIndex.from_arrays([r[0] for r in good], np.stack([r[1] for r in good]),
                                                   [r[2] for r in good], [r[3] for r in good], "uploads")
            if len(index) < 2:
                raise _Refusal(PageMessage("error_explore_too_few", {"n": len(index)}))
            if progress is not None:
                progress(0.6, desc="UMAP + HDBSCAN")
            size = int(min_cluster_size or 0)
            report = cluster_embeddings(index, min_cluster_size=size if size >= 2 else None, seed=self.settings.seed)
        except Exception as exc:
            error = self._error(exc, _display_name(files[0]), *files)
            return self.render_explore(ExploreMap(skipped=skipped, error=error), colour_by, lang, cache)
        return self.render_explore(ExploreMap(index, report, skipped, size < 2, embedded), colour_by, lang, cache)

    def _embed_for_explore(self, files: Sequence[str], model: "Emotion2VecPlus", cache: dict, progress: Any,
                           lang: str) -> tuple[list[tuple | PageMessage], int]:
        """Per file: ``(name, embedding, emotion, confidence)`` or the message why it was left out."""
        rows: list[tuple | PageMessage | None] = [None] * len(files)
        todo: list[int] = []
        keys: list[tuple] = []
        for position, path in enumerate(files):
            name = _display_name(path)
            try:
                self._check_size(path, name)
                stat = os.stat(path)
            except _Refusal as refusal:
                rows[position] = refusal.error
                keys.append(())
                continue
            except OSError as exc:
                rows[position] = self._error(exc, name, path)
                keys.append(())
                continue
            key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, model.model_name)
            keys.append(key)
            if key in cache:
                rows[position] = (name, *cache[key])
            else:
                todo.append(position)
        if todo:
            if progress is not None:
                progress(0.2, desc=text("recognising", lang))
            results = on_model_thread(model.predict_batch, [files[p] for p in todo], extract_embedding=True,
                                      segments=False)
            for position, result in zip(todo, results):
                name = _display_name(files[position])
                if result.ok:
                    cache[keys[position]] = (result.embedding, result.emotion, result.confidence)
                    rows[position] = (name, *cache[keys[position]])
                    continue
                try:  # the batch gives the message only: once more on its own for the kind of error
                    on_model_thread(model.predict, files[position], name=name)
                except Exception as exc:
                    rows[position] = self._error(exc, name, files[position])
                else:
                    rows[position] = recorded_error(None, str(result.error), name,
                                                    max_duration_s=self._max_duration_s(),
                                                    server_paths=(str(files[position]),))
        return [row for row in rows if row is not None], len(todo)

    def render_explore(self, shown: ExploreMap | None, colour_by: str, lang: str,
                       cache: dict | None = None) -> ExploreView:
        """The Explore tab's map, cluster table and summary for ``shown`` in ``lang``."""
        columns = _columns(lang, "col_cluster", "col_size", "col_dominant", "col_members")
        if shown is None:
            return ExploreView(None, _frame([], columns), "", None, cache)
        skipped = "".join(f"<br>✗ {html.escape(error.message(lang))}" for error in shown.skipped)
        if shown.error is not None or shown.index is None or shown.report is None:
            error = shown.error or PageMessage("error_no_files")
            return ExploreView(None, _frame([], columns), error.html(lang) + skipped, shown, cache)
        index, report = shown.index, shown.report
        rows = []
        for entry in report.summary:
            members = [Path(index.paths[r]).name for r in np.flatnonzero(report.labels == entry["cluster"])]
            listed = ", ".join(members[:30]) + (f" … (+{len(members) - 30})" if len(members) > 30 else "")
            dominant = emotion_name(entry["dominant_emotion"])
            if entry["dominant_share"] is not None:
                dominant += f" ({entry['dominant_share'] * 100:.0f}%)"
            group = entry["cluster"] if entry["cluster"] != -1 else text(
                "noise" if report.clustered else "not_grouped", lang)
            rows.append([group, entry["size"], dominant, listed])
        if report.clustered:
            size = report.params["min_cluster_size"]
            summary = text("explore_summary", lang).format(n=len(index), dim=index.dim, clusters=report.n_clusters,
                                                           noise=report.n_noise)
            summary += "; " + (text("explore_size_auto", lang).format(size=size, n=len(index)) if shown.size_chosen
                               else text("explore_size_given", lang).format(size=size))
            if report.n_clusters == 0:
                summary += "<br>" + html.escape(text("explore_all_noise", lang))
        else:
            summary = text("explore_pca", lang).format(n=len(index), dim=index.dim)
        return ExploreView(self.explore_map(shown, colour_by, lang), _frame(rows, columns),
                           f'<div id="explore-summary">{summary}{skipped}</div>', shown, cache)

    def explore_map(self, shown: ExploreMap | None, colour_by: str, lang: str) -> Any:
        """The map of a kept Explore result, coloured by cluster or by emotion (no model, no clustering)."""
        if shown is None or shown.index is None or shown.report is None:
            return None
        return cluster_map_figure(shown.index, shown.report, colour_by, lang)

    # ------------------------------------------------------------------ live
    def live_chunk(self, chunk: str | None, session: "LiveSession | PageMessage | None", model_name: str | None = None,
                   lang: str = DEFAULT_LANGUAGE) -> "LiveSession | PageMessage | None":
        """The next piece of the microphone's audio (a WAV file Gradio stored) for this browser
        session's stream; returns the session to keep. Returns at once (the stream takes the audio
        on the model thread; :meth:`live_refresh` draws what it found). The first piece after
        :meth:`live_start` starts a new session; pieces that arrive after the recording stopped
        (Gradio may deliver one late) are ignored, so they never replace the stopped session before
        it is saved. Never raises: a problem is a message the page shows."""
        if not chunk:
            return session
        try:
            rate, samples = read_chunk(chunk)
        except Exception as exc:  # a piece the browser sent that cannot be read
            log.warning("live: unreadable microphone audio %s: %s", chunk, exc)
            error = PageMessage("error_live_chunk", {}, detail=str(exc))
            if isinstance(session, LiveSession):
                session.error, session.version = error, session.version + 1
                return session
            return error
        if isinstance(session, LiveSession) and session.closing:
            return session  # a late piece of the recording that stopped
        if isinstance(session, LiveSession) and time.monotonic() - session.last_feed > LIVE_IDLE_NEW_S:
            session.discard()  # the stop was missed and this is a new recording (what was saved stays saved)
            session = None
        if not isinstance(session, LiveSession):
            try:
                model = self._model(model_name, None, lang)
                if not model.has_head:
                    raise _Refusal(PageMessage("error_live_no_head", {"model": model.model_name}))
                session = LiveSession(model, rate, self.outputs_root, self.settings.live_max_s)
            except Exception as exc:
                return self._error(exc, "microphone")
        if rate != session.sample_rate:
            session.error = PageMessage("error_live_rate", {"rate": session.sample_rate, "new_rate": rate})
            session.version += 1
            return session
        session.feed(samples)
        return session

    def live_start(self, session: "LiveSession | PageMessage | None") -> "LiveSession | None":
        """Record was pressed: the next piece of audio starts a new session. The previous one (stopped)
        goes with its working files; what was saved of it stays in the outputs folder. Returns the
        state to keep: ``None``, or the session this recording's first pieces already started (they
        may be handled before this)."""
        if isinstance(session, LiveSession):
            if not session.closing and time.monotonic() - session.last_feed < LIVE_IDLE_NEW_S:
                return session
            session.discard()
        return None

    def live_refresh(self, session: "LiveSession | PageMessage | None", lang: str = DEFAULT_LANGUAGE) -> LiveView | None:
        """What the Live tab shows now, or ``None`` when nothing changed since it was last drawn."""
        if isinstance(session, LiveSession):
            version = session.version
            if version == session.drawn_version:
                return None
            view = self.render_live(session, lang)
            session.drawn_version = version
            return view
        return self.render_live(session, lang)

    def live_stop(self, session: "LiveSession | PageMessage | None", lang: str = DEFAULT_LANGUAGE) -> LiveView:
        """The recording stopped: the audio still queued is taken and the last utterance gets its final label."""
        if isinstance(session, LiveSession):
            session.close()
        return self.render_live(session, lang)

    def live_save(self, session: "LiveSession | PageMessage | None", lang: str = DEFAULT_LANGUAGE) -> LiveSaved:
        """Save the session so far as ``outputs/live_YYYYMMDD_HHMMSS/`` and offer its files."""
        from ...outputs import RUN_KINDS

        if not isinstance(session, LiveSession) or session.position_s <= 0:
            return LiveSaved(PageMessage("error_live_nothing").html(lang), None, session)
        try:
            folder = session.save()
        except Exception as exc:
            session.error = self._error(exc, "microphone")
            return LiveSaved(self.render_live(session, lang).status_html, None, session)
        files = [str(f) for name in RUN_KINDS["live"].files
                 if (f := servable_file(folder / name, self.outputs_root)) is not None]
        return LiveSaved(self.render_live(session, lang).status_html, files, session)

    def render_live(self, session: "LiveSession | PageMessage | None", lang: str) -> LiveView:
        """What the Live tab shows for ``session`` in ``lang`` (a placeholder before any recording)."""
        columns = _columns(lang, "col_span", "col_emotion", "col_confidence")
        if not isinstance(session, LiveSession):
            waiting = f'<div class="placeholder-box">{html.escape(text("live_waiting", lang))}</div>'
            status = session.html(lang) if isinstance(session, PageMessage) else ""
            return LiveView(waiting, None, _frame([], columns), status, session)
        shown = session.snapshot()
        return LiveView(_live_now_html(shown, lang),
                        live_figure(shown.hops, shown.finals, shown.labels, shown.position_s, LIVE_CHART_S, lang),
                        _frame([[f"{f.start_s:.2f}–{f.end_s:.2f}", emotion_name(f.emotion, f.emoji, f.emotion_zh),
                                 percent_text(f.confidence)] for f in reversed(shown.finals)], columns),
                        _live_status_html(shown, lang, self.settings.live_max_s), session)

    # ------------------------------------------------------------------ history
    def history(self, lang: str = DEFAULT_LANGUAGE, selected: str | None = None) -> HistoryView:
        """The newest 200 runs of every kind in the outputs folder, with links to their files;
        ``selected`` (a run folder name) stays picked if it is still there."""
        import gradio as gr

        from ...outputs import list_runs

        columns = _columns(lang, "col_time", "col_kind", "col_what", "col_emotion", "col_confidence", "col_links")
        rows = []
        choices = []
        for run in list_runs(self.outputs_root, limit=200):
            stamp = run.started.strftime("%Y-%m-%d %H:%M:%S")
            links = " ".join(f"[{f.name}](/gradio_api/file={f.as_posix()})" for f in run.files)
            kind = text(f"kind_{run.kind}", lang) if f"kind_{run.kind}" in TEXT else run.kind
            if run.kind == "live" and run.items is not None:
                what = text("history_live", lang).format(items=run.items, duration=run.duration_s or 0.0)
            elif run.items is not None:
                what = text("history_batch_files", lang).format(items=run.items, failed=run.failed or 0)
            else:
                what = run.source or "-"
            emotion = emotion_name(run.emotion, run.emoji, run.emotion_zh) if run.emotion else (
                f"✗ {run.error}" if run.error else "-")
            rows.append([stamp, kind, what, emotion, percent_text(run.confidence), links])
            choices.append((f"{stamp} · {kind} · {what}", run.run_dir.name))
        names = [value for _, value in choices]
        picked = selected if selected in names else (names[0] if names else None)
        return HistoryView(_frame(rows, columns), gr.update(choices=choices, value=picked), self.run_files(picked))

    def run_files(self, run_name: str | None) -> list[str] | None:
        """The files of one run folder (by its name under the outputs root) for download."""
        from ...outputs import find_run

        run = find_run(self.outputs_root, run_name)
        return [str(f) for f in run.files] if run is not None else None
