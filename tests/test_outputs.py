"""Run folders and the result.json schema."""

from __future__ import annotations

import json
from pathlib import Path
from datetime import datetime
from importlib import resources

import jsonschema
import numpy as np
import pytest
import soundfile as sf

from conftest import speech_of_length, speech_with_pauses
from emotion2vec_plus import load_embedding
from emotion2vec_plus.outputs import create_run_dir


def schema() -> dict:
    return json.loads(resources.files("emotion2vec_plus").joinpath("schemas/result.schema.json").read_text())


def test_run_folders_are_unique_within_one_second(tmp_path):
    moment = datetime(2026, 11, 24, 9, 30, 5)
    first = create_run_dir(tmp_path, now=moment)
    second = create_run_dir(tmp_path, now=moment)
    assert first.name == "outputs_20261124_093005" and second.name == "outputs_20261124_093005_2"


def test_saved_run_has_audio_json_and_embedding(small_model, tmp_path):
    stereo = np.stack([speech_of_length(1.5), speech_of_length(1.5, offset=3)], axis=1)
    source = tmp_path / "call.wav"
    sf.write(source, stereo, 16000)
    result = small_model.predict(str(source), extract_embedding=True, output_dir=tmp_path / "outputs")
    run = tmp_path / "outputs" / result.output_dir.split("/")[-1]
    assert run.name.startswith("outputs_") and sorted(p.name for p in run.iterdir()) == [
        "embedding.npy", "processed_audio.wav", "result.json"]
    info = sf.info(run / "processed_audio.wav")
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert np.array_equal(load_embedding(run / "embedding.npy"), result.embedding)
    data = json.loads((run / "result.json").read_text(encoding="utf-8"))
    jsonschema.validate(data, schema())
    assert data["embedding_shape"] == [small_model.embed_dim] and data["audio"]["channels"] == 2
    assert data["emotion"] == result.emotion and data["output_dir"] == str(run)
    modes = {p.name: p.stat().st_mode & 0o777 for p in run.iterdir()}
    assert len(set(modes.values())) == 1, modes  # result.json is not 0600 beside 0644 siblings


def test_frame_long_failed_and_headless_results_validate(small_model):
    frame = small_model.predict(speech_of_length(1.0), granularity="frame")
    failed = small_model.predict_batch([b"not audio"])[0]
    for result in (frame, failed):
        jsonschema.validate(json.loads(result.to_json()), schema())
    assert json.loads(failed.to_json())["status"] == "error"
    with_embedding = json.loads(small_model.predict(speech_of_length(1.0), extract_embedding=True).to_json(include_embedding=True))
    jsonschema.validate(with_embedding, schema())
    assert len(with_embedding["embedding"]) == small_model.embed_dim


def test_list_runs_newest_first_with_results_and_damaged_runs(tmp_path):
    from emotion2vec_plus.outputs import list_runs
    from emotion2vec_plus.results import Result

    root = tmp_path / "outputs"
    assert list_runs(root) == []
    older = create_run_dir(root, now=datetime(2026, 11, 24, 9, 0, 0))
    newer = create_run_dir(root, now=datetime(2026, 11, 24, 9, 0, 1))
    same_second = create_run_dir(root, now=datetime(2026, 11, 24, 9, 0, 1))
    damaged = create_run_dir(root, now=datetime(2026, 11, 24, 8, 0, 0))
    (root / "batch_20261124_100000").mkdir()  # another kind of run, not listed when recognitions are asked for
    (root / "notes.txt").write_text("x")
    result = Result(source="call.wav", model="compact", granularity="utterance", emotion="happy", emotion_zh="开心",
                    emoji="😊", confidence=0.9, scores={"happy": 0.9, "sad": 0.1}, duration_s=1.5)
    for run in (older, newer, same_second):
        (run / "result.json").write_text(result.to_json(), encoding="utf-8")
    (newer / "embedding.npy").write_bytes(b"\x93NUMPY")
    (damaged / "result.json").write_text("{not json", encoding="utf-8")

    runs = list_runs(root, kinds=("recognition",))
    assert [r.run_dir for r in runs] == [same_second, newer, older, damaged]
    assert runs[1].emotion == "happy" and runs[1].emotion_zh == "开心" and runs[1].confidence == 0.9
    assert runs[1].source == "call.wav" and runs[1].started == datetime(2026, 11, 24, 9, 0, 1)
    assert [f.name for f in runs[1].files] == ["result.json", "embedding.npy"]
    assert runs[3].emotion is None and "unreadable" in runs[3].error
    assert [r.run_dir for r in list_runs(root, limit=2, kinds=("recognition",))] == [same_second, newer]


