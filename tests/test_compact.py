"""The bundled compact model: the default, offline, same Result/granularities/files as emotion2vec+."""

from __future__ import annotations

import hashlib
import json
from importlib import resources

import numpy as np
import pytest

from conftest import BUNDLED_DIM, speech_clips, speech_frames, speech_of_length
from emotion2vec_plus import EMOTIONS, Emotion2VecPlus
from emotion2vec_plus.models.compact import read_compact
from emotion2vec_plus.models.registry import COMPACT_FILE
from emotion2vec_plus.errors import CheckpointError
from emotion2vec_plus.numerics import FLOAT32, assert_close

SAMPLES = resources.files("emotion2vec_plus") / "samples"


@pytest.fixture(scope="module")
def compact() -> Emotion2VecPlus:
    return Emotion2VecPlus()


def test_default_model_is_the_bundled_compact_model(compact):
    assert compact.model_name == "compact"
    assert compact.embed_dim == BUNDLED_DIM and compact.frame_rate == 50
    assert [label.english for label in compact.labels] == list(EMOTIONS)


def test_model_file_metadata(compact):
    spec = read_compact()
    assert spec.version == 2 and spec.projection_layers == [3, 4, 5, 6] and spec.head is not None
    assert spec.first_tuned == 6 and spec.encoder == {}  # the encoder as released: nothing fine-tuned
    assert spec.head.embedding_model == "compact" and spec.head.embed_dim == BUNDLED_DIM
    assert set(spec.head.labels) == set(EMOTIONS) - {"other", "unknown"}
    info = json.loads((resources.files("emotion2vec_plus") / "assets" / "whisper_base_encoder.json").read_text())
    assert spec.metadata["encoder_sha256"] == info["sha256"]
    assert "non-commercial" in spec.head.training["licence"]
    record = json.loads((resources.files("emotion2vec_plus") / "assets" / "compact_v2.json").read_text())
    # calibrated: logits divided by the temperature fitted on out-of-fold predictions (v3.1: 0.92, sharper)
    assert spec.head.training["temperature"] == pytest.approx(record["calibration"]) != 1.0
    assert spec.pooling == record["recipe"]["pool"] == "speech"  # v3.1 averages only the speech frames


def test_untrained_classes_get_zero_probability(compact):
    result = compact.predict(speech_of_length(2.0), granularity="frame")
    assert result.scores["other"] == 0.0 and result.scores["unknown"] == 0.0
    assert abs(sum(result.scores.values()) - 1) < 1e-5
    assert all(f.scores[EMOTIONS.index("other")] == 0.0 for f in result.frames)


def test_frames_embedding_and_scores_are_consistent(compact):
    wav = speech_of_length(3.0, offset=5)
    frames = compact.extract_embedding(wav, granularity="frame")
    assert frames.shape == (150, BUNDLED_DIM)
    result = compact.predict(wav, extract_embedding=True)
    # the utterance embedding is the mean of the frames the model pools: v3.1 pools its speech frames
    assert compact.pooling == "speech"
    pooled = speech_frames(wav, len(frames), compact.model.hop_samples)
    assert 0 < pooled.sum() < len(frames)  # the clip's edges are not speech, so fewer than all frames
    assert np.allclose(frames[pooled].mean(axis=0), result.embedding, atol=1e-4)
    assert not np.allclose(frames.mean(axis=0), result.embedding, atol=1e-2)
    assert compact.classify_embedding(result.embedding) == pytest.approx(result.scores, abs=1e-5)


def test_batch_equals_one_by_one(compact):
    clips = [str(p) for p in speech_clips(3)]
    together = compact.predict_batch(clips, extract_embedding=True)
    for path, result in zip(clips, together):
        alone = compact.predict(path, extract_embedding=True)
        # Whisper's block 3 makes large activations; float32 rounding then differs slightly with padding.
        assert_close(result.embedding, alone.embedding, FLOAT32, what="batched vs alone embedding")
        assert result.emotion == alone.emotion
        assert_close(list(result.scores.values()), list(alone.scores.values()), FLOAT32, what="scores")


def test_long_audio_is_scored_in_speech_segments(compact):
    wav = np.tile(speech_of_length(20.0), 4)  # 80 s of joined clips -> pieces of at most 10 s of speech
    result = compact.predict(wav)
    assert len(result.segments) >= 8 and all(s.end_s - s.start_s <= 10.0 + 1e-6 for s in result.segments)
    assert 30 < sum(s.speech_s for s in result.segments) <= 80 and result.segments[-1].end_s <= 80.0
    with pytest.raises(ValueError, match="at most 30"):
        Emotion2VecPlus(window_s=45)


def test_bundled_samples_run(compact, tmp_path):
    paths = sorted(str(p) for p in SAMPLES.iterdir() if p.name.endswith(".wav"))
    assert len(paths) == 6
    results = compact.predict_batch(paths, output_dir=tmp_path)
    assert all(r.ok and r.emotion in EMOTIONS for r in results)
    assert len(list(tmp_path.iterdir())) == 6


def test_real_speech_accuracy_is_far_above_chance(compact):
    """A sanity check, not the evaluation (that is speaker-independent, in the model card):
    the model, trained on these corpora, gets most clips of a few speakers right."""
    clips = speech_clips(1440)[::12]
    import csv

    from conftest import DATASETS
    with (DATASETS / "RAVDESS" / "manifest.csv").open() as handle:
        truth = {str(DATASETS / "RAVDESS" / r["path"]): r["label"] for r in csv.DictReader(handle)}
    results = compact.predict_batch([str(c) for c in clips])
    accuracy = np.mean([r.emotion == truth[r.source] for r in results])
    assert accuracy > 0.5


