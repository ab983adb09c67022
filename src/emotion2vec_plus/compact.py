"""The compact emotion model that ships inside the package (model name ``"compact"``).

Backbone: OpenAI Whisper *base* encoder (MIT licence), run on the true length of the audio.
Frame features: the encoder's 7 hidden states (conv stem and the 6 blocks, the last after
``ln_post``) concatenated per frame and standardised with training statistics, giving
(T, 3584) at 50 frames per second. The utterance embedding is the mean of the frames, and
the emotion head is a logistic regression over it (so the same head scores single frames).
Classes without training data (``other``, ``unknown``) get probability 0.

Files (in ``emotion2vec_plus/assets``): ``whisper_base_encoder.safetensors`` (encoder) and
``compact_v1.safetensors`` (feature statistics and the emotion head, metadata as JSON).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save
from torch import nn

from .errors import CheckpointError, ModelNotFoundError
from .fileio import atomic_write
from .heads import EmotionHead
from .labels import EMOTIONS, Label, default_labels
from .model import EncoderOutput
from .whisper import WhisperEncoder, load_whisper_encoder, log_mel_spectrogram

COMPACT_NAME = "compact"
COMPACT_FILE = "compact_v1.safetensors"
COMPACT_FORMAT = "emotion2vec-plus/compact"
COMPACT_FORMAT_VERSION = 1
HOP_SAMPLES = 320  # Whisper: 160-sample mel hop, conv stem stride 2 -> 50 frames per second
MAX_WINDOW_S = 30.0  # Whisper's positional embedding covers 1500 frames
#: Default longest piece scored whole: the head was trained on clips of 1-8 s, and whole 30 s
#: windows of speech and pauses drifted to "sad" (see the model card's length table).
WINDOW_S = 10.0


@dataclass
class CompactSpec:
    """What the model file holds besides the Whisper weights."""

    layers: list[int]
    feature_mean: np.ndarray
    feature_scale: np.ndarray
    head: EmotionHead | None
    metadata: dict[str, Any]

    @property
    def embed_dim(self) -> int:
        return int(self.feature_mean.shape[0])


class NineClassHead(nn.Module):
    """Maps a head over some of the 9 emotions to 9 logits; classes it was not trained on get -inf."""

    def __init__(self, head: EmotionHead) -> None:
        super().__init__()
        self.inner = head.to_torch()
        unknown = [name for name in head.labels if name not in EMOTIONS]
        if unknown:
            raise CheckpointError(f"compact head labels {unknown} are not emotion2vec+ classes {list(EMOTIONS)}")
        self.register_buffer("columns", torch.tensor([head.labels.index(n) if n in head.labels else -1 for n in EMOTIONS]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.inner(x)
        padded = torch.cat([logits, torch.full_like(logits[..., :1], float("-inf"))], dim=-1)
        return padded[..., self.columns]


class CompactEmotionModel(nn.Module):
    """Whisper-base encoder -> standardised concatenation of its layers per frame (+ emotion head)."""

    def __init__(self, encoder: WhisperEncoder, spec: CompactSpec) -> None:
        super().__init__()
        self.encoder = encoder
        self.layers = list(spec.layers)
        self.register_buffer("feature_mean", torch.from_numpy(spec.feature_mean.astype(np.float32)))
        self.register_buffer("feature_scale", torch.from_numpy(spec.feature_scale.astype(np.float32)))
        self._head = NineClassHead(spec.head) if spec.head is not None else None
        self.spec = spec

    @property
    def embed_dim(self) -> int:
        return int(self.feature_mean.shape[0])

    @property
    def hop_samples(self) -> int:
        return HOP_SAMPLES

    @property
    def frame_span_samples(self) -> int:
        """Each frame is reported as its 20 ms slot (its receptive field is wider, centred on it)."""
        return HOP_SAMPLES

    @property
    def head(self) -> nn.Module | None:
        return self._head

    def forward(self, wavs: torch.Tensor, num_samples: torch.Tensor | None = None) -> EncoderOutput:
        """Frame features (B, T, D) at 50 Hz and the valid frames of each clip."""
        mel, frames = log_mel_spectrogram(wavs, num_samples)
        out = self.encoder(mel, frames)
        states = out.hidden_states
        assert states is not None
        x = torch.cat([states[i] for i in self.layers], dim=-1)
        x = (x - self.feature_mean) / self.feature_scale
        return EncoderOutput(frames=x, lengths=out.lengths)


def pooled_layer_features(means: np.ndarray, layers: list[int]) -> np.ndarray:
    """Utterance features from per-layer means (N, L, 512): the concatenation the model standardises."""
    return means[:, layers].reshape(means.shape[0], -1)


def default_compact_path() -> Path:
    return Path(str(resources.files("emotion2vec_plus") / "assets" / COMPACT_FILE))


def save_compact(path: str | os.PathLike, layers: list[int], feature_mean: np.ndarray, feature_scale: np.ndarray,
                 head: EmotionHead, metadata: dict[str, Any]) -> Path:
    """Write the compact model file: feature statistics, the head's tensors and JSON metadata."""
    path = Path(path)
    tensors = {"feature_mean": feature_mean.astype(np.float32), "feature_scale": feature_scale.astype(np.float32)}
    tensors.update({f"head.{name}": value.astype(np.float32) for name, value in head.params.items()})
    head_fields = {"labels": head.labels, "kind": head.kind, "embed_dim": head.embed_dim,
                   "embedding_model": head.embedding_model, "metrics": head.metrics, "training": head.training}
    meta = {"format": COMPACT_FORMAT, "format_version": COMPACT_FORMAT_VERSION, "layers": layers,
            "head": head_fields, **metadata}
    with atomic_write(path) as stream:
        stream.write(save(tensors, metadata={"compact": json.dumps(meta, sort_keys=True, ensure_ascii=False)}))
    return path


