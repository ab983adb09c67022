"""The WebUI's callbacks (the functions behind the buttons), called directly with the bundled compact model."""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import soundfile as sf

from conftest import BUNDLED_DIM  # noqa: E402

pytest.importorskip("gradio")

from emotion2vec_plus import Emotion2VecPlus, load_embedding  # noqa: E402
from emotion2vec_plus.apps.webui import (  # noqa: E402
    EmotionWebUI,
    ModelProvider,
    WebUISettings,
    build_app,
    emotion_name,
    launch_kwargs,
)
from emotion2vec_plus.apps.webui.text import TEXT, pick_language, similarity_reading, text  # noqa: E402

SAMPLES = Path(__file__).resolve().parent.parent / "src" / "emotion2vec_plus" / "samples"
EMOJIS = "😠🤢😨😊😐🤔😢😲❓"


@pytest.fixture(scope="module")
def compact() -> Emotion2VecPlus:
    return Emotion2VecPlus(max_duration_s=20.0)


@pytest.fixture
def ui(compact, tmp_path) -> EmotionWebUI:
    provider = ModelProvider("compact", max_duration_s=20.0, preloaded=compact)
    return EmotionWebUI(provider, WebUISettings(outputs_root=tmp_path / "outputs", max_upload_mb=2.0))


@pytest.fixture
def uploads(tmp_path) -> Path:
    """Files as the browser would upload them (Gradio keeps the original name in its own folder)."""
    folder = tmp_path / "gradio-upload"
    folder.mkdir()
    for sample in SAMPLES.glob("*.wav"):
        shutil.copy(sample, folder / sample.name)
    (folder / "broken.wav").write_bytes(b"RIFF\x24\x80\x00\x00WAVEfmt \x10\x00\x00\x00" + bytes(range(256)))
    (folder / "empty.mp3").write_bytes(b"")
    (folder / "notes.wav").write_text("these are meeting notes, not audio\n" * 20)
    sf.write(folder / "long.flac", np.zeros(16000 * 25, np.float32) + 0.01, 16000)  # 25 s > the 20 s limit
    sf.write(folder / "huge.wav", np.random.default_rng(0).uniform(-0.5, 0.5, 16000 * 70).astype(np.float32),
             16000, subtype="FLOAT")  # 4.5 MB > the 2 MB upload limit
    return folder


def test_every_text_has_both_languages_and_the_language_is_picked_sensibly():
    assert all(set(entry) == {"zh", "en"} and entry["zh"] and entry["en"] for entry in TEXT.values())
    assert text("start", "en") == "Recognise" and text("start", "zh") == "开始识别"
    assert pick_language("en", "zh-CN") == "en"
    assert pick_language(None, "fr-FR,zh-TW;q=0.8,en;q=0.5") == "zh"
    assert pick_language(None, "en-US,en;q=0.9") == "en"
    assert pick_language(None, None) == "zh" and pick_language("xx", "de", "zh") == "en"
    from emotion2vec_plus.analytics import SIMILARITY_BANDS, describe_similarity

    assert describe_similarity(0.41) == SIMILARITY_BANDS[2][1]
    assert similarity_reading(describe_similarity(0.41), "zh") == "相同情感的片段对约三分之一能达到，不同情感的约十四分之一：略微提示情感相同"
    assert all(similarity_reading(reading, "zh") != reading for _, reading in SIMILARITY_BANDS)
    assert emotion_name("happy") == "😊 开心 happy" and emotion_name("hesitant") == "hesitant" and emotion_name(None) == "-"


def test_recognise_shows_emoji_bilingual_label_confidence_scores_and_log(ui, uploads):
    view = ui.recognise(str(uploads / "en_neutral_1.wav"), "utterance", False, "compact", "en")
    assert '<div id="result-emoji">' in view.result_html
    emoji = view.result_html.split('<div id="result-emoji">')[1][0]
    assert emoji in EMOJIS
    label = view.result_html.split('<div id="result-label">')[1].split("</div>")[0]
    zh, en = label.split(" · ")
    assert en in TEXT or en.isascii() and zh and not zh.isascii()
    assert "confidence " in view.result_html and "%" in view.result_html
    bars = view.scores_plot.data[0]
    assert len(bars.x) == 9 and sum(bars.x) == pytest.approx(100, abs=0.01)
    assert view.timeline_plot["visible"] is False and view.segments_table["visible"] is False
    assert view.embedding_notice["visible"] is False
    assert [Path(f).name for f in view.downloads] == ["result.json", "processed_audio.wav"]
    run = Path(view.downloads[0]).parent
    assert run.parent == ui.outputs_root and run.name.startswith("outputs_")
    saved = json.loads((run / "result.json").read_text(encoding="utf-8"))
    assert saved["source"] == "en_neutral_1.wav" and saved["emotion"] == en
    for line in ("file: en_neutral_1.wav", "original format: wav, 16000 Hz, 1 channel(s), 3.10 s",
                 f"model: compact ({BUNDLED_DIM}-d)", "time taken: "):
        assert line in view.log_text


