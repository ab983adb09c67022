"""The Python API on real speech: results, frames, long audio, batches, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import closely_joined, speech_clips, speech_frames, speech_of_length
from emotion2vec_plus import EMOTIONS, CorruptAudioError, Emotion2VecPlus, ModelError
from emotion2vec_plus.fileio import umask as _umask
from emotion2vec_plus.numerics import FLOAT32, assert_close
from emotion2vec_plus.segmentation import MERGE_PAUSE_S, plan_input, scores_alike
from emotion2vec_plus.vad import SpeechTrack, speech_probabilities

SR = 16000


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
    assert all(abs(sum(f.scores) - 1) < 1e-4 for f in result.frames)
    assert all(f.emotion in EMOTIONS for f in result.frames if f.speech)
    assert sum(f.speech for f in result.frames) > len(result.frames) / 3  # the clip starts in silence, then speech


def test_long_audio_is_scored_utterance_by_utterance_pooled_by_speech(small_checkpoint):
    """Past the window, each utterance is scored whole and the input's result pools them by speech time."""
    model = Emotion2VecPlus(small_checkpoint, window_s=4.0)
    clips = [sf.read(p, dtype="float32")[0] for p in speech_clips(4)]  # ~1 s of silence around each
    wav = np.concatenate(clips)
    result = model.predict(wav, granularity="frame", extract_embedding=True)
    plan = plan_input(len(wav), 4 * 16000, speech_probabilities(wav), frames=True)
    pieces = plan.pieces()
    assert plan.speech_found and not plan.whole and len(result.segments) == len(plan.segments) >= 4
    assert pieces[0].start == 0 and pieces[-1].end == len(wav)  # frames cover it all, without overlap
    assert all(a.end == b.start for a, b in zip(pieces, pieces[1:]))
    for segment, piece in zip(result.segments, plan.segments):
        assert (segment.start_s, segment.end_s) == pytest.approx((piece.speech_start / 16000, piece.speech_end / 16000))
        assert segment.speech_s == pytest.approx(piece.speech / 16000)
        alone = model.extract_embedding(wav[piece.start : piece.end])
        assert segment.scores == pytest.approx(model.classify_embedding(alone), abs=1e-5)
    weights = np.array([s.speech_s for s in result.segments]) / sum(s.speech_s for s in result.segments)
    pooled = weights @ np.array([list(s.scores.values()) for s in result.segments])
    assert list(result.scores.values()) == pytest.approx(list(pooled), abs=1e-6)
    assert result.embedding.shape[0] == len(result.frames) == sum(
        (p.end - p.start - 400) // 320 + 1 for p in pieces)
    starts = [f.start_s for f in result.frames]
    assert starts == sorted(starts) and starts[-1] < len(wav) / 16000
    utterance = model.predict(wav, extract_embedding=True)  # utterance granularity: the same speech pieces
    assert utterance.scores == pytest.approx(result.scores, abs=1e-6)


def test_a_clip_within_the_window_is_scored_whole(small_checkpoint):
    """FunASR's numbers: the whole clip, silence and all, is one piece; one utterance gives no segments."""
    model = Emotion2VecPlus(small_checkpoint, window_s=4.0)
    wav = sf.read(speech_clips(1)[0], dtype="float32")[0]
    assert len(wav) < 4 * 16000
    result = model.predict(wav, extract_embedding=True)
    assert result.segments is None
    assert result.scores == pytest.approx(model.classify_embedding(model.encode_batch(torch.from_numpy(wav))[0].numpy()),
                                          abs=1e-6)


def test_a_clip_within_the_window_with_several_utterances_reports_each(small_checkpoint):
    """Two sentences with a pause between them inside one window: the clip's own result is still the
    whole clip's, and each sentence is a segment scored on its own."""
    model = Emotion2VecPlus(small_checkpoint, window_s=12.0)
    first, second = (sf.read(p, dtype="float32")[0] for p in speech_clips(2))
    wav = np.concatenate([first, np.zeros(16000, np.float32), second])
    assert len(wav) < 12 * 16000
    result = model.predict(wav)
    whole = model.classify_embedding(model.encode_batch(torch.from_numpy(wav))[0].numpy())
    assert result.scores == pytest.approx(whole, abs=1e-5)
    assert len(result.segments) == 2
    boundary = (len(first) + 8000) / 16000  # the middle of the inserted pause
    assert result.segments[0].end_s < boundary < result.segments[1].start_s
    plan = plan_input(len(wav), 12 * 16000, speech_probabilities(wav))
    for segment, piece in zip(result.segments, plan.segments):
        assert segment.scores == pytest.approx(model.classify_embedding(model.extract_embedding(wav[piece.start : piece.end])),
                                               abs=1e-5)


def _count_encoded_audio(model: Emotion2VecPlus) -> list[tuple[int, int]]:
    """Wrap the model's runner (the real one) to record (real samples, padded samples) per call."""
    calls: list[tuple[int, int]] = []
    runner = model._runner

    def recording(wavs: torch.Tensor, num_samples: torch.Tensor):
        calls.append((int(num_samples.sum()), wavs.numel()))
        return runner(wavs, num_samples)

    model._runner = recording
    return calls


def test_without_segments_a_clip_is_encoded_once_with_the_same_result(small_checkpoint):
    """``segments=False`` (and ``extract_embedding``, the batch job): the clip's own result, embedding
    and scores exactly as with segments, from one pass over the clip instead of three."""
    model = Emotion2VecPlus(small_checkpoint, window_s=12.0)
    first, second = (sf.read(p, dtype="float32")[0] for p in speech_clips(2))
    wav = np.concatenate([first, np.zeros(16000, np.float32), second])
    calls = _count_encoded_audio(model)
    full = model.predict(wav, extract_embedding=True)
    assert len(full.segments) == 2 and sum(real for real, _ in calls) > 1.5 * len(wav)
    calls.clear()
    quick = model.predict(wav, extract_embedding=True, segments=False)
    assert quick.segments is None and calls == [(len(wav), len(wav))]
    assert quick.scores == pytest.approx(full.scores, abs=1e-6)
    np.testing.assert_allclose(quick.embedding, full.embedding, atol=1e-6)
    calls.clear()
    np.testing.assert_allclose(model.extract_embedding(wav), full.embedding, atol=1e-6)
    assert calls == [(len(wav), len(wav))]


def test_a_batch_pads_pieces_only_to_similar_lengths(small_checkpoint):
    """One 10 s and three 3 s clips: the short ones are not padded to 10 s (the encoder computes
    padding like speech), and every result is what the clip gets alone."""
    from emotion2vec_plus.inference import PADDING_BUDGET

    model = Emotion2VecPlus(small_checkpoint, window_s=30.0)
    clips = [speech_of_length(10.0), *(speech_of_length(3.0 + 0.1 * i, offset=3 + i) for i in range(3))]
    calls = _count_encoded_audio(model)
    results = model.predict_batch(clips, segments=False)
    assert sum(padded for _, padded in calls) <= PADDING_BUDGET * sum(len(c) for c in clips)
    assert len(calls) == 2  # the 10 s clip alone, the three short ones together
    for clip, result in zip(clips, results):
        assert result.scores == pytest.approx(model.predict(clip, segments=False).scores, abs=1e-5)


def test_frames_outside_speech_have_no_emotion(small_checkpoint):
    """Frame granularity: the silence before, between and after the sentences is "no speech"."""
    model = Emotion2VecPlus(small_checkpoint, window_s=12.0)
    first, second = (sf.read(p, dtype="float32")[0] for p in speech_clips(2))
    silence = np.zeros(16000, np.float32)
    wav = np.concatenate([silence, first, silence, second, silence])
    result = model.predict(wav, granularity="frame")
    speech = [f for f in result.frames if f.speech]
    quiet = [f for f in result.frames if not f.speech]
    assert speech and quiet
    assert all(f.emotion is None and f.confidence is None for f in quiet)
    assert all(f.emotion in EMOTIONS and f.confidence is not None for f in speech)
    assert all(not f.speech for f in result.frames if f.end_s <= 0.9 or f.start_s >= (len(wav) - 15000) / 16000)
    middle = (len(silence) + len(first) + 8000) / 16000
    assert not any(f.speech for f in result.frames if abs(f.start_s - middle) < 0.1)
    data = result.to_dict()
    assert data["frames"][0]["speech"] is False and data["frames"][0]["emotion"] is None


def test_long_silence_is_scored_with_a_warning(small_checkpoint):
    model = Emotion2VecPlus(small_checkpoint, window_s=4.0)
    noise = 1e-4 * np.random.default_rng(0).standard_normal(16000 * 9).astype(np.float32)
    result = model.predict(noise)
    assert result.ok and result.emotion is not None
    assert any("no speech detected" in w for w in result.warnings)


def test_ten_minute_file_runs_in_pieces(small_model, tmp_path):
    wav = np.tile(speech_of_length(30.0), 20)
    path = tmp_path / "ten_minutes.flac"
    sf.write(path, wav, 16000)
    result = small_model.predict(str(path))
    assert result.duration_s == pytest.approx(600.0)
    assert len(result.segments) >= 20 and all(s.end_s - s.start_s <= 30.0 + 1e-6 for s in result.segments)
    assert 200 < sum(s.speech_s for s in result.segments) <= 600 and result.segments[-1].end_s <= 600.0


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
    assert {f.emotion for f in result.frames if f.speech} <= {"calm", "tense"} and any(f.speech for f in result.frames)
    assert small_model.classify_embedding(embeddings[0], head=path) == pytest.approx(
        dict(zip(head.labels, head.predict_proba(embeddings[0]))), abs=1e-6)

    other = train_head(embeddings, names, embedding_model="large")
    with pytest.raises(HeadMismatchError, match="large"):
        Emotion2VecPlus(small_checkpoint, head=other)


def test_non_finite_model_output_is_a_typed_error(small_checkpoint):
    model = Emotion2VecPlus(small_checkpoint)
    with torch.no_grad():
        model.model.blocks[0].mlp.fc1.bias.fill_(float("nan"))  # weights damaged after loading
    with pytest.raises(ModelError, match="NaN or infinite values"):
        model.predict(speech_of_length(1.0))


def _long_recording(path, rate: int = 44100) -> np.ndarray:
    """~25 s of real speech with pauses, written at ``rate`` (stereo); returns the 16 kHz mono samples."""
    clips = [sf.read(p, dtype="float32")[0] for p in speech_clips(7)]
    wav = np.concatenate([part for clip in clips for part in (clip, np.zeros(8000, np.float32))])
    import soxr

    stereo = soxr.resample(wav, 16000, rate)
    sf.write(path, np.stack([stereo, 0.5 * stereo], axis=1), rate, subtype="PCM_16")
    return wav


@pytest.mark.parametrize("granularity", ["utterance", "frame"])
def test_a_streamed_long_input_gets_the_result_of_the_same_input_held_in_memory(small_checkpoint, tmp_path,
                                                                                granularity):
    """Past hold_in_memory_s a file is decoded twice, streamed (VAD, then pieces cut out as they pass):
    same pieces, same scores, same processed audio as when it is decoded whole."""
    path = tmp_path / "long.flac"
    _long_recording(path)
    held = Emotion2VecPlus(small_checkpoint, window_s=4.0)
    streamed = Emotion2VecPlus(small_checkpoint, window_s=4.0, hold_in_memory_s=8.0)
    a = held.predict(str(path), granularity=granularity, extract_embedding=True, output_dir=tmp_path / "held")
    b = streamed.predict(str(path), granularity=granularity, extract_embedding=True, output_dir=tmp_path / "streamed")
    assert a.duration_s == b.duration_s > 20 and a.audio == b.audio and a.warnings == b.warnings
    assert [(s.start_s, s.end_s, s.speech_s) for s in a.segments] == [(s.start_s, s.end_s, s.speech_s) for s in b.segments]
    assert len(a.segments) >= 4 and b.emotion == a.emotion
    assert b.scores == pytest.approx(a.scores, abs=1e-4)
    assert b.embedding.shape == a.embedding.shape
    assert_close(b.embedding, a.embedding, FLOAT32, what="embedding")
    if granularity == "frame":
        assert [f.start_s for f in b.frames] == [f.start_s for f in a.frames]
    wav_a = sf.read(Path(a.output_dir) / "processed_audio.wav", dtype="int16")[0]
    wav_b = sf.read(Path(b.output_dir) / "processed_audio.wav", dtype="int16")[0]
    assert np.array_equal(wav_a, wav_b) and len(wav_b) == round(b.duration_s * 16000)
    assert (Path(b.output_dir) / "processed_audio.wav").stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert [p.name for p in (tmp_path / "streamed").iterdir()] == [Path(b.output_dir).name]  # no partial file left


def test_predict_batch_streams_a_long_file_between_short_and_broken_ones(small_checkpoint, tmp_path):
    long_path = tmp_path / "long.wav"
    _long_recording(long_path, rate=16000)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(long_path.read_bytes()[:4000] + b"\x00" * 10)
    short = str(speech_clips(1)[0])
    model = Emotion2VecPlus(small_checkpoint, window_s=4.0, hold_in_memory_s=8.0)
    results = model.predict_batch([short, str(long_path), str(broken), short])
    assert [r.ok for r in results] == [True, True, False, True]
    assert results[1].source == str(long_path) and len(results[1].segments) >= 4
    assert "truncated" in results[2].error and str(broken) in results[2].error
    assert results[0].scores == pytest.approx(results[3].scores, abs=1e-6)
    reference = Emotion2VecPlus(small_checkpoint, window_s=4.0).predict(str(long_path))
    assert results[1].scores == pytest.approx(reference.scores, abs=1e-4)


def test_a_long_silent_file_is_decoded_with_bounded_memory(tmp_path):
    """20 minutes of digital silence (a tiny FLAC, 19 M samples = 77 MB as float32) never sits in memory."""
    import tracemalloc

    from emotion2vec_plus.segmentation import LongAudio, load_input

    path = tmp_path / "silence.flac"
    with sf.SoundFile(path, "w", 16000, 1, "PCM_16", format="FLAC") as out:
        for _ in range(20):
            out.write(np.zeros(16000 * 60, np.int16))
    tracemalloc.start()
    try:
        long = load_input(str(path), hold_in_memory_s=60.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(long, LongAudio) and long.num_samples == 20 * 60 * 16000
    assert len(long.probabilities) == 20 * 60 * 16000 // 512 and long.probabilities.max() < 0.5  # no speech
    assert long.warnings and "silent" in long.warnings[0]
    assert peak < 16e6, f"decoding 20 min took {peak / 1e6:.0f} MB of Python/NumPy memory"


@pytest.mark.parametrize("granularity", ["utterance", "frame"])
def test_a_result_round_trips_through_its_documented_json(small_checkpoint, granularity):
    """What the Ray workers ship: Result.to_dict, read back with Result.from_dict."""
    import json

    from emotion2vec_plus import Result

    model = Emotion2VecPlus(small_checkpoint, window_s=2.0)
    result = model.predict(str(speech_clips(1)[0]), granularity=granularity, extract_embedding=True)
    assert result.segments or result.frames
    data = json.loads(result.to_json())
    back = Result.from_dict(data, embedding=result.embedding)
    assert back.to_dict() == result.to_dict() and np.array_equal(back.embedding, result.embedding)
    with_embedding = Result.from_dict(json.loads(result.to_json(include_embedding=True)))
    assert with_embedding.embedding.shape == result.embedding.shape
    assert np.allclose(with_embedding.embedding, result.embedding)


def test_a_model_that_pools_speech_averages_only_the_speech_frames(speech_pooling_file, frame_pooling_file):
    """A clip with a second of silence before and after: a speech-pooling model's utterance
    embedding is the mean of the frames the voice-activity detector calls speech (plus 0.1 s either
    side), the same in predict, extract_embedding and a padded encode_batch; the frame-pooling
    model's is the mean of every frame."""
    speech = sf.read(speech_clips(1)[0], dtype="float32")[0]
    silence = np.zeros(16000, np.float32)
    wav = np.concatenate([silence, speech, silence])
    pooling = Emotion2VecPlus(speech_pooling_file)
    plain = Emotion2VecPlus(frame_pooling_file)
    assert (pooling.pooling, plain.pooling, Emotion2VecPlus().pooling) == ("speech", "frames", "speech")  # v3.1 pools speech
    frames = pooling.predict(wav, granularity="frame", extract_embedding=True).embedding
    keep = speech_frames(wav, len(frames), pooling.model.hop_samples)
    assert 0.15 < keep.mean() < 0.8  # the silence is left out, the speech kept
    utterance = pooling.extract_embedding(wav)
    np.testing.assert_allclose(utterance, frames[keep].mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(plain.extract_embedding(wav), frames.mean(axis=0), atol=1e-5)
    batch = torch.zeros(2, len(wav))
    batch[0], batch[1, : len(speech)] = torch.from_numpy(wav), torch.from_numpy(speech)
    encoded = pooling.encode_batch(batch, torch.tensor([1.0, len(speech) / len(wav)])).numpy()
    np.testing.assert_allclose(encoded[0], utterance, atol=1e-4)
    np.testing.assert_allclose(encoded[1], pooling.extract_embedding(speech), atol=1e-4)


def test_scored_by_its_utterances_a_clip_gets_the_score_its_utterance_gets(small_checkpoint):
    """``score_whole=False``: a clip within the window is scored as a longer recording is, by its
    utterances (speech and at most 0.5 s of pause around it), pooled by speech time. One utterance:
    its score, no segment list; two: both reported and pooled; frames still cover the whole clip."""
    model = Emotion2VecPlus(small_checkpoint, window_s=12.0, score_whole=False)
    whole = Emotion2VecPlus(small_checkpoint, window_s=12.0)  # the default: a clip within the window scored whole
    assert not model.score_whole and whole.score_whole
    first, second = (sf.read(p, dtype="float32")[0] for p in speech_clips(2))
    # 1 s of silence before and after: a clip's own edges may hold less than the 0.5 s of context (the
    # shipped clips do), and then its utterance is the whole clip
    first = np.concatenate([np.zeros(16000, np.float32), first, np.zeros(16000, np.float32)])
    one = model.predict(first)
    plan = plan_input(len(first), model.window_samples, speech_probabilities(first), whole_within_window=False)
    assert not plan.whole and len(plan.segments) == 1 and plan.segments[0].end - plan.segments[0].start < len(first)
    piece = plan.segments[0]
    assert one.segments is None
    # predict scores the utterance's samples whole
    assert one.scores == pytest.approx(whole.classify_embedding(whole.extract_embedding(first[piece.start : piece.end])),
                                       abs=1e-5)
    wav = np.concatenate([first, np.zeros(16000, np.float32), second])
    two = model.predict(wav, extract_embedding=True)
    assert len(two.segments) == 2
    weights = np.array([s.speech_s for s in two.segments]) / sum(s.speech_s for s in two.segments)
    pooled = {name: sum(w * s.scores[name] for w, s in zip(weights, two.segments)) for name in two.scores}
    assert two.scores == pytest.approx(pooled, abs=1e-5)
    frames = model.predict(wav, granularity="frame")
    assert frames.frames[0].start_s == 0 and frames.frames[-1].end_s == pytest.approx(len(wav) / 16000, abs=0.05)


def test_alike_neighbours_across_a_short_pause_are_one_segment_scored_whole(bundled):
    """Sentences 0.4 s apart: neighbours whose scores look alike are one segment, scored whole (from
    the first's context to the last's), and the input pools those; unlike ones, or ones that would
    outgrow the window, stay apart; ``merge_pause_s=0`` keeps every utterance."""
    wav = closely_joined(speech_clips(6))
    probabilities = speech_probabilities(wav)
    plan = plan_input(len(wav), bundled.window_samples, probabilities)
    result = bundled.predict(wav)
    separate = Emotion2VecPlus(merge_pause_s=0).predict(wav).segments
    assert len(wav) > bundled.window_samples and len(separate) == len(plan.segments) == 6
    assert 2 <= len(result.segments) < 6
    position = 0
    for segment in result.segments:
        members = [i for i, piece in enumerate(plan.segments) if segment.start_s * SR - 1 <= piece.speech_start
                   and piece.speech_end <= segment.end_s * SR + 1]
        assert members == list(range(position, position + len(members))) and members
        first, last = plan.segments[members[0]], plan.segments[members[-1]]
        assert (segment.start_s, segment.end_s) == pytest.approx((first.speech_start / SR, last.speech_end / SR))
        assert segment.speech_s == pytest.approx(sum(plan.segments[i].speech for i in members) / SR)
        alone, _ = bundled.score_samples([wav[first.start : last.end]], [SpeechTrack(probabilities, -first.start)])
        assert list(segment.scores.values()) == pytest.approx(alone[0], abs=1e-5)
        for a, b in zip(members, members[1:]):  # inside a group: close and alike
            assert plan.segments[b].speech_start - plan.segments[a].speech_end < MERGE_PAUSE_S * SR
            assert scores_alike(list(separate[a].scores.values()), list(separate[b].scores.values()))
        after = members[-1] + 1
        if after < len(plan.segments):  # the next group is apart for a reason
            gap = plan.segments[after].speech_start - last.speech_end
            assert (gap >= MERGE_PAUSE_S * SR or plan.segments[after].end - first.start > bundled.window_samples
                    or not scores_alike(list(separate[after - 1].scores.values()), list(separate[after].scores.values())))
        position += len(members)
    assert position == 6
    weights = np.array([s.speech_s for s in result.segments]) / sum(s.speech_s for s in result.segments)
    pooled = weights @ np.array([list(s.scores.values()) for s in result.segments])
    assert list(result.scores.values()) == pytest.approx(list(pooled), abs=1e-6)


def test_a_streamed_long_input_merges_as_the_same_input_held_in_memory(bundled, tmp_path):
    """Past hold_in_memory_s the merged groups are cut out of a third decoding pass: the same
    segments and scores as when the input is held."""
    path = tmp_path / "close.flac"
    sf.write(path, closely_joined(speech_clips(6)), SR)
    held = bundled.predict(str(path))
    streamed = Emotion2VecPlus(hold_in_memory_s=10.0).predict(str(path))
    assert 2 <= len(held.segments) < 6 and streamed.duration_s > 10.0
    assert [(s.start_s, s.end_s, s.speech_s) for s in streamed.segments] == [(s.start_s, s.end_s, s.speech_s)
                                                                              for s in held.segments]
    for a, b in zip(held.segments, streamed.segments):
        assert b.scores == pytest.approx(a.scores, abs=1e-4)


def test_a_custom_head_reports_its_classes_on_the_segments_the_emotion_head_merges(bundled, tmp_path):
    """Which neighbours look alike is the model's own emotion head's call (what the rule was measured
    with), so a two-class custom head gets the same segments, each scored with its own classes."""
    from emotion2vec_plus.heads import train_head

    clips = [str(p) for p in speech_clips(12)]
    embeddings = np.stack([r.embedding for r in bundled.predict_batch(clips, extract_embedding=True)])
    head = train_head(embeddings, ["calm" if i % 2 else "tense" for i in range(len(clips))],
                      embedding_model=bundled.model_name)
    wav = closely_joined(speech_clips(6))
    emotions = bundled.predict(wav, extract_embedding=True)
    custom = Emotion2VecPlus(head=head.save(tmp_path / "tension.safetensors")).predict(wav)
    assert 2 <= len(emotions.segments) < 6
    assert [(s.start_s, s.end_s) for s in custom.segments] == [(s.start_s, s.end_s) for s in emotions.segments]
    assert all(list(s.scores) == ["calm", "tense"] for s in custom.segments)
