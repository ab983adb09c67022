"""Every model the toolkit runs, by name: the bundled compact model and the emotion2vec+ family on
the hubs (:data:`~emotion2vec_plus.models.hub.MODELS`). Light on purpose (no PyTorch, no NumPy), so
``emotion2vec-plus models`` answers in well under a second.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

COMPACT_NAME = "compact"
COMPACT_FILE = "compact_v2.safetensors"
#: What the build wrote beside the compact file: sha256, size, recipe (embedding size), licence.
COMPACT_INFO_FILE = "compact_v2.json"
WHISPER_FILE = "whisper_base_encoder.safetensors"


def asset_path(name: str) -> Path:
    """A file shipped in the package's ``assets/`` folder."""
    return Path(str(resources.files("emotion2vec_plus") / "assets" / name))


def default_compact_path() -> Path:
    """The bundled compact model's file."""
    return asset_path(COMPACT_FILE)


@dataclass(frozen=True)
class ModelEntry:
    """One model as ``emotion2vec-plus models`` lists it."""

    name: str
    repo: str | None
    """Hub repository id on the chosen hub; None for the bundled model."""
    embed_dim: int
    has_head: bool
    size_mb: int
    cached: bool
    """Available without downloading (always for the bundled model)."""
    path: str | None
    """Where the files are when cached."""
    url: str | None
    """Where to get it when not cached (the hub's page); None for the bundled model."""
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def bundled_model() -> ModelEntry:
    """The compact model shipped inside the package (from its build record; no weights are read)."""
    info = json.loads(asset_path(COMPACT_INFO_FILE).read_text(encoding="utf-8"))
    size = default_compact_path().stat().st_size + asset_path(WHISPER_FILE).stat().st_size
    return ModelEntry(COMPACT_NAME, None, int(info["recipe"]["embed_dim"]), True, round(size / 1e6), True,
                      str(default_compact_path().parent), None, "default")


def all_models(hub: str | None = None, cache_dir: str | os.PathLike | None = None) -> list[ModelEntry]:
    """The bundled model, then every known hub model with whether it is cached. Never downloads."""
    from .hub import list_models, resolve_hub

    chosen = resolve_hub(hub)
    entries = [bundled_model()]
    for status in list_models(hub=hub, cache_dir=cache_dir):
        spec = status.spec
        on_hub = spec.on_hub(chosen)
        entries.append(ModelEntry(
            spec.name, spec.repo(chosen) if on_hub else None, spec.embed_dim, spec.has_head, spec.size_mb,
            status.cached, str(status.path) if status.path else None,
            None if status.path else spec.url(chosen if on_hub else "ms"),
            "" if on_hub else "ModelScope only: --hub ms"))
    return entries