def test_the_log_names_an_m4a_upload_m4a(ui, uploads, tmp_path):
    import av

    samples, rate = sf.read(uploads / "en_neutral_1.wav", dtype="float32")
    memo = tmp_path / "memo.m4a"  # as a phone's voice recorder saves it: AAC in an MP4 file of brand M4A
    with av.open(str(memo), "w") as container:
        stream = container.add_stream("aac", rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="flt", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    view = ui.recognise(str(memo), "utterance", False, None, "en")
    assert "original format: m4a, 16000 Hz, 1 channel(s)" in view.log_text, view.log_text


def test_embedding_notice_names_the_real_shape_and_the_file_holds_it(ui, uploads):
    view = ui.recognise(str(uploads / "zh_neutral_1.wav"), "utterance", True, None, "en")
    assert view.embedding_notice == {"__type__": "update", "value": f"Embedding generated: embedding.npy ({BUNDLED_DIM},)",
                                     "visible": True}
    assert [Path(f).name for f in view.downloads] == ["embedding.npy", "result.json", "processed_audio.wav"]
    assert load_embedding(view.downloads[0]).shape == (BUNDLED_DIM,)
    frame = ui.recognise(str(uploads / "zh_neutral_1.wav"), "frame", True, None, "zh")
    frames = load_embedding(frame.downloads[0])
    assert frames.ndim == 2 and frame.embedding_notice["value"].endswith(f"embedding.npy ({frames.shape[0]}, {BUNDLED_DIM})")
    assert frame.embedding_notice["value"].startswith("已生成情感向量")


def test_frame_granularity_gives_a_timeline_and_a_segments_table_covering_the_clip(ui, uploads):
    view = ui.recognise(str(uploads / "en_happy_1.wav"), "frame", False, "compact", "en")
    assert view.timeline_plot["visible"] is True
    table = view.segments_table["value"]
    assert view.segments_table["visible"] is True and list(table.columns) == ["start (s)", "end (s)", "emotion", "confidence"]
    assert table.iloc[0]["start (s)"] == 0 and table.iloc[-1]["end (s)"] == pytest.approx(7.25, abs=0.05)
    speech = [cell for cell in table["emotion"] if cell != "no speech"]
    assert speech and all(cell.split(" ")[0] in EMOJIS for cell in speech)
    assert table["emotion"].iloc[0] == "no speech"  # the clip starts with silence: no emotion there


def test_the_frame_chart_is_a_band_of_the_dominant_emotion_with_curves_on_demand(ui, uploads):
    view = ui.recognise(str(uploads / "en_happy_1.wav"), "frame", False, "compact", "en")
    figure, table = view.timeline_plot["value"], view.segments_table["value"]
    bars = [t for t in figure.data if t.type == "bar"]
    curves = [t for t in figure.data if t.type == "scatter"]
    # The band: one bar per row of the segments table, as wide as the row, as high as its confidence,
    # named by its emotion; the stretches without speech a full-height bar named "no speech".
    spans = sorted((float(x - w / 2), float(x + w / 2), float(y), t.name)
                   for t in bars for x, w, y in zip(t.x, t.width, t.y))
    assert len(spans) == len(table)
    for (start, end, height, name), (_, row) in zip(spans, table.iterrows()):
        assert start == pytest.approx(row["start (s)"], abs=0.01) and end == pytest.approx(row["end (s)"], abs=0.01)
        if row["emotion"] == "no speech":
            assert name == "no speech" and height == 100
        else:
            assert name == row["emotion"] and f"{height:.1f}%" == row["confidence"]
    assert next(t for t in bars if t.name == "no speech").marker.pattern.shape == "/"
    # The class curves: hidden until asked for (the chart's button shows them), with no value outside speech.
    assert len(curves) >= 2 and all(t.visible == "legendonly" for t in curves)
    button = figure.layout.updatemenus[0].buttons[0]
    assert button.label == "Show/hide class curves" and button.args[0] == {"visible": True}
    assert figure.layout.updatemenus[0].active == -1  # not already "on": the first click shows the curves
    assert sorted(button.args[1]) == [i for i, t in enumerate(figure.data) if t.type == "scatter"]
    for curve in curves:
        values = [v for v in curve.y if v is not None]
        assert values and all(0 <= v <= 100 for v in values)
        assert curve.y[0] is None  # the first frames are silence: no curve there


def visible_text(page_html: str) -> str:
    """What a person reads in a message box: the text without tags, the folded details left out."""
    import html as html_module
    import re

    shown = re.sub(r"<details.*?</details>", "", page_html, flags=re.S)
    return html_module.unescape(re.sub(r"<[^>]+>", " ", shown))


def has_chinese(value: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in value)


BAD_UPLOADS = [
    # file, what the English message says, what the Chinese one says
    ("broken.wav", "the file is damaged or cut short", "文件已损坏或不完整"),
    ("empty.mp3", "the file holds no audio", "文件中没有音频"),
    ("notes.wav", "not an audio file", "不是音频文件"),
    ("long.flac", "above this server's limit of 20 s. Cut it into shorter parts, or start the server with a higher "
                  "--max-duration", "超过本服务器的时长上限 20 秒"),
    ("huge.wav", "above this server's upload limit of 2 MB", "超过本服务器的上传上限 2 MB"),
]


@pytest.mark.parametrize("name, english, chinese", BAD_UPLOADS, ids=[b[0] for b in BAD_UPLOADS])
def test_bad_uploads_show_a_message_not_a_traceback_and_the_next_file_works(ui, uploads, name, english, chinese):
    view = ui.recognise(str(uploads / name), "utterance", True, "compact", "en")
    message = visible_text(view.result_html)
    assert 'class="error-box"' in view.result_html and f"{name}: " in message and english in message, message
    assert "Traceback" not in view.result_html + view.log_text and str(uploads) not in view.result_html
    assert view.scores_plot is None and view.downloads is None and view.embedding_notice["visible"] is False
    assert list(ui.outputs_root.glob("outputs_*")) == []
    good = ui.recognise(str(uploads / "en_angry_2.wav"), "utterance", False, "compact", "en")
    assert 'id="result-emoji"' in good.result_html


@pytest.mark.parametrize("name, english, chinese", BAD_UPLOADS, ids=[b[0] for b in BAD_UPLOADS])
def test_the_chinese_page_words_library_errors_in_chinese_with_what_to_do(ui, uploads, name, english, chinese):
    """The library's typed errors become the page's own messages: in the page's language, naming the
    file, and saying what the person can do (the server's options, not Python arguments)."""
    view = ui.recognise(str(uploads / name), "utterance", False, None, "zh")
    message = visible_text(view.result_html)
    assert name in message and chinese in message and "无法处理" in message, message
    assert not any(word in message for word in ("file", "audio", "limit", "decode", "corrupt")), message
    assert "max_duration_s" not in view.result_html and "pass a larger" not in view.result_html
    assert chinese in view.log_text and "文件" in view.log_text


def test_too_long_names_the_servers_option_in_the_page(ui, uploads):
    view = ui.recognise(str(uploads / "long.flac"), "utterance", False, "compact", "zh")
    message = visible_text(view.result_html)
    assert "long.flac" in message and "25.0 秒" in message and "20 秒" in message and "--max-duration" in message
    assert 'class="error-box"' in ui.recognise(None, "utterance", False, "compact", "en").result_html


def test_a_browser_asking_for_neither_chinese_nor_english_gets_english():
    assert pick_language(None, "de-DE,de;q=0.9,fr;q=0.8") == "en"
    assert pick_language(None, "fr-FR,zh-TW;q=0.8,en;q=0.5") == "zh"  # it reads Chinese too
    assert pick_language(None, None) == "zh" and pick_language(None, "") == "zh"  # no preference: the server's
    assert pick_language("zh", "de-DE") == "zh"


def test_only_offered_models_load(ui):
    assert ui.provider.choices()[0] == "compact"
    with pytest.raises(Exception, match="not available"):
        ui.provider.get("emotion2vec/../../etc")
    view = ui.recognise(str(SAMPLES / "en_angry_1.wav"), "utterance", False, "no-such-model", "en")
    assert "The model no-such-model is not available on this server" in visible_text(view.result_html)


def test_batch_gives_a_table_and_downloads_with_one_error_row(ui, uploads):
    files = [str(uploads / "en_happy_1.wav"), str(uploads / "broken.wav"), str(uploads / "en_angry_2.wav")]
    view = ui.run_batch_job(files, "compact", "en")
    table = view.table
    assert list(table["file"]) == ["en_happy_1.wav", "broken.wav", "en_angry_2.wav"]
    assert list(table["status / error"].str.startswith("✗")) == [False, True, False]
    assert "broken.wav: the file is damaged or cut short" in table.iloc[1]["status / error"]
    assert str(ui.outputs_root) not in table.iloc[1]["status / error"]  # errors name the upload, not server paths
    assert "2 done, 1 failed" in view.summary
    names = [Path(f).name for f in view.downloads]
    assert names == ["results.csv", "results.jsonl", "embeddings.parquet", "embeddings_npy.zip"]
    folder = Path(view.downloads[0]).parent
    assert folder.parent == ui.outputs_root and folder.name.startswith("batch_")
    assert len(Path(view.downloads[0]).read_text(encoding="utf-8-sig").splitlines()) == 4
    parquet = pq.read_table(view.downloads[2])
    assert parquet.num_rows == 2 and len(parquet["embedding"][0].as_py()) == BUNDLED_DIM
    with zipfile.ZipFile(view.downloads[3]) as archive:
        assert sorted(archive.namelist()) == ["en_angry_2.npy", "en_happy_1.npy"]
        assert np.load(io.BytesIO(archive.read("en_happy_1.npy")), allow_pickle=False).shape == (BUNDLED_DIM,)
    assert ui.run_batch_job([], "compact", "en").downloads is None


def test_batch_results_csv_lists_the_files_in_the_order_they_were_given(ui, uploads):
    import csv

    given = ["zh_neutral_1.wav", "en_happy_1.wav", "broken.wav", "en_angry_2.wav", "en_angry_1.wav"]
    view = ui.run_batch_job([str(uploads / name) for name in given], None, "en")
    assert list(view.table["file"]) == given
    with open(view.downloads[0], encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [Path(row["path"]).name for row in rows] == given
    assert [row["status"] for row in rows] == ["ok", "ok", "error", "ok", "ok"]


def test_batch_refuses_lists_and_oversized_files_without_reading_them(ui, uploads, tmp_path):
    secret = tmp_path / "secret.wav"
    shutil.copy(SAMPLES / "en_angry_1.wav", secret)
    listing = uploads / "paths.txt"
    listing.write_text(f"{secret}\n")  # a list would make the server read other files: refused
    view = ui.run_batch_job([str(listing), str(uploads / "huge.wav"), str(uploads / "en_angry_1.wav")], None, "en")
    assert list(view.table["status / error"].str.startswith("✗")) == [True, True, False]
    assert "paths.txt: a list of paths (a .txt file), not audio" in view.table.iloc[0]["status / error"]
    assert "huge.wav: the file is 4.3 MB, above this server's upload limit" in view.table.iloc[1]["status / error"]
    jsonl = Path(view.downloads[1]).read_text(encoding="utf-8")
    assert str(secret) not in jsonl and jsonl.count("\n") == 1


def test_compare_two_clips_and_a_clip_with_its_own_embedding(ui, uploads, tmp_path):
    html = ui.compare(str(uploads / "en_happy_1.wav"), str(uploads / "en_angry_2.wav"), "compact", "en").html
    value = float(html.split('id="compare-similarity">cosine similarity: ')[1].split("<")[0])
    assert -1 <= value <= 1 and 'id="compare-reading"' in html and html.count('class="emoji"') == 2
    npy = tmp_path / "en_happy_1.npy"
    np.save(npy, ui.provider.get(None).extract_embedding(str(uploads / "en_happy_1.wav")))
    same = ui.compare(str(uploads / "en_happy_1.wav"), str(npy), None, "zh").html
    assert "余弦相似度: 1.0000" in same and "几乎相同" in same and f".npy 向量 ({BUNDLED_DIM},)" in same
    assert "按不同说话人的片段对测得" in same  # what the reading's numbers are about
    pickled = tmp_path / "evil.npy"
    np.save(pickled, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    refused = ui.compare(str(pickled), str(npy), None, "en").html
    assert 'class="error-box"' in refused and "pickle" in refused and str(tmp_path) not in refused
    small = tmp_path / "small.npy"
    np.save(small, np.ones(768, np.float32))
    mismatch = ui.compare(str(small), str(uploads / "en_happy_1.wav"), None, "en").html
    assert 'class="error-box"' in mismatch and "768" in mismatch
    assert 'class="error-box"' in ui.compare(None, str(npy), None, "en").html


def test_explore_maps_and_clusters_clips_and_a_batch_parquet(ui, uploads):
    clips = [str(p) for p in sorted(uploads.glob("*.wav")) if p.name in {s.name for s in SAMPLES.glob("*.wav")}]
    view = ui.explore(clips + [str(uploads / "broken.wav")], 2, "cluster", "compact", "en")
    assert 'id="explore-summary"' in view.summary and f"6 embeddings ({BUNDLED_DIM}-d)" in view.summary
    assert "broken.wav" in view.summary  # the bad file is reported, the others are mapped
    hover = [t for trace in view.map_plot.data for t in trace.text]
    assert len(hover) == 6 and all(any(Path(c).name in h for c in clips) for h in hover)
    assert view.clusters_table["size"].sum() == 6
    by_emotion = ui.explore(clips, 2, "emotion", "compact", "en")
    assert {trace.name.split(" ")[-1] for trace in by_emotion.map_plot.data} <= set(
        "angry disgusted fearful happy neutral other sad surprised unknown".split())
    batch = ui.run_batch_job(clips[:3], "compact", "en")
    three = ui.explore([batch.downloads[2]], 0, "cluster", "compact", "en")
    assert "3 embeddings" in three.summary and "drawn with PCA" in three.summary
    assert sum(len(trace.x) for trace in three.map_plot.data) == 3
    mixed = ui.explore([batch.downloads[2], clips[0]], 5, "cluster", "compact", "en")
    assert "single .parquet" in mixed.summary


def test_history_lists_runs_newest_first_with_links_and_files(ui, uploads):
    assert ui.history("en").table.empty
    ui.recognise(str(uploads / "en_angry_1.wav"), "utterance", True, "compact", "en")
    ui.recognise(str(uploads / "zh_neutral_1.wav"), "utterance", False, "compact", "en")
    view = ui.history("en")
    assert list(view.table["file(s)"]) == ["zh_neutral_1.wav", "en_angry_1.wav"]
    assert view.table.iloc[0]["emotion"].split(" ")[0] in EMOJIS and view.table.iloc[0]["confidence"].endswith("%")
    links = view.table.iloc[1]["files"]
    assert "[embedding.npy](/gradio_api/file=" in links and "[result.json](" in links
    newest = view.run_picker["value"]
    assert view.files == ui.run_files(newest) and [Path(f).name for f in view.files] == ["processed_audio.wav", "result.json"]
    assert ui.run_files("../outputs_x") is None and ui.run_files("outputs_1/../../etc") is None
    assert ui.run_files(None) is None


def test_the_page_builds_and_serves_only_what_it_needs(ui):
    demo = build_app(ui)
    config = demo.get_config_file()
    ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
    assert {"audio-input", "granularity", "extract-embedding", "model", "start", "result", "scores-plot",
            "timeline-plot", "segments", "embedding-notice", "downloads", "log", "batch-files", "batch-table",
            "compare-file-a", "compare-file-b", "explore-map", "explore-table", "history-table", "language"} <= ids
    options = launch_kwargs(ui)
    assert options["share"] is False and options["max_file_size"] == "2mb"
    assert options["allowed_paths"] == [str(ui.outputs_root), str(SAMPLES)]


def test_the_webui_command_options():
    from emotion2vec_plus.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["webui"])
    assert (args.host, args.port, args.model, args.outputs, args.lang) == ("127.0.0.1", 7860, None, "outputs", None)
    with pytest.raises(SystemExit):
        parser.parse_args(["webui", "--share"])
    assert build_parser().parse_args(["webui", "--port", "7999", "--model", "compact"]).port == 7999
    assert os.environ.get("GRADIO_SHARE") in (None, "", "False", "false")


def test_long_audio_gives_a_timeline_of_its_speech_segments(tmp_path):
    windowed = Emotion2VecPlus(window_s=2.0)  # the 7.25 s sample is cut into its utterances, like a long recording
    ui = EmotionWebUI(ModelProvider("compact", preloaded=windowed), WebUISettings(outputs_root=tmp_path / "outputs"))
    path = SAMPLES / "en_happy_1.wav"
    view = ui.recognise(str(path), "utterance", False, None, "en")
    assert view.timeline_plot["visible"] is True and view.segments_table["visible"] is True
    table = view.segments_table["value"]
    expected = windowed.predict(str(path)).segments
    # one row per utterance, the last ending where the speech does (the file runs to 7.25 s)
    assert len(table) == len(expected) >= 2 and 6.5 < table.iloc[-1]["end (s)"] <= 7.25
    assert table["start (s)"].tolist() == pytest.approx([round(s.start_s, 2) for s in expected], abs=0.01)
    steps = len(expected) + 1
    traces = view.timeline_plot["value"].data
    curves = [trace for trace in traces if trace.type == "scatter"]
    assert curves and all(len(trace.x) == steps for trace in curves)  # a step per segment, closed at the end
    assert sum(len(trace.x) for trace in traces if trace.type == "bar") == len(table)  # the band: a bar per row


def test_a_batch_parquet_goes_to_explore_but_nothing_outside_the_outputs(ui, uploads, tmp_path):
    batch = ui.run_batch_job([str(uploads / "en_angry_1.wav")], None, "en")
    assert batch.parquet == batch.downloads[2] and ui.embeddings_for_explore(batch.parquet) == [batch.parquet]
    elsewhere = tmp_path / "embeddings.parquet"
    shutil.copy(batch.downloads[2], elsewhere)
    assert ui.embeddings_for_explore(str(elsewhere)) is None
    assert ui.embeddings_for_explore(str(uploads / "en_angry_1.wav")) is None
    assert ui.embeddings_for_explore(None) is None


def test_compute_options_reach_the_model_and_the_log(tmp_path):
    from emotion2vec_plus.cli import build_parser

    args = build_parser().parse_args(["webui", "--compute-type", "int8"])
    assert (args.compute_type, args.backend) == ("int8", "torch")
    provider = ModelProvider("compact", compute_type=args.compute_type, backend=args.backend)
    ui = EmotionWebUI(provider, WebUISettings(outputs_root=tmp_path / "outputs"))
    view = ui.recognise(str(SAMPLES / "en_neutral_1.wav"), "utterance", False, None, "en")
    assert provider.get(None).compute_type == "int8" and f"model: compact ({BUNDLED_DIM}-d, int8)" in view.log_text


def test_compare_names_the_embedding_that_does_not_fit_in_the_pages_language(ui, uploads, tmp_path):
    fits = tmp_path / "made_here.npy"
    np.save(fits, ui.provider.get(None).extract_embedding(str(uploads / "en_happy_1.wav")))
    other = tmp_path / "other_model.npy"
    np.save(other, np.ones(768, np.float32))
    for a, b in ((other, fits), (fits, other), (other, uploads / "zh_neutral_1.wav")):
        message = visible_text(ui.compare(str(a), str(b), None, "zh").html)
        assert f"other_model.npy：这是 768 维向量，而模型 compact 输出 {BUNDLED_DIM} 维向量" in message, message
        assert "made_here.npy" not in message
    english = visible_text(ui.compare(str(fits), str(other), None, "en").html)
    assert f"other_model.npy: this embedding is 768-d but the model compact gives {BUNDLED_DIM}-d" in english
    pickled = tmp_path / "evil.npy"
    np.save(pickled, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    refused = visible_text(ui.compare(str(fits), str(pickled), None, "zh").html)
    assert "evil.npy：已拒绝" in refused and "pickle" in refused


def test_batch_rows_word_each_failure_in_the_pages_language(ui, uploads):
    view = ui.run_batch_job([str(uploads / n) for n in ("broken.wav", "long.flac", "notes.wav", "zh_neutral_1.wav")],
                            None, "zh")
    status = list(view.table["状态 / 错误"])
    assert status[0] == "✗ broken.wav：文件已损坏或不完整，无法解码。请重新导出或录制后再试。"
    assert status[1].startswith("✗ long.flac：音频") and "20 秒" in status[1] and "--max-duration" in status[1]
    assert status[2].startswith("✗ notes.wav：不是音频文件") and status[3] == "完成 ok"
    assert str(ui.outputs_root) not in "".join(status)


def test_explore_maps_two_clips_and_redraws_without_the_model(ui, uploads):
    clips = [str(uploads / "en_happy_1.wav"), str(uploads / "en_angry_2.wav")]
    two = ui.explore(clips, 0, "cluster", None, "en")
    assert "2 embeddings" in two.summary and "drawn with PCA" in two.summary and 'class="error-box"' not in two.summary
    assert sum(len(trace.x) for trace in two.map_plot.data) == 2 and two.map_plot.layout.xaxis.title.text == "PCA 1"
    assert two.shown.embedded == 2
    samples = [str(p) for p in sorted(uploads.glob("*.wav")) if p.name in {s.name for s in SAMPLES.glob("*.wav")}]
    first = ui.explore(samples, 0, "cluster", None, "en", cache=two.cache)
    assert first.shown.embedded == 4  # two of the six came from the session's cache
    again = ui.explore(samples, 2, "cluster", None, "en", cache=first.cache)
    assert again.shown.embedded == 0 and "smallest cluster 2" in again.summary
    auto = ui.explore(samples, 0, "cluster", None, "en", cache=first.cache)
    assert "smallest cluster 2 (chosen for 6 clips)" in auto.summary
    by_emotion = ui.explore_map(again.shown, "emotion", "en")  # recolouring: no model, no clustering
    assert by_emotion.layout.legend.title.text == "predicted emotion" and by_emotion.layout.showlegend
    assert sum(len(trace.x) for trace in by_emotion.data) == 6
    assert all(trace.name.split(" ")[-1] in {"angry", "disgusted", "fearful", "happy", "neutral", "sad", "surprised"}
               for trace in by_emotion.data)


def test_history_lists_batch_runs_beside_recognitions(ui, uploads):
    ui.recognise(str(uploads / "en_angry_1.wav"), "utterance", False, None, "en")
    batch = ui.run_batch_job([str(uploads / "en_happy_1.wav"), str(uploads / "broken.wav")], None, "en")
    view = ui.history("zh")
    assert list(view.table.columns) == ["时间", "类型", "文件", "情感", "置信度", "下载"]
    assert list(view.table["类型"]) == ["批量", "识别"]
    assert view.table.iloc[0]["文件"] == "2 个文件，1 个失败" and view.table.iloc[1]["文件"] == "en_angry_1.wav"
    assert "[results.csv](/gradio_api/file=" in view.table.iloc[0]["下载"]
    batch_folder = Path(batch.downloads[0]).parent.name
    assert view.run_picker["value"] == batch_folder
    assert [Path(f).name for f in view.files] == ["results.csv", "results.jsonl", "embeddings.parquet",
                                                  "embeddings_npy.zip"]
    assert ui.run_files(batch_folder) == view.files and ui.run_files("../" + batch_folder) is None


def test_what_is_shown_is_drawn_again_in_the_other_language(ui, uploads):
    english = {entry["en"] for entry in TEXT.values()} - {entry["zh"] for entry in TEXT.values()}
    view = ui.recognise(str(uploads / "en_happy_1.wav"), "frame", True, None, "en")
    again = ui.render_recognition(view.shown, "zh")
    assert again.downloads == view.downloads
    assert "置信度" in visible_text(again.result_html) and "confidence" not in visible_text(again.result_html)
    assert again.scores_plot.layout.title.text == text("scores_plot", "zh")
    assert again.timeline_plot["value"].layout.title.text == text("timeline_plot", "zh")
    assert list(again.segments_table["value"].columns) == ["开始 (s)", "结束 (s)", "情感", "置信度"]
    assert again.log_text.startswith("文件: en_happy_1.wav") and "粒度: 逐帧 frame" in again.log_text
    assert not any(line.split(":")[0] in english for line in again.log_text.splitlines())
    failed = ui.recognise(str(uploads / "notes.wav"), "utterance", False, None, "en")
    assert "不是音频文件" in ui.render_recognition(failed.shown, "zh").result_html
    assert "placeholder-box" in ui.render_recognition(None, "zh").result_html