def read_compact(path: str | os.PathLike | None = None) -> CompactSpec:
    """Read a compact model file (no pickle); errors name the file and the problem."""
    path = Path(path) if path is not None else default_compact_path()
    if not path.is_file():
        raise ModelNotFoundError(f"{path}: the compact model file is missing; reinstall emotion2vec-plus or rebuild it "
                                 "with python training/train_compact.py")
    try:
        with safe_open(str(path), framework="np") as handle:
            meta = json.loads((handle.metadata() or {})["compact"])
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        if meta.get("format") != COMPACT_FORMAT or meta.get("format_version") != COMPACT_FORMAT_VERSION:
            raise ValueError(f"not a {COMPACT_FORMAT} v{COMPACT_FORMAT_VERSION} file")
        head = None
        if meta.get("head"):
            fields = meta["head"]
            params = {name[5:]: value for name, value in tensors.items() if name.startswith("head.")}
            head = EmotionHead(fields["labels"], fields["kind"], fields["embed_dim"], fields["embedding_model"], params,
                               metrics=fields.get("metrics"), training=fields.get("training"), source=str(path))
        spec = CompactSpec(layers=[int(v) for v in meta["layers"]], feature_mean=tensors["feature_mean"],
                           feature_scale=tensors["feature_scale"], head=head, metadata=meta)
    except Exception as exc:  # safetensors, json and the head's checks raise several types
        raise CheckpointError(f"{path}: not a usable compact model file: {exc}") from exc
    if spec.head is not None and spec.head.embed_dim != spec.embed_dim:
        raise CheckpointError(f"{path}: head expects {spec.head.embed_dim}-d embeddings, features are {spec.embed_dim}-d")
    return spec


def load_compact_model(path: str | os.PathLike | None = None) -> tuple[CompactEmotionModel, list[Label]]:
    """The bundled compact model in eval mode and its 9 labels."""
    spec = read_compact(path)
    model = CompactEmotionModel(load_whisper_encoder(), spec).eval()
    return model, default_labels() if spec.head is not None else []
