"""What the page says when something goes wrong: the library's typed errors
(:mod:`emotion2vec_plus.errors`) as messages in the page's language that name the file, say what
the problem is and what the person can do (the server's options, not Python arguments).

A :class:`PageMessage` keeps the message's key and values, not its text, so a message already shown
is shown again in the other language when the language is switched.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from ... import errors
from .text import text


@dataclass
class PageMessage:
    """One message: the text key, the values it is filled with, and the library's own message
    (English) as ``detail`` where it adds something (a decoder's reason, a model's error)."""

    key: str
    values: dict[str, Any] = field(default_factory=dict)
    detail: str | None = None

    def message(self, lang: str) -> str:
        return text(self.key, lang).format(**self.values)

    def html(self, lang: str) -> str:
        """The message box (``#error-message``), the detail folded away under "details"."""
        detail = ""
        if self.detail:
            detail = (f'<details class="error-detail"><summary>{html.escape(text("error_details", lang))}</summary>'
                      f"{html.escape(self.detail)}</details>")
        return (f'<div class="error-box" id="error-message"><b>{html.escape(text("error_title", lang))}</b>'
                f"<div>{html.escape(self.message(lang))}</div>{detail}</div>")


def _one_line(message: str) -> str:
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def _error_class(name: str | None) -> type[BaseException] | None:
    """The :mod:`emotion2vec_plus.errors` class called ``name`` (as a batch job records it), if any."""
    found = getattr(errors, name, None) if name else None
    return found if isinstance(found, type) and issubclass(found, errors.Emotion2VecError) else None


def describe(kind: type[BaseException] | None, name: str, detail: str, *, max_duration_s: float,
             error: BaseException | None = None) -> PageMessage:
    """The page's message for an error of class ``kind`` about the input shown as ``name``.

    ``detail`` is the library's message with server paths already replaced by ``name``; ``error``
    the exception itself when there is one (its fields fill in numbers the message can use).
    """
    def of(key: str, keep_detail: bool = False, **values: Any) -> PageMessage:
        return PageMessage(key, {"name": name, **values}, detail if keep_detail else None)

    if kind is None:
        return of("error_file_failed", keep_detail=True)
    if issubclass(kind, errors.AudioTooLongError):
        limit = getattr(error, "limit_s", None) or max_duration_s
        duration = getattr(error, "duration_s", None)
        if duration is not None:
            return of("error_too_long_known", limit=limit, duration=duration)
        return of("error_too_long", limit=limit)
    if issubclass(kind, errors.AudioFileNotFoundError):
        return of("error_not_found")
    if issubclass(kind, errors.NotAudioError):
        return of("error_not_audio")
    if issubclass(kind, errors.CorruptAudioError):
        return of("error_corrupt", keep_detail=True)
    if issubclass(kind, errors.EmptyAudioError):
        return of("error_empty")
    if issubclass(kind, errors.AudioTooShortError):
        return of("error_too_short")
    if issubclass(kind, errors.InvalidSamplesError):
        return of("error_invalid_samples")
    if issubclass(kind, errors.AudioError):
        return of("error_audio", keep_detail=True)
    if issubclass(kind, errors.EmbeddingDimensionError) and isinstance(error, errors.EmbeddingDimensionError):
        if error.reference_is_model:
            return PageMessage("error_dimension_model", {"name": error.source, "dim": error.dim,
                                                       "model": error.reference, "model_dim": error.reference_dim})
        return PageMessage("error_dimension_pair", {"name": error.source, "dim": error.dim, "other": error.reference,
                                                  "other_dim": error.reference_dim})
    if issubclass(kind, errors.PickledEmbeddingError):
        return of("error_pickle")
    if issubclass(kind, errors.IndexFileError):
        return of("error_index", keep_detail=True)
    if issubclass(kind, errors.EmbeddingFileError):
        return of("error_embedding", keep_detail=True)
    if issubclass(kind, errors.ModelError):
        return PageMessage("error_model", {}, detail)
    return PageMessage("error_unexpected", {"kind": kind.__name__}, detail)


def page_error(exc: BaseException, name: str, *, max_duration_s: float, server_paths: tuple[str, ...] = ()) -> PageMessage:
    """The page's message for an exception raised while handling the input shown as ``name``
    (``server_paths``: paths of that input on the server, replaced by ``name`` in the detail)."""
    detail = _one_line(str(exc)) or type(exc).__name__
    for path in server_paths:
        detail = detail.replace(path, name)
    kind = type(exc)
    if not issubclass(kind, errors.Emotion2VecError) and issubclass(kind, (OSError, ValueError)):
        return PageMessage("error_file_failed", {"name": name}, detail)
    return describe(kind, name, detail, max_duration_s=max_duration_s, error=exc)


def recorded_error(error_type: str | None, message: str, name: str, *, max_duration_s: float,
                   server_paths: tuple[str, ...] = ()) -> PageMessage:
    """The page's message for a failure a batch job recorded (``error_type``, ``error`` of its line)."""
    detail = _one_line(message)
    for path in server_paths:
        detail = detail.replace(path, name)
    return describe(_error_class(error_type), name, detail, max_duration_s=max_duration_s)
