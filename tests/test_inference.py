"""The Python API on real speech: results, frames, long audio, batches, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import speech_clips, speech_of_length
from emotion2vec_plus import EMOTIONS, CorruptAudioError, Emotion2VecPlus, ModelError
from emotion2vec_plus.inference import plan_windows


def test_predict_real_speech_file(small_model):
    path = speech_clips(1)[0]
    result = small_model.predict(str(path), extract_embedding=True)
    assert result.ok and result.source == str(path)
    assert list(result.scores) == list(EMOTIONS)
    assert abs(sum(result.scores.values()) - 1.0) < 1e-5
    assert result.emotion == max(result.scores, key=result.scores.get)
    assert result.confidence == pytest.approx(result.scores[result.emotion])
    assert result.emotion_zh and result.emoji
    assert result.embedding.shape == (small_model.embed_dim,) and result.embedding.dtype == np.float32
    assert result.duration_s == pytest.approx(sf.info(str(path)).duration, abs=1e-3)
    assert result.frames is None and result.segments is None
    assert small_model.classify_embedding(result.embedding) == pytest.approx(result.scores, abs=1e-6)


def test_users_entry_point_extract_then_classify(small_model):
    path = str(speech_clips(2)[1])
    emb = small_model.extract_embedding(path)
    scores = small_model.classify_embedding(emb)
    assert set(scores) == set(EMOTIONS)
    frames = small_model.extract_embedding(path, granularity="frame")
    assert frames.ndim == 2 and frames.shape[1] == small_model.embed_dim
    assert np.allclose(frames.mean(axis=0), emb, atol=1e-5)
    assert small_model.classify_embedding(frames) == pytest.approx(scores, abs=1e-5)
    with pytest.raises(ValueError, match="shape"):
        small_model.classify_embedding(np.zeros(7))


def test_frame_granularity_gives_timed_per_frame_emotions(small_model):
    wav = speech_of_length(2.0)
    result = small_model.predict(wav, granularity="frame", extract_embedding=True)
    expected = (len(wav) - 400) // 320 + 1
    assert result.embedding.shape == (expected, small_model.embed_dim)
    assert len(result.frames) == expected
    first, second, last = result.frames[0], result.frames[1], result.frames[-1]
    assert (first.start_s, first.end_s, second.start_s) == pytest.approx((0.0, 0.025, 0.02))
    assert last.end_s <= 2.0 + 1e-9
    assert all(abs(sum(f.scores) - 1) < 1e-4 and f.emotion in EMOTIONS for f in result.frames)


def test_long_audio_is_windowed_with_segments(small_checkpoint):
    model = Emotion2VecPlus(small_checkpoint, window_s=2.0)
    wav = speech_of_length(5.0)
    result = model.predict(wav, granularity="frame", extract_embedding=True)
    bounds = [t for s in result.segments for t in (s.start_s, s.end_s)]
    assert bounds == pytest.approx([0, 5 / 3, 5 / 3, 10 / 3, 10 / 3, 5], abs=1e-3)
    windows = plan_windows(len(wav), 32000)
    per_window = [model.extract_embedding(wav[a:b], granularity="frame") for a, b in windows]
    assert np.allclose(result.embedding, np.concatenate(per_window), atol=1e-4)
    assert result.frames[len(per_window[0])].start_s == pytest.approx(windows[1][0] / 16000)
    utterance = model.predict(wav, extract_embedding=True).embedding
    assert np.allclose(utterance, np.concatenate(per_window).mean(axis=0), atol=1e-5)
    for segment, piece in zip(result.segments, per_window):
        assert segment.scores == pytest.approx(model.classify_embedding(piece), abs=1e-5)


def test_plan_windows_has_no_tiny_tail():
    assert plan_windows(100, 480000) == [(0, 100)]
    bounds = plan_windows(16000 * 61, 16000 * 30)
    assert len(bounds) == 3 and bounds[0][0] == 0 and bounds[-1][1] == 16000 * 61
    assert max(b - a for a, b in bounds) <= 16000 * 30 and min(b - a for a, b in bounds) > 16000 * 20


def test_ten_minute_file_runs_in_windows(small_model, tmp_path):
    wav = np.tile(speech_of_length(30.0), 20)
    path = tmp_path / "ten_minutes.flac"
    sf.write(path, wav, 16000)
    result = small_model.predict(str(path))
    assert result.duration_s == pytest.approx(600.0)
    assert len(result.segments) == 20 and result.segments[-1].end_s == pytest.approx(600.0)


def test_batch_with_a_corrupt_file_reports_it_and_finishes_the_rest(small_model, tmp_path):
    good = [str(p) for p in speech_clips(3)]
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF....WAVEfmt this is not audio at all")
    results = small_model.predict_batch([good[0], str(bad), good[1], good[2]], extract_embedding=True)
    assert [r.ok for r in results] == [True, False, True, True]
    assert "broken.wav" in results[1].error and results[1].emotion is None
    for path, result in zip([good[0], good[1], good[2]], [results[0], results[2], results[3]]):
        alone = small_model.predict(path, extract_embedding=True)
        assert np.abs(alone.embedding - result.embedding).max() <= 1e-4
    with pytest.raises(CorruptAudioError):
        small_model.predict_batch([str(bad)], errors="raise")


def test_speechbrain_style_batch_calls(small_model):
    clips = [speech_of_length(s, offset=i) for i, s in enumerate((1.0, 2.5, 1.7))]
    width = max(len(c) for c in clips)
    wavs = torch.zeros(len(clips), width)
    for row, clip in enumerate(clips):
        wavs[row, : len(clip)] = torch.from_numpy(clip)
    wav_lens = torch.tensor([len(c) / width for c in clips])
    embeddings = small_model.encode_batch(wavs, wav_lens)
    probs, score, index, labels = small_model.classify_batch(wavs, wav_lens)
    for row, clip in enumerate(clips):
        alone = small_model.predict(clip, extract_embedding=True)
        assert np.abs(embeddings[row].numpy() - alone.embedding).max() <= 1e-4
        assert labels[int(index[row])] == alone.emotion
        assert float(score[row]) == pytest.approx(alone.confidence, abs=1e-4)
    assert probs.shape == (3, 9)


def test_embedding_only_model(tmp_path):
    from checkpoints import build_checkpoint

    directory = build_checkpoint(tmp_path / "base", tokens=None, embed_dim=64, num_heads=4, depth=1,
                                 prenet_depth=1, conv_pos_groups=4)
    model = Emotion2VecPlus(directory)
    assert not model.has_head and model.labels == []
    result = model.predict(speech_of_length(1.0), extract_embedding=True)
    assert result.emotion is None and result.scores == {} and result.embedding.shape == (64,)
    with pytest.raises(ModelError, match="no emotion classifier head"):
        model.classify_embedding(result.embedding)


def test_bad_arguments(small_model):
    with pytest.raises(ValueError, match="granularity"):
        small_model.predict(speech_of_length(1.0), granularity="word")


def test_custom_head_replaces_the_classes_and_refuses_other_models(small_checkpoint, small_model, tmp_path):
    from emotion2vec_plus.heads import HeadMismatchError, train_head

    clips = [str(p) for p in speech_clips(24)]
    embeddings = np.stack([r.embedding for r in small_model.predict_batch(clips, extract_embedding=True)])
    names = ["calm" if i % 2 else "tense" for i in range(len(clips))]
    head = train_head(embeddings, names, embedding_model=small_model.model_name)
    path = head.save(tmp_path / "tension.safetensors")

    custom = Emotion2VecPlus(small_checkpoint, head=path)
    result = custom.predict(clips[0], granularity="frame", extract_embedding=True)
    assert list(result.scores) == ["calm", "tense"] and result.emotion in ("calm", "tense")
    assert result.scores == pytest.approx(dict(zip(head.labels, head.predict_proba(result.embedding.mean(0)))), abs=1e-5)
    assert result.frames[0].emotion in ("calm", "tense")
    assert small_model.classify_embedding(embeddings[0], head=path) == pytest.approx(
        dict(zip(head.labels, head.predict_proba(embeddings[0]))), abs=1e-6)

    other = train_head(embeddings, names, embedding_model="large")
    with pytest.raises(HeadMismatchError, match="large"):
        Emotion2VecPlus(small_checkpoint, head=other)
