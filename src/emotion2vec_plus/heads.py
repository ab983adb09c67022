"""Custom classifier heads over utterance embeddings: train, evaluate, save and load.

A head turns an embedding (D,) into scores over its own labels ("hesitant", "angry vs
neutral", or the bundled emotion classes): the features are standardised with the training
mean and standard deviation, then fed to a multinomial logistic regression (``"logreg"``) or a
one-hidden-layer MLP (``"mlp"``)::

    head = train_head(embeddings, labels, embedding_model="large")
    print(cross_validate(embeddings, labels, groups=speakers).unweighted_accuracy)
    head.save("hesitant.safetensors")
    head = EmotionHead.load("hesitant.safetensors")
    head.check_embedding_model("large", embed_dim=1024)
    head.predict(new_embeddings)                       # ["hesitant", "calm", ...]

A head is one safetensors file: the tensors plus every piece of metadata (labels, kind,
embedding model, metrics, training settings) as JSON strings in the safetensors header. Nothing
is ever unpickled; a damaged or foreign file is a :class:`HeadFileError` naming the file.
"""

from __future__ import annotations

import json
import math
import os
import threading
import warnings
from collections.abc import Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import safetensors
import safetensors.numpy
import torch
import torch.nn.functional as F
from torch import nn

from .defaults import HEAD_KINDS
from .fileio import atomic_write
from .errors import HeadFileError, HeadMismatchError  # defined in errors.py; importable from here too

__all__ = [
    "HEAD_FORMAT",
    "HEAD_FORMAT_VERSION",
    "KINDS",
    "EmotionHead",
    "HeadFileError",
    "HeadMetrics",
    "HeadMismatchError",
    "TorchHead",
    "classification_metrics",
    "cross_validate",
    "group_folds",
    "stratified_folds",
    "train_head",
]

HeadKind = Literal["logreg", "mlp"]
#: The classifier kinds a head can be.
KINDS: tuple[str, ...] = HEAD_KINDS
#: Value of the ``format`` metadata entry that marks a head file.
HEAD_FORMAT = "emotion2vec_plus.head"
#: Version of the head file layout written by :meth:`EmotionHead.save`.
HEAD_FORMAT_VERSION = 1
#: Metadata entries every head file has (each a JSON string).
METADATA_KEYS: tuple[str, ...] = (
    "format", "format_version", "labels", "kind", "embedding_model", "embed_dim", "metrics", "training",
)
#: Tensor names per kind: the standardisation plus the classifier's layers.
TENSOR_NAMES: dict[str, tuple[str, ...]] = {
    "logreg": ("mean", "scale", "weight", "bias"),
    "mlp": ("mean", "scale", "hidden.weight", "hidden.bias", "output.weight", "output.bias"),
}
#: Features whose training standard deviation is below this are only centred, not scaled.
MIN_SCALE = 1e-8
#: L-BFGS iteration cap for logistic regression (a few hundred examples converge in far fewer).
LBFGS_MAX_ITER = 500
_PICKLE_OR_TORCH_PREFIXES = (b"\x80", b"PK\x03\x04")


