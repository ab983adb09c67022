"""The WebUI in a real browser: Debian's chromium driven by Playwright against ``emotion2vec-plus webui``.

The server runs as a subprocess (the real command, bundled compact model, a temporary outputs
folder, a free loopback port). Screenshots of each state go to ``test-output/webui/``.
``scripts/test.sh`` installs Debian's chromium when it runs as root; without chromium these tests
skip with that reason, except in CI (``EMOTION2VEC_REQUIRE_BROWSER=1``, set by ``.ci/run``), where
they fail.
"""

from __future__ import annotations

import io
import json
import re
from datetime import datetime
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from conftest import BUNDLED_DIM  # noqa: E402

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLES = REPO_ROOT / "src" / "emotion2vec_plus" / "samples"
SCREENSHOTS = REPO_ROOT / "test-output" / "webui"
CHROMIUM = os.environ.get("EMOTION2VEC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
RESULT_TIMEOUT_MS = 90_000


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(process: subprocess.Popen, url: str, log_path: Path, what: str) -> None:
    """Wait (up to 120 s) until ``url`` answers 200; fail with the server's log if it exits or never answers."""
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            pytest.fail(f"{what} exited with {process.returncode}:\n{log_path.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not answer within 120 s:\n{log_path.read_text(errors='replace')}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``emotion2vec-plus webui`` on a free loopback port with a temporary outputs folder; yields its URL."""
    if not Path(CHROMIUM).is_file():
        message = (f"no chromium at {CHROMIUM}: as root, bash scripts/install_browser.sh "
                   "(apt-get install chromium chromium-driver) installs it")
        if os.environ.get("EMOTION2VEC_REQUIRE_BROWSER") == "1":  # set by .ci/run: CI must run them
            pytest.fail(message)
        pytest.skip(message)
    pytest.importorskip("playwright")
    work = tmp_path_factory.mktemp("webui")
    port = _free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", GRADIO_TEMP_DIR=str(work / "gradio-tmp"))
    log_path = work / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "emotion2vec_plus.cli", "webui", "--port", str(port), "--outputs",
             str(work / "outputs"), "--max-upload-mb", "5", "--max-duration", "120"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(work))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(process, url + "/", log_path, "the WebUI")
        assert f"WebUI: {url}" in log_path.read_text(errors="replace")
        yield {"url": url, "outputs": work / "outputs", "work": work}
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()
    print(f"\nWebUI screenshots: {SCREENSHOTS}")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    """A fresh page on the WebUI in English (``?lang=en``), ready to use."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(RESULT_TIMEOUT_MS)
    page.goto(server["url"] + "/?lang=en")
    page.wait_for_selector("#start")
    page.wait_for_function("document.querySelector('#start').innerText.includes('Recognise')")
    yield page
    context.close()


def _colour_fraction(png: bytes) -> float:
    """Share of an image's pixels that are clearly coloured (not grey, black or white)."""
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    return float(np.mean(pixels.max(axis=2) - pixels.min(axis=2) > 60))


def shot(page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def upload_clip(page, path: Path) -> None:
    page.locator("#audio-input input[type=file]").set_input_files(str(path))
    # the player (with a clear button) replaces the upload area once the file is on the server
    page.wait_for_selector("#audio-input audio, #audio-input button[aria-label='Clear']", state="attached")


def clear_clip(page) -> None:
    page.locator("#audio-input button[aria-label='Clear']").first.click()
    page.wait_for_selector("#audio-input input[type=file]", state="attached")


def recognise(page) -> None:
    """Press the button and wait for this run's result (or error) to replace the previous one."""
    page.evaluate("document.querySelector('#result').setAttribute('data-old', '1');"
                  "const r = document.querySelector('#result-card, #error-message'); if (r) r.remove();")
    page.locator("#start").click()
    page.wait_for_selector("#result-card, #error-message")


def test_recognise_shows_emoji_label_confidence_and_scores_chart(page):
    upload_clip(page, SAMPLES / "en_neutral_1.wav")
    recognise(page)
    emoji = page.locator("#result-emoji").inner_text().strip()
    label = page.locator("#result-label").inner_text()
    confidence = page.locator("#result-confidence").inner_text()
    assert emoji and emoji in "😠🤢😨😊😐🤔😢😲❓"
    assert _colour_fraction(page.locator("#result-emoji").screenshot()) > 0.05  # a colour emoji, not an outline
    assert " · " in label and any(e in label for e in ("angry", "fearful", "happy", "neutral", "sad", "surprised"))
    assert "confidence" in confidence and confidence.strip().endswith("%")
    page.wait_for_selector("#scores-plot .js-plotly-plot")
    assert page.locator("#scores-plot .bars .point").count() == 9
    assert "en_neutral_1.wav" in page.locator("#log textarea").input_value()
    assert "16000 Hz" in page.locator("#log textarea").input_value()
    assert not page.locator("#timeline-plot").is_visible()
    shot(page, "01_recognise_utterance")


def test_embedding_notice_shows_the_real_shape_and_the_npy_downloads(page, server):
    upload_clip(page, SAMPLES / "en_angry_2.wav")
    page.locator("#extract-embedding input[type=checkbox]").check()
    recognise(page)
    notice = page.locator("#embedding-notice")
    notice.wait_for(state="visible")
    assert f"Embedding generated: embedding.npy ({BUNDLED_DIM},)" in notice.inner_text()
    link = page.locator("#downloads a[href*='embedding.npy']").first
    href = link.get_attribute("href")
    response = page.request.get(href if href.startswith("http") else server["url"] + href)
    assert response.ok
    array = np.load(io.BytesIO(response.body()), allow_pickle=False)
    assert array.shape == (BUNDLED_DIM,) and array.dtype == np.float32 and np.isfinite(array).all()
    for name in ("result.json", "processed_audio.wav"):
        assert page.locator(f"#downloads a[href*='{name}']").count() >= 1
    runs = sorted(server["outputs"].glob("outputs_*/embedding.npy"))
    assert any(np.array_equal(np.load(run), array) for run in runs)
    shot(page, "02_recognise_embedding")


def test_frame_granularity_shows_the_timeline_and_segments(page):
    upload_clip(page, SAMPLES / "en_happy_1.wav")
    page.locator("#granularity label", has_text="frame").click()
    recognise(page)
    page.wait_for_selector("#timeline-plot .js-plotly-plot")
    # the dominant emotion as a band of bars (the silence at the start hatched, "no speech"); the class
    # curves appear when asked for, by the button above the chart
    assert page.locator("#timeline-plot .barlayer .trace").count() >= 2
    assert "no speech" in page.locator("#timeline-plot .legend").text_content()
    assert page.locator("#timeline-plot .scatterlayer .trace path.js-line").count() == 0
    page.locator("#timeline-plot .updatemenu-button", has_text="Show/hide class curves").click()
    page.wait_for_function("document.querySelectorAll('#timeline-plot .scatterlayer .trace path.js-line').length >= 2")
    assert page.locator("#segments").is_visible()
    assert page.locator("#segments").inner_text().count("%") >= 1
    shot(page, "03_recognise_frame_timeline")


def test_a_corrupt_file_shows_an_error_and_a_good_file_still_works(page, tmp_path):
    corrupt = tmp_path / "broken.wav"
    corrupt.write_bytes(b"RIFF\x24\x80\x00\x00WAVEfmt \x10\x00\x00\x00" + os.urandom(300))
    upload_clip(page, corrupt)
    recognise(page)
    error = page.locator("#error-message")
    assert error.is_visible()
    message = error.inner_text()
    assert "broken.wav" in message and "Traceback" not in page.content()
    shot(page, "04_corrupt_file_error")
    clear_clip(page)
    upload_clip(page, SAMPLES / "zh_neutral_1.wav")
    recognise(page)
    assert page.locator("#result-emoji").inner_text().strip()
    assert not page.locator("#error-message").count()
    shot(page, "05_good_file_after_error")


def test_an_upload_above_the_size_limit_is_refused_in_the_page(page, tmp_path):
    big = tmp_path / "big.wav"
    big.write_bytes(b"RIFF" + bytes(6 * 1024 * 1024))  # 6 MB > --max-upload-mb 5
    page.locator("#audio-input input[type=file]").set_input_files(str(big))
    toast = page.locator("[data-testid=toast-body]", has_text="maximum allowed size")
    toast.first.wait_for(state="visible")
    assert "big.wav" in toast.first.inner_text()
    shot(page, "04b_upload_too_large")
    upload_clip(page, SAMPLES / "en_angry_1.wav")
    recognise(page)
    assert page.locator("#result-emoji").inner_text().strip()


def test_batch_with_one_corrupt_file_gives_six_results_one_error_row_and_the_map(page, tmp_path, server):
    corrupt = tmp_path / "corrupt.mp3"
    corrupt.write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x0a" + os.urandom(2000))
    samples = sorted(SAMPLES.glob("*.wav"))
    assert len(samples) == 6
    page.locator("#tab-batch-button, button[role=tab]:has-text('Batch')").first.click()
    page.locator("#batch-files input[type=file]").set_input_files([*map(str, samples), str(corrupt)])
    page.wait_for_function("document.querySelectorAll('#batch-files .file-preview tr, #batch-files tbody tr').length >= 7")
    page.locator("#batch-start").click()
    page.wait_for_selector("#batch-summary")
    summary = page.locator("#batch-summary").inner_text()
    assert "6 done, 1 failed" in summary
    table = page.locator("#batch-table").inner_text()
    assert table.count("✗") == 1 and "corrupt.mp3" in table
    assert all(p.name in table for p in samples)
    hrefs = [a.get_attribute("href") for a in page.locator("#batch-downloads a").all()]
    names = {Path(h.split("=")[-1]).name for h in hrefs}
    assert {"results.csv", "results.jsonl", "embeddings.parquet", "embeddings_npy.zip"} <= names
    csv_href = next(h for h in hrefs if h.endswith("results.csv"))
    body = page.request.get(csv_href if csv_href.startswith("http") else server["url"] + csv_href).body()
    assert body.decode("utf-8-sig").count("\n") == 8  # header + 7 files
    status_header = page.locator("#batch-table th").nth(4)
    assert status_header.evaluate("h => h.scrollWidth <= h.clientWidth + 1"), "status column cut off"
    frame = page.locator("#batch-table").bounding_box()
    for name in [*(p.name for p in samples), "corrupt.mp3"]:  # every row shown without scrolling
        cell = page.locator("#batch-table").get_by_text(name, exact=True).first.bounding_box()
        assert cell is not None and cell["y"] + cell["height"] <= frame["y"] + frame["height"] + 1, name
    shot(page, "06_batch_seven_files_one_corrupt")
    page.locator("#batch-to-explore").click()
    page.wait_for_function("document.querySelectorAll('#explore-files a').length >= 1")
    page.locator("#explore-start").click()
    page.wait_for_selector("#explore-map .js-plotly-plot")
    assert page.locator("#explore-map .scatterlayer .point").count() == 6  # the six files that worked
    assert f"6 embeddings ({BUNDLED_DIM}-d)" in page.locator("#explore-summary").inner_text()
    shot(page, "06b_batch_to_explore")


def test_compare_two_clips_shows_both_results_and_the_similarity(page):
    page.locator("button[role=tab]:has-text('Compare')").first.click()
    page.locator("#compare-file-a input[type=file]").set_input_files(str(SAMPLES / "en_happy_1.wav"))
    page.locator("#compare-file-b input[type=file]").set_input_files(str(SAMPLES / "en_angry_1.wav"))
    page.wait_for_function("document.querySelectorAll('#compare-file-a a, #compare-file-b a').length >= 2")
    page.locator("#compare-start").click()
    page.wait_for_selector("#compare-similarity")
    value = float(page.locator("#compare-similarity").inner_text().split(":")[1])
    assert -1.0 <= value <= 1.0
    assert page.locator(".compare-card").count() == 2 and page.locator("#compare-reading").inner_text().strip()
    shot(page, "07_compare")


def test_explore_maps_the_sample_clips(page):
    page.locator("button[role=tab]:has-text('Explore')").first.click()
    page.locator("#explore-files input[type=file]").set_input_files([str(p) for p in sorted(SAMPLES.glob("*.wav"))])
    page.wait_for_function("document.querySelectorAll('#explore-files a').length >= 6")
    page.locator("#explore-start").click()
    page.wait_for_selector("#explore-summary")
    assert f"6 embeddings ({BUNDLED_DIM}-d)" in page.locator("#explore-summary").inner_text()
    page.wait_for_selector("#explore-map .js-plotly-plot")
    assert page.locator("#explore-map .scatterlayer .point").count() == 6
    assert "en_happy_1.wav" in page.locator("#explore-table").inner_text()
    shot(page, "07b_explore")


def test_an_english_page_has_no_chinese_before_and_after_a_sample_click(page):
    page.wait_for_function("document.querySelector('#result').innerText.includes('Upload audio, then press Recognise')",
                           timeout=10_000)
    assert "Audio" in page.locator("#audio-input").inner_text()
    page.locator("#examples button, #examples td, #examples .gallery-item").first.click()
    page.wait_for_selector("#audio-input audio, #audio-input button[aria-label='Clear']", state="attached")
    page.wait_for_timeout(500)
    text = page.locator("#audio-input").inner_text() + page.locator("#result").inner_text()
    assert not any("\u4e00" <= ch <= "\u9fff" for ch in text), text


def switch_language(page, name: str) -> None:
    """Click the language radio and wait until the switch is complete: our texts and Gradio's audio box
    (mounted anew in the new locale: its drop zone, or with a clip its player) both in the chosen language."""
    start, drop, player = (("开始识别", "拖放", "清除") if name == "中文" else ("Recognise", "Drop Audio Here", "Clear"))
    page.locator("#language label", has_text=name).click()
    page.wait_for_function(
        f"document.querySelector('#start').innerText.includes({start!r}) && "
        f"((document.querySelector('#audio-input')?.innerText || '').includes({drop!r}) || "
        f"document.querySelector({json.dumps(f'#audio-input button[aria-label={player!r}]')}) !== null)")


def test_language_switch_changes_the_interface_and_keeps_bilingual_labels(page):
    switch_language(page, "中文")
    assert "语音情感识别" in page.locator("#page-title").inner_text()
    page.wait_for_function("document.querySelector('#result').innerText.includes('开始识别')")  # placeholder follows
    assert "示例音频" in page.locator("#examples").inner_text()
    switch_language(page, "English")
    assert "Sample clips" in page.locator("#examples").inner_text()
    switch_language(page, "中文")
    upload_clip(page, SAMPLES / "zh_neutral_1.wav")
    recognise(page)
    assert "置信度" in page.locator("#result-confidence").inner_text()
    page.wait_for_selector("#scores-plot .js-plotly-plot")
    assert "9 类情感得分" in page.locator("#scores-plot").inner_text()
    label = page.locator("#result-label").inner_text()
    assert " · " in label and label.split(" · ")[1].isascii()  # English name always shown beside the Chinese
    shot(page, "08_chinese_interface")


def test_history_lists_earlier_runs_with_their_files(page):
    upload_clip(page, SAMPLES / "en_angry_1.wav")
    recognise(page)
    page.locator("button[role=tab]:has-text('History')").first.click()
    page.wait_for_selector("#history-table")
    page.wait_for_function("document.querySelector('#history-table').innerText.includes('en_angry_1.wav')")
    table = page.locator("#history-table").inner_text()
    assert "result.json" in table and "processed_audio.wav" in table
    link = page.locator("#history-table a", has_text="result.json").first
    response = page.request.get(link.get_attribute("href") if link.get_attribute("href").startswith("http")
                                else page.url.split("/?")[0] + link.get_attribute("href"))
    assert response.ok and response.json()["source"]
    shot(page, "09_history")


def test_no_stray_output_outside_the_outputs_folder(server):
    written = {p.name for p in server["work"].iterdir()}
    assert written <= {"outputs", "gradio-tmp", "server.log", ".gradio"}, written


@pytest.mark.parametrize(("browser_locale", "start", "switch_to", "drop_text"), [
    ("zh-CN", "zh", "English", "Drop Audio Here"),
    ("en-US", "en", "中文", "拖放"),
    ("zh-CN", "en", None, "Drop Audio Here"),  # ?lang=en in a Chinese browser: English from the start
])
def test_gradio_built_in_texts_follow_the_page_language_not_the_browser(browser, server, browser_locale, start,
                                                                         switch_to, drop_text):
    """The audio drop zone's own text (Gradio's, not ours) is in the page's language."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale=browser_locale)
    page = context.new_page()
    try:
        page.set_default_timeout(RESULT_TIMEOUT_MS)
        page.goto(server["url"] + f"/?lang={start}")
        page.wait_for_selector("#audio-input")
        if switch_to is not None:
            page.locator("#language label", has_text=switch_to).click()
        page.wait_for_function(f"(document.querySelector('#audio-input')?.innerText || '').includes({drop_text!r})",
                               timeout=15_000)
        text = page.locator("#audio-input").inner_text()
        english = drop_text.isascii()
        assert any("\u4e00" <= ch <= "\u9fff" for ch in text) is not english, text
        shot(page, f"09_drop_zone_{browser_locale}_{start}_to_{switch_to or start}")
    finally:
        context.close()


# ------------------------------------------------------------------ issue 20: language, messages, phones, explore

def page_text(page) -> str:
    """Everything a person can read on the page now: its visible text (chart texts included) and the
    values of visible text boxes (the processing log, dropdowns)."""
    return page.evaluate("""() => {
        const boxes = [...document.querySelectorAll('textarea, input[type=text], input:not([type])')]
            .filter(e => e.offsetParent !== null).map(e => e.value);
        return document.body.innerText + '\\n' + boxes.join('\\n'); }""")


def texts_only_in(lang: str) -> set[str]:
    """The literal parts of every interface text of ``lang`` that no text of the other language contains
    (the bilingual ones, such as "整句 utterance", are meant to be on both pages)."""
    import re

    from emotion2vec_plus.apps.webui.text import SIMILARITY_READINGS_ZH, TEXT

    other = "zh" if lang == "en" else "en"
    mine = [entry[lang] for entry in TEXT.values()]
    theirs = [entry[other] for entry in TEXT.values()]
    readings = [*SIMILARITY_READINGS_ZH.values()] if lang == "zh" else [*SIMILARITY_READINGS_ZH]
    parts = set()
    for value in mine + readings:
        for part in re.split(r"\{[^}]*\}", value):
            part = part.strip(" :：,，.。()（）/;；")
            if len(part) >= 2 and re.search(r"[A-Za-z\u4e00-\u9fff]", part) and not any(part in t for t in theirs):
                parts.add(part)
    return parts


def old_language_left(text: str, lang: str) -> list[str]:
    """The texts of ``lang`` found in ``text`` (English ones as whole words, not parts of names such
    as processed_audio.wav or batch_20261206_120000)."""
    import re

    found = []
    for part in texts_only_in(lang):
        pattern = re.escape(part) if lang == "zh" else r"(?<![\w.])" + re.escape(part) + r"(?![\w.])"  # not in file names
        if re.search(pattern, text):
            found.append(part)
    return sorted(found)


TABS = {"en": ["Recognise", "Batch", "Compare", "Explore", "Live", "History"],
        "zh": ["识别", "批量", "比较", "探索", "实时", "历史"]}


def open_tab(page, label: str) -> None:
    page.locator("button[role=tab]", has_text=label).first.click()
    page.wait_for_timeout(300)


def fill_every_tab(page, tmp_path) -> None:
    """A result on every tab: a frame-level recognition, a batch with a corrupt file, its map, a
    comparison, and History."""
    corrupt = tmp_path / "corrupt.mp3"
    corrupt.write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x0a" + os.urandom(2000))
    upload_clip(page, SAMPLES / "en_happy_1.wav")
    page.locator("#granularity label", has_text="frame").click()
    page.locator("#extract-embedding input[type=checkbox]").check()
    recognise(page)
    page.wait_for_selector("#timeline-plot .js-plotly-plot")
    open_tab(page, "Batch")
    page.locator("#batch-files input[type=file]").set_input_files([*map(str, sorted(SAMPLES.glob("*.wav"))), str(corrupt)])
    page.wait_for_function("document.querySelectorAll('#batch-files .file-preview tr, #batch-files tbody tr').length >= 7")
    page.locator("#batch-start").click()
    page.wait_for_selector("#batch-summary")
    page.locator("#batch-to-explore").click()
    page.wait_for_function("document.querySelectorAll('#explore-files a').length >= 1")
    page.locator("#explore-start").click()
    page.wait_for_selector("#explore-map .js-plotly-plot")
    open_tab(page, "Compare")
    page.locator("#compare-file-a input[type=file]").set_input_files(str(SAMPLES / "en_happy_1.wav"))
    page.locator("#compare-file-b input[type=file]").set_input_files(str(SAMPLES / "zh_neutral_1.wav"))
    page.wait_for_function("document.querySelectorAll('#compare-file-a a, #compare-file-b a').length >= 2")
    page.locator("#compare-start").click()
    page.wait_for_selector("#compare-similarity")
    open_tab(page, "History")
    page.wait_for_function("document.querySelector('#history-table').innerText.includes('en_happy_1.wav')")


#: What each tab shows once it has been drawn again in a language (waited for before reading the page).
REDRAWN = {
    "zh": ["#result-confidence:置信度", "#batch-summary:完成", "#compare-similarity:余弦相似度",
           "#explore-summary:个向量", "#history-table:类型", "#log textarea:文件"],
    "en": ["#result-confidence:confidence", "#batch-summary:done", "#compare-similarity:cosine similarity",
           "#explore-summary:embeddings", "#history-table:kind", "#log textarea:file"],
}


def charts_fit(page) -> None:
    """Every visible chart fills its box, no wider (cut off) and not much narrower."""
    page.wait_for_timeout(300)
    sizes = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].filter(p => p.offsetParent !== null)
        .map(p => [p.closest('[id]').id, p.querySelector('.main-svg').getBoundingClientRect().width,
                   p.parentElement.getBoundingClientRect().width])""")
    for name, chart, box in sizes:
        assert box * 0.9 <= chart <= box + 2, f"{name}: chart {chart:.0f} px in a box of {box:.0f} px"


def read_every_tab(page, lang: str, shot_prefix: str) -> str:
    for check in REDRAWN[lang]:
        selector, expected = check.split(":")
        page.wait_for_function(f"(e => e && (e.value || e.innerText || '').includes({expected!r}))"
                               f"(document.querySelector({selector!r}))")
    seen = []
    for position, label in enumerate(TABS[lang], 1):
        open_tab(page, label)
        charts_fit(page)
        seen.append(page_text(page))
        shot(page, f"{shot_prefix}_{position}_{label}")
    return "\n".join(seen)


def test_a_language_switch_leaves_nothing_in_the_old_language(page, tmp_path, server):
    """Issue 20.1: results already shown, chart titles, table headers, the log and History follow the switch."""
    fill_every_tab(page, tmp_path)
    english = read_every_tab(page, "en", "10_en")
    assert old_language_left(english, "zh") == []
    switch_language(page, "中文")
    chinese = read_every_tab(page, "zh", "11_zh_after_switch")
    assert "9 类情感得分" in chinese and "情感随时间变化" in chinese and "情感向量地图" in chinese  # chart texts are read
    assert "开始 (s)" in chinese and "处理日志" in chinese and "类型" in chinese
    assert old_language_left(chinese, "en") == [], old_language_left(chinese, "en")
    switch_language(page, "English")
    back = read_every_tab(page, "en", "12_en_after_switch_back")
    assert old_language_left(back, "zh") == [], old_language_left(back, "zh")
    log = (server["work"] / "server.log").read_text(errors="replace")
    assert "too many output values" not in log  # issue 20.6: no Gradio warning on a language click


def test_the_chinese_page_says_what_went_wrong_in_chinese(browser, server, tmp_path):
    """Issue 20.2: the library's errors are the page's own words, in its language, with what to do."""
    notes = tmp_path / "notes.wav"
    notes.write_text("meeting notes, not audio\n" * 40)
    long = tmp_path / "long.wav"
    import soundfile as sf

    sf.write(long, np.zeros(16000 * 125, np.float32) + 0.01, 16000, subtype="PCM_16")  # 125 s > --max-duration 120
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
    page = context.new_page()
    try:
        page.set_default_timeout(RESULT_TIMEOUT_MS)
        page.goto(server["url"] + "/")
        page.wait_for_selector("#start")
        page.wait_for_function("document.querySelector('#start').innerText.includes('开始识别')")
        upload_clip(page, notes)
        recognise(page)
        message = page.locator("#error-message").inner_text()
        assert "notes.wav：不是音频文件" in message and "not an audio" not in message, message
        page.locator("#audio-input button[aria-label='清除']").first.click()  # Gradio's own label, in Chinese
        page.wait_for_selector("#audio-input input[type=file]", state="attached")
        upload_clip(page, long)
        recognise(page)
        message = page.locator("#error-message").inner_text()
        assert "long.wav：音频长 125.0 秒，超过本服务器的时长上限 120 秒" in message and "--max-duration" in message
        assert "max_duration_s" not in page.content()
        shot(page, "13_zh_too_long_message")
    finally:
        context.close()


def test_a_browser_in_another_language_gets_the_english_page(browser, server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="de-DE")
    page = context.new_page()
    try:
        page.goto(server["url"] + "/")
        page.wait_for_selector("#start")
        page.wait_for_function("document.querySelector('#start').innerText.includes('Recognise')", timeout=30_000)
        page.wait_for_function("(document.querySelector('#audio-input')?.innerText || '').includes('Drop Audio Here')",
                               timeout=30_000)  # Gradio's own texts too, not German
    finally:
        context.close()


def test_read_only_download_boxes_have_no_remove_buttons(page):
    """Issue 20.6: "×" on a download list removed the link from the page."""
    upload_clip(page, SAMPLES / "en_neutral_1.wav")
    recognise(page)
    page.wait_for_selector("#downloads a[href*='result.json']")
    assert page.locator("#downloads .file-preview tr").count() >= 2
    assert page.locator("#downloads .label-clear-button").evaluate_all(
        "buttons => buttons.filter(b => b.offsetParent !== null).length") == 0
    assert page.locator("#audio-input button[aria-label='Clear']").count() >= 1  # the upload box keeps its own


PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}


