"""Unlabelled adaptation of the bundled compact model (emotion2vec_plus.adaptation, Emotion2VecPlus.adapt,
``emotion2vec-plus adapt`` and ``--adapter``), on real speech."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from conftest import SHIPPED_SPEECH, speech_frames
from emotion2vec_plus import Emotion2VecPlus
from emotion2vec_plus.adaptation import TRAINING_STATISTICS_ASSET, Adapter
from emotion2vec_plus.cli import main
from emotion2vec_plus.errors import AdapterError
from emotion2vec_plus.models.registry import asset_path, default_compact_path

TRAINING = asset_path(TRAINING_STATISTICS_ASSET)
#: The shortest shipped clips (one utterance each), four copies of each: 24 utterances.
CLIPS = SHIPPED_SPEECH[:6]


@pytest.fixture(scope="module")
def compact() -> Emotion2VecPlus:
    return Emotion2VecPlus(compute_type="float32")


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recordings")
    for copy in range(4):
        for clip in CLIPS:
            shutil.copy(clip, folder / f"{copy}_{clip.name}")
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    return folder


@pytest.fixture(scope="module")
def adapter(compact, recordings, tmp_path_factory) -> Adapter:
    return compact.adapt(sorted(str(p) for p in recordings.iterdir()), tmp_path_factory.mktemp("adapter") / "a.safetensors")


def test_adapt_reports_a_corrupt_input_and_uses_the_rest(adapter, recordings):
    assert [source for source, _ in adapter.skipped] == [str(recordings / "broken.wav")]
    assert "broken.wav" in adapter.skipped[0][1]
    assert adapter.num_files == 24 and adapter.num_utterances == 24
    assert adapter.input_mean.shape == (2048,) and (adapter.input_scale > 0).all()


def test_adapter_file_round_trip(adapter):
    loaded = Adapter.load(adapter.path)
    np.testing.assert_array_equal(loaded.input_mean, adapter.input_mean)
    np.testing.assert_array_equal(loaded.input_scale, adapter.input_scale)
    assert (loaded.num_utterances, loaded.num_files, loaded.model_sha256, loaded.source) == (
        24, 24, adapter.model_sha256, adapter.source)
    assert loaded.digest == adapter.digest and loaded.describe().startswith("a.safetensors (sha256 ")


def test_training_statistics_are_the_identity(compact):
    clip = str(CLIPS[-1])
    plain = compact.predict(clip, extract_embedding=True)
    same = Emotion2VecPlus(compute_type="float32", adapter=TRAINING).predict(clip, extract_embedding=True)
    assert same.adapter.startswith(TRAINING.name) and plain.adapter == "none"
    assert same.scores == pytest.approx(plain.scores, abs=1e-5)
    np.testing.assert_allclose(same.embedding, plain.embedding, atol=1e-5)


def test_adapted_model_changes_scores_and_every_output_follows(compact, adapter):
    clip = str(CLIPS[-1])
    plain = compact.predict(clip, extract_embedding=True)
    compact.apply_adapter(adapter)
    try:
        adapted = compact.predict(clip, extract_embedding=True)
        frames = compact.predict(clip, granularity="frame", extract_embedding=True)
        samples = torch.from_numpy(_samples(clip))
        with torch.inference_mode():
            inputs = compact.model.projection_input_frames(samples[None]).frames.numpy()[0]
    finally:
        compact.apply_adapter(None)
    assert max(abs(adapted.scores[k] - plain.scores[k]) for k in plain.scores) > 1e-2
    assert adapted.adapter == adapter.describe()
    # The model pools the frames that are speech (v3.1): the same frames for the input and the embedding.
    assert compact.pooling == "speech"
    pooled_frames = speech_frames(samples.numpy(), len(inputs), compact.model.hop_samples)
    pooled = inputs[pooled_frames].mean(0)
    # The adapted embedding is the re-mapped input through the model file's own projection.
    training = Adapter.load(TRAINING)
    remapped = (pooled - adapter.input_mean) / adapter.input_scale * training.input_scale + training.input_mean
    weight = compact.model.spec.projection["project.linear.weight"]
    bias = compact.model.spec.projection["project.linear.bias"]
    np.testing.assert_allclose(adapted.embedding, weight @ remapped + bias, atol=2e-4)
    # Frame mode and the embedding follow: frames average to the adapted embedding, which scores as the result.
    np.testing.assert_allclose(frames.embedding[pooled_frames].mean(0), adapted.embedding, atol=1e-4)
    assert compact.classify_embedding(adapted.embedding) == pytest.approx(adapted.scores, abs=1e-5)
    assert compact.predict(clip).scores == pytest.approx(plain.scores, abs=1e-6)  # None restores the model


def _samples(path) -> np.ndarray:
    import soundfile as sf

    audio, rate = sf.read(path, dtype="float32")
    assert rate == 16000
    return audio


def test_too_few_utterances_is_a_value_error(compact):
    with pytest.raises(ValueError, match=r"at least 20 utterances, found 2 in 2 file\(s\).*spanning the emotions"):
        compact.adapt([str(CLIPS[0]), str(CLIPS[1])])


def test_bad_adapter_files_are_clear_errors_naming_the_file(compact, adapter, tmp_path):
    good = Adapter.load(adapter.path)
    text = tmp_path / "notes.safetensors"
    text.write_text("not a tensor file")
    nan = tmp_path / "nan.safetensors"
    Adapter(np.full(2048, np.nan, np.float32), good.input_scale, 24, good.model_sha256, "x").save(nan)
    short = tmp_path / "short.safetensors"
    Adapter(good.input_mean[:100], good.input_scale[:100], 24, good.model_sha256, "x").save(short)
    other = tmp_path / "other.safetensors"
    Adapter(good.input_mean, good.input_scale, 24, "0" * 64, "x").save(other)
    plain_safetensors = tmp_path / "plain.safetensors"
    save_file({"input_mean": good.input_mean, "input_scale": good.input_scale}, str(plain_safetensors))
    cases = {text: "not an adapter file", plain_safetensors: "not an adapter file", default_compact_path(): "not an adapter",
             nan: "NaN", short: "100 inputs", other: "made for another model", tmp_path / "missing.safetensors": "not found"}
    for path, problem in cases.items():
        with pytest.raises(AdapterError, match=problem) as caught:
            compact.apply_adapter(path)
        assert str(path) in str(caught.value)
    assert compact.adapter is None and compact.predict(str(CLIPS[0])).adapter == "none"


def test_emotion2vec_models_cannot_be_adapted(small_model, compact):
    for call in (lambda: small_model.adapt([str(CLIPS[0])]), lambda: small_model.apply_adapter(TRAINING)):
        with pytest.raises(AdapterError, match="adaptation is for the bundled compact model"):
            call()


def test_cli_adapt_then_predict_with_adapter(recordings, tmp_path, capsys):
    out = tmp_path / "adapted.safetensors"
    assert main(["adapt", str(recordings), "-o", str(out), "--compute-type", "float32"]) == 0
    stdout, stderr = capsys.readouterr()
    assert "24 utterances from 24 file(s), 1 skipped" in stdout
    assert stderr.count(f"skipped {recordings / 'broken.wav'}:") == 1, stderr  # once, not also as a log line
    clip = str(CLIPS[-1])
    assert main(["predict", clip, "--json", "--compute-type", "float32", "--adapter", str(out)]) == 0
    adapted = json.loads(capsys.readouterr().out)
    assert main(["predict", clip, "--json", "--compute-type", "float32"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert adapted["adapter"].startswith("adapted.safetensors (sha256 ") and plain["adapter"] == "none"
    assert adapted["scores"] != pytest.approx(plain["scores"], abs=1e-3)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 32)
    assert main(["predict", clip, "--adapter", str(bad)]) == 2
    assert f"error: {bad}: not an adapter file" in capsys.readouterr().err
