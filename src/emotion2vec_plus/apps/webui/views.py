"""The WebUI's callbacks (:class:`EmotionWebUI`: what each button does, callable without a browser),
the models it serves (:class:`ModelProvider`) and the views they return."""

from __future__ import annotations

import html
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Sequence

import numpy as np

from ...defaults import AUDIO_EXTENSIONS, SERVER_MAX_DURATION_S, WEBUI_MAX_UPLOAD_MB, WEBUI_PORT
from ...runtime.compute import on_model_thread
from ...errors import Emotion2VecError
from ...labels import EMOJI, EMOTIONS_ZH
from ...outputs import servable_file
from .text import DEFAULT_LANGUAGE, Language, similarity_reading, text
from .charts import TIMELINE_SMOOTH_S, cluster_map_figure, emotion_name, percent_text, scores_figure, timeline_figure

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from ...inference import Emotion2VecPlus
    from ...results import Result

log = logging.getLogger(__name__)


DEFAULT_PORT = WEBUI_PORT


DEFAULT_MAX_UPLOAD_MB = WEBUI_MAX_UPLOAD_MB


DEFAULT_MAX_DURATION_S = SERVER_MAX_DURATION_S


BATCH_PREFIX = "batch_"


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
            model = on_model_thread(Emotion2VecPlus, name, download=name == self.default_name, **self._options)
            for loaded in [n for n in self._models if n != self.default_name]:
                del self._models[loaded]  # keep the default plus one other model in memory
            self._models[name] = model
            return model


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


_PLACEHOLDER_START = '<div class="placeholder-box">'


def placeholder_html(lang: str) -> str:
    return f'{_PLACEHOLDER_START}{html.escape(text("result_placeholder", lang))}</div>'


def is_placeholder(value: Any) -> bool:
    """Whether the result box still shows :func:`placeholder_html` (in any language), not a result."""
    return isinstance(value, str) and value.startswith(_PLACEHOLDER_START)


def _user_message(exc: BaseException, lang: str) -> str:
    """A one-paragraph message for the page: library errors as they are, anything else briefly."""
    if isinstance(exc, (Emotion2VecError, ValueError, OSError)):
        return " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
    return text("error_unexpected", lang).format(kind=type(exc).__name__, message=str(exc)[:300])


def _frame(rows: list[list[Any]], columns: list[str]) -> "pd.DataFrame":
    import pandas as pd

    return pd.DataFrame(rows, columns=columns)


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

        from ...analytics import emotion_runs
        from ...outputs import EMBEDDING_NPY, PROCESSED_AUDIO, RESULT_JSON

        if result.emotion is not None:
            card = (f'<div id="result-card"><div id="result-emoji">{html.escape(result.emoji or "")}</div>'
                    f'<div id="result-label">{html.escape(result.emotion_zh or "")} · {html.escape(result.emotion)}</div>'
                    f'<div id="result-confidence">{html.escape(text("confidence", lang))} '
                    f'{percent_text(result.confidence)}</div></div>')
            scores = scores_figure(result.scores, lang)
        else:
            card = f'<div id="result-card"><div id="result-label">{html.escape(text("no_head", lang))}</div></div>'
            scores = None
        timeline = timeline_figure(result, lang) if result.emotion is not None else None
        runs = emotion_runs(result, smooth_s=TIMELINE_SMOOTH_S) if result.emotion is not None else []
        columns = [text(k, lang) for k in ("col_start", "col_end", "col_emotion", "col_confidence")]
        table = _frame([[round(r.start_s, 2), round(r.end_s, 2), emotion_name(r.emotion), percent_text(r.confidence)]
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
        from ...jobs import (LIST_EXTENSIONS, NPY_ZIP_NAME, PARQUET_NAME, RESULTS_NAME, read_results, run_batch,
                            stage_files, write_results_csv, zip_npy_embeddings)
        from ...outputs import create_run_dir

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
                    rows.append([names[position], emotion_name(record.get("emotion")), percent_text(record.get("confidence")),
                                 record.get("duration_s"), text("status_ok", lang)])
                else:
                    failed += 1
                    error = str(record.get("error") or "not processed")
                    error = error.replace(str(staged_path.resolve()), names[position]).replace(str(staged_path), names[position])
                    rows.append([names[position], "-", "-", "-", f"✗ {error}"])
            downloads = [str(write_results_csv(batch_dir, order=staged))]
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
        from ...jobs import PARQUET_NAME

        served = servable_file(parquet, self.outputs_root) if parquet else None
        return [str(served)] if served is not None and served.name == PARQUET_NAME else None

    # ------------------------------------------------------------------ compare
    def compare(self, file_a: str | None, file_b: str | None, model_name: str | None = None,
                lang: str = DEFAULT_LANGUAGE, progress: Any = None) -> str:
        """Cosine similarity of two clips or ``.npy`` embeddings with both results and a reading (HTML)."""
        from ...analytics import CALIBRATED_DIM, compare_inputs

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
                emotion = f'<div class="emoji">{face}</div><div>{label} {percent_text(item.confidence)}</div>'
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
        from ...analytics import EmbeddingIndex, cluster_embeddings, load_index

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

        from ...outputs import list_runs

        columns = [text(k, lang) for k in ("col_time", "col_file", "col_emotion", "col_confidence", "col_links")]
        runs = list_runs(self.outputs_root, limit=200)
        rows = []
        choices = []
        for run in runs:
            stamp = run.started.strftime("%Y-%m-%d %H:%M:%S")
            links = " ".join(f"[{f.name}](/gradio_api/file={f.as_posix()})" for f in run.files)
            emotion = emotion_name(run.emotion, run.emoji, run.emotion_zh) if run.emotion else (
                f"✗ {run.error}" if run.error else "-")
            rows.append([stamp, run.source or "-", emotion, percent_text(run.confidence), links])
            choices.append((f"{stamp} · {run.source or run.run_dir.name}", run.run_dir.name))
        first = choices[0][1] if choices else None
        return HistoryView(_frame(rows, columns), gr.update(choices=choices, value=first),
                           self.run_files(first))

    def run_files(self, run_name: str | None) -> list[str] | None:
        """The files of one run folder (by its name under the outputs root) for download."""
        from ...outputs import RUN_PREFIX, list_runs

        if not run_name or not run_name.startswith(RUN_PREFIX) or "/" in run_name or "\\" in run_name:
            return None
        for run in list_runs(self.outputs_root):
            if run.run_dir.name == run_name:
                return [str(f) for f in run.files]
        return None
