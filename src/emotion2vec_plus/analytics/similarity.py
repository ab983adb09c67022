"""Comparing emotion embeddings: cosine similarity, its plain reading, and comparing two inputs
(audio files or ``.npy`` embeddings) - the one comparison behind the CLI, REST and the WebUI."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..embeddings import NPY_MAGIC, load_embedding, utterance_embedding
from ..errors import EmbeddingDimensionError, EmbeddingFileError


#: Lower bounds of the bands of :func:`describe_similarity`, highest first (measured on the compact
#: model with held-out speakers; each reading says what its values mean in those terms).
SIMILARITY_BANDS: tuple[tuple[float, str], ...] = (
    (0.99, "practically identical (the same clip, or the same embedding saved twice)"),
    (0.50, "higher than 97% of pairs of clips with different emotions; 1 in 6 pairs with the same emotion "
           "reach it: a sign of the same emotion"),
    (0.40, "reached by 1 in 3 pairs of clips with the same emotion and 1 in 14 with different emotions: "
           "a hint of the same emotion"),
    (0.20, "reached by 3 in 4 pairs of clips with the same emotion and 1 in 3 with different emotions: "
           "says little"),
    (0.00, "about twice as common for pairs of clips with different emotions as for the same emotion: "
           "says little, leaning to different emotions"),
    (-0.20, "lower than 24 in 25 pairs of clips with the same emotion: a hint of different emotions"),
    (-1.0, "lower than 99% of pairs of clips with the same emotion: a sign of different emotions"),
)


#: Embedding dimension of the model the bands were calibrated on (the bundled compact model).
CALIBRATED_DIM = 256


def checked_vector(x: np.ndarray, name: str) -> np.ndarray:
    """A finite, non-empty (D,) float64 vector from (D,) or (T, D) frames; ``ValueError`` naming ``name``."""
    array = np.asarray(x, dtype=np.float64)
    if array.ndim == 2:
        if array.shape[0] == 0:
            raise ValueError(f"{name}: frame embedding has no frames (shape {array.shape})")
        array = utterance_embedding(array)
    if array.ndim != 1 or array.shape[0] == 0:
        raise ValueError(f"{name}: expected an embedding of shape (D,) or (T, D), got {np.shape(x)}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: the embedding contains NaN or infinite values")
    return array


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings, in [-1, 1].

    Each argument is an utterance embedding (D,) or frame features (T, D); frames are averaged
    first, as the model does for a whole clip. The dimensions must match and neither vector may
    be zero (``ValueError`` otherwise).
    """
    va, vb = checked_vector(a, "first embedding"), checked_vector(b, "second embedding")
    if va.shape[0] != vb.shape[0]:
        raise ValueError(f"embedding dimensions differ: {va.shape[0]} vs {vb.shape[0]} "
                         "(were they made by different models?)")
    na, nb = float(np.linalg.norm(va)), float(np.linalg.norm(vb))
    if na == 0.0 or nb == 0.0:
        raise ValueError(f"{'first' if na == 0.0 else 'second'} embedding is all zeros; cosine similarity is undefined")
    return float(np.clip(np.dot(va, vb) / (na * nb), -1.0, 1.0))


