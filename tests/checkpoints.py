"""Build FunASR-format emotion2vec checkpoint directories with random weights, for tests.

The configuration mirrors the released emotion2vec+ ``config.yaml`` files (FunASR's
``model: Emotion2vec`` with ``model_conf`` and ``modalities.audio``); only sizes change.
"""

from __future__ import annotations

import copy
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


def build_funasr_checkpoint(directory: Path, seed: int = 0, tokens: list[str] | None = TOKENS,
                            nest: str | None = "model", **size: Any) -> Path:
    """Instantiate FunASR's own ``Emotion2vec`` with random weights and save it as a model directory."""
    from funasr.models.emotion2vec.model import Emotion2vec

    config = make_config(**size)
    torch.manual_seed(seed)
    model = Emotion2vec(model_conf=config["model_conf"], vocab_size=len(tokens) if tokens else -1)
    randomize_(model, seed)
    return write_checkpoint_dir(directory, config, model.state_dict(), tokens=tokens, nest=nest)


def build_checkpoint(directory: Path, seed: int = 0, tokens: list[str] | None = TOKENS,
                     nest: str | None = None, **size: Any) -> Path:
    """The same without FunASR: random weights through this package's own model."""
    from emotion2vec_plus.config import Emotion2vecConfig
    from emotion2vec_plus.model import Emotion2vecModel

    config = make_config(**size)
    model = Emotion2vecModel(Emotion2vecConfig.from_model_conf(config["model_conf"]),
                             num_classes=len(tokens) if tokens else 0)
    randomize_(model, seed)
    return write_checkpoint_dir(directory, config, model.state_dict(), tokens=tokens, nest=nest)
