"""The WebUI: a Gradio page (``emotion2vec-plus webui``, http://127.0.0.1:7860 by default).

Modules: :mod:`.views` (the callbacks, :class:`EmotionWebUI`, and the models it serves),
:mod:`.charts` (what is drawn), :mod:`.live` (the Live tab's sessions), :mod:`.page` (the Gradio page, one builder per tab) and
:mod:`.text` (Chinese and English text). Names below are imported on first use, so the command
line can read :data:`.text.LANGUAGES` without loading Gradio or PyTorch.

A thin layer over the Python API. Tabs:

- **Recognise** — one clip (upload or microphone) → emoji, bilingual label, confidence, a bar chart
  of every class score, for frame granularity or long audio a timeline and a segments table; the
  run is saved as ``outputs/outputs_YYYYMMDD_HHMMSS/`` (:func:`emotion2vec_plus.outputs.write_run`)
  and its files offered for download; a processing log.
- **Batch** — many files → :func:`emotion2vec_plus.jobs.run_batch` into ``outputs/batch_*/``, a
  table and downloads (CSV, JSONL, Parquet, zip of ``.npy``).
- **Compare** — two clips or ``.npy`` embeddings → :func:`emotion2vec_plus.analytics.compare_inputs`.
- **Explore** — clips or an embeddings Parquet → :func:`emotion2vec_plus.analytics.cluster_embeddings`.
- **Live** — the streaming microphone → one :class:`.live.LiveSession` per browser session over
  ``model.stream`` (:mod:`emotion2vec_plus.streaming`); saved as ``outputs/live_*/``
  (:class:`emotion2vec_plus.outputs.LiveRecorder`).
- **History** — earlier runs of every kind (recognitions, batch jobs, live sessions) from
  :func:`emotion2vec_plus.outputs.list_runs`.

The functions behind the buttons are methods of :class:`EmotionWebUI` and can be called directly
(the tests do). They never raise for bad input: the message is shown in the page, worded by
:mod:`.messages` in the page's language. Interface text is in Chinese and English (:mod:`.text`)
with a switch that also redraws what the tabs show (``EmotionWebUI.render_*``); emotion labels are
always bilingual.
Uploads are read where Gradio stored them; everything written goes to server-chosen folders
under the outputs root (upload names only appear, sanitised, as names inside those folders).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    **dict.fromkeys(["DEFAULT_PORT", "EmotionWebUI", "ModelProvider", "WebUISettings", "RecognitionView", "BatchView",
                     "CompareView", "ExploreView", "HistoryView"], "views"),
    **dict.fromkeys(["emotion_name", "scores_figure", "timeline_figure", "cluster_map_figure"], "charts"),
    **dict.fromkeys(["build_app", "launch_kwargs", "CSS"], "page"),
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
