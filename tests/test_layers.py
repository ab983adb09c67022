"""The fast linear layers (models/layers.py) and the compute types built on them: oneDNN-packed
bf16 with fused epilogues and its fallback, FBGEMM int8 weights and activations, the int8 conv
extractor. Each against the float32 product it stands for."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from checkpoints import make_config, randomize_
from emotion2vec_plus.models import layers
from emotion2vec_plus.models.config import Emotion2vecConfig
from emotion2vec_plus.models.emotion2vec import Emotion2vecModel
from emotion2vec_plus.models.layers import Int8Linear, PackedLinear, linear, pack_linear
from emotion2vec_plus.runtime.compute import make_runner

SMALL = dict(embed_dim=128, num_heads=4, depth=2, prenet_depth=1, conv_pos_groups=4)


def _model(seed: int = 0) -> Emotion2vecModel:
    config = make_config(**SMALL)
    model = Emotion2vecModel(Emotion2vecConfig.from_model_conf(config["model_conf"]), num_classes=9)
    randomize_(model, seed)
    return model.eval()


def _speechlike(batch_lengths, seed=0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    wavs = torch.zeros(len(batch_lengths), max(batch_lengths))
    for row, n in enumerate(batch_lengths):
        t = np.arange(n) / 16000
        wavs[row, :n] = torch.from_numpy((0.1 * rng.standard_normal(n) + 0.3 * np.sin(2 * np.pi * 170 * t))
                                         .astype(np.float32))
    return wavs, torch.tensor(batch_lengths)


def _runner(compute_type: str, model: Emotion2vecModel):
    return make_runner(copy.deepcopy(model), compute_type=compute_type, backend="torch", device=torch.device("cpu"),
                       model_name="small", source_files=[])


def _rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt())


def _valid_frames(out) -> torch.Tensor:
    return torch.cat([out.frames[row, :n] for row, n in enumerate(out.lengths.tolist())])


@pytest.fixture
def no_mkldnn_linear(monkeypatch):
    """As on a build or CPU where oneDNN's packed bf16 linear is missing."""
    monkeypatch.setattr(layers, "_mkldnn_linear_ok", False)


needs_packing = pytest.mark.skipif(not layers.mkldnn_linear_available(),
                                   reason="oneDNN's packed bf16 linear does not run here (build or ISA cap)")


@needs_packing
@pytest.mark.parametrize("epilogue", ["none", "gelu", "residual"])
def test_packed_linear_equals_the_bf16_product_and_epilogue(epilogue):
    torch.manual_seed(0)
    layer = nn.Linear(96, 160)
    x = torch.randn(37, 96).bfloat16()
    residual = torch.randn(37, 160).bfloat16() if epilogue == "residual" else None
    with torch.inference_mode():
        got = linear(PackedLinear(layer), x, gelu=epilogue == "gelu", residual=residual).float()
        want = F.linear(x.float(), layer.weight.bfloat16().float(), layer.bias.bfloat16().float())
        if epilogue == "gelu":
            want = F.gelu(want)
        if residual is not None:
            want = want + residual.float()
    # one bf16 rounding of the output (the fused epilogue rounds once, not twice)
    assert (got - want).abs().max() <= 2 ** -7 * want.abs().max()


def test_pack_linear_falls_back_to_a_bf16_linear(no_mkldnn_linear):
    layer = pack_linear(nn.Linear(8, 4))
    assert type(layer) is nn.Linear and layer.weight.dtype == torch.bfloat16


def test_bfloat16_encoder_without_packed_linears_gives_the_packed_results(monkeypatch):
    monkeypatch.setattr(Emotion2vecModel, "BFLOAT16_NATIVE", True)  # the packed path (off by default)
    model = _model()
    wavs, lengths = _speechlike([16000, 11000])
    with torch.inference_mode():
        reference = _valid_frames(model(wavs, lengths))
    packed_runner = _runner("bfloat16", model)
    assert any(isinstance(m, PackedLinear) for m in packed_runner.model.modules()) == layers.mkldnn_linear_available()
    packed = _valid_frames(packed_runner(wavs, lengths))
    monkeypatch.setattr(layers, "_mkldnn_linear_ok", False)
    fallback_runner = _runner("bfloat16", model)
    assert not any(isinstance(m, PackedLinear) for m in fallback_runner.model.modules())
    fallback = _valid_frames(fallback_runner(wavs, lengths))
    assert _rel_rms(packed, reference) < 0.05 and _rel_rms(fallback, reference) < 0.05
    assert _rel_rms(fallback, packed) < 0.05


def test_int8_linear_is_the_kernel_quantize_dynamic_installs():
    torch.manual_seed(1)
    layer = nn.Linear(64, 48)
    x = torch.randn(2, 5, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        reference = quantize_dynamic(nn.Sequential(copy.deepcopy(layer)), {"0": per_channel_dynamic_qconfig},
                                     dtype=torch.qint8)
    with torch.inference_mode():
        got = Int8Linear.from_linear(layer)(x)
        assert torch.equal(got, reference(x))
        assert _rel_rms(got, layer(x)) < 0.02


def test_int8_linear_reads_overlapping_windows_in_place():
    torch.manual_seed(2)
    layer = nn.Linear(12, 8, bias=False)
    signal = torch.randn(40)
    windows = signal.as_strided((15, 12), (2, 1))  # overlapping rows, as the conv extractor reads them
    with torch.inference_mode():
        assert torch.equal(Int8Linear.from_linear(layer)(windows), Int8Linear.from_linear(layer)(windows.contiguous()))


@pytest.mark.parametrize("native", [False, True])
@pytest.mark.parametrize("compute_type, tolerance", [("int8", 0.1), ("bfloat16", 0.05)])
def test_fast_compute_types_stay_close_to_float32_on_padded_batches(compute_type, tolerance, native, monkeypatch):
    monkeypatch.setattr(Emotion2vecModel, "BFLOAT16_NATIVE", native)
    model = _model(seed=3)
    wavs, lengths = _speechlike([24000, 16000, 7000], seed=4)
    with torch.inference_mode():
        reference = model(wavs, lengths)
    runner = _runner(compute_type, model)
    out = runner(wavs, lengths)
    assert out.frames.dtype == torch.float32 and torch.equal(out.lengths, reference.lengths)
    # random weights, 3 blocks: int8 measured 0.051 relative RMS, bf16 0.01 (per-tensor activation scales)
    assert _rel_rms(_valid_frames(out), _valid_frames(reference)) < tolerance
    # a clip alone gives what it gives in the padded batch, up to int8's activation scale (one per
    # product over the whole batch) and bf16 rounding: padding never leaks into valid frames
    alone = runner(wavs[2:3, :7000], lengths[2:3])
    assert _rel_rms(alone.frames[0, : int(alone.lengths[0])], out.frames[2, : int(out.lengths[2])]) < tolerance


def test_int8_conv_extractor_products_stay_close_to_float32():
    model = _model(seed=5)
    extractor = model.modality_encoders["AUDIO"].local_encoder
    wavs, lengths = _speechlike([12000], seed=6)
    with torch.inference_mode():
        reference = extractor(wavs, None, lengths)
        extractor.use_int8_products()
        got = extractor(wavs, None, lengths)
    assert extractor._int8_products is not None
    assert _rel_rms(got, reference) < 0.1  # random weights: measured 0.051 (7-bit activations per product)
