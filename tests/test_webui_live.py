"""The WebUI's Live tab (apps/webui/live.py and its callbacks in views.py), called directly with the
bundled model streaming real speech, cut into the 48 kHz WAV pieces a browser's microphone sends."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import speech_with_pauses

pytest.importorskip("gradio")

from emotion2vec_plus import Emotion2VecPlus  # noqa: E402
from emotion2vec_plus.apps.webui import EmotionWebUI, ModelProvider, WebUISettings  # noqa: E402
from emotion2vec_plus.apps.webui.charts import emotion_name  # noqa: E402
from emotion2vec_plus.apps.webui.live import LIVE_HOP_S, LIVE_WINDOW_S, LiveSession  # noqa: E402

BROWSER_RATE = 48000
PIECE_S = 0.5


@pytest.fixture(scope="module")
def compact() -> Emotion2VecPlus:
    return Emotion2VecPlus()


@pytest.fixture
def ui(compact, tmp_path) -> EmotionWebUI:
    return EmotionWebUI(ModelProvider("compact", preloaded=compact), WebUISettings(outputs_root=tmp_path / "outputs"))


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """Three real utterances with pauses at the browser's 48 kHz, as 16-bit samples would give them."""
    import soxr

    audio = soxr.resample(speech_with_pauses(), 16000, BROWSER_RATE, quality="HQ")
    return np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16).astype(np.float32) / 32768


def microphone_pieces(audio: np.ndarray, folder: Path, name: str) -> list[str]:
    """``audio`` as the WAV files (16-bit, 48 kHz, 0.5 s each) Gradio stores for a streaming microphone."""
    folder.mkdir(parents=True, exist_ok=True)
    step = int(PIECE_S * BROWSER_RATE)
    paths = []
    for index, start in enumerate(range(0, len(audio), step)):
        path = folder / f"{name}_{index:04d}.wav"
        sf.write(path, audio[start : start + step], BROWSER_RATE, subtype="PCM_16")
        paths.append(str(path))
    return paths


def streamed_directly(model: Emotion2VecPlus, audio: np.ndarray) -> list[dict]:
    """The events of the same audio, pushed in the same pieces straight into ``model.stream`` (the API)."""
    stream = model.stream(sample_rate=BROWSER_RATE, hop_s=LIVE_HOP_S, window_s=LIVE_WINDOW_S, embeddings=True)
    events = []
    step = int(PIECE_S * BROWSER_RATE)
    for start in range(0, len(audio), step):
        events += stream.push(audio[start : start + step])
    events += stream.close()
    return [json.loads(json.dumps(e.to_dict(include_embedding=False))) for e in events]


def saved_events(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "events.jsonl").read_text(encoding="utf-8").splitlines()]


def test_the_live_tab_shows_what_the_stream_finds_and_saves_exactly_that(ui, compact, speech, tmp_path):
    session = None
    for path in microphone_pieces(speech, tmp_path / "mic", "a"):
        session = ui.live_chunk(path, session, None, "en")
        assert isinstance(session, LiveSession)
    session.wait()
    view = ui.live_refresh(session, "en")
    assert ui.live_refresh(session, "en") is None  # nothing new: the timer draws nothing
    assert "Listening:" in view.status_html
    # the chart: class curves of the provisional events over the last 60 s, the finals as a band
    curves = [t for t in view.chart.data if t.type == "scatter"]
    assert len(curves) >= 2 and view.chart.layout.title.text == "The last 60 seconds"
    assert len(curves[0].x) == pytest.approx(len(speech) / BROWSER_RATE / LIVE_HOP_S, abs=2)

    stopped = ui.live_stop(session, "en")
    assert "Stopped:" in stopped.status_html and session.closed
    expected = streamed_directly(compact, speech)
    finals = [e for e in expected if e["type"] == "utterance"]
    assert len(finals) == 3
    # the list of utterances, newest first, as the stream gave them
    table = stopped.finals_table
    assert list(table.columns) == ["time (s)", "emotion", "confidence"]
    assert table["emotion"].tolist() == [emotion_name(f["emotion"], f["emoji"], f["emotion_zh"]) for f in finals[::-1]]
    assert table["time (s)"].tolist() == [f"{f['start_s']:.2f}–{f['end_s']:.2f}" for f in finals[::-1]]
    bands = [t for t in stopped.chart.data if t.type == "bar"]
    assert sum(len(t.x) for t in bands) == 3
    # the current label: the last provisional event's, or silence after the last pause
    last = [e for e in expected if e["type"] in ("emotion", "silence")][-1]
    assert ("silence (no speech)" in stopped.now_html) == (last["type"] == "silence")

    saved = ui.live_save(session, "en")
    folder = Path(saved.files[0]).parent
    assert folder.parent == tmp_path / "outputs" and folder.name.startswith("live_")
    assert [Path(f).name for f in saved.files] == ["processed_audio.wav", "events.jsonl", "utterances.npy"]
    assert f"Saved to {folder.name}: 3 utterances" in saved.status_html
    assert saved_events(folder) == expected  # every event, exactly as the API streams it
    assert np.load(folder / "utterances.npy").shape == (3, compact.embed_dim)
    assert sf.info(str(folder / "processed_audio.wav")).duration == pytest.approx(len(speech) / BROWSER_RATE, abs=0.01)
    assert ui.live_save(session, "en").files == saved.files  # nothing new: the same folder

    history = ui.history("en")
    row = history.table.iloc[0]
    assert folder.name in " ".join(map(str, row.tolist())) and "live" in row.tolist()
    assert "3 utterances" in " ".join(map(str, row.tolist()))

    # the page's language switch redraws the tab in Chinese
    chinese = ui.render_live(session, "zh")
    assert list(chinese.finals_table.columns) == ["时间 (s)", "情感", "置信度"]
    assert "已停止" in chinese.status_html and "已保存到" in chinese.status_html
    assert chinese.chart.layout.title.text == "最近 60 秒"

    # a piece that arrives after the stop is not taken and starts nothing: the stopped session stays
    late, fresh = microphone_pieces(speech[:BROWSER_RATE], tmp_path / "mic2", "b")
    assert ui.live_chunk(late, session, None, "en") is session
    assert session.position_s == pytest.approx(len(speech) / BROWSER_RATE, abs=0.01)
    # Record again: a new session; the stopped one's working files go, the saved run stays
    work = session.recorder.folder
    assert ui.live_start(session) is None and not work.exists() and folder.is_dir()
    again = ui.live_chunk(fresh, None, None, "en")
    assert isinstance(again, LiveSession) and again is not session
    assert ui.live_start(again) is again  # the recording's first pieces may come before its start
    again.discard()