# --------------------------------------------------------------------------- metrics
@dataclass
class HeadMetrics:
    """Classification quality of a head, pooled over the out-of-fold predictions of a cross-validation."""

    labels: list[str]
    """Class labels; the order of the confusion matrix rows and columns."""
    unweighted_accuracy: float
    """UA: mean per-class recall over the classes present in the truth."""
    weighted_accuracy: float
    """WA: the fraction of all samples predicted correctly."""
    confusion: list[list[int]]
    """``confusion[i][j]``: samples of true label ``labels[i]`` predicted as ``labels[j]``."""
    n_samples: int
    """Number of evaluated samples."""
    n_folds: int
    """Number of folds (1 for a single evaluation)."""
    fold_unweighted_accuracy: list[float]
    """UA of each fold on its own test samples."""

    def to_dict(self) -> dict:
        """A JSON-ready dict of every field (what a head stores as ``metrics``)."""
        return asdict(self)


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> HeadMetrics:
    """UA, WA and the confusion matrix of predictions against the truth, in ``labels`` order.

    Classes absent from ``y_true`` do not count towards UA (their recall is undefined). The
    result describes one evaluation: ``n_folds`` is 1 and the per-fold UA is the UA itself.
    """
    labels = _check_label_list(labels)
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} entries but y_pred has {len(y_pred)}")
    if len(y_true) == 0:
        raise ValueError("cannot compute metrics of zero samples")
    from sklearn.metrics import accuracy_score, confusion_matrix, recall_score

    known = set(labels)
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        unknown = sorted({str(v) for v in values if v not in known})
        if unknown:
            raise ValueError(f"{name} holds labels not in labels {labels}: {unknown}")
    confusion = confusion_matrix(y_true, y_pred, labels=labels)
    present = [label for label in labels if label in set(y_true)]
    # Balanced accuracy over the classes present in the truth (sklearn's balanced_accuracy_score,
    # without its warning when a prediction names a class the truth lacks).
    unweighted = float(recall_score(y_true, y_pred, labels=present, average="macro", zero_division=0))
    return HeadMetrics(
        labels=labels,
        unweighted_accuracy=unweighted,
        weighted_accuracy=float(accuracy_score(y_true, y_pred)),
        confusion=confusion.tolist(),
        n_samples=len(y_true),
        n_folds=1,
        fold_unweighted_accuracy=[unweighted],
    )


