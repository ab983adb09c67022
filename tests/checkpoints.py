"""Build FunASR-format emotion2vec checkpoint directories with random weights, for tests.

The configuration mirrors the released emotion2vec+ ``config.yaml`` files (FunASR's
``model: Emotion2vec`` with ``model_conf`` and ``modalities.audio``); only sizes change.

``layout="released"`` writes what the hubs publish (facts from the released plus_large files,
see docs/released_checkpoints.md): tensor names with the trainer's ``d2v_model.`` prefix except
the head's ``proj.*``, nested under ``model``, and a config.yaml with
``scope_map: ['d2v_model.', none]`` and image/text modality sections. ``fairseq_checkpoint``
wraps such weights in a training checkpoint holding Python objects, as the released
``model.pt`` does (which ``torch.load(weights_only=True)`` refuses).
"""

from __future__ import annotations

import argparse
import copy
import enum
from pathlib import Path
from typing import Any

import torch
import yaml

TOKENS = ["生气/angry", "厌恶/disgusted", "恐惧/fearful", "开心/happy", "中立/neutral",
          "其他/other", "难过/sad", "吃惊/surprised", "<unk>"]

_BASE_CONFIG: dict[str, Any] = {
    "model": "Emotion2vec",
    "model_conf": {
        "loss_beta": 0.0, "loss_scale": None, "depth": 8, "start_drop_path_rate": 0.0,
        "end_drop_path_rate": 0.0, "num_heads": 12, "norm_eps": 1e-05, "norm_affine": True,
        "encoder_dropout": 0.1, "post_mlp_drop": 0.1, "attention_dropout": 0.1,
        "activation_dropout": 0.0, "dropout_input": 0.0, "layerdrop": 0.05, "embed_dim": 768,
        "mlp_ratio": 4.0, "layer_norm_first": False, "average_top_k_layers": 8,
        "end_of_block_targets": False, "clone_batch": 8, "layer_norm_target_layer": False,
        "batch_norm_target_layer": False, "instance_norm_target_layer": True,
        "instance_norm_targets": False, "layer_norm_targets": False, "ema_decay": 0.999,
        "ema_same_dtype": True, "log_norms": True, "ema_end_decay": 0.99999,
        "ema_anneal_end_step": 20000, "ema_encoder_only": False, "max_update": 100000,
        "extractor_mode": "layer_norm", "shared_decoder": None, "min_target_var": 0.1,
        "min_pred_var": 0.01, "supported_modality": "AUDIO", "mae_init": False, "seed": 1,
        "skip_ema": False, "cls_loss": 1.0, "recon_loss": 0.0, "d2v_loss": 1.0,
        "decoder_group": False, "adversarial_training": False, "adversarial_hidden_dim": 128,
        "adversarial_weight": 0.1, "cls_type": "chunk", "normalize": True,
        "modalities": {"audio": {
            "type": "AUDIO", "prenet_depth": 4, "prenet_layerdrop": 0.05, "prenet_dropout": 0.1,
            "start_drop_path_rate": 0.0, "end_drop_path_rate": 0.0, "num_extra_tokens": 10,
            "init_extra_token_zero": True, "mask_noise_std": 0.01, "mask_prob_min": None,
            "mask_prob": 0.5, "inverse_mask": False, "mask_prob_adjust": 0.05,
            "keep_masked_pct": 0.0, "mask_length": 5, "add_masks": False, "remove_masks": False,
            "mask_dropout": 0.0, "encoder_zero_mask": True, "mask_channel_prob": 0.0,
            "mask_channel_length": 64, "ema_local_encoder": False, "local_grad_mult": 1.0,
            "use_alibi_encoder": True, "alibi_scale": 1.0, "learned_alibi": False,
            "alibi_max_pos": None, "learned_alibi_scale": True,
            "learned_alibi_scale_per_head": True, "learned_alibi_scale_per_layer": False,
            "num_alibi_heads": 12, "model_depth": 8,
            "decoder": {"decoder_dim": 384, "decoder_groups": 16, "decoder_kernel": 7,
                        "decoder_layers": 4, "input_dropout": 0.1, "add_positions_masked": False,
                        "add_positions_all": False, "decoder_residual": True,
                        "projection_layers": 1, "projection_ratio": 2.0},
            "extractor_mode": "layer_norm",
            "feature_encoder_spec": "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] + [(512,2,2)]",
            "conv_pos_width": 95, "conv_pos_groups": 16, "conv_pos_depth": 5,
            "conv_pos_pre_ln": False,
        }},
    },
    "tokenizer": "CharTokenizer",
    "tokenizer_conf": {"unk_symbol": "<unk>", "split_with_space": True},
}