def columns_readable(page, table: str) -> None:
    """Every column of ``table`` can be read at this width: no header is cut off, and a table wider
    than the screen scrolls sideways to its last column."""
    headers = page.locator(f"{table} th")
    assert headers.count() >= 2
    for i in range(headers.count()):
        header = headers.nth(i)
        assert header.evaluate("h => h.scrollWidth <= h.clientWidth + 1"), f"{table}: {header.inner_text()} cut off"
    viewport = page.locator(f"{table} .virtual-table-viewport").first
    viewport.evaluate("v => { v.scrollLeft = v.scrollWidth; }")
    page.wait_for_timeout(200)
    frame = viewport.bounding_box()
    last = headers.nth(headers.count() - 1).bounding_box()
    assert last["x"] >= frame["x"] - 1 and last["x"] + last["width"] <= frame["x"] + frame["width"] + 1, table
    assert frame["x"] + frame["width"] <= PHONE["viewport"]["width"]
    viewport.evaluate("v => { v.scrollLeft = 0; }")


def test_at_phone_width_every_tab_table_and_chart_is_usable(browser, server, tmp_path):
    """Issue 20.5: at 390 px every tab is reachable (none behind "..."), tables keep their columns and
    charts their labels (no toolbar over them)."""
    context = browser.new_context(locale="en-US", **PHONE)
    page = context.new_page()
    try:
        page.set_default_timeout(RESULT_TIMEOUT_MS)
        page.goto(server["url"] + "/?lang=en")
        page.wait_for_selector("#start")
        page.wait_for_function("document.querySelector('#start').innerText.includes('Recognise')")
        for label in TABS["en"]:
            tab = page.locator("button[role=tab]", has_text=label).first
            assert tab.is_visible(), f"{label} tab hidden"
            box = tab.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390, label
        assert not page.locator("button[aria-label='More tabs']").is_visible()
        shot(page, "14_phone_en_tabs")
        fill_every_tab(page, tmp_path)
        open_tab(page, "Recognise")
        segments = page.locator("#segments")
        segments.scroll_into_view_if_needed()
        columns_readable(page, "#segments")
        assert page.locator(".js-plotly-plot .modebar-container").evaluate_all(
            "bars => bars.filter(b => b.offsetParent !== null).length") == 0
        shot(page, "15_phone_en_recognise")
        for label, table in (("Batch", "#batch-table"), ("Explore", "#explore-table"), ("History", "#history-table")):
            open_tab(page, label)
            page.locator(table).scroll_into_view_if_needed()
            columns_readable(page, table)
            shot(page, f"16_phone_en_{label}")
        switch_language(page, "中文")
        for position, label in enumerate(TABS["zh"], 1):
            open_tab(page, label)
            charts_fit(page)
            shot(page, f"17_phone_zh_{position}_{label}")
        open_tab(page, "探索")
        columns_readable(page, "#explore-table")
    finally:
        context.close()


