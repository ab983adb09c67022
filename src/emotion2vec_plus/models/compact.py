"""The compact emotion model that ships inside the package (model name ``"compact"``).

Backbone: OpenAI Whisper *base* encoder (MIT licence), run on the true length of the audio; a
model file may carry fine-tuned copies of its top blocks (the bundled one does not: measured on
held-out speakers, fine-tuning gave no better classifier, see the model card). Frame embeddings:
some of the encoder's hidden states (layer-normalised, concatenated) through a learned linear
projection to an E-dimensional emotion embedding (256 for the bundled model) at 50 frames per
second. The utterance embedding is the mean of the frame embeddings, and the emotion head is
linear over it (so the same head scores single frames). Classes without training data
(``other``, ``unknown``) get probability 0.

Files (in ``emotion2vec_plus/assets``): ``whisper_base_encoder.safetensors`` (the released
encoder) and ``compact_v2.safetensors`` (any fine-tuned blocks, the projection, the head, and
JSON metadata). A compact model file of one's own (same format, from ``training/v2_frozen.py``
or ``training/v2_train.py``) loads with ``Emotion2VecPlus("path/to/file.safetensors")``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save
from torch import nn

from ..errors import CheckpointError, ModelNotFoundError
from ..fileio import atomic_write
from ..heads import EmotionHead
from ..labels import EMOTIONS, Label, default_labels
from .emotion2vec import EncoderOutput
from .registry import default_compact_path
from .whisper import WhisperEncoder, load_whisper_encoder, log_mel_spectrogram, log_mel_spectrogram_traceable

COMPACT_FORMAT = "emotion2vec-plus/compact"
#: Format version 2: optionally fine-tuned top blocks, learned embedding projection. (Version 1,
#: the standardised concatenation of 7 frozen layers, shipped before 2026-12 and is no longer read.)
COMPACT_FORMAT_VERSION = 2
READABLE_VERSIONS = (2,)
HOP_SAMPLES = 320  # Whisper: 160-sample mel hop, conv stem stride 2 -> 50 frames per second
MAX_WINDOW_S = 30.0  # Whisper's positional embedding covers 1500 frames
#: Default longest piece scored whole (see the model card's length table).
WINDOW_S = 10.0
#: What a model file may pool an utterance over (:attr:`CompactSpec.pooling`).
POOLINGS = ("frames", "speech")
#: How a model file may have an input within the window scored (:attr:`CompactSpec.scoring`).
SCORINGS = ("whole", "utterances")


@dataclass
class CompactSpec:
    """What the model file holds besides the released Whisper weights."""

    version: int
    head: EmotionHead | None
    metadata: dict[str, Any]
    first_tuned: int = 6
    """First fine-tuned Whisper block (6: none, the encoder is used as released)."""
    encoder: dict[str, np.ndarray] = field(default_factory=dict)
    """Fine-tuned encoder tensors (Whisper names: ``blocks.{i}.*`` for i >= first_tuned, ``ln_post.*``)."""
    projection: dict[str, np.ndarray] = field(default_factory=dict)
    """The embedding projection's tensors (``project.norms.{i}.*``, ``project.linear.*``)."""
    projection_layers: list[int] = field(default_factory=list)
    """The Whisper hidden states the projection reads (6 = the output after ``ln_post``)."""
    pooling: str = "frames"
    """What an utterance's embedding averages: ``"frames"`` (every frame of the piece) or
    ``"speech"`` (its speech frames, :func:`~emotion2vec_plus.vad.speech_pooling_mask`), as the
    model was trained."""
    scoring: str = "whole"
    """How an input within the window is scored by default: ``"whole"`` or ``"utterances"``."""

    @property
    def embed_dim(self) -> int:
        return int(self.projection["project.linear.weight"].shape[0])


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


class EmbeddingProjection(nn.Module):
    """Encoder hidden states -> emotion embeddings (…, E): each chosen layer layer-normalised, the
    results concatenated, then one linear map."""

    def __init__(self, width: int, num_layers: int, embed_dim: int) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(num_layers))
        self.linear = nn.Linear(width * num_layers, embed_dim)

    def inputs(self, states: list[torch.Tensor]) -> torch.Tensor:
        """What the linear map reads: the layer-normalised states concatenated (…, width x layers)."""
        return torch.cat([norm(x) for norm, x in zip(self.norms, states)], dim=-1)

    def forward(self, states: list[torch.Tensor]) -> torch.Tensor:
        return self.linear(self.inputs(states))


