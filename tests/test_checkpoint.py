"""Loading FunASR-format checkpoint directories strictly."""

from __future__ import annotations

import pytest
import torch

from checkpoints import make_config, randomize_, write_checkpoint_dir
from emotion2vec_plus.checkpoint import load_checkpoint
from emotion2vec_plus.config import Emotion2vecConfig
from emotion2vec_plus.errors import CheckpointError
from emotion2vec_plus.model import Emotion2vecModel

SMALL = dict(embed_dim=64, num_heads=4, depth=1, prenet_depth=1, conv_pos_groups=4)


def state(num_classes: int = 9) -> tuple[dict, dict]:
    config = make_config(**SMALL)
    model = Emotion2vecModel(Emotion2vecConfig.from_model_conf(config["model_conf"]), num_classes=num_classes)
    randomize_(model, 0)
    return config, dict(model.state_dict())


@pytest.mark.parametrize("nest", [None, "model", "state_dict"])
def test_loads_flat_and_nested_state_dicts(tmp_path, nest):
    config, sd = state()
    sd["modality_encoders.AUDIO.decoder.blocks.0.0.weight"] = torch.zeros(3)  # pre-training only: ignored
    write_checkpoint_dir(tmp_path, config, sd, nest=nest)
    model, labels = load_checkpoint(tmp_path)
    assert [label.english for label in labels][:2] == ["angry", "disgusted"] and labels[-1].english == "unknown"
    assert torch.equal(model.proj.weight, sd["proj.weight"])
    assert not model.training


def test_missing_tensor_is_named(tmp_path):
    config, sd = state()
    del sd["blocks.0.attn.qkv.weight"]
    write_checkpoint_dir(tmp_path, config, sd)
    with pytest.raises(CheckpointError, match=r"missing tensor.*blocks\.0\.attn\.qkv\.weight"):
        load_checkpoint(tmp_path)


def test_misshaped_tensor_is_named_with_both_shapes(tmp_path):
    config, sd = state()
    sd["blocks.0.mlp.fc1.weight"] = torch.zeros(10, 64)
    write_checkpoint_dir(tmp_path, config, sd)
    with pytest.raises(CheckpointError, match=r"blocks\.0\.mlp\.fc1\.weight \(checkpoint \(10, 64\), model \(256, 64\)\)"):
        load_checkpoint(tmp_path)


def test_head_without_tokens_uses_the_nine_default_labels(tmp_path):
    config, sd = state()
    write_checkpoint_dir(tmp_path, config, sd, tokens=None)
    _, labels = load_checkpoint(tmp_path)
    assert len(labels) == 9 and labels[3].chinese == "开心"


def test_embedding_only_checkpoint_has_no_head(tmp_path):
    config, sd = state(num_classes=0)
    write_checkpoint_dir(tmp_path, config, sd, tokens=None)
    model, labels = load_checkpoint(tmp_path)
    assert model.proj is None and labels == []


def test_tokens_without_head_is_an_error(tmp_path):
    config, sd = state(num_classes=0)
    write_checkpoint_dir(tmp_path, config, sd)
    with pytest.raises(CheckpointError, match="proj.weight"):
        load_checkpoint(tmp_path)


class Payload:
    def __reduce__(self):
        return (print, ("code ran while loading",))


def test_pickled_code_in_model_pt_is_refused(tmp_path):
    config, sd = state()
    write_checkpoint_dir(tmp_path, config, sd)
    torch.save({"model": sd, "extra": Payload()}, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="not loaded for safety"):
        load_checkpoint(tmp_path)


def test_garbage_model_pt_is_a_clear_error(tmp_path):
    config, sd = state()
    write_checkpoint_dir(tmp_path, config, sd)
    (tmp_path / "model.pt").write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="model.pt"):
        load_checkpoint(tmp_path)