def make_config(embed_dim: int = 768, num_heads: int = 12, depth: int = 8, prenet_depth: int = 4,
                **audio_overrides: Any) -> dict[str, Any]:
    """A FunASR emotion2vec config of the given size; ``audio_overrides`` edit ``modalities.audio``."""
    config = copy.deepcopy(_BASE_CONFIG)
    conf = config["model_conf"]
    conf.update(embed_dim=embed_dim, num_heads=num_heads, depth=depth)
    audio = conf["modalities"]["audio"]
    audio.update(prenet_depth=prenet_depth, model_depth=depth, num_alibi_heads=num_heads)
    audio.update(audio_overrides)
    if "extractor_mode" in audio_overrides:
        conf["extractor_mode"] = audio_overrides["extractor_mode"]
    return config


#: Sections of the released config.yaml that inference ignores (data2vec 2.0's other modalities).
_OTHER_MODALITIES: dict[str, Any] = {
    "image": {"type": "IMAGE", "prenet_depth": 2, "input_size": 224, "in_chans": 3, "patch_size": 16,
              "embed_dim": 768, "alibi_dims": 2, "alibi_distance": "manhattan", "fixed_positions": True,
              "transformer_decoder": False, "enc_dec_transformer": False,
              "decoder": {"decoder_dim": 384, "decoder_groups": 16, "decoder_kernel": 5, "decoder_layers": 5}},
    "text": {"type": "TEXT", "prenet_depth": 0, "max_source_positions": 512, "learned_pos": True,
             "dropout": 0.1, "no_scale_embedding": True, "layernorm_embedding": True,
             "no_token_positional_embeddings": False,
             "decoder": {"decoder_dim": 384, "decoder_groups": 16, "decoder_kernel": 5, "decoder_layers": 5}},
}
#: The wrapper prefix of the released files; config.yaml maps it away with scope_map.
RELEASED_PREFIX = "d2v_model."


