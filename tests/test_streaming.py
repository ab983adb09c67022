"""The live stream engine: finals equal to the offline segments, provisional events every hop,
any input rate, bounded memory, bad samples refused."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import soxr

from conftest import closely_joined, speech_clips
from emotion2vec_plus import Emotion2VecPlus, InvalidSamplesError
from emotion2vec_plus.streaming import EVENT_TYPES
from emotion2vec_plus.vad import speech_regions

SR = 16000


def joined_speech(count: int, pause_s: float = 1.0, offset: int = 0) -> np.ndarray:
    """``count`` real sentences of one speaker in several emotions (every 9th RAVDESS clip: the
    corpus lists each actor's clips by emotion), their own silences trimmed to 0.3 s around the
    speech, joined with ``pause_s`` of silence."""
    parts = []
    for path in speech_clips(offset + 9 * count)[offset::9]:
        audio = sf.read(path, dtype="float32")[0]
        regions = speech_regions(audio)
        parts += [audio[max(0, regions[0].start - 4800) : regions[-1].end + 4800], np.zeros(int(pause_s * SR), np.float32)]
    return np.concatenate(parts)


@pytest.fixture(scope="module")
def compact():
    return Emotion2VecPlus()


def push_in_blocks(stream, wav: np.ndarray, rng: np.random.Generator, most: int = 4000) -> list:
    events, position = [], 0
    while position < len(wav):
        size = int(rng.integers(1, most))
        events += stream.push(wav[position : position + size])
        position += size
    return events + stream.close()


@pytest.mark.parametrize("window_s", [None, 30.0])
def test_finals_are_the_offline_segments_scored_the_same(compact, window_s):
    """Each final is the offline result's segment: the same bounds, scores within 1e-4, for a
    recording longer than the window (segments pool) and within it (window 30 s)."""
    model = compact if window_s is None else Emotion2VecPlus(window_s=window_s)
    check_finals_are_the_offline_segments(model, long=window_s is None)


def test_finals_of_a_model_that_pools_speech_are_its_offline_segments(speech_pooling_file):
    """The same for a model that averages only speech frames: the stream gives it the speech
    probabilities an offline pass has."""
    model = Emotion2VecPlus(speech_pooling_file)
    assert model.pooling == "speech"
    check_finals_are_the_offline_segments(model, long=True)


def check_finals_are_the_offline_segments(model: Emotion2VecPlus, long: bool) -> None:
    wav = joined_speech(6, pause_s=0.8)
    assert (len(wav) > model.window_samples) == long
    offline = model.predict(wav)
    with model.stream(embeddings=True) as stream:
        events = push_in_blocks(stream, wav, np.random.default_rng(1))
    finals = [e for e in events if e.type == "utterance"]
    assert len(finals) == len(offline.segments) == 6
    for final, segment in zip(finals, offline.segments):
        assert final.final and (final.start_s, final.end_s) == pytest.approx((segment.start_s, segment.end_s), abs=1e-3)
        assert final.emotion == segment.emotion
        assert final.scores == pytest.approx(segment.scores, abs=1e-4)
        assert final.embedding.shape == (model.embed_dim,)
    starts = [e for e in events if e.type == "speech.start"]
    ends = [e for e in events if e.type == "speech.end"]
    assert len(starts) == len(ends) == 6
    assert all(s.seq < f.seq and e.seq < f.seq for s, e, f in zip(starts, ends, finals))  # start, end, then the final


def test_finals_merge_alike_neighbours_as_the_offline_segments(compact):
    """Sentences 0.4 s apart: a final waits until its neighbour shows whether it is alike, and the
    finals are the offline result's merged segments (bounds, speech, scores within 1e-4)."""
    wav = closely_joined(speech_clips(6))
    offline = compact.predict(wav)
    assert 2 <= len(offline.segments) < 6
    with compact.stream(embeddings=True) as stream:
        events = push_in_blocks(stream, wav, np.random.default_rng(2))
    finals = [e for e in events if e.type == "utterance"]
    assert len(finals) == len(offline.segments)
    for final, segment in zip(finals, offline.segments):
        assert (final.start_s, final.end_s, final.speech_s) == pytest.approx(
            (segment.start_s, segment.end_s, segment.speech_s), abs=1e-3)
        assert final.scores == pytest.approx(segment.scores, abs=1e-4)
        assert final.embedding.shape == (compact.embed_dim,)
    assert len([e for e in events if e.type == "speech.end"]) == 6  # voice activity still marks every utterance


def test_the_parts_of_a_long_utterance_are_final_as_soon_as_each_cut_is_certain():
    """Sentences without pauses, longer than two windows: the parts are never merged back, and each
    part's final comes when its cut is certain, as without merging, not when the next part ends."""
    wav = closely_joined(speech_clips(8), pause_s=0.0, margin_s=0.0)

    def finals_and_when(model: Emotion2VecPlus) -> list[tuple[float, float, float | None]]:
        stream, out = model.stream(), []
        for start in range(0, len(wav), 1600):
            out += [(e.start_s, e.end_s, (start + 1600) / SR) for e in stream.push(wav[start : start + 1600])
                    if e.type == "utterance"]
        return out + [(e.start_s, e.end_s, None) for e in stream.close() if e.type == "utterance"]

    merging = finals_and_when(Emotion2VecPlus(window_s=4.0))
    offline = Emotion2VecPlus(window_s=4.0).predict(wav).segments
    assert len(wav) > 8 * SR and len(offline) >= 3 and offline[0].end_s == offline[1].start_s  # cut, no pause
    assert [x for a, b, _ in merging for x in (a, b)] == pytest.approx([x for s in offline for x in (s.start_s, s.end_s)],
                                                                       abs=1e-3)
    unmerged = finals_and_when(Emotion2VecPlus(window_s=4.0, merge_pause_s=0))
    cut = [i for i in range(len(offline) - 1) if offline[i].end_s == offline[i + 1].start_s]  # parts followed by a part
    assert cut and [merging[i] for i in cut] == [unmerged[i] for i in cut]  # sent when they were without merging
    assert merging[0][2] is not None and merging[0][2] < len(wav) / SR - 1  # before the end of the speech


def test_events_every_hop_in_order_with_a_smoothed_label(compact):
    wav = joined_speech(4, pause_s=1.5, offset=1)
    events = list(compact.stream_file(wav))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert {e.type for e in events} <= set(EVENT_TYPES)
    ticks = [e for e in events if e.type in ("emotion", "silence")]
    assert len(ticks) == int(len(wav) / SR / 0.5)  # one per 0.5 s hop
    assert [t.end_s for t in ticks] == pytest.approx([0.5 * (i + 1) for i in range(len(ticks))])
    assert {"emotion", "silence"} <= {t.type for t in ticks}  # speech and the pauses between
    for tick in ticks:
        assert tick.end_s - tick.start_s <= 3.0 + 1e-9 and not tick.final
        if tick.type == "emotion":
            assert set(tick.scores) == {label.english for label in compact.labels}
            assert tick.confidence == pytest.approx(tick.scores[tick.emotion])
        else:
            assert tick.emotion is None and tick.scores is None
    changes = [e for e in events if e.type == "emotion.changed"]
    emotions = [t.emotion for t in ticks if t.type == "emotion"]
    flips = sum(a != b for a, b in zip(emotions, emotions[1:]))
    assert changes and len(changes) <= flips + sum(t.type == "silence" for t in ticks) + 1
    data = events[-1].to_dict()
    assert {"type", "seq", "start_s", "end_s", "emotion", "confidence", "scores", "final"} <= set(data)


@pytest.mark.parametrize("rate", [8000, 48000])
def test_any_input_rate_is_resampled_in_the_stream(compact, rate):
    wav = joined_speech(3, pause_s=1.0, offset=2)
    reference = [e for e in compact.stream_file(wav) if e.type == "utterance"]
    if rate == 8000:  # a telephone line: band-limited first, as such a line would be
        wav = soxr.resample(soxr.resample(wav, SR, 8000), 8000, SR).astype(np.float32)
    resampled = soxr.resample(wav, SR, rate).astype(np.float32)
    pcm16 = np.round(resampled * 32767).astype(np.int16)  # as a client sends s16le
    with compact.stream(sample_rate=rate) as stream:
        events = push_in_blocks(stream, pcm16, np.random.default_rng(2), most=rate // 5)
    finals = [e for e in events if e.type == "utterance"]
    assert len(finals) == len(reference) == 3
    for final, ref in zip(finals, reference):
        assert final.start_s == pytest.approx(ref.start_s, abs=0.1) and final.end_s == pytest.approx(ref.end_s, abs=0.1)
    ticks = [e for e in events if e.type in ("emotion", "silence")]
    assert ticks[-1].end_s == pytest.approx(0.5 * int(len(wav) / SR / 0.5), abs=1e-6)


def test_speech_to_the_very_end_is_finished_by_close(compact):
    wav = joined_speech(2, pause_s=0.8)
    wav = wav[: len(wav) - int(0.9 * SR)]  # the second sentence runs to the last sample
    stream = compact.stream()
    events = stream.push(wav)
    assert sum(e.type == "utterance" for e in events) == 1
    last = stream.close()
    assert [e.type for e in last] == ["speech.end", "utterance"] and last[-1].end_s == pytest.approx(len(wav) / SR)
    assert stream.close() == []
    with pytest.raises(RuntimeError, match="closed"):
        stream.push(wav[:100])


def test_bad_samples_are_refused_naming_the_stream(compact):
    stream = compact.stream(name="caller 7")
    bad = np.zeros(1600, np.float32)
    bad[100] = np.nan
    with pytest.raises(InvalidSamplesError, match="caller 7.*sample 100"):
        stream.push(bad)
    with pytest.raises(ValueError, match="shape"):
        stream.push(np.zeros((2, 3, 4), np.float32))
    assert stream.push(np.zeros(1600, np.float32)) == []  # the stream goes on
    with pytest.raises(ValueError, match="window_s"):
        compact.stream(window_s=60.0)


@pytest.mark.slow
def test_memory_stays_bounded_over_a_long_stream(small_checkpoint):
    """Five minutes of speech and pauses: the audio held stays under a window's worth plus the
    utterance in progress, and nothing else grows. (RSS over an hour: bench/stream_latency.py.)"""
    model = Emotion2VecPlus(small_checkpoint, window_s=10.0)
    speech = joined_speech(8, pause_s=1.2)
    stream = model.stream(hop_s=1.0, window_s=2.0, min_speech_s=0.5)
    held, kept_probabilities = [], []
    finals = 0
    for _ in range(int(300 * SR / len(speech)) + 1):
        for start in range(0, len(speech), 8000):
            finals += sum(e.type == "utterance" for e in stream.push(speech[start : start + 8000]))
            held.append(len(stream._buffer))
            kept_probabilities.append(len(stream._planner._probabilities))
    stream.close()
    assert stream.position_s >= 300 and finals >= 8 * 5
    assert max(held) <= (2 * 10 + 3) * SR  # two windows of a long utterance at most, plus a second of slack
    assert max(kept_probabilities) <= 8192
    assert max(held[len(held) // 2 :]) <= max(held[: len(held) // 2]) + SR  # no growth over time