def test_explore_maps_a_batch_of_seventeen_real_clips_in_colour_and_recolours_without_recomputing(page, server):
    """Issue 20.3: Batch -> Explore on the defaults draws clusters (was 0 clusters, all grey), a legend,
    and colouring by emotion redraws the map from what is kept."""
    from conftest import speech_clips

    clips = speech_clips(17)
    page.locator("button[role=tab]:has-text('Batch')").first.click()
    page.locator("#batch-files input[type=file]").set_input_files([str(c) for c in clips])
    page.wait_for_function("document.querySelectorAll('#batch-files .file-preview tr, #batch-files tbody tr').length >= 17")
    page.locator("#batch-start").click()
    page.wait_for_selector("#batch-summary")
    page.locator("#batch-to-explore").click()
    page.wait_for_function("document.querySelectorAll('#explore-files a').length >= 1")
    page.locator("#explore-start").click()
    page.wait_for_selector("#explore-map .js-plotly-plot")
    summary = page.locator("#explore-summary").inner_text()
    assert "17 embeddings" in summary and "smallest cluster 3 (chosen for 17 clips)" in summary, summary
    legend = page.locator("#explore-map .legend").text_content()
    assert "cluster 0" in legend and "cluster 1" in legend, legend
    fills = page.locator("#explore-map .scatterlayer .point").evaluate_all("points => points.map(p => p.style.fill)")
    assert len(fills) == 17 and len(set(fills) - {"rgb(176, 176, 176)"}) >= 2, fills  # not all noise grey
    table = page.locator("#explore-table")
    for header in ("cluster", "size", "dominant emotion", "members"):
        cell = table.locator("th", has_text=header).first
        assert cell.evaluate("h => h.scrollWidth <= h.clientWidth + 1"), header
    shot(page, "18_explore_17_clips_by_cluster")
    page.locator("#explore-colour label", has_text="predicted emotion").click()  # no button: redrawn from what is kept
    page.wait_for_function("document.querySelector('#explore-map .legend').textContent.includes('predicted emotion')")
    assert "cluster 0" not in page.locator("#explore-map .legend").text_content()
    assert page.locator("#explore-summary").inner_text() == summary  # the same map, only coloured otherwise
    shot(page, "19_explore_17_clips_by_emotion")