class CompactEmotionModel(nn.Module):
    """Whisper-base encoder (top blocks optionally fine-tuned) -> emotion embedding per frame
    through the learned projection (+ emotion head)."""

    def __init__(self, encoder: WhisperEncoder, spec: CompactSpec) -> None:
        super().__init__()
        self.spec = spec
        self.encoder = encoder
        state = encoder.state_dict()
        for name, value in spec.encoder.items():
            if name not in state or tuple(state[name].shape) != value.shape:
                raise CheckpointError(f"compact model tensor {name} {value.shape} does not fit the Whisper encoder")
        with torch.no_grad():
            for name, value in spec.encoder.items():
                state[name].copy_(torch.from_numpy(value.astype(np.float32)))
        self.layers = list(spec.projection_layers)
        self.pooling = spec.pooling
        self.scoring = spec.scoring
        self.project = EmbeddingProjection(encoder.config.d, len(self.layers), spec.embed_dim)
        self.project.load_state_dict({k[len("project."):]: torch.from_numpy(v.astype(np.float32))
                                      for k, v in spec.projection.items()})
        self._head = NineClassHead(spec.head) if spec.head is not None else None
        #: Digest of the adapter the projection's weights were re-mapped with (None: the file's own).
        self.adapter_digest: str | None = None

    @property
    def embed_dim(self) -> int:
        return self.spec.embed_dim

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

    def embed_mel(self, mel: torch.Tensor, mel_frames: torch.Tensor) -> EncoderOutput:
        """Frame embeddings (B, T, E) from a padded log-mel batch: everything after the front end.

        :meth:`traceable_forward` runs it after the export-friendly log-mel, so the network has one
        copy. Frames past a clip's end are zero; callers use ``lengths``."""
        return self._project_mel(mel, mel_frames, self.project)

    def _project_mel(self, mel: torch.Tensor, mel_frames: torch.Tensor,
                     project: Callable[[list[torch.Tensor]], torch.Tensor]) -> EncoderOutput:
        out = self.encoder(mel, mel_frames, return_layers=self.layers != [len(self.encoder.blocks)])
        states = [out.last_hidden_state] if out.hidden_states is None else [out.hidden_states[i] for i in self.layers]
        frames = project(states)
        valid = (~out.padding_mask)[..., None].to(frames.dtype)
        return EncoderOutput(frames=frames * valid, lengths=out.lengths)

    def projection_input_frames(self, wavs: torch.Tensor, num_samples: torch.Tensor | None = None) -> EncoderOutput:
        """What the projection reads per frame, (B, T, I) (I = 2048 for the bundled model): the
        layer-normalised hidden states concatenated; zero past each clip's end. What an adapter's
        statistics are computed from (:mod:`emotion2vec_plus.adaptation`)."""
        mel, frames = log_mel_spectrogram(wavs, num_samples)
        return self._project_mel(mel, frames, self.project.inputs)

    def projection_inputs(self, wavs: torch.Tensor, num_samples: torch.Tensor | None = None) -> torch.Tensor:
        """Each clip's projection input pooled over its frames, (B, I): the x an adapter standardises."""
        out = self.projection_input_frames(wavs, num_samples)
        return out.frames.sum(1) / out.lengths[:, None].clamp_min(1).to(out.frames.dtype)

    def forward(self, wavs: torch.Tensor, num_samples: torch.Tensor | None = None) -> EncoderOutput:
        """Frame embeddings (B, T, E) at 50 Hz and the valid frames of each clip."""
        mel, frames = log_mel_spectrogram(wavs, num_samples)
        return self.embed_mel(mel, frames)

    def traceable_forward(self, wavs: torch.Tensor, num_samples: torch.Tensor) -> EncoderOutput:
        """:meth:`forward` as ONNX export traces it: the same network after a log-mel whose STFT is
        a matrix product (:func:`~emotion2vec_plus.models.whisper.log_mel_spectrogram_traceable`); traced
        with a padded batch, so the masked path (exact for every batch) is the one recorded."""
        return self.embed_mel(*log_mel_spectrogram_traceable(wavs, num_samples))


def _projection_keys(num_layers: int) -> set[str]:
    return {f"project.norms.{i}.{kind}" for i in range(num_layers) for kind in ("weight", "bias")} | {
        "project.linear.weight", "project.linear.bias"}


