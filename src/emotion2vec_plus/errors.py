"""Typed errors raised by emotion2vec-plus.

Every error about an input names that input (file path, ``<bytes>``, ``<array>`` ...) and
the problem, so a message shown to a user or written to a batch log is enough on its own.
"""

from __future__ import annotations


class Emotion2VecError(Exception):
    """Base class of every error raised on purpose by this package."""


class AudioError(Emotion2VecError):
    """A problem with one audio input. ``source`` names the input, ``reason`` the problem."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class AudioFileNotFoundError(AudioError, FileNotFoundError):
    """The path does not exist or is not a regular file."""


class NotAudioError(AudioError):
    """The bytes are not in any audio format we can decode (e.g. a text or image file)."""


class CorruptAudioError(AudioError):
    """The container is recognised but the stream is damaged or truncated."""


class EmptyAudioError(AudioError):
    """The input decodes to zero samples."""


class AudioTooShortError(AudioError):
    """The input is shorter than one 25 ms analysis frame (400 samples at 16 kHz)."""


class AudioTooLongError(AudioError):
    """The input is longer than the configured maximum duration: ``limit_s``; ``duration_s`` is the
    input's length when it is known (``None`` when decoding stopped at the limit)."""

    def __init__(self, source: str, reason: str, limit_s: float | None = None, duration_s: float | None = None) -> None:
        super().__init__(source, reason)
        self.limit_s = limit_s
        self.duration_s = duration_s


class InvalidSamplesError(AudioError):
    """The samples contain NaN or infinite values."""


class ModelError(Emotion2VecError):
    """A model could not be found, downloaded, or loaded."""


class ModelNotFoundError(ModelError):
    """A model name is unknown, or its files are not available locally and cannot be downloaded."""


class CheckpointError(ModelError):
    """A checkpoint is missing tensors, has mis-shaped tensors, or cannot be read."""


class EmbeddingFileError(Emotion2VecError):
    """An embedding file is missing, not a NumPy ``.npy`` file, unsafe (pickle), or mis-shaped."""


class PickledEmbeddingError(EmbeddingFileError):
    """A ``.npy`` file holds Python objects (pickle): refused, since loading it could run code."""


class EmbeddingDimensionError(EmbeddingFileError, ValueError):
    """An embedding's size does not match the model's, or the other embedding's it is compared with.

    ``source`` is the embedding at fault (``dim``-d); ``reference`` is what it was measured against
    (a model name when ``reference_is_model``, else the other input) and ``reference_dim`` its size.
    """

    def __init__(self, message: str, source: str, dim: int, reference: str, reference_dim: int,
                 reference_is_model: bool) -> None:
        super().__init__(message)
        self.source = source
        self.dim = dim
        self.reference = reference
        self.reference_dim = reference_dim
        self.reference_is_model = reference_is_model


class IndexFileError(EmbeddingFileError):
    """An embeddings Parquet file is missing, not Parquet, or lacks / mis-shapes a column."""


class HeadFileError(Emotion2VecError):
    """A head file is missing, not safetensors, damaged, or its tensors/metadata are inconsistent."""


class HeadMismatchError(HeadFileError):
    """A head is applied to embeddings from another embedding model or of another dimension."""


class TrainingDataError(Emotion2VecError, ValueError):
    """Labelled training data is missing, malformed or insufficient; the message names the file (and line)."""


class BatchInputError(Emotion2VecError, ValueError):
    """A user error in a batch job's inputs or output folder (missing input, unreadable list, ...)."""


class RayEngineError(Emotion2VecError, RuntimeError):
    """Ray is missing, could not start or connect, or a Ray worker failed."""


class ServiceError(Emotion2VecError):
    """A REST request refused: answered as JSON ``{"detail": message, "error": kind}`` with ``status``."""

    def __init__(self, status: int, detail: str, kind: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind or type(self).__name__
        self.headers = headers


class LiveSessionError(Emotion2VecError):
    """A live session (``/v1/stream``) ends: sent as ``{"type": "error", "code": code, "message": ...}``,
    then the WebSocket closes with ``close_code``."""

    def __init__(self, code: str, message: str, close_code: int = 1008) -> None:
        super().__init__(message)
        self.code = code
        self.close_code = close_code


class QueueFullError(ServiceError):
    """The REST service's request queue is full (503, retry shortly)."""

    def __init__(self, size: int) -> None:
        super().__init__(503, f"server busy: the request queue is full ({size} waiting); retry shortly",
                         "QueueFull", {"Retry-After": "1"})


class AdapterError(Emotion2VecError, ValueError):
    """An adapter file is missing, not an adapter, damaged, or made for another model; or the
    model cannot be adapted (only the bundled compact model can)."""
