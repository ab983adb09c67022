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
    """The input is longer than the configured maximum duration."""


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