def describe_similarity(value: float) -> str:
    """A short plain-language reading of a cosine similarity between two emotion embeddings: what a
    value like it means for pairs of clips by two different speakers, in terms of how often pairs
    with the same emotion and pairs with different emotions reach it.

    A cosine has no absolute meaning: it depends on the model and is only worth comparing with
    other values from the same model (``search`` ranks that way). Embeddings that are not
    centred, such as emotion2vec+'s (768/1024-d), share a common direction, so even unrelated
    clips score high and the useful range is squeezed towards 1. The bundled compact model's
    256-d embedding is trained so that clips of one emotion are close across speakers and
    languages, but the two kinds of pairs overlap a lot, so most values say little; the readings say
    so rather than "similar" or "opposite".

    Measured with held-out speakers, as the model would meet new ones (the bundled model was trained
    on every speaker of the four corpora, so measuring it on them would flatter it): the v3.1 recipe's
    fold-0 model (``training/v2_frozen.py --save-folds``), ``bench/embedding_similarity.py
    --fold-models FOLDS --folds 0`` on its 360 RAVDESS, 1528 nEMO and 196 EMOVO clips (CASIA's one
    held-out speaker gives no pairs of two speakers). Pairs of clips by two different speakers of one
    corpus; share of the pairs reaching each cosine, same emotion / different emotions, the three
    corpora weighing the same (the range over the corpora in brackets):

    ========  ==========================  ==========================
    cosine    same emotion reaching it    different emotions
    ========  ==========================  ==========================
    >= 0.5    16% (7-23)                  2% (1-3)
    >= 0.4    34% (23-44)                 7% (6-8)
    >= 0.2    75% (70-79)                 35% (30-38)
    >= 0.0    96% (95-97)                 73% (62-79)
    >= -0.2   99.8% (99.5-100)            94% (88-98)
    ========  ==========================  ==========================

    So between 0.2 and 0.4 same-emotion pairs are only 1.5 times as common as different-emotion
    pairs, and between 0.0 and 0.2 different-emotion pairs are about twice as common (1 : 1.8): those
    values say little. Above 0.5 (about 7 : 1) and below -0.2 (about 1 : 30) is a sign; 0.4-0.5 and
    -0.2-0.0 (3.5 : 1 and 1 : 5) a hint. Two clips of one speaker score higher in general (same
    speaker and emotion: median 0.46-0.63), and clips of two languages lower (median 0.08), so
    compare such pairs with each other rather than with these bands. v3.1 averages only an
    utterance's speech frames, which moved every cosine up a little against v3 (random pairs of one
    corpus: median 0.13-0.23 against 0.10-0.21), so the bands were read again; v3's were 12% / 1%
    at 0.5 and 92% / 63% at 0.0.

    For emotion2vec+ embeddings these bands over-state similarity (they are not calibrated
    for them here: no weights offline); compare such values with each other only.
    """
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"similarity must be a finite number, got {value}")
    for bound, reading in SIMILARITY_BANDS:
        if value >= bound:
            return reading
    return SIMILARITY_BANDS[-1][1]


@dataclass
class ComparedInput:
    """One side of :func:`compare_inputs`: an audio file (with its ``result``) or a ``.npy`` embedding.

    ``scores``/``emotion``/``confidence`` come from the result, or for an embedding from the
    model's classifier when the dimensions match (``None`` otherwise, or for a model without head).
    """

    source: str
    kind: str  # "audio" or "embedding"
    vector: np.ndarray
    shape: tuple[int, ...]
    result: Any = None
    scores: dict[str, float] | None = None
    emotion: str | None = None
    confidence: float | None = None


@dataclass
class Comparison:
    """The cosine similarity of two inputs with a plain reading (see :func:`describe_similarity`);
    ``calibrated`` says whether the reading's bands were measured for this embedding size."""

    a: ComparedInput
    b: ComparedInput
    similarity: float
    reading: str
    calibrated: bool


def _embedding_side(path: Path, name: str) -> ComparedInput:
    try:
        array = load_embedding(path, mmap=False)
    except EmbeddingFileError as exc:  # the same kind of error (e.g. pickle refused), naming the input as shown
        raise type(exc)(str(exc).replace(str(path), name)) from None
    return ComparedInput(name, "embedding", utterance_embedding(array), tuple(array.shape))


def _classify_side(item: ComparedInput, model: Any) -> None:
    if model is not None and getattr(model, "has_head", False) and item.vector.shape[0] == model.embed_dim:
        item.scores = model.classify_embedding(item.vector)
        item.emotion, item.confidence = max(item.scores.items(), key=lambda kv: kv[1])


