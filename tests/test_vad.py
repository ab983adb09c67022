"""Voice activity detection: the same probabilities as the silero-vad package's model, speech
regions where the speech is."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import speech_clips
from emotion2vec_plus.numerics import FLOAT32, assert_close
from emotion2vec_plus.vad import CHUNK_SAMPLES, SileroVAD, VadStream, speech_probabilities, speech_regions, weights_path


def _reference_probabilities(wav: np.ndarray) -> np.ndarray:
    """The package's own TorchScript model, fed 512-sample chunks one by one as its docs do."""
    model = torch.jit.load(str(weights_path()))
    model.reset_states()
    x = torch.from_numpy(wav)
    out = []
    for start in range(0, len(x), CHUNK_SAMPLES):
        chunk = x[start : start + CHUNK_SAMPLES]
        chunk = torch.nn.functional.pad(chunk, (0, CHUNK_SAMPLES - len(chunk)))
        out.append(model(chunk, 16000).item())
    return np.array(out)


def test_probabilities_equal_the_packaged_model_on_real_speech():
    wav = np.concatenate([sf.read(p, dtype="float32")[0] for p in speech_clips(3)])
    threads = torch.get_num_threads()
    ours = speech_probabilities(wav)
    assert torch.get_num_threads() == threads  # the package's import-time set_num_threads(1) never runs
    reference = _reference_probabilities(wav)
    assert ours.shape == reference.shape == (-(-len(wav) // CHUNK_SAMPLES),)
    assert_close(ours, reference, FLOAT32, what="speech probabilities")  # float32 nets, both
    assert 0.2 < float((reference > 0.5).mean()) < 0.9  # real speech with pauses: the check is not vacuous


def test_regions_fall_on_the_speech_and_skip_the_silence():
    clips = [sf.read(p, dtype="float32")[0] for p in speech_clips(4)]
    gap = np.zeros(32000, np.float32)  # 2 s of silence between clips
    wav = np.concatenate([part for clip in clips for part in (clip, gap)])
    regions = speech_regions(wav)
    starts = np.cumsum([0] + [len(c) + len(gap) for c in clips])
    per_clip = [[r for r in regions if starts[i] <= r.start and r.end <= starts[i] + len(clip)]
                for i, clip in enumerate(clips)]
    assert all(per_clip) and sum(len(r) for r in per_clip) == len(regions)  # none spans a silence
    assert all(a.end <= b.start for a, b in zip(regions, regions[1:]))
    speech = sum(r.end - r.start for r in regions) / 16000
    assert 0.15 * len(wav) / 16000 < speech < 0.6 * len(wav) / 16000  # about 1.5 s of speech per 3.5 s clip


@pytest.mark.parametrize("signal", ["silence", "quiet noise"])
def test_no_speech_gives_no_regions(signal):
    rng = np.random.default_rng(0)
    wav = np.zeros(16000 * 5, np.float32) if signal == "silence" else 1e-3 * rng.standard_normal(16000 * 5).astype(np.float32)
    assert speech_regions(wav) == []


def test_a_short_tail_chunk_and_a_tiny_input():
    model = SileroVAD.load()
    assert model(torch.zeros(100)).shape == (1,)
    assert model(torch.zeros(CHUNK_SAMPLES + 1)).shape == (2,)


def test_a_recording_fed_in_blocks_of_any_size_gets_the_probabilities_of_the_whole():
    """The stream carries the 64-sample context and the recurrent state across blocks: 40 s of real
    speech fed in odd-sized blocks (one shorter than a chunk) gives what the whole recording gives."""
    clips = [sf.read(p, dtype="float32")[0] for p in speech_clips(12)]
    wav = np.concatenate(clips)
    assert len(wav) > 1100 * CHUNK_SAMPLES  # longer than one step of the network
    whole = speech_probabilities(wav)
    stream = VadStream()
    sizes = [100, 7000, 333, 65536, 1, 200000]
    position = 0
    for size in sizes * 20:
        stream.push(wav[position : position + size])
        position += size
    stream.push(wav[position:])
    streamed = stream.finish()
    assert streamed.shape == whole.shape == (-(-len(wav) // CHUNK_SAMPLES),)
    assert_close(streamed, whole, FLOAT32, what="streamed speech probabilities")
    assert speech_regions(num_samples=len(wav), probabilities=streamed) == speech_regions(wav)
