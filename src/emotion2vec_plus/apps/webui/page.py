"""The Gradio page: one builder per tab over :class:`~.views.EmotionWebUI`, the language switch
(Gradio's own texts included), CSS and launch arguments."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Callable


from .text import DEFAULT_LANGUAGE, LANGUAGE_NAMES, LANGUAGES, Language, language_of_tag, pick_language, text
from .live import LIVE_REFRESH_S, LIVE_STREAM_EVERY_S, discard_session
from .views import AUDIO_FILE_TYPES, EmotionWebUI, placeholder_html

if TYPE_CHECKING:  # pragma: no cover
    import gradio as gr



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
#live-card { text-align: center; padding: 10px 8px; }
#live-emoji {
  font-family: "Noto Color Emoji", "Apple Color Emoji", "Segoe UI Emoji", "Twemoji Mozilla", sans-serif;
  font-size: 80px; line-height: 1.1;
}
#live-emoji.live-quiet { opacity: 0.45; }
#live-label { font-size: 26px; font-weight: 600; margin-top: 4px; }
#live-card.silent #live-label { font-weight: 400; opacity: 0.7; }
#live-confidence { font-size: 19px; opacity: 0.85; }
#live-window { font-size: 13px; opacity: 0.6; margin-top: 2px; }
#live-status { font-size: 14px; overflow-wrap: anywhere; }
.compare-card { text-align: center; padding: 8px; border-radius: 8px; border: 1px solid rgba(128,128,128,0.3); }
.compare-card .emoji { font-size: 56px; }
#compare-similarity { font-size: 36px; font-weight: 700; text-align: center; }
#compare-reading { text-align: center; }
.compare-note { text-align: center; font-size: 0.9em; opacity: 0.75; }
.compare-cards { display: flex; flex-wrap: wrap; gap: 12px; }
.compare-cards > div { flex: 1 1 220px; min-width: 0; overflow-wrap: anywhere; }
.error-detail { margin-top: 6px; font-size: 0.9em; opacity: 0.8; overflow-wrap: anywhere; }
/* Download boxes are read-only: no "remove this file" buttons. */
.read-only-files .label-clear-button { display: none; }
/* Table headers break between words only (never "confi-dence"); a cell's long word breaks only if it must. */
.wrapping-table th, .wrapping-table th * { word-break: keep-all; overflow-wrap: normal; hyphens: none; }
.wrapping-table .body-cell, .wrapping-table .body-cell * { overflow-wrap: break-word; }
/* Phone width: every tab on its own row if need be (Tabs wrap), tables in a smaller proportional font
   (Gradio sizes columns by their content, so more of them fit) and scrolled sideways with a visible bar
   when they are still wider; the charts' toolbars hidden (they covered the block labels). */
@media (max-width: 640px) {
  .wrapping-table th, .wrapping-table th *, .wrapping-table td, .wrapping-table td *,
  .wrapping-table .body-cell, .wrapping-table .body-cell * { font-size: 12px; font-family: var(--font); }
  .wrapping-table .cell-wrap { padding: 4px 5px; }
  .wrapping-table .virtual-table-viewport { scrollbar-width: thin; scrollbar-color: #999 transparent; }
  .js-plotly-plot .modebar-container { display: none; }
  #result-emoji { font-size: 64px; }
  #live-emoji { font-size: 60px; }
  #compare-similarity { font-size: 28px; }
}
"""


#: Gradio's own texts (the drop zone's "Drop Audio Here", "Click to Upload", ...) follow the browser's
#: locale, not the page's language switch. Its i18n module exports ``changeLocale``; this file name
#: (hashed per Gradio release) is looked up in the installed Gradio, and the module imported by URL
#: is the very instance the page runs, so switching it relabels every built-in text.
_GRADIO_LOCALES: dict[str, str] = {"zh": "zh-CN", "en": "en"}


#: The bundled sample clips (src/emotion2vec_plus/samples), offered as examples and served to the page.
SAMPLES_DIR = Path(__file__).resolve().parents[2] / "samples"


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


#: Client-side: once a tab is shown, the window "resizes", and every chart refits its box.
_FIT_CHARTS_JS = "() => { setTimeout(() => window.dispatchEvent(new Event('resize')), 60); }"


def _granularity_choices(lang: str) -> list[tuple[str, str]]:
    return [(text("granularity_utterance", lang), "utterance"), (text("granularity_frame", lang), "frame")]