# --------------------------------------------------------------------------- the head
class TorchHead(nn.Module):
    """The PyTorch form of an :class:`EmotionHead`: standardisation, then linear layers with ReLU between.

    ``forward`` maps (N, D) float32 embeddings to (N, C) logits, the same as
    :meth:`EmotionHead.logits`; ``labels`` names the output columns. It holds no Python-only
    logic, so it can sit inside a larger model or be exported to ONNX.
    """

    def __init__(self, mean: np.ndarray, scale: np.ndarray, layers: Sequence[tuple[np.ndarray, np.ndarray]],
                 labels: Sequence[str]) -> None:
        super().__init__()
        self.labels = list(labels)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))
        self.layers = nn.ModuleList()
        for weight, bias in layers:
            layer = nn.Linear(weight.shape[1], weight.shape[0])
            with torch.no_grad():
                layer.weight.copy_(torch.from_numpy(weight))
                layer.bias.copy_(torch.from_numpy(bias))
            self.layers.append(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (..., C) of embeddings (..., D)."""
        out = (x - self.mean) / self.scale
        for i, layer in enumerate(self.layers):
            if i:
                out = torch.relu(out)
            out = layer(out)
        return out


class EmotionHead:
    """A trained classifier over embeddings: standardisation + (multinomial logistic regression | 1-hidden-layer MLP).

    Build one with :func:`train_head` or :meth:`load`. ``params`` holds float32 arrays named
    as in :data:`TENSOR_NAMES`: ``mean``/``scale`` standardise the input, then ``weight``/``bias``
    (logreg) or ``hidden.*`` + ReLU + ``output.*`` (mlp) give the logits.
    """

    def __init__(
        self,
        labels: Sequence[str],
        kind: str,
        embed_dim: int,
        embedding_model: str,
        params: Mapping[str, np.ndarray],
        *,
        metrics: dict | None = None,
        training: dict | None = None,
        source: str | None = None,
    ) -> None:
        """Check and hold a head; a wrong shape, name or value raises ``ValueError`` saying which."""
        arrays = {name: np.asarray(value) for name, value in params.items()}
        _check_head(labels, kind, embed_dim, embedding_model, arrays)
        if metrics is not None and not isinstance(metrics, dict):
            raise ValueError(f"metrics must be a dict or None, got {type(metrics).__name__}")
        if training is not None and not isinstance(training, dict):
            raise ValueError(f"training must be a dict or None, got {type(training).__name__}")
        self.labels: list[str] = list(labels)
        self.kind: str = kind
        self.embed_dim: int = int(embed_dim)
        self.embedding_model: str = embedding_model
        self.params: dict[str, np.ndarray] = {
            name: np.ascontiguousarray(value, dtype=np.float32) for name, value in arrays.items()
        }
        self.metrics: dict | None = metrics
        self.training: dict = training if training is not None else {}
        #: The file the head was loaded from, used in error messages (``None`` if built in memory).
        self.source: str | None = source

    def __repr__(self) -> str:
        return (f"EmotionHead(kind={self.kind!r}, labels={self.labels!r}, embed_dim={self.embed_dim}, "
                f"embedding_model={self.embedding_model!r})")

    # ----------------------------------------------------------------- inference
    def logits(self, x: np.ndarray) -> np.ndarray:
        """Float32 logits: (N, D) -> (N, C), or (D,) -> (C,)."""
        array = self._check_input(x)
        p = {name: value.astype(np.float64) for name, value in self.params.items()}
        z = (array.astype(np.float64) - p["mean"]) / p["scale"]
        if self.kind == "logreg":
            out = z @ p["weight"].T + p["bias"]
        else:
            hidden = np.maximum(z @ p["hidden.weight"].T + p["hidden.bias"], 0.0)
            out = hidden @ p["output.weight"].T + p["output.bias"]
        return out.astype(np.float32)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Float32 class probabilities (softmax of :meth:`logits`) in ``labels`` order; rows sum to 1."""
        logits = self.logits(x).astype(np.float64)
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return (shifted / shifted.sum(axis=-1, keepdims=True)).astype(np.float32)

    def predict(self, x: np.ndarray) -> list[str]:
        """The most probable label of each row; a single (D,) embedding gives a one-element list."""
        best = np.atleast_2d(self.logits(x)).argmax(axis=-1)
        return [self.labels[i] for i in best]

    def _check_input(self, x: np.ndarray) -> np.ndarray:
        array = np.asarray(x)
        if array.ndim not in (1, 2) or array.shape[-1] != self.embed_dim:
            raise ValueError(f"expected embeddings of shape ({self.embed_dim},) or (N, {self.embed_dim}), "
                             f"got {array.shape}")
        if not np.issubdtype(array.dtype, np.number) or not np.isfinite(array).all():
            raise ValueError("embeddings must be finite numbers")
        return array

    # ----------------------------------------------------------------- compatibility
    def check_embedding_model(self, name: str, embed_dim: int | None = None) -> None:
        """Refuse embeddings from another model than the one the head was trained on.

        Names are compared case-insensitively with ``-`` and ``_`` alike; pass the embedding
        model's canonical name (e.g. ``"large"``) and, when known, its ``embed_dim``, which
        must equal the head's. Raises :class:`HeadMismatchError` on any difference.
        """
        same_name = _normalise_model_name(name) == _normalise_model_name(self.embedding_model)
        if same_name and (embed_dim is None or int(embed_dim) == self.embed_dim):
            return
        given = f"{name!r}" if embed_dim is None else f"{name!r} ({embed_dim}-d)"
        prefix = f"{self.source}: " if self.source else ""
        raise HeadMismatchError(
            f"{prefix}head was trained on {self.embedding_model!r} embeddings ({self.embed_dim}-d), "
            f"this model gives {given}; retrain the head on embeddings of this model"
        )

    # ----------------------------------------------------------------- other forms
    def as_linear(self) -> tuple[np.ndarray, np.ndarray] | None:
        """For a logreg head, the float32 (C, D) weight and (C,) bias with the standardisation
        folded in, so that ``x @ W.T + b`` equals :meth:`logits`; ``None`` for an MLP."""
        if self.kind != "logreg":
            return None
        p = {name: value.astype(np.float64) for name, value in self.params.items()}
        weight = p["weight"] / p["scale"]
        bias = p["bias"] - weight @ p["mean"]
        return weight.astype(np.float32), bias.astype(np.float32)

    def to_torch(self) -> TorchHead:
        """An ``nn.Module`` (in eval mode) computing the same logits as :meth:`logits`."""
        p = self.params
        if self.kind == "logreg":
            layers = [(p["weight"], p["bias"])]
        else:
            layers = [(p["hidden.weight"], p["hidden.bias"]), (p["output.weight"], p["output.bias"])]
        return TorchHead(p["mean"], p["scale"], layers, self.labels).eval()

    # ----------------------------------------------------------------- files
    def save(self, path: str | os.PathLike) -> Path:
        """Write the head as one safetensors file (atomically: a temporary file, then ``os.replace``).

        The tensors are float32; labels, kind, embedding model, embedding dimension, metrics,
        training settings and the format version are JSON strings in the safetensors metadata.
        Returns the path.
        """
        path = Path(path)
        values = {
            "format": HEAD_FORMAT,
            "format_version": HEAD_FORMAT_VERSION,
            "labels": self.labels,
            "kind": self.kind,
            "embedding_model": self.embedding_model,
            "embed_dim": self.embed_dim,
            "metrics": self.metrics,
            "training": self.training,
        }
        try:
            metadata = {key: json.dumps(value, ensure_ascii=False, allow_nan=False) for key, value in values.items()}
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: head metadata must be plain JSON values: {exc}") from exc
        data = safetensors.numpy.save(dict(self.params), metadata=metadata)
        with atomic_write(path) as stream:
            stream.write(data)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> EmotionHead:
        """Read a head written by :meth:`save`, never unpickling anything.

        Raises :class:`HeadFileError` naming the file and the problem when it is missing, is not a
        safetensors file (e.g. a pickle or ``torch.save`` file), is truncated, lacks metadata or
        tensors, or has tensors whose shapes disagree with ``embed_dim`` or the number of labels.
        """
        path = Path(path)
        if not path.is_file():
            raise HeadFileError(f"{path}: head file not found")
        try:
            with safetensors.safe_open(path, framework="numpy") as handle:
                metadata = handle.metadata() or {}
                params = {name: handle.get_tensor(name) for name in handle.keys()}
        except Exception as exc:  # safetensors raises SafetensorError, OSError, or TypeError for odd dtypes
            raise HeadFileError(f"{path}: not a readable safetensors head file ({exc}){_format_hint(path)}") from exc
        values = _decode_metadata(path, metadata)
        try:
            return cls(
                values["labels"], values["kind"], values["embed_dim"], values["embedding_model"], params,
                metrics=values["metrics"], training=values["training"], source=str(path),
            )
        except ValueError as exc:
            raise HeadFileError(f"{path}: {exc}") from exc


def _format_hint(path: Path) -> str:
    """A hint when a file is evidently a pickle or ``torch.save`` archive rather than safetensors."""
    with path.open("rb") as stream:
        start = stream.read(4)
    if start.startswith(_PICKLE_OR_TORCH_PREFIXES):
        return "; it looks like a pickle / torch.save file, which is never loaded for safety"
    return ""


#: How deep a head's JSON metadata may nest (what save writes: at most 4 levels, e.g. a confusion matrix
#: in the metrics). Deeper values would break JSON writers and printers later on (RecursionError).
_MAX_METADATA_DEPTH = 32


def _nesting_depth(value: Any) -> int:
    """Levels of lists and dicts in a decoded JSON value (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth + 1)
        if deepest > _MAX_METADATA_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _decode_metadata(path: Path, metadata: Mapping[str, str]) -> dict[str, Any]:
    """Parse the JSON metadata of a head file, checking the format marker and version."""
    missing = [key for key in METADATA_KEYS if key not in metadata]
    if missing:
        raise HeadFileError(f"{path}: not an emotion2vec-plus head file: metadata lacks {', '.join(missing)}")
    values: dict[str, Any] = {}
    for key in METADATA_KEYS:
        try:
            values[key] = json.loads(metadata[key])
        except json.JSONDecodeError as exc:
            raise HeadFileError(f"{path}: metadata entry {key!r} is not valid JSON ({exc})") from exc
        except RecursionError:
            values[key] = None
            depth = _MAX_METADATA_DEPTH + 1
        else:
            depth = _nesting_depth(values[key])
        if depth > _MAX_METADATA_DEPTH:
            raise HeadFileError(f"{path}: metadata entry {key!r} is nested more than {_MAX_METADATA_DEPTH} levels "
                                "deep; a head's metadata is a few levels")
    if values["format"] != HEAD_FORMAT:
        raise HeadFileError(f"{path}: metadata format is {values['format']!r}, expected {HEAD_FORMAT!r}")
    version = values["format_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise HeadFileError(f"{path}: metadata format_version {version!r} is not a positive integer")
    if version > HEAD_FORMAT_VERSION:
        raise HeadFileError(f"{path}: head format version {version} is newer than this emotion2vec-plus reads "
                            f"({HEAD_FORMAT_VERSION}); upgrade emotion2vec-plus")
    return values


def _normalise_model_name(name: str) -> str:
    return str(name).strip().lower().replace("-", "_")


def _check_label_list(labels: Sequence[str]) -> list[str]:
    """``labels`` as a list of distinct non-empty strings, or ``ValueError``."""
    if isinstance(labels, str) or not isinstance(labels, Sequence | np.ndarray):
        raise ValueError(f"labels must be a list of strings, got {type(labels).__name__}")
    result = list(labels)
    if not all(isinstance(label, str) and label for label in result):
        raise ValueError(f"labels must be non-empty strings, got {result!r}")
    if len(set(result)) != len(result):
        raise ValueError(f"labels must be distinct, got {result!r}")
    return result


def _check_head(labels: Sequence[str], kind: str, embed_dim: int, embedding_model: str,
                params: Mapping[str, np.ndarray]) -> None:
    """Raise ``ValueError`` naming the first inconsistency of a head's parts."""
    labels = _check_label_list(labels)
    if len(labels) < 2:
        raise ValueError(f"a head needs at least 2 labels, got {labels!r}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not isinstance(embed_dim, int) or isinstance(embed_dim, bool) or embed_dim < 1:
        raise ValueError(f"embed_dim must be a positive integer, got {embed_dim!r}")
    if not isinstance(embedding_model, str) or not embedding_model.strip():
        raise ValueError(f"embedding_model must be a non-empty string, got {embedding_model!r}")
    expected_names = TENSOR_NAMES[kind]
    missing = [name for name in expected_names if name not in params]
    if missing:
        raise ValueError(f"missing tensor(s) {', '.join(missing)} of a {kind} head")
    extra = sorted(set(params) - set(expected_names))
    if extra:
        raise ValueError(f"unexpected tensor(s) {', '.join(extra)} for a {kind} head")
    n_labels = len(labels)
    shapes: dict[str, tuple[int, ...]] = {"mean": (embed_dim,), "scale": (embed_dim,)}
    if kind == "logreg":
        shapes.update({"weight": (n_labels, embed_dim), "bias": (n_labels,)})
    else:
        hidden_weight = params["hidden.weight"]
        hidden = hidden_weight.shape[0] if hidden_weight.ndim == 2 and hidden_weight.shape[0] > 0 else 1
        shapes.update({"hidden.weight": (hidden, embed_dim), "hidden.bias": (hidden,),
                       "output.weight": (n_labels, hidden), "output.bias": (n_labels,)})
    for name, shape in shapes.items():
        value = params[name]
        if tuple(value.shape) != shape:
            raise ValueError(f"tensor {name!r} has shape {tuple(value.shape)}, expected {shape} "
                             f"({n_labels} labels, embed_dim {embed_dim})")
        if not np.issubdtype(value.dtype, np.floating):
            raise ValueError(f"tensor {name!r} must hold floats, found {value.dtype}")
        if not np.isfinite(value).all():
            raise ValueError(f"tensor {name!r} contains NaN or infinite values")
    if not (params["scale"] > 0).all():
        raise ValueError("tensor 'scale' must be positive")


# --------------------------------------------------------------------------- training
def train_head(
    embeddings: np.ndarray,
    labels: Sequence[str],
    *,
    kind: HeadKind = "logreg",
    embedding_model: str,
    class_weight: str | None = "balanced",
    l2: float = 1e-3,
    hidden: int = 256,
    dropout: float = 0.2,
    epochs: int = 200,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    label_order: Sequence[str] | None = None,
) -> EmotionHead:
    """Train a head on (N, D) embeddings and their N labels.

    Features are standardised with the training mean and standard deviation. ``"logreg"``
    minimises, with full-batch L-BFGS in float64 from zero weights, the weighted mean
    cross-entropy plus ``l2 / 2 * ||W||^2`` (the bias is not penalised). ``"mlp"`` (D ->
    ``hidden`` -> ReLU -> dropout -> C) trains for ``epochs`` passes of AdamW (``lr``, weight
    decay ``l2`` on the weights) over shuffled minibatches of ``batch_size``.

    ``class_weight="balanced"`` weights each class by n / (C * n_c) over the C classes present,
    so rare classes count as much as common ones; ``None`` weights every sample alike.
    ``label_order`` fixes the output order (default: sorted labels); it may list labels with no
    examples (as in a cross-validation fold), which then get near-zero probability.

    The result is a function of the inputs and ``seed`` alone: every random draw (MLP
    initialisation, shuffling, dropout) uses a private ``torch.Generator`` seeded with ``seed``,
    so the global RNG is neither used nor changed and concurrent trainings do not interfere.
    Training runs torch on a single intra-op thread (restored afterwards), which is much faster
    for heads this small and makes the result independent of the torch thread setting.
    """
    x = _check_embeddings(embeddings)
    y_names = list(labels)
    if len(y_names) != x.shape[0]:
        raise ValueError(f"got {x.shape[0]} embeddings but {len(y_names)} labels")
    if not all(isinstance(label, str) and label for label in y_names):
        raise ValueError("labels must be non-empty strings")
    order = _check_label_list(label_order) if label_order is not None else sorted(set(y_names))
    unknown = sorted(set(y_names) - set(order))
    if unknown:
        raise ValueError(f"labels {unknown} are not in label_order {order}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if class_weight not in ("balanced", None):
        raise ValueError(f"class_weight must be 'balanced' or None, got {class_weight!r}")
    if not l2 >= 0:
        raise ValueError(f"l2 must be >= 0, got {l2}")
    if kind == "mlp":
        if hidden < 1 or epochs < 1 or batch_size < 1:
            raise ValueError(f"hidden, epochs and batch_size must be >= 1, got {hidden}, {epochs}, {batch_size}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")

    index = {label: i for i, label in enumerate(order)}
    y = np.array([index[label] for label in y_names], dtype=np.int64)
    counts = np.bincount(y, minlength=len(order))
    present = counts > 0
    if present.sum() < 2:
        raise ValueError(f"training needs examples of at least 2 classes, got only {sorted(set(y_names))}")
    class_weights = np.ones(len(order))
    if class_weight == "balanced":
        class_weights[present] = len(y) / (present.sum() * counts[present])

    mean = x.mean(axis=0)
    std = x.std(axis=0)
    scale = np.where(std > MIN_SCALE, std, 1.0)
    z = (x - mean) / scale

    training: dict[str, Any] = {"kind": kind, "class_weight": class_weight, "l2": float(l2), "seed": int(seed)}
    if kind == "logreg":
        with _SingleThreadTorch.scope():
            weight, bias, n_iter = _fit_logreg(z, y, class_weights, len(order), float(l2))
        params = {"weight": weight, "bias": bias}
        training.update({"optimizer": "lbfgs", "iterations": n_iter, "converged": n_iter < LBFGS_MAX_ITER})
    else:
        with _SingleThreadTorch.scope():
            params = _fit_mlp(z, y, class_weights, len(order), l2=float(l2), hidden=int(hidden),
                              dropout=float(dropout), epochs=int(epochs), lr=float(lr), batch_size=int(batch_size),
                              seed=int(seed))
        training.update({"optimizer": "adamw", "hidden": int(hidden), "dropout": float(dropout),
                         "epochs": int(epochs), "lr": float(lr), "batch_size": int(batch_size)})
    training.update({
        "n_samples": int(len(y)),
        "n_per_class": {label: int(n) for label, n in zip(order, counts)},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
    return EmotionHead(order, kind, x.shape[1], embedding_model, {"mean": mean, "scale": scale, **params},
                       training=training)


class _SingleThreadTorch:
    """Reference-counted "torch on one intra-op thread" for the duration of trainings.

    Heads are small: with several threads torch spends its time handing tiny kernels between
    threads, which on a busy machine (other processes, parallel tests) makes training tens of
    times slower, and results could differ between machines with different thread counts. The
    first training to start saves the thread count and sets 1; the last to finish restores it.
    """

    _lock = threading.Lock()
    _active = 0
    _saved = 1

    @classmethod
    @contextmanager
    def scope(cls) -> Iterator[None]:
        with cls._lock:
            if cls._active == 0:
                cls._saved = torch.get_num_threads()
                torch.set_num_threads(1)
            cls._active += 1
        try:
            yield
        finally:
            with cls._lock:
                cls._active -= 1
                if cls._active == 0:
                    torch.set_num_threads(cls._saved)


def _check_embeddings(embeddings: np.ndarray) -> np.ndarray:
    """(N, D) finite float64 embeddings with N >= 2, or ``ValueError``."""
    array = np.asarray(embeddings)
    if array.ndim != 2 or array.shape[0] < 2 or array.shape[1] < 1:
        raise ValueError(f"embeddings must be an (N, D) array with N >= 2, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or not np.isfinite(array).all():
        raise ValueError("embeddings must be finite numbers")
    return array.astype(np.float64)


def _fit_logreg(z: np.ndarray, y: np.ndarray, class_weights: np.ndarray, n_classes: int,
                l2: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Multinomial logistic regression (scikit-learn, L-BFGS); returns weight, bias and iterations.

    scikit-learn minimises ``C * sum_i w_i CE_i + ||W||^2 / 2``; with ``C = 1 / (l2 * sum_i w_i)`` that
    is :func:`train_head`'s objective (weighted mean cross-entropy + ``l2 / 2 * ||W||^2``) scaled.
    Classes without examples (in a cross-validation fold) get zero weights and a bias far below
    the others, i.e. near-zero probability.
    """
    from sklearn.linear_model import LogisticRegression

    sample_weights = class_weights[y]
    strength = 1.0 / (max(l2, 1e-12) * sample_weights.sum())
    model = LogisticRegression(C=strength, solver="lbfgs", max_iter=LBFGS_MAX_ITER, tol=1e-8)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)  # e.g. "l1_ratio" / penalty deprecations
        model.fit(z, y, sample_weight=sample_weights)
    seen = model.classes_
    coef, intercept = model.coef_, model.intercept_
    if len(seen) == 2:  # scikit-learn's binary case: one row for class 1; softmax over (-z/2, z/2) is the same
        coef = np.stack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    weight = np.zeros((n_classes, z.shape[1]))
    bias = np.full(n_classes, intercept.min() - 30.0)
    weight[seen], bias[seen] = coef, intercept
    return weight, bias, int(np.max(model.n_iter_))


def _uniform(shape: tuple[int, ...], bound: float, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


def _fit_mlp(z: np.ndarray, y: np.ndarray, class_weights: np.ndarray, n_classes: int, *, l2: float, hidden: int,
             dropout: float, epochs: int, lr: float, batch_size: int, seed: int) -> dict[str, np.ndarray]:
    """One-hidden-layer ReLU MLP by AdamW over shuffled minibatches; returns its four tensors."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.from_numpy(z.astype(np.float32))
    targets = torch.from_numpy(y)
    loss_weights = torch.from_numpy(class_weights.astype(np.float32))
    dim = z.shape[1]
    # nn.Linear's default initialisation, drawn from the private generator.
    w1 = _uniform((hidden, dim), 1 / math.sqrt(dim), generator).requires_grad_()
    b1 = _uniform((hidden,), 1 / math.sqrt(dim), generator).requires_grad_()
    w2 = _uniform((n_classes, hidden), 1 / math.sqrt(hidden), generator).requires_grad_()
    b2 = _uniform((n_classes,), 1 / math.sqrt(hidden), generator).requires_grad_()
    optimizer = torch.optim.AdamW([{"params": [w1, w2], "weight_decay": l2}, {"params": [b1, b2], "weight_decay": 0.0}],
                                  lr=lr)
    n = len(y)
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            batch = order[start:start + batch_size]
            activations = torch.relu(features[batch] @ w1.T + b1)
            if dropout > 0:
                keep = torch.rand(activations.shape, generator=generator) >= dropout
                activations = activations * keep / (1 - dropout)
            loss = F.cross_entropy(activations @ w2.T + b2, targets[batch], weight=loss_weights)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return {name: value.detach().numpy() for name, value in
            (("hidden.weight", w1), ("hidden.bias", b1), ("output.weight", w2), ("output.bias", b2))}


# --------------------------------------------------------------------------- cross-validation
Fold = tuple[np.ndarray, np.ndarray]


def group_folds(groups: Sequence[Hashable], n_folds: int) -> list[Fold]:
    """Deterministic (train, test) index arrays in which no group is on both sides (scikit-learn's
    ``GroupKFold``: groups placed largest first, each into the fold with the fewest samples).

    Uses ``min(n_folds, number of groups)`` folds (so with few groups it is leave-one-group-out).
    """
    from sklearn.model_selection import GroupKFold

    groups = list(groups)
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    codes = {group: code for code, group in enumerate(dict.fromkeys(groups))}  # any hashable, e.g. 42 and "a"
    if len(codes) < 2:
        raise ValueError(f"grouped cross-validation needs at least 2 groups, got {len(codes)}")
    split = GroupKFold(n_splits=min(n_folds, len(codes)))
    return list(split.split(np.zeros(len(groups)), groups=[codes[g] for g in groups]))


def stratified_folds(labels: Sequence[str], n_folds: int, seed: int = 0) -> list[Fold]:
    """(train, test) index arrays of a stratified k-fold split (scikit-learn's ``StratifiedKFold``,
    shuffled), deterministic for ``seed``: every fold has about the same size and class proportions."""
    from sklearn.model_selection import StratifiedKFold

    labels = list(labels)
    if not 2 <= n_folds <= len(labels):
        raise ValueError(f"n_folds must be between 2 and the number of samples ({len(labels)}), got {n_folds}")
    split = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # a class with fewer members than folds is fine: it is in fewer test sets
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        return list(split.split(np.zeros(len(labels)), labels))


def cross_validate(
    embeddings: np.ndarray,
    labels: Sequence[str],
    groups: Sequence[Hashable] | None = None,
    *,
    n_folds: int = 5,
    seed: int = 0,
    **train_kwargs: Any,
) -> HeadMetrics:
    """Out-of-fold UA / WA / confusion of :func:`train_head` with ``train_kwargs``.

    With ``groups`` (e.g. speaker ids) the split is :func:`group_folds`, so no group is in both
    a training and a test set; otherwise :func:`stratified_folds` with ``seed``. The predictions
    of all folds are pooled into one confusion matrix, UA and WA; ``fold_unweighted_accuracy``
    keeps each fold's UA. ``seed`` also seeds each fold's training; ``embedding_model`` may be
    omitted (the fold heads are discarded).
    """
    x = _check_embeddings(embeddings)
    y = list(labels)
    if len(y) != x.shape[0]:
        raise ValueError(f"got {x.shape[0]} embeddings but {len(y)} labels")
    if groups is None:
        folds = stratified_folds(y, n_folds, seed)
    else:
        groups = list(groups)
        if len(groups) != len(y):
            raise ValueError(f"got {len(y)} labels but {len(groups)} groups")
        folds = group_folds(groups, n_folds)
    order = list(train_kwargs.pop("label_order", None) or sorted(set(y)))
    train_kwargs.setdefault("embedding_model", "cross-validation")
    predictions: list[str] = [""] * len(y)
    fold_ua = []
    for number, (train, test) in enumerate(folds, start=1):
        try:
            head = train_head(x[train], [y[i] for i in train], seed=seed, label_order=order, **train_kwargs)
        except ValueError as exc:
            raise ValueError(f"fold {number}/{len(folds)}: {exc}") from exc
        fold_pred = head.predict(x[test])
        for i, label in zip(test, fold_pred):
            predictions[i] = label
        fold_ua.append(classification_metrics([y[i] for i in test], fold_pred, order).unweighted_accuracy)
    metrics = classification_metrics(y, predictions, order)
    metrics.n_folds = len(folds)
    metrics.fold_unweighted_accuracy = fold_ua
    return metrics