def save_compact(path: str | os.PathLike, first_tuned: int, encoder: dict[str, np.ndarray],
                 projection_layers: list[int], projection: dict[str, np.ndarray], head: EmotionHead,
                 metadata: dict[str, Any]) -> Path:
    """Write a compact model file (version 2): fine-tuned encoder tensors (float16), the
    projection and the head (float32), and JSON metadata."""
    path = Path(path)
    if set(projection) != _projection_keys(len(projection_layers)):
        raise ValueError(f"projection needs {sorted(_projection_keys(len(projection_layers)))}, got {sorted(projection)}")
    tensors = {f"encoder.{name}": value.astype(np.float16) for name, value in encoder.items()}
    tensors.update({name: value.astype(np.float32) for name, value in projection.items()})
    tensors.update({f"head.{name}": value.astype(np.float32) for name, value in head.params.items()})
    head_fields = {"labels": head.labels, "kind": head.kind, "embed_dim": head.embed_dim,
                   "embedding_model": head.embedding_model, "metrics": head.metrics, "training": head.training}
    meta = {"format": COMPACT_FORMAT, "format_version": COMPACT_FORMAT_VERSION, "first_tuned": first_tuned,
            "projection_layers": list(projection_layers), "head": head_fields, **metadata}
    with atomic_write(path) as stream:
        stream.write(save(tensors, metadata={"compact": json.dumps(meta, sort_keys=True, ensure_ascii=False)}))
    return path


def read_compact(path: str | os.PathLike | None = None) -> CompactSpec:
    """Read a compact model file (no pickle); errors name the file and the problem."""
    path = Path(path) if path is not None else default_compact_path()
    if not path.is_file():
        raise ModelNotFoundError(f"{path}: the compact model file is missing; reinstall emotion2vec-plus or rebuild it "
                                 "with python training/v2_train.py --protocol final")
    try:
        with safe_open(str(path), framework="np") as handle:
            meta = json.loads((handle.metadata() or {})["compact"])
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        version = meta.get("format_version")
        if meta.get("format") != COMPACT_FORMAT or version not in READABLE_VERSIONS:
            raise ValueError(f"not a {COMPACT_FORMAT} file of version {' or '.join(map(str, READABLE_VERSIONS))}"
                             + (" (version 1 files are no longer read)" if version == 1 else ""))
        head = None
        if meta.get("head"):
            fields = meta["head"]
            params = {name[5:]: value for name, value in tensors.items() if name.startswith("head.")}
            head = EmotionHead(fields["labels"], fields["kind"], fields["embed_dim"], fields["embedding_model"], params,
                               metrics=fields.get("metrics"), training=fields.get("training"), source=str(path))
        layers = [int(v) for v in meta["projection_layers"]]
        pooling, scoring = meta.get("pooling", "frames"), meta.get("scoring", "whole")
        if pooling not in POOLINGS or scoring not in SCORINGS:
            raise ValueError(f"pooling must be one of {POOLINGS} and scoring one of {SCORINGS}, "
                             f"got {pooling!r} and {scoring!r}")
        spec = CompactSpec(version=2, head=head, metadata=meta, first_tuned=int(meta["first_tuned"]),
                           encoder={name[8:]: value for name, value in tensors.items() if name.startswith("encoder.")},
                           projection={name: tensors[name] for name in _projection_keys(len(layers))},
                           projection_layers=layers, pooling=pooling, scoring=scoring)
    except Exception as exc:  # safetensors, json and the head's checks raise several types
        raise CheckpointError(f"{path}: not a usable compact model file: {exc}") from exc
    if spec.head is not None and spec.head.embed_dim != spec.embed_dim:
        raise CheckpointError(f"{path}: head expects {spec.head.embed_dim}-d embeddings, the projection gives {spec.embed_dim}-d")
    return spec


def load_compact_model(path: str | os.PathLike | None = None) -> tuple[CompactEmotionModel, list[Label]]:
    """A compact model (the bundled one by default) in eval mode and its 9 labels."""
    spec = read_compact(path)
    model = CompactEmotionModel(load_whisper_encoder(), spec).eval()
    return model, default_labels() if spec.head is not None else []


def is_compact_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a compact model file (a ``.safetensors`` file with compact metadata)."""
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return False
    try:
        with safe_open(str(path), framework="np") as handle:
            return "compact" in (handle.metadata() or {})
    except Exception:  # not a safetensors file at all
        return False
