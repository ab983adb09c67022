"""The network itself: config parsing, frame counts, padded batches equal to single clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from checkpoints import make_config, randomize_
from emotion2vec_plus.models.config import Emotion2vecConfig, load_config, parse_conv_spec
from emotion2vec_plus.errors import CheckpointError
from emotion2vec_plus.models.emotion2vec import Emotion2vecModel, alibi_slopes
from emotion2vec_plus.numerics import FLOAT32, assert_close

SMALL = dict(embed_dim=128, num_heads=4, depth=2, prenet_depth=1, conv_pos_groups=4)


def small_model(seed: int = 0, **overrides) -> Emotion2vecModel:
    config = make_config(**{**SMALL, **overrides})
    model = Emotion2vecModel(Emotion2vecConfig.from_model_conf(config["model_conf"]), num_classes=9)
    randomize_(model, seed)
    return model.eval()


def test_config_yaml_reads_exponent_floats_and_conv_spec(tmp_path):
    import yaml

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(make_config()).replace("norm_eps: 1.0e-05", "norm_eps: 1e-05"))
    assert "norm_eps: 1e-05" in path.read_text()
    config = load_config(path)
    assert config.norm_eps == pytest.approx(1e-5)
    assert config.conv_layers == ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2
    assert (config.receptive_field, config.hop) == (400, 320)
    assert config.conv_pos_kernel == 19


def test_conv_spec_is_parsed_without_eval():
    assert parse_conv_spec("[(512, 10, 5)] + [(512, 3, 2)] * 2") == [(512, 10, 5), (512, 3, 2), (512, 3, 2)]
    for hostile in ("__import__('os').system('true')", "[(1, 2)]", "[]", "[(1, 2, 'x')]"):
        with pytest.raises(CheckpointError):
            parse_conv_spec(hostile)


@pytest.mark.parametrize("spec, layers", [
    ("[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] + [(512,2,2)]",  # the released files
     [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2),
    ("[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2", [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2),
    ("[(256, 2, 2)] * 4", [(256, 2, 2)] * 4),
    ("[(512, 3, 1), (512, 3, 1), (512, 5, 5),]", [(512, 3, 1), (512, 3, 1), (512, 5, 5)]),
    ("2 * [(64, 4, 2)] + [(64, 3, 1,)]", [(64, 4, 2), (64, 4, 2), (64, 3, 1)]),
])
def test_conv_spec_reads_the_forms_fairseq_configs_use(spec, layers):
    assert parse_conv_spec(spec) == layers


@pytest.mark.parametrize("spec, problem", [
    ("[(512,10,5)] * 200000000", "more than 32 conv layers"),  # was GBs before the bound was checked
    ("[(512,10,5)] * 20 * 20", "expected '\\+'"),
    ("[" * 100_000 + "]" * 100_000, "longer than 2000 characters"),  # was RecursionError / MemoryError
    ("[(512,10,5)] + " * 200 + "[(512,10,5)]", "longer than 2000 characters"),
    ("[" + "(1,2,3)," * 40 + "]", "more than 32 conv layers"),
    ("[(512, 10, 5)] + [(512, 3, 2)] * 4 + foo", "unexpected 'foo'"),
    ("[(1, 2, 3)] * 99999999999999", "far too large"),
])
def test_conv_spec_past_its_bounds_is_refused_naming_the_file_and_field(spec, problem):
    with pytest.raises(CheckpointError, match=problem) as caught:
        parse_conv_spec(spec, "ck/config.yaml")
    message = str(caught.value)
    assert message.startswith("ck/config.yaml: model_conf.modalities.audio.feature_encoder_spec '")
    assert len(message) < 400


def test_a_config_with_a_huge_conv_spec_fails_at_once(tmp_path):
    conf = make_config()
    conf["model_conf"]["modalities"]["audio"]["feature_encoder_spec"] = "[(512,10,5)] * 200000000"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(conf))
    with pytest.raises(CheckpointError, match=f"^{path}: model_conf.modalities.audio.feature_encoder_spec"):
        load_config(path)


def test_config_rejects_unsupported_settings(tmp_path):
    conf = make_config(learned_alibi=True)["model_conf"]
    with pytest.raises(CheckpointError, match="learned_alibi"):
        Emotion2vecConfig.from_model_conf(conf)
    path = tmp_path / "config.yaml"
    path.write_text("model: Paraformer\nmodel_conf: {}\n")
    with pytest.raises(CheckpointError, match="Paraformer"):
        load_config(path)


def test_alibi_slopes_match_the_reference_formula():
    assert alibi_slopes(8) == pytest.approx([2 ** -(i + 1) for i in range(8)])
    assert len(alibi_slopes(12)) == 12 and alibi_slopes(12)[:8] == pytest.approx(alibi_slopes(8))


@pytest.mark.parametrize("num_samples", [400, 719, 720, 16000, 16399, 48000])
def test_frames_at_50_hz(num_samples):
    model = small_model()
    with torch.inference_mode():
        out = model(torch.randn(1, num_samples) * 0.1)
    assert out.frames.shape[1] == int(out.lengths[0]) == (num_samples - 400) // 320 + 1


VARIANTS = {
    "emotion2vec": {},
    "group-norm-extractor": dict(extractor_mode="default"),
    "per-layer-alibi-scale+pre-ln-pos": dict(learned_alibi_scale_per_layer=True, conv_pos_pre_ln=True),
    "shared-alibi-scale": dict(learned_alibi_scale_per_head=False),
    "pre-ln-blocks": dict(),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_padded_batch_equals_one_by_one(variant):
    overrides = dict(VARIANTS[variant])
    config = make_config(**{**SMALL, **overrides})
    if variant == "pre-ln-blocks":
        config["model_conf"]["layer_norm_first"] = True
    model = Emotion2vecModel(Emotion2vecConfig.from_model_conf(config["model_conf"]), num_classes=9)
    randomize_(model, 7)
    model.eval()
    generator = torch.Generator().manual_seed(1)
    lengths = [8000, 20800, 3000, 47999]
    clips = [torch.randn(n, generator=generator) * 0.1 for n in lengths]
    batch = torch.zeros(len(clips), max(lengths))
    for row, clip in enumerate(clips):
        batch[row, : len(clip)] = clip
    with torch.inference_mode():
        together = model(batch, torch.tensor(lengths))
        for row, clip in enumerate(clips):
            alone = model(clip[None])
            valid = int(together.lengths[row])
            assert valid == alone.frames.shape[1]
            difference = (together.frames[row, :valid] - alone.frames[0]).abs().max().item()
            assert difference <= 1e-4, f"{variant}: clip {row} differs by {difference}"


def test_padding_content_does_not_leak():
    """Whatever sits in the padding (here: loud noise) leaves the valid frames unchanged."""
    model = small_model(3)
    clip = torch.randn(9000) * 0.1
    padded = torch.randn(2, 30000)
    padded[:, :9000] = clip
    with torch.inference_mode():
        out = model(padded, torch.tensor([9000, 30000]))
        alone = model(clip[None])
    assert np.allclose(out.frames[0, : alone.frames.shape[1]].numpy(), alone.frames[0].numpy(), atol=1e-4)


@pytest.mark.parametrize("variant", ["emotion2vec", "pre-ln-blocks"])
def test_chunked_extractor_and_feed_forward_change_nothing(monkeypatch, variant):
    """Spans of conv frames and row blocks of the feed-forward layer are an execution detail:
    tiny spans and blocks (many boundaries, ragged last pieces) give the same frames as one piece."""
    from emotion2vec_plus.models import emotion2vec as model_module

    config = make_config(**SMALL)
    config["model_conf"]["layer_norm_first"] = variant == "pre-ln-blocks"
    model = Emotion2vecModel(Emotion2vecConfig.from_model_conf(config["model_conf"]), num_classes=9)
    randomize_(model, 5)
    model.eval()
    generator = torch.Generator().manual_seed(2)
    lengths = [7 * 320 + 400, 7 * 320 + 399, 23456, 401]
    batch = torch.randn(len(lengths), max(lengths), generator=generator) * 0.1
    for row, n in enumerate(lengths):
        batch[row, n:] = 0
    with torch.inference_mode():
        monkeypatch.setattr(model_module, "EXTRACTOR_CHUNK_FRAMES", 10**6)
        monkeypatch.setattr(model_module, "FEED_FORWARD_ROWS", 10**6)
        whole = model(batch, torch.tensor(lengths))
        monkeypatch.setattr(model_module, "EXTRACTOR_CHUNK_FRAMES", 7)
        monkeypatch.setattr(model_module, "FEED_FORWARD_ROWS", 13)
        chunked = model(batch, torch.tensor(lengths))
    assert torch.equal(whole.lengths, chunked.lengths)
    valid = whole.valid_mask()
    assert (whole.frames[valid] - chunked.frames[valid]).abs().max().item() <= 1e-5


def test_frames_last_extractor_equals_the_channels_first_layers():
    """The matrix-product extractor (runs of taps over strided windows) computes what the
    checkpoint's own Conv1d / LayerNorm / GELU modules compute, frame for frame."""
    model = small_model(4)
    extractor = model.modality_encoders["AUDIO"].local_encoder
    wav = torch.randn(2, 16000 + 123) * 0.1
    with torch.inference_mode():
        x = wav[:, None]
        for layer in extractor.conv_layers:
            x = layer(x)
        ours = extractor(wav, None)
    assert ours.shape == x.shape
    assert_close(ours, x, FLOAT32, what="extractor frames")