def released_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` as the hub's config.yaml lays it out: scope_map and the unused modality sections."""
    config = copy.deepcopy(config)
    config["model_conf"]["modalities"].update(copy.deepcopy(_OTHER_MODALITIES))
    config["model_conf"]["average_top_k_layers"] = 16
    config["scope_map"] = [RELEASED_PREFIX, "none"]
    return config


def released_names(state_dict: dict[str, torch.Tensor], prefix: str = RELEASED_PREFIX) -> dict[str, torch.Tensor]:
    """Tensor names as in the released model.pt: every name prefixed but the head's ``proj.*``."""
    return {(name if name.startswith("proj.") else prefix + name): tensor for name, tensor in state_dict.items()}


class Phase(enum.Enum):
    """Stands for fairseq's Enum-valued config fields (e.g. a ChoiceEnum)."""

    PRETRAIN = "pretrain"
    FINETUNE = "finetune"


class CreatesFileWhenUnpickled:
    """An object whose pickle, if executed, creates ``path`` (through ``open``, and again through
    ``os.system``): loading a checkpoint that holds it must create nothing."""

    def __init__(self, path: Path, via: str = "open") -> None:
        self.path, self.via = path, via

    def __reduce__(self):
        import os

        if self.via == "system":
            return (os.system, (f"touch '{self.path}'",))
        return (open, (str(self.path), "w"))


def fairseq_checkpoint(model_state: dict[str, torch.Tensor], *, trap: Path | None = None) -> dict[str, Any]:
    """A fairseq-style training checkpoint around ``model_state``: configuration objects (an Enum,
    an argparse.Namespace), optimiser history and Adam moments, and optionally ``trap`` objects."""
    moments = {index: {"step": torch.tensor(1000.0), "exp_avg": torch.zeros_like(t), "exp_avg_sq": torch.zeros_like(t)}
               for index, t in enumerate(model_state.values()) if t.is_floating_point()}
    checkpoint: dict[str, Any] = {
        "args": argparse.Namespace(arch="data2vec_multi", lr=[5e-5], phase=Phase.FINETUNE),
        "cfg": {"model": {"_name": "data2vec_multi", "phase": Phase.PRETRAIN},
                "common": argparse.Namespace(seed=1, fp16=True)},
        "model": model_state,
        "criterion": None,
        "optimizer_history": [{"criterion_name": "ModelCriterion", "optimizer_name": "FairseqAdam",
                               "lr_scheduler_state": {"best": 0.42}, "num_updates": 100000}],
        "task_state": {},
        "extra_state": {"epoch": 12, "train_iterator": {"epoch": 12, "iterations_in_epoch": 0},
                        "previous_training_time": 123456.7},
        "last_optimizer_state": {"state": moments, "param_groups": [{"lr": 5e-5, "betas": (0.9, 0.98)}]},
    }
    if trap is not None:
        checkpoint["extra_state"]["payload"] = [CreatesFileWhenUnpickled(trap, "open"),
                                                CreatesFileWhenUnpickled(trap, "system")]
    return checkpoint


CONFIG_768 = dict(embed_dim=768, num_heads=12, depth=8, prenet_depth=4)
CONFIG_1024 = dict(embed_dim=1024, num_heads=16, depth=8, prenet_depth=4)


def randomize_(module: torch.nn.Module, seed: int) -> None:
    """Give every parameter non-trivial random values (norm gains near 1, ALiBi scales > 0)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if name.endswith("alibi_scale"):
                param.copy_(0.5 + noise.abs())
            elif param.dim() == 1 and ("norm" in name or name.endswith(".1.weight") or name.endswith(".2.1.weight")):
                param.copy_(1.0 + 0.1 * noise if name.endswith("weight") else 0.1 * noise)
            else:
                fan_in = param[0].numel() if param.dim() > 1 else param.numel()
                param.copy_(noise / max(fan_in, 1) ** 0.5)


def write_checkpoint_dir(directory: Path, config: dict[str, Any], state_dict: dict[str, torch.Tensor],
                         tokens: list[str] | None = TOKENS, nest: str | None = "model") -> Path:
    """Write ``config.yaml``, ``model.pt`` (optionally nested under ``nest``) and ``tokens.txt``."""
    directory.mkdir(parents=True, exist_ok=True)
    config = copy.deepcopy(config)
    if tokens is None:
        config.pop("tokenizer", None)
        config.pop("tokenizer_conf", None)
    (directory / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    torch.save({nest: state_dict} if nest else state_dict, directory / "model.pt")
    if tokens is not None:
        (directory / "tokens.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return directory


def funasr_state_dict(seed: int = 0, num_classes: int = 9, **size: Any) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(config, state dict) of FunASR's own ``Emotion2vec`` with random weights."""
    from funasr.models.emotion2vec.model import Emotion2vec

    config = make_config(**size)
    torch.manual_seed(seed)
    model = Emotion2vec(model_conf=config["model_conf"], vocab_size=num_classes if num_classes else -1)
    randomize_(model, seed)
    return config, model.state_dict()


def build_funasr_checkpoint(directory: Path, seed: int = 0, tokens: list[str] | None = TOKENS,
                            nest: str | None = "model", layout: str = "funasr", **size: Any) -> Path:
    """Instantiate FunASR's own ``Emotion2vec`` with random weights and save it as a model directory.

    ``layout="released"``: as the hubs publish it (see :func:`released_config`, :func:`released_names`).
    """
    config, state = funasr_state_dict(seed, len(tokens) if tokens else 0, **size)
    if layout == "released":
        config, state = released_config(config), released_names(state)
    return write_checkpoint_dir(directory, config, state, tokens=tokens, nest=nest)


def build_checkpoint(directory: Path, seed: int = 0, tokens: list[str] | None = TOKENS,
                     nest: str | None = None, **size: Any) -> Path:
    """The same without FunASR: random weights through this package's own model."""
    from emotion2vec_plus.models.config import Emotion2vecConfig
    from emotion2vec_plus.models.emotion2vec import Emotion2vecModel

    config = make_config(**size)
    model = Emotion2vecModel(Emotion2vecConfig.from_model_conf(config["model_conf"]),
                             num_classes=len(tokens) if tokens else 0)
    randomize_(model, seed)
    return write_checkpoint_dir(directory, config, model.state_dict(), tokens=tokens, nest=nest)