def compare_inputs(a: str | os.PathLike, b: str | os.PathLike, model: Any = None, *, names: tuple[str, str] | None = None,
                   output_dir: str | os.PathLike | None = None) -> Comparison:
    """Compare two inputs, each an audio file or a ``.npy`` embedding (recognised by content): the one
    comparison behind the CLI's ``similarity``, the REST ``/v1/similarity`` and the WebUI's Compare tab.

    Audio is recognised by ``model``: an :class:`~emotion2vec_plus.Emotion2VecPlus`, or a function
    returning one, called only when an input is audio (each run is saved under ``output_dir`` when
    given). Embeddings are loaded first, with the safe loader (no pickle), and, when a model is at
    hand and their size fits it, classified by it. ``names`` are the display names used in messages
    (e.g. upload names) instead of the paths. Raises
    :class:`~emotion2vec_plus.errors.EmbeddingFileError` / ``AudioError`` for a bad file, and
    :class:`~emotion2vec_plus.errors.EmbeddingDimensionError` (also a ``ValueError``) for an embedding
    the model cannot have made, or two of different sizes (naming the one that does not fit the
    model when the model is loaded, else both).
    """
    display = names or (str(a), str(b))
    paths = (Path(a), Path(b))
    for path, name in zip(paths, display):
        if not path.is_file():
            raise EmbeddingFileError(f"{name}: file not found" if not path.exists() else f"{name}: not a file")
    sides: list[ComparedInput | None] = [None, None]
    for i, path in enumerate(paths):  # embeddings first: cheap, and their errors come before any model load
        if is_embedding_file(path):
            sides[i] = _embedding_side(path, display[i])
    embedded = [side for side in sides if side is not None]
    loaded = model if model is None or not callable(model) else None
    if len(embedded) == 2 and embedded[0].vector.shape[0] != embedded[1].vector.shape[0]:
        raise _mismatch(embedded[0], embedded[1], loaded)
    for i, path in enumerate(paths):
        if sides[i] is not None:
            continue
        if model is None:
            raise EmbeddingFileError(f"{display[i]}: not a .npy embedding, and no model to embed audio with")
        loaded = loaded if loaded is not None else model()
        for side in embedded:
            if side.vector.shape[0] != loaded.embed_dim:
                raise _model_mismatch(side, loaded)
        result = loaded.predict(str(path), extract_embedding=True, name=display[i], output_dir=output_dir,
                                segments=False)
        vector = np.asarray(result.embedding, dtype=np.float32)
        sides[i] = ComparedInput(display[i], "audio", vector, tuple(vector.shape), result=result,
                                 scores=result.scores or None, emotion=result.emotion, confidence=result.confidence)
    for side in embedded:
        _classify_side(side, loaded)
    first, second = sides
    assert first is not None and second is not None
    if first.vector.shape[0] != second.vector.shape[0]:
        raise _mismatch(first, second, loaded)
    value = cosine_similarity(first.vector, second.vector)
    return Comparison(first, second, value, describe_similarity(value), int(first.vector.shape[0]) == CALIBRATED_DIM)


def _model_mismatch(side: ComparedInput, model: Any) -> EmbeddingDimensionError:
    dim = side.vector.shape[0]
    return EmbeddingDimensionError(
        f"{side.source}: embedding is {dim}-d but model {model.model_name} gives {model.embed_dim}-d embeddings; "
        "use the model that made it", side.source, dim, model.model_name, model.embed_dim, reference_is_model=True)


def _mismatch(a: ComparedInput, b: ComparedInput, model: Any) -> EmbeddingDimensionError:
    """Two inputs of different sizes: with a loaded model at hand, the one that does not fit it is
    named as the problem; otherwise neither is to blame and both are named."""
    dim = getattr(model, "embed_dim", None)
    fits = [side.vector.shape[0] == dim for side in (a, b)]
    if dim is not None and sum(fits) == 1:
        return _model_mismatch(b if fits[0] else a, model)
    return EmbeddingDimensionError(
        f"{b.source} is {b.vector.shape[0]}-d but {a.source} is {a.vector.shape[0]}-d: embeddings of different "
        "sizes come from different models and cannot be compared", b.source, b.vector.shape[0], a.source,
        a.vector.shape[0], reference_is_model=False)


def _is_npy(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(len(NPY_MAGIC)) == NPY_MAGIC
    except OSError as exc:
        raise EmbeddingFileError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def is_embedding_file(path: str | os.PathLike) -> bool:
    """Whether an existing file is to be read as a ``.npy`` embedding rather than decoded as audio:
    it starts with the ``\\x93NUMPY`` magic, or is named ``.npy`` (then a damaged one gets
    :func:`~emotion2vec_plus.embeddings.load_embedding`'s precise error instead of an audio error)."""
    file = Path(path)
    return _is_npy(file) or file.suffix.lower() == ".npy"


def load_vector(path: str | os.PathLike, model_factory: Callable[[], Any] | None = None) -> np.ndarray:
    """An utterance embedding (D,) from a ``.npy`` file or, via ``model_factory()``, an audio file.

    ``.npy`` files are recognised by their ``\\x93NUMPY`` magic number, not by the extension
    (a (T, D) file is averaged over frames). Anything else is decoded as audio by the model that
    ``model_factory`` returns (called only then); without a factory, audio is an error.
    """
    file = Path(path)
    if not file.exists():
        raise EmbeddingFileError(f"{file}: file not found")
    if not file.is_file():
        raise EmbeddingFileError(f"{file}: not a file")
    if is_embedding_file(file):
        array = load_embedding(file)  # a .npy without the magic gets load_embedding's precise error
        return utterance_embedding(array)
    if model_factory is None:
        raise EmbeddingFileError(f"{file}: not a .npy embedding, and no model to embed audio with")
    model = model_factory()
    return np.asarray(model.extract_embedding(str(file)), dtype=np.float32)