def _colour_choices(lang: str) -> list[tuple[str, str]]:
    return [(text("colour_cluster", lang), "cluster"), (text("colour_emotion", lang), "emotion")]


def _samples() -> list[Path]:
    folder = SAMPLES_DIR
    return sorted(folder.glob("*.wav"))


class _Page:
    """Builds the Gradio page over ``ui``'s callbacks, one method per tab; every component whose text
    depends on the language is registered in :attr:`relabel` (component, update for a language), and
    every tab that shows results registers in :attr:`redraw` how to draw them again in a language."""

    def __init__(self, ui: EmotionWebUI) -> None:
        import gradio as gr

        self.gr = gr
        self.ui = ui
        self.start_lang: Language = ui.settings.language or DEFAULT_LANGUAGE
        self.relabel: list[tuple[Any, Callable[[str], Any]]] = []
        self.redraw: list[tuple[list[Any], list[Any], Callable[..., Any]]] = []
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

    def redraws(self, inputs: list[Any], outputs: list[Any], draw: Callable[..., Any]) -> None:
        """When the language changes, ``draw(lang, *inputs)`` gives new values for ``outputs``
        (what a tab shows, drawn again from what it keeps)."""
        self.redraw.append((inputs, outputs, draw))

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
                return self.label(gr.Radio([(LANGUAGE_NAMES[code], code) for code in LANGUAGES], value=self.start_lang,
                                           label=self.T("language"), elem_id="language"), "language")

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
                    result_html = gr.HTML(placeholder_html(self.start_lang), elem_id="result")
                    notice = gr.Markdown("", visible=False, elem_id="embedding-notice")
                    downloads = self.label(gr.File(label=self.T("downloads"), file_count="multiple", interactive=False,
                                                   elem_id="downloads", elem_classes=["read-only-files"]), "downloads")
                    scores = self.label(gr.Plot(label=self.T("scores_plot"), elem_id="scores-plot"), "scores_plot")
                    timeline = self.label(gr.Plot(label=self.T("timeline_plot"), visible=False, elem_id="timeline-plot"),
                                     "timeline_plot")
                    segments = self.label(gr.Dataframe(label=self.T("segments"), visible=False, interactive=False,
                                                       wrap=True, elem_id="segments", elem_classes=["wrapping-table"]),
                                          "segments")
                    log_box = self.label(gr.Textbox(label=self.T("log"), lines=7, interactive=False, elem_id="log"), "log")
            shown = gr.State(None)
            start.click(
                lambda a, g, e, m, lang, progress=gr.Progress(): self.ui.recognise(a, g, e, m, lang, progress),
                inputs=[audio, granularity, embedding, model, language],
                outputs=[result_html, scores, timeline, segments, notice, downloads, log_box, shown],
            )

            def draw(lang: str, kept: Any) -> tuple:
                view = self.ui.render_recognition(kept, lang)
                # The same result: what is shown stays shown. Re-sending visible=True remounts a chart,
                # which then takes Plotly's default width instead of its box's.
                timeline, segments = ({key: value for key, value in update.items() if key != "visible"}
                                      for update in (view.timeline_plot, view.segments_table))
                return (view.result_html, view.scores_plot, timeline, segments, view.embedding_notice, view.log_text)

            self.redraws([shown], [result_html, scores, timeline, segments, notice, log_box], draw)
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
                                                    interactive=False, elem_id="batch-downloads",
                                                    elem_classes=["read-only-files"]), "batch_downloads")
                    batch_to_explore = self.value(gr.Button(self.T("batch_to_explore"), elem_id="batch-to-explore"),
                                             "batch_to_explore")
                with gr.Column(scale=2):
                    batch_table = self.label(gr.Dataframe(label=self.T("batch_table"), interactive=False, wrap=True,
                                                     max_height=1200, pinned_columns=1, elem_id="batch-table",
                                                     elem_classes=["wrapping-table"]), "batch_table")
            batch_parquet = gr.State(None)  # server side: the client cannot point Explore elsewhere
            shown = gr.State(None)
            batch_start.click(
                lambda f, m, lang, progress=gr.Progress(): self.ui.run_batch_job(f, m, lang, progress),
                inputs=[batch_files, model, language],
                outputs=[batch_table, batch_summary, batch_downloads, batch_parquet, shown],
            )
            self.redraws([shown], [batch_table, batch_summary],
                         lambda lang, kept: self.ui.render_batch(kept, lang)[:2])
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
            shown = gr.State(None)
            compare_start.click(
                lambda a, b, m, lang, progress=gr.Progress(): self.ui.compare(a, b, m, lang, progress),
                inputs=[file_a, file_b, model, language], outputs=[compare_html, shown],
            )
            self.redraws([shown], [compare_html], lambda lang, kept: self.ui.render_compare(kept, lang).html)

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
                    min_cluster = self.label(gr.Slider(0, 50, value=0, step=1, label=self.T("explore_min_cluster"),
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
                                                            column_widths=["17%", "11%", "28%", "44%"],
                                                            elem_id="explore-table", elem_classes=["wrapping-table"]),
                                               "explore_table")
            shown = gr.State(None)
            cache = gr.State({})  # this session's embeddings by file: drawing the same clips again runs no model
            explore_start.click(
                lambda f, n, c, m, lang, kept, progress=gr.Progress(): self.ui.explore(f, n, c, m, lang, progress, kept),
                inputs=[explore_files, min_cluster, colour_by, model, language, cache],
                outputs=[explore_map, explore_table, explore_summary, shown, cache],
            )
            # Colouring the map another way only redraws it from what is kept.
            colour_by.input(lambda c, lang, kept: self.ui.explore_map(kept, c, lang) if kept is not None else gr.update(),
                            inputs=[colour_by, language, shown], outputs=[explore_map], show_progress="hidden")
            self.redraws([shown, colour_by], [explore_map, explore_table, explore_summary],
                         lambda lang, kept, c: self.ui.render_explore(kept, c, lang)[:3])
            batch_to_explore.click(
                lambda parquet: (self.ui.embeddings_for_explore(parquet), gr.Tabs(selected="explore")),
                inputs=[batch_parquet], outputs=[explore_files, tabs],
            )

    def live_tab(self, model: Any, language: Any) -> None:
        """The microphone streamed to one :class:`~.live.LiveSession` per browser session (its
        ``gr.State``), every half second; the stop gives the last utterance's final; Save session."""
        gr, ui = self.gr, self.ui
        with self.label(gr.Tab(self.T("tab_live"), id="live", elem_id="tab-live", render_children=True), "tab_live"):
            self.value(gr.Markdown(self.T("live_intro")), "live_intro")
            with gr.Row():
                with gr.Column(scale=1, min_width=280):
                    microphone = self.label(gr.Audio(sources=["microphone"], streaming=True, type="filepath",
                                                     label=self.T("live_mic"), elem_id="live-mic"), "live_mic")
                    first = ui.render_live(None, self.start_lang)
                    now = gr.HTML(first.now_html, elem_id="live-now")
                    status = gr.HTML(first.status_html, elem_id="live-status-box")
                    save = self.value(gr.Button(self.T("live_save"), variant="primary", elem_id="live-save"), "live_save")
                    files = self.label(gr.File(label=self.T("live_files"), file_count="multiple", interactive=False,
                                               elem_id="live-files", elem_classes=["read-only-files"]), "live_files")
                with gr.Column(scale=2):
                    chart = self.label(gr.Plot(label=self.T("live_chart"), elem_id="live-chart"), "live_chart")
                    finals = self.label(gr.Dataframe(first.finals_table, label=self.T("live_finals"), interactive=False,
                                                     wrap=True, max_height=600, elem_id="live-finals",
                                                     elem_classes=["wrapping-table"]), "live_finals")
            # One session per browser session; its working files go when Gradio forgets the session.
            session = gr.State(None, delete_callback=discard_session)
            refresh = gr.Timer(LIVE_REFRESH_S, active=False)
            shown = [now, chart, finals, status]
            # The audio callback only queues (a callback that waited would lose microphone audio); the
            # timer draws what the stream found, while recording.
            microphone.stream(ui.live_chunk, inputs=[microphone, session, model, language], outputs=[session],
                              stream_every=LIVE_STREAM_EVERY_S, time_limit=ui.settings.live_max_s + 60,
                              concurrency_limit=ui.settings.live_sessions)
            microphone.start_recording(lambda kept: (ui.live_start(kept), gr.Timer(active=True)), inputs=[session],
                                       outputs=[session, refresh], show_progress="hidden")

            def draw_if_changed(kept: Any, lang: str) -> tuple:
                view = ui.live_refresh(kept, lang)
                return tuple(view)[:4] if view is not None else (gr.skip(),) * 4

            refresh.tick(draw_if_changed, inputs=[session, language], outputs=shown, show_progress="hidden",
                         concurrency_limit=ui.settings.live_sessions, concurrency_id="live-refresh")
            microphone.stop_recording(lambda kept, lang: (*tuple(ui.live_stop(kept, lang))[:4], gr.Timer(active=False)),
                                      inputs=[session, language], outputs=[*shown, refresh], show_progress="hidden",
                                      concurrency_limit=ui.settings.live_sessions, concurrency_id="live-stop")
            save.click(lambda kept, lang: tuple(ui.live_save(kept, lang)), inputs=[session, language],
                       outputs=[status, files, session])
            self.redraws([session], [now, chart, finals, status], lambda lang, kept: tuple(ui.render_live(kept, lang))[:4])

    def history_tab(self, language: Any) -> None:
        gr = self.gr
        with self.label(gr.Tab(self.T("tab_history"), id="history", elem_id="tab-history"), "tab_history") as history_tab:
            self.value(gr.Markdown(self.T("history_intro")), "history_intro")
            history_refresh = self.value(gr.Button(self.T("history_refresh"), elem_id="history-refresh"), "history_refresh")
            history_table = self.label(gr.Dataframe(label=self.T("history_table"), interactive=False, wrap=True,
                                                    datatype=["str", "str", "str", "str", "str", "markdown"],
                                                    pinned_columns=1, elem_id="history-table",
                                                    elem_classes=["wrapping-table"]),
                                       "history_table")
            with gr.Row():
                run_picker = self.label(gr.Dropdown([], label=self.T("history_pick"), elem_id="history-pick"), "history_pick")
                run_files = self.label(gr.File(label=self.T("history_files"), file_count="multiple", interactive=False,
                                               elem_id="history-files", elem_classes=["read-only-files"]),
                                       "history_files")
            history_outputs = [history_table, run_picker, run_files]
            history_refresh.click(self.ui.history, inputs=[language, run_picker], outputs=history_outputs)
            history_tab.select(self.ui.history, inputs=[language, run_picker], outputs=history_outputs)
            run_picker.input(self.ui.run_files, inputs=[run_picker], outputs=[run_files])
            self.redraws([run_picker], [history_table, run_picker],
                         lambda lang, picked: self.ui.history(lang, picked)[:2])

    def follow_language(self, demo: Any, language: Any, recognise: SimpleNamespace) -> None:
        """Relabel every registered component and draw again what the tabs show when the language
        changes, keep Gradio's own texts in step, and set the language at page load from ``?lang=``
        or the browser."""
        gr = self.gr
        audio, examples, result_html = recognise.audio, recognise.examples, recognise.result_html
        components = [component for component, _ in self.relabel]
        language.change(lambda lang: [make(lang) for _, make in self.relabel], inputs=[language], outputs=components)
        for inputs, outputs, draw in self.redraw:
            language.change(draw, inputs=[language, *inputs], outputs=outputs, show_progress="hidden")
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
            browser_lang = language_of_tag(header.split(",")[0])  # Gradio's locale: the first preference
            return gr.update() if browser_lang == lang else gr.update(visible=False)

        hide_unless_browser_language.__annotations__["request"] = gr.Request  # this module defers annotations
        sync_gradio_texts(language.input(lambda: None, inputs=None, outputs=None, queue=False, show_progress="hidden"),
                          hide_always)
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
        # Tabs that do not fit the width wrap onto another row (a phone shows every tab, none behind "...").
        with gr.Tabs(elem_id="tabs", overflow_behavior="wrap") as tabs:
            recognise = page.recognise_tab(language)
            batch = page.batch_tab(recognise.model, language)
            page.compare_tab(recognise.model, language)
            page.explore_tab(recognise.model, language, tabs, batch)
            page.live_tab(recognise.model, language)
            page.history_tab(language)
        # A chart drawn while its tab was hidden (a language switch redraws every tab) takes Plotly's
        # default width; the charts follow the window's size, so a tab shown again tells them to fit.
        tabs.change(None, js=_FIT_CHARTS_JS, queue=False, show_progress="hidden")
        page.follow_language(demo, language, recognise)
    return demo


def launch_kwargs(ui: EmotionWebUI) -> dict[str, Any]:
    """Arguments for ``Blocks.launch``: upload size limit, the folders the page may serve, CSS."""
    return {
        "max_file_size": f"{ui.settings.max_upload_mb:g}mb",
        "allowed_paths": [str(ui.outputs_root), str(SAMPLES_DIR)],
        "css": CSS,
        "share": False,
        "ssr_mode": False,
        "show_error": False,
    }