def test_two_browser_sessions_at_once_do_not_mix_their_streams(ui, compact, speech, tmp_path):
    quiet = np.zeros_like(speech)
    spoken = microphone_pieces(speech, tmp_path / "mic", "speech")
    silent = microphone_pieces(quiet, tmp_path / "mic", "silence")
    first = second = None
    for speaking, silence in zip(spoken, silent):  # the pieces arrive interleaved, as from two tabs
        first = ui.live_chunk(speaking, first, None, "en")
        second = ui.live_chunk(silence, second, None, "zh")
    ui.live_stop(first, "en")
    shown_silent = ui.live_stop(second, "zh")
    assert first is not second
    assert len(shown_silent.finals_table) == 0 and "静音" in shown_silent.now_html
    one, two = Path(ui.live_save(first, "en").files[0]).parent, Path(ui.live_save(second, "zh").files[0]).parent
    assert one != two
    assert saved_events(one) == streamed_directly(compact, speech)
    assert {e["type"] for e in saved_events(two)} == {"silence"}
    assert not (two / "utterances.npy").exists()
    assert np.all(sf.read(two / "processed_audio.wav")[0] == 0)


def test_live_problems_are_messages_in_the_page(compact, speech, tmp_path):
    ui = EmotionWebUI(ModelProvider("compact", preloaded=compact),
                      WebUISettings(outputs_root=tmp_path / "outputs", live_max_s=2.0))
    assert "Nothing to save yet" in ui.live_save(None, "en").status_html
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x24\x80\x00\x00WAVEfmt " + bytes(40))
    message = ui.live_chunk(str(broken), None, None, "en")
    assert "could not be read and was skipped" in ui.render_live(message, "en").status_html
    assert "无法读取" in ui.render_live(message, "zh").status_html

    session = None
    for path in microphone_pieces(speech[: 3 * BROWSER_RATE], tmp_path / "mic", "a"):
        session = ui.live_chunk(path, session, None, "en")
    status = ui.live_stop(session, "en").status_html
    assert session.position_s == pytest.approx(2.0, abs=0.001)  # the server's limit: later audio is not taken
    assert "later audio is not recognised" in status and "--live-max-minutes" in status

    other_rate = tmp_path / "8k.wav"
    sf.write(other_rate, np.zeros(4000, np.float32), 8000, subtype="PCM_16")
    fresh = ui.live_chunk(microphone_pieces(speech[:BROWSER_RATE], tmp_path / "mic2", "b")[0], None, None, "en")
    assert ui.live_chunk(str(other_rate), fresh, None, "en") is fresh
    assert "rate changed from 48000 Hz to 8000 Hz" in ui.render_live(fresh, "en").status_html
    fresh.discard()
    session.discard()


def test_audio_that_never_reached_the_server_is_reported(ui, speech, tmp_path):
    import html
    import re
    import time

    first, second = microphone_pieces(speech[:BROWSER_RATE], tmp_path / "mic", "a")  # two 0.5 s pieces
    session = ui.live_chunk(first, None, None, "en")
    assert "did not reach the server" not in ui.render_live(session, "en").status_html
    time.sleep(2.5)  # the pieces the browser sent meanwhile never arrived
    session = ui.live_chunk(second, session, None, "en")
    status = html.unescape(ui.render_live(session, "en").status_html)
    missed = re.search(r"([\d.]+) s of the ([\d.]+) s recorded did not reach the server", status)
    assert missed and float(missed[1]) >= 2.0 and float(missed[2]) >= 3.0
    assert "没有到达服务器" in ui.render_live(session, "zh").status_html
    session.discard()