def test_run_folder_prefix_is_checked(tmp_path):
    import pytest

    assert create_run_dir(tmp_path, now=datetime(2026, 1, 2, 3, 4, 5), prefix="batch_").name == "batch_20260102_030405"
    with pytest.raises(ValueError):
        create_run_dir(tmp_path, prefix="../x")


def test_links_in_the_outputs_folder_are_never_served(small_model, tmp_path):
    """A symlink planted in a run folder (or a linked run folder) is not listed for download."""
    from emotion2vec_plus.outputs import list_runs, servable_file

    outputs = tmp_path / "outputs"
    result = small_model.predict(speech_of_length(1.0), extract_embedding=True, output_dir=outputs)
    run = Path(result.output_dir)
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the web")
    (run / "embedding.npy").unlink()
    (run / "embedding.npy").symlink_to(secret)
    (outputs / "outputs_20990101_000000").symlink_to(tmp_path)  # a linked "run" folder
    (tmp_path / "result.json").write_text("{}")
    runs = list_runs(outputs)
    assert [r.run_dir for r in runs] == [run]
    assert [f.name for f in runs[0].files] == ["processed_audio.wav", "result.json"]
    assert servable_file(run / "embedding.npy", outputs) is None
    assert servable_file(secret, outputs) is None and servable_file(outputs / ".." / "secret.txt", outputs) is None
    assert servable_file(run / "result.json", outputs) == (run / "result.json").resolve()


def test_list_runs_lists_batch_runs_beside_recognitions(small_model, tmp_path):
    from emotion2vec_plus.jobs import run_batch, write_results_csv, zip_npy_embeddings
    from emotion2vec_plus.outputs import BATCH_PREFIX, find_run, list_runs

    outputs = tmp_path / "outputs"
    recognition = Path(small_model.predict(speech_of_length(1.0), output_dir=outputs).output_dir)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    sf.write(inputs / "a.wav", speech_of_length(1.5), 16000)
    sf.write(inputs / "b.wav", speech_of_length(2.0, offset=3), 16000)
    (inputs / "broken.wav").write_bytes(b"RIFF\x24\x80\x00\x00WAVEfmt " + bytes(40))
    batch = create_run_dir(outputs, prefix=BATCH_PREFIX, now=datetime(2099, 1, 2, 3, 4, 5))
    run_batch(small_model, sorted(inputs.iterdir()), batch, embeddings="both", workers=1, progress=False)
    write_results_csv(batch)
    zip_npy_embeddings(batch)
    unfinished = create_run_dir(outputs, prefix=BATCH_PREFIX, now=datetime(2000, 1, 1, 0, 0, 0))

    runs = list_runs(outputs)
    assert [(r.kind, r.run_dir) for r in runs] == [("batch", batch), ("recognition", recognition), ("batch", unfinished)]
    assert (runs[0].items, runs[0].failed, runs[0].model) == (3, 1, small_model.model_name)
    assert [f.name for f in runs[0].files] == ["results.csv", "results.jsonl", "embeddings.parquet", "embeddings_npy.zip"]
    assert runs[0].emotion is None and runs[0].error is None
    assert runs[2].items is None and "no results.jsonl" in runs[2].error
    assert find_run(outputs, batch.name) == runs[0] and find_run(outputs, recognition.name) == runs[1]
    assert find_run(outputs, "../" + batch.name) is None and find_run(outputs, "batch_x") is None


def test_a_new_kind_of_run_is_one_entry_in_run_kinds(tmp_path, monkeypatch):
    """The listing is ready for kinds other modules add (e.g. live sessions: processed audio, events)."""
    from emotion2vec_plus import outputs as run_folders

    def read_live(run_dir: Path) -> dict:
        return {"items": len((run_dir / "events.jsonl").read_text(encoding="utf-8").splitlines())}

    live = run_folders.RunKind("live", "live_", ("processed_audio.wav", "events.jsonl"), read_live)
    monkeypatch.setitem(run_folders.RUN_KINDS, "live", live)
    session = create_run_dir(tmp_path, prefix="live_", now=datetime(2026, 12, 6, 10, 0, 0))
    (session / "events.jsonl").write_text('{"utterance": 1}\n{"utterance": 2}\n', encoding="utf-8")
    runs = run_folders.list_runs(tmp_path)
    assert [(r.kind, r.items) for r in runs] == [("live", 2)]
    assert [f.name for f in runs[0].files] == ["events.jsonl"]


