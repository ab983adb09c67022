"""Load FunASR-format emotion2vec checkpoint directories (config.yaml, model.pt, tokens.txt)."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any, Mapping

import torch

from .config import Emotion2vecConfig, load_config
from .errors import CheckpointError
from .labels import Label, default_labels, read_tokens
from .model import Emotion2vecModel

logger = logging.getLogger(__name__)

#: Checkpoint entries used only for pre-training; FunASR's inference model has no place for them.
PRETRAINING_PREFIXES: tuple[str, ...] = (
    "modality_encoders.AUDIO.decoder.",
    "shared_decoder.",
    "ema.",
    "_ema.",
    "recon_proj.",
    "cls_proj.",
)


def unwrap_state_dict(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """Find the state dict in a checkpoint: flat, or nested under ``state_dict``/``model_state_dict``/``model``."""
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{source}: no state dict found (expected a mapping of parameter names to tensors)")
    state = {}
    for name, value in obj.items():
        if not isinstance(value, torch.Tensor):
            continue
        state[name[len("module.") :] if name.startswith("module.") else name] = value
    if not state:
        raise CheckpointError(f"{source}: the checkpoint holds no tensors")
    return state


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read ``model.pt`` with ``torch.load(weights_only=True)``: no code in the file is run."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        try:
            # Memory-mapped: tensors are read from the page cache instead of copied into the heap,
            # so loading does not hold the file's tensors twice (state dict + model).
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: the checkpoint contains Python objects other than tensors and plain containers, "
            f"which are not loaded for safety ({exc}). Re-save it as a plain state dict: "
            "torch.save(torch.load(path, weights_only=False)['model'], 'model.pt') on a machine you trust."
        ) from exc
    except Exception as exc:  # torch raises many types for a damaged file; all mean "unreadable"
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint: {exc}") from exc
    return unwrap_state_dict(obj, str(path))


def load_state_dict_strict(model: Emotion2vecModel, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``state`` into ``model``; fail naming every missing or mis-shaped tensor.

    FunASR keeps random weights for mis-shaped tensors and only logs it; here that is an error.
    Pre-training-only entries (decoder, EMA teacher) are ignored.
    """
    state = dict(state)
    scale_key = "modality_encoders.AUDIO.alibi_scale"
    if scale_key in state and state[scale_key].dim() == 4:
        state[scale_key] = state[scale_key].unsqueeze(0)  # older layout, as fairseq's upgrade step does
    expected = model.state_dict()
    missing = [name for name in expected if name not in state]
    misshaped = [
        f"{name} (checkpoint {tuple(state[name].shape)}, model {tuple(expected[name].shape)})"
        for name in expected
        if name in state and state[name].shape != expected[name].shape
    ]
    if missing or misshaped:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing tensor(s): " + ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else ""))
        if misshaped:
            parts.append(f"{len(misshaped)} mis-shaped tensor(s): " + ", ".join(misshaped[:20]) + (" ..." if len(misshaped) > 20 else ""))
        raise CheckpointError(
            f"{source}: the checkpoint does not fit the architecture in config.yaml: " + "; ".join(parts)
        )
    unexpected = [n for n in state if n not in expected and not n.startswith(PRETRAINING_PREFIXES)]
    if unexpected:
        logger.warning("%s: ignoring %d tensor(s) the model does not use: %s", source, len(unexpected), ", ".join(unexpected[:10]))
    tensors = {}
    for name, reference in expected.items():
        tensor = state[name]
        if tensor.dtype != reference.dtype:
            tensor = tensor.to(reference.dtype)
        tensors[name] = tensor
    # assign=True adopts the loaded tensors instead of copying them into freshly initialised ones.
    model.load_state_dict(tensors, strict=True, assign=True)


def load_checkpoint(model_dir: str | Path) -> tuple[Emotion2vecModel, list[Label]]:
    """Build the model described by ``model_dir/config.yaml`` and load ``model.pt`` into it.

    Returns the model in eval mode and its classifier labels (empty for embedding-only
    checkpoints such as ``emotion2vec_base``).
    """
    model_dir = Path(model_dir)
    config: Emotion2vecConfig = load_config(model_dir / "config.yaml")
    state = read_state_dict(model_dir / "model.pt")
    tokens_path = model_dir / "tokens.txt"
    head = state.get("proj.weight")
    if tokens_path.is_file():
        labels = read_tokens(tokens_path)
    elif head is not None and head.shape[0] == len(default_labels()):
        labels = default_labels()
    elif head is not None:
        raise CheckpointError(
            f"{model_dir}: the checkpoint has a {head.shape[0]}-class head but no tokens.txt naming its classes"
        )
    else:
        labels = []
    with torch.device("meta"):  # no random initialisation: every tensor comes from the checkpoint
        model = Emotion2vecModel(config, num_classes=len(labels))
    load_state_dict_strict(model, state, str(model_dir / "model.pt"))
    return model.eval(), labels