def test_explore_maps_two_clips(page):
    page.locator("button[role=tab]:has-text('Explore')").first.click()
    page.locator("#explore-files input[type=file]").set_input_files([str(SAMPLES / "en_happy_1.wav"),
                                                                     str(SAMPLES / "zh_neutral_1.wav")])
    page.wait_for_function("document.querySelectorAll('#explore-files a').length >= 2")
    page.locator("#explore-start").click()
    page.wait_for_selector("#explore-map .js-plotly-plot")
    assert page.locator("#explore-map .scatterlayer .point").count() == 2
    assert "drawn with PCA" in page.locator("#explore-summary").inner_text()
    assert "en_happy_1.wav" in page.locator("#explore-map .scatterlayer").text_content()  # names beside the points
    shot(page, "20_explore_two_clips")


def test_history_lists_a_batch_run_with_its_files(page, server):
    """Issue 20.4: batch runs are in History beside recognitions."""
    page.locator("button[role=tab]:has-text('Batch')").first.click()
    page.locator("#batch-files input[type=file]").set_input_files([str(SAMPLES / "en_neutral_1.wav"),
                                                                   str(SAMPLES / "en_angry_2.wav")])
    page.wait_for_function("document.querySelectorAll('#batch-files .file-preview tr, #batch-files tbody tr').length >= 2")
    page.locator("#batch-start").click()
    page.wait_for_selector("#batch-summary")
    page.locator("button[role=tab]:has-text('History')").first.click()
    page.wait_for_function("document.querySelector('#history-table').innerText.includes('2 files, 0 failed')")
    link = page.locator("#history-table a", has_text="results.csv").first
    href = link.get_attribute("href")
    body = page.request.get(href if href.startswith("http") else server["url"] + href).body().decode("utf-8-sig")
    assert body.splitlines()[1].split(",")[0].endswith("en_neutral_1.wav") and len(body.splitlines()) == 3
    shot(page, "21_history_with_batch")