def _stream_into(recorder, model, audio: np.ndarray) -> list:
    """Stream ``audio`` through the model in 0.5 s pieces, recording it as the WebUI does; every event."""
    stream = model.stream(hop_s=0.5, window_s=3.0, embeddings=True)
    seen = []
    for block in np.array_split(audio, int(np.ceil(len(audio) / 8000))):
        events = stream.push(block)
        recorder.add_audio(block)
        recorder.add_events(events)
        seen += events
    events = stream.close()
    recorder.add_events(events)
    return seen + events


def test_live_recorder_saves_the_audio_every_event_and_the_utterances_embeddings(tmp_path):
    from emotion2vec_plus import Emotion2VecPlus
    from emotion2vec_plus.outputs import LiveRecorder, list_runs

    model = Emotion2VecPlus()
    audio = speech_with_pauses()
    recorder = LiveRecorder(tmp_path)
    work = recorder.folder
    assert work.parent == tmp_path and work.name.startswith(".live-")
    seen = _stream_into(recorder, model, audio)
    utterances = [e for e in seen if e.type == "utterance"]
    assert len(utterances) == 3 and {"emotion", "silence", "speech.start", "speech.end"} <= {e.type for e in seen}

    first = recorder.save(now=datetime(2026, 12, 6, 10, 15, 0))
    assert first.name == "live_20261206_101500" and sorted(f.name for f in first.iterdir()) == [
        "events.jsonl", "processed_audio.wav", "utterances.npy"]
    saved, rate = sf.read(first / "processed_audio.wav", dtype="float32")
    assert rate == 16000 and sf.info(str(first / "processed_audio.wav")).subtype == "PCM_16"
    assert len(saved) == len(audio) and np.max(np.abs(saved - audio)) <= 1 / 32768 + 1e-6
    lines = [json.loads(line) for line in (first / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    assert lines == [json.loads(json.dumps(e.to_dict(include_embedding=False))) for e in seen]
    assert all("embedding" not in line for line in lines)
    rows = np.load(first / "utterances.npy")
    assert rows.shape == (3, model.embed_dim)
    np.testing.assert_allclose(rows, np.stack([e.embedding for e in utterances]), rtol=0, atol=1e-6)

    (run,) = list_runs(tmp_path)  # the working folder is hidden: only the saved session is listed
    assert (run.kind, run.run_dir, run.items, run.error) == ("live", first, 3, None)
    assert run.duration_s == pytest.approx(len(audio) / 16000, abs=0.5)
    assert run.emotion in {e.emotion for e in utterances} and 0 < run.confidence <= 1
    assert [f.name for f in run.files] == ["processed_audio.wav", "events.jsonl", "utterances.npy"]

    # Saved again after more audio: a second folder with all of it; the first is unchanged.
    recorder.add_audio(np.zeros(16000, np.float32))
    second = recorder.save(now=datetime(2026, 12, 6, 10, 15, 0))
    assert second.name == "live_20261206_101500_2"
    assert sf.info(str(second / "processed_audio.wav")).frames == len(audio) + 16000
    assert sf.info(str(first / "processed_audio.wav")).frames == len(audio)
    recorder.discard()
    assert not work.exists() and first.is_dir() and second.is_dir()


def test_live_working_folders_of_dead_sessions_go_and_a_damaged_live_run_says_why(tmp_path):
    import os

    from emotion2vec_plus.outputs import LIVE_PREFIX, LiveRecorder, list_runs

    stale, fresh = tmp_path / ".live-stale", tmp_path / ".live-running"
    for folder in (stale, fresh):
        folder.mkdir()
        (folder / "events.jsonl").write_text("{}\n", encoding="utf-8")
    two_days_ago = datetime.now().timestamp() - 2 * 24 * 3600
    for path in (stale / "events.jsonl", stale):
        os.utime(path, (two_days_ago, two_days_ago))
    LiveRecorder(tmp_path).discard()
    assert not stale.exists() and fresh.is_dir()

    damaged = create_run_dir(tmp_path, prefix=LIVE_PREFIX, now=datetime(2026, 12, 6, 11, 0, 0))
    (damaged / "events.jsonl").write_text('{"type": "emotion", "end_s": 0.5}\nnot json\n', encoding="utf-8")
    empty = create_run_dir(tmp_path, prefix=LIVE_PREFIX, now=datetime(2026, 12, 6, 10, 0, 0))
    runs = list_runs(tmp_path)
    assert [r.run_dir for r in runs] == [damaged, empty]
    assert "events.jsonl: a line is not JSON" in runs[0].error and runs[0].items is None
    assert "no events.jsonl" in runs[1].error