def test_damaged_model_file_is_a_clear_error(tmp_path):
    bad = tmp_path / COMPACT_FILE
    bad.write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match=COMPACT_FILE):
        read_compact(bad)


def test_shipped_compact_file_checksum():
    data = (resources.files("emotion2vec_plus") / "assets" / COMPACT_FILE).read_bytes()
    recorded = json.loads((resources.files("emotion2vec_plus") / "assets" / COMPACT_FILE.replace(".safetensors", ".json")).read_text())
    assert hashlib.sha256(data).hexdigest() == recorded["sha256"]


def test_golden_output_on_a_bundled_clip(compact):
    """Recorded with compact v3.1 (float32) when it was shipped; catches a changed model file or a
    broken implementation."""
    result = compact.predict(str(SAMPLES / "en_happy_1.wav"), extract_embedding=True)
    golden = {"angry": 0.0015, "disgusted": 0.0040, "fearful": 0.0051, "happy": 0.8270, "neutral": 0.1074,
              "sad": 0.0170, "surprised": 0.0379}
    assert result.emotion == "happy"
    for name, value in golden.items():
        assert result.scores[name] == pytest.approx(value, abs=2e-3)
    assert result.embedding[:4] == pytest.approx([0.3174, 2.0002, 1.2625, -0.7463], abs=2e-2)


def test_every_bundled_sample_is_named_for_what_the_bundled_model_says(compact):
    """A sample called "excited" that the model calls neutral misleads a new user (issue 14):
    the emotion in each file's name is the model's answer (the clips are real speech whose words and
    delivery carry that emotion too; samples/README.md)."""
    samples = sorted(SAMPLES.glob("*.wav"))
    assert len(samples) == 6
    for path in samples:
        named = path.stem.split("_")[1]
        result = compact.predict(str(path))
        assert named in EMOTIONS and result.emotion == named, (path.name, result.emotion, result.confidence)
    assert {path.stem.split("_")[1] for path in samples} >= {"angry", "happy", "neutral"}


def test_a_compact_model_file_of_ones_own_loads_by_path(tmp_path):
    """Version 2 files (fine-tuned top blocks, multi-layer projection): written by save_compact,
    loaded by path through the public API, with embeddings of the projection's size."""
    import torch

    from emotion2vec_plus.models.compact import load_compact_model, save_compact
    from emotion2vec_plus.heads import EmotionHead
    from emotion2vec_plus.models.whisper import load_whisper_encoder

    rng = np.random.default_rng(0)
    released = load_whisper_encoder().state_dict()
    tuned = {name: (value.numpy() + 0.01 * rng.standard_normal(value.shape)).astype(np.float32)
             for name, value in released.items() if name.startswith(("blocks.4.", "blocks.5.", "ln_post."))}
    layers, dim = [4, 5, 6], 32
    projection = {f"project.norms.{i}.{kind}": (np.ones(512) if kind == "weight" else np.zeros(512)).astype(np.float32)
                  for i in range(3) for kind in ("weight", "bias")}
    projection["project.linear.weight"] = (rng.standard_normal((dim, 512 * 3)) / 40).astype(np.float32)
    projection["project.linear.bias"] = np.zeros(dim, np.float32)
    labels = ["angry", "happy", "neutral", "sad"]
    head = EmotionHead(labels, "logreg", dim, "compact", {"mean": np.zeros(dim, np.float32), "scale": np.ones(dim, np.float32),
                                                          "weight": rng.standard_normal((4, dim)).astype(np.float32),
                                                          "bias": np.zeros(4, np.float32)})
    path = save_compact(tmp_path / "mine.safetensors", 4, tuned, layers, projection, head, {"description": "test"})
    model = Emotion2VecPlus(str(path))
    assert model.model_name == str(path) and model.embed_dim == dim
    result = model.predict(speech_of_length(2.0), granularity="frame", extract_embedding=True)
    assert result.embedding.shape == (100, dim) and set(result.scores) == set(EMOTIONS)
    assert result.scores["fearful"] == 0.0 and result.emotion in labels
    # the tuned tensors really replaced the released ones (block 3 stayed as released)
    network, _ = load_compact_model(path)
    state = network.encoder.state_dict()
    assert torch.equal(state["blocks.3.mlp.0.weight"], released["blocks.3.mlp.0.weight"])
    np.testing.assert_allclose(state["blocks.4.mlp.0.weight"].numpy(), tuned["blocks.4.mlp.0.weight"].astype(np.float16), atol=0)


def test_a_model_file_says_how_it_is_scored_and_a_wrong_word_is_refused(tmp_path):
    """``scoring: utterances`` makes an input within the window scored by its utterances by default;
    a value the runtime does not know is refused naming the file, not read as one of the two."""
    from emotion2vec_plus import Emotion2VecPlus
    from emotion2vec_plus.errors import CheckpointError
    from emotion2vec_plus.models.compact import save_compact

    spec = read_compact()
    metadata = {k: v for k, v in spec.metadata.items()
                if k not in ("format", "format_version", "first_tuned", "projection_layers", "head")}

    def write(name: str, scoring: str):
        return save_compact(tmp_path / name, spec.first_tuned, spec.encoder, spec.projection_layers, spec.projection,
                            spec.head, {**metadata, "scoring": scoring})

    assert not Emotion2VecPlus(write("by_utterances.safetensors", "utterances")).score_whole
    assert Emotion2VecPlus(write("by_utterances.safetensors", "utterances"), score_whole=True).score_whole
    bad = write("typo.safetensors", "utterance")
    with pytest.raises(CheckpointError, match="typo.safetensors.*scoring"):
        read_compact(bad)