# ---------------------------------------------------------------------------------------- Live tab
def _microphone_file(path: Path, audio: np.ndarray) -> Path:
    """What Chromium's fake microphone plays (in a loop): 16-bit WAV at 48 kHz, a browser's usual rate."""
    import soundfile as sf
    import soxr

    sf.write(path, soxr.resample(audio, 16000, 48000, quality="HQ"), 48000, subtype="PCM_16")
    return path


def _open_live(chromium, server, lang: str):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    context = chromium.new_context(viewport={"width": 1400, "height": 1000}, locale="en-US",
                                   permissions=["microphone"])
    page = context.new_page()
    page.set_default_timeout(RESULT_TIMEOUT_MS)
    page.goto(server["url"] + f"/?lang={lang}")
    page.wait_for_selector("#start")
    page.locator("button[role=tab]", has_text="Live" if lang == "en" else "实时").first.click()
    page.wait_for_selector("#live-mic button.record-button")
    return page


#: A row of the Live tab's list of utterances as its text reads: time span, emotion, confidence.
FINAL_ROW = r"(\d+\.\d\d–\d+\.\d\d)\s*\n\s*(.+?)\s*\n\s*(\d+\.\d%)"
FINAL_SPAN_JS = r"/\d+\.\d\d–\d+\.\d\d/g"


