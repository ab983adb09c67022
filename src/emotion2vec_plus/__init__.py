"""emotion2vec-plus: speech emotion recognition and emotion embeddings with emotion2vec+.

Quick start::

    from emotion2vec_plus import Emotion2VecPlus
    model = Emotion2VecPlus(model_name="large")
    emb = model.extract_embedding("call.wav")        # (1024,) float32
    scores = model.classify_embedding(emb)           # {"angry": 0.01, ..., "happy": 0.93, ...}
    result = model.predict("call.wav", granularity="frame", extract_embedding=True)
"""

from .audio import SAMPLE_RATE, Audio, AudioInfo, load_audio
from .embeddings import load_embedding, save_embedding
from .errors import (
    AudioError,
    AudioFileNotFoundError,
    AudioTooLongError,
    AudioTooShortError,
    CheckpointError,
    CorruptAudioError,
    Emotion2VecError,
    EmbeddingFileError,
    EmptyAudioError,
    InvalidSamplesError,
    ModelError,
    ModelNotFoundError,
    NotAudioError,
)
from .inference import Emotion2VecPlus
from .labels import EMOTIONS, EMOTIONS_ZH, EMOJI
from .results import FrameScores, Result, Segment

__version__ = "0.1.0"

__all__ = [
    "SAMPLE_RATE", "Audio", "AudioInfo", "load_audio", "load_embedding", "save_embedding",
    "AudioError", "AudioFileNotFoundError", "AudioTooLongError", "AudioTooShortError", "CheckpointError",
    "CorruptAudioError", "Emotion2VecError", "EmbeddingFileError", "EmptyAudioError", "InvalidSamplesError",
    "ModelError", "ModelNotFoundError", "NotAudioError", "Emotion2VecPlus", "EMOTIONS", "EMOTIONS_ZH",
    "EMOJI", "FrameScores", "Result", "Segment", "__version__",
]
