"""emotion2vec-plus: speech emotion recognition and emotion embeddings with emotion2vec+.

Quick start::

    from emotion2vec_plus import Emotion2VecPlus
    model = Emotion2VecPlus(model_name="large")
    emb = model.extract_embedding("call.wav")        # (1024,) float32
    scores = model.classify_embedding(emb)           # {"angry": 0.01, ..., "happy": 0.93, ...}
    result = model.predict("call.wav", granularity="frame", extract_embedding=True)

The names below are imported on first use (PEP 562), so ``import emotion2vec_plus`` and the
command line's ``--help`` do not pay for PyTorch until a model is needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(["SAMPLE_RATE", "Audio", "AudioInfo", "load_audio", "stream_audio"], "audio"),
    **dict.fromkeys(["load_embedding", "save_embedding"], "embeddings"),
    **dict.fromkeys([
        "AdapterError", "AudioError", "AudioFileNotFoundError", "AudioTooLongError", "AudioTooShortError", "CheckpointError",
        "CorruptAudioError", "Emotion2VecError", "EmbeddingFileError", "EmbeddingDimensionError", "PickledEmbeddingError",
        "EmptyAudioError", "InvalidSamplesError",
        "ModelError", "ModelNotFoundError", "NotAudioError", "IndexFileError", "HeadFileError", "HeadMismatchError",
        "TrainingDataError", "BatchInputError", "RayEngineError", "ServiceError", "QueueFullError",
        "LiveSessionError"], "errors"),
    "Emotion2VecPlus": "inference",
    "Adapter": "adaptation",
    **dict.fromkeys(["EMOTIONS", "EMOTIONS_ZH", "EMOJI"], "labels"),
    **dict.fromkeys(["FrameScores", "Result", "Segment"], "results"),
    **dict.fromkeys(["EmotionStream", "StreamEvent"], "streaming"),
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'emotion2vec_plus' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from .adaptation import Adapter
    from .audio import SAMPLE_RATE, Audio, AudioInfo, load_audio, stream_audio
    from .embeddings import load_embedding, save_embedding
    from .errors import (AdapterError, AudioError, AudioFileNotFoundError, AudioTooLongError, AudioTooShortError, CheckpointError,
                         CorruptAudioError, EmbeddingDimensionError, EmbeddingFileError, Emotion2VecError,
                         EmptyAudioError, InvalidSamplesError, PickledEmbeddingError,
                         ModelError, ModelNotFoundError, NotAudioError, IndexFileError, HeadFileError,
                         HeadMismatchError, TrainingDataError, BatchInputError, RayEngineError, ServiceError,
                         QueueFullError, LiveSessionError)
    from .inference import Emotion2VecPlus
    from .labels import EMOJI, EMOTIONS, EMOTIONS_ZH
    from .results import FrameScores, Result, Segment
    from .streaming import EmotionStream, StreamEvent