def _finals_shown(page) -> list[list[str]]:
    """The rows of the Live tab's list of utterances, as the page shows them."""
    return [list(row) for row in re.findall(FINAL_ROW, page.locator("#live-finals").inner_text())]


def test_live_tab_with_a_fake_microphone_shows_the_timeline_and_finals_and_saves_what_it_showed(browser, server,
                                                                                                   tmp_path):
    """Issue 21 §3: two browsers record at once (Chromium's fake microphone: one plays real speech with
    pauses, the other silence); the first shows its timeline and final labels, the second only
    silence; each saved session holds exactly what its page showed, and History lists them."""
    from conftest import speech_with_pauses
    from emotion2vec_plus.apps.webui.charts import emotion_name

    # Long pauses: Gradio's microphone sends 0.1 s pieces and, on a busy machine, some never reach the
    # server, which shortens the pauses the stream hears.
    speech = _microphone_file(tmp_path / "speech.wav", speech_with_pauses(pause_s=3.0))
    silence = _microphone_file(tmp_path / "silence.wav", np.zeros(16000 * 5, np.float32))
    fake = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
    chromium = browser.browser_type  # each fake microphone plays its file for the whole browser process
    speaking = chromium.launch(executable_path=CHROMIUM, headless=True,
                               args=CHROMIUM_ARGS + fake + [f"--use-file-for-fake-audio-capture={speech}"])
    quiet = chromium.launch(executable_path=CHROMIUM, headless=True,
                            args=CHROMIUM_ARGS + fake + [f"--use-file-for-fake-audio-capture={silence}"])
    page = other = None
    try:
        page, other = _open_live(speaking, server, "en"), _open_live(quiet, server, "zh")
        page.locator("#live-mic button.record-button").click()
        other.locator("#live-mic button.record-button").click()
        # the timeline is drawn (class curves) and at least one utterance gets its final label
        page.wait_for_function("document.querySelectorAll('#live-chart .scatterlayer .trace path.js-line').length >= 2")
        page.wait_for_function(f"(document.querySelector('#live-finals').innerText.match({FINAL_SPAN_JS}) || [])"
                               ".length >= 1", timeout=120_000)
        assert page.locator("#live-now #live-emoji").inner_text().strip()
        shot(page, "30_live_recording")
        other.wait_for_function("document.querySelector('#live-now').innerText.includes('静音')")
        for each in (page, other):
            each.locator("#live-mic button:has(span.pinger)").first.click()  # Stop (its text follows the language)
        page.wait_for_function("document.querySelector('#live-status-box').innerText.includes('Stopped:')")
        other.wait_for_function("document.querySelector('#live-status-box').innerText.includes('已停止')")
        shown = _finals_shown(page)
        assert len(shown) >= 1 and all(row[1].split(" ")[0] in "😠🤢😨😊😐🤔😢😲❓" for row in shown)
        assert _finals_shown(other) == []

        folders = []
        for each, word in ((page, "Saved to"), (other, "已保存到")):
            each.locator("#live-save").click()
            each.wait_for_function(f"document.querySelector('#live-status-box').innerText.includes('{word}')")
            each.wait_for_function("document.querySelectorAll('#live-files a').length >= 2")
            name = re.search(r"live_\d{8}_\d{6}(?:_\d+)?", each.locator("#live-status-box").inner_text()).group(0)
            folders.append(server["outputs"] / name)
        shot(page, "31_live_saved")
        mine, theirs = folders
        assert mine != theirs
        events = [json.loads(line) for line in (mine / "events.jsonl").read_text(encoding="utf-8").splitlines()]
        finals = [e for e in events if e["type"] == "utterance"]
        assert [[f"{f['start_s']:.2f}–{f['end_s']:.2f}", emotion_name(f["emotion"], f["emoji"], f["emotion_zh"]),
                 f"{f['confidence'] * 100:.1f}%"] for f in reversed(finals)] == shown
        assert np.load(mine / "utterances.npy").shape == (len(finals), BUNDLED_DIM)
        import soundfile as sf

        recorded = sf.read(mine / "processed_audio.wav")[0]
        assert np.sqrt(np.mean(recorded ** 2)) > 0.01  # the speech the fake microphone played
        quiet_events = [json.loads(line) for line in (theirs / "events.jsonl").read_text(encoding="utf-8").splitlines()]
        assert quiet_events and {e["type"] for e in quiet_events} == {"silence"}
        assert not (theirs / "utterances.npy").exists()
        assert np.max(np.abs(sf.read(theirs / "processed_audio.wav")[0])) < 1e-3

        page.locator("button[role=tab]:has-text('History')").first.click()
        stamp = datetime.strptime(mine.name[5:20], "%Y%m%d_%H%M%S").strftime("%Y-%m-%d %H:%M:%S")
        page.wait_for_function(f"document.querySelector('#history-table').innerText.includes('{stamp}')")
        table = page.locator("#history-table").inner_text()
        assert re.search(rf"{stamp}\s+live\s+{len(finals)} utterances, ", table), table
        assert re.search(r"\slive\s+0 utterances, ", table), table  # the silent session
        shot(page, "32_live_in_history")
    except Exception:
        for name, each in (("39_live_failed_speech", page), ("39_live_failed_silence", other)):
            if each is not None:
                shot(each, name)
        raise
    finally:
        speaking.close()
        quiet.close()
