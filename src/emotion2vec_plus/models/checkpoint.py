"""Load FunASR-format emotion2vec checkpoint directories (config.yaml, model.pt, tokens.txt).

The released emotion2vec+ files are read as published:

* ``model.pt`` is a full training checkpoint: the weights nested under ``model``, next to the
  trainer's configuration and optimiser state, which hold Python objects (fairseq/omegaconf
  configs, ``argparse.Namespace``, Enum members) that ``torch.load(weights_only=True)`` refuses.
  Every file is read by :func:`read_checkpoint_object` with an unpickler that rebuilds tensors
  and plain containers and turns every other global into an inert stand-in
  (:class:`InertObject`) that is never called, so no code in the file runs; what it builds is
  bounded, and so is what a compressed zip entry may inflate to.
* tensor names carry the trainer's wrapper prefix (``d2v_model.blocks.0...``; only the head,
  ``proj.*``, is unprefixed); ``config.yaml`` says how to rename them (``scope_map``), and
  :func:`map_checkpoint_names` applies that exactly as FunASR does.

Tensors are memory-mapped from the file and adopted by a model built on the meta device, so
loading never holds a second copy of the weights (nor any of the optimiser state).
"""

from __future__ import annotations

import _compat_pickle
import collections
import logging
import pickle
import types
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from .config import Emotion2vecConfig, architecture_of, checkpoint_files, read_config_file
from ..errors import CheckpointError
from ..labels import Label, default_labels, read_tokens
from .emotion2vec import Emotion2vecModel

logger = logging.getLogger(__name__)

#: Checkpoint entries used only for pre-training; FunASR's inference model has no place for them.
PRETRAINING_PREFIXES: tuple[str, ...] = (
    "modality_encoders.AUDIO.decoder.",
    "shared_decoder.",
    "ema.",
    "_ema.",
    "recon_proj.",
    "cls_proj.",
)
#: FunASR appends this pair to every ``scope_map`` (a DataParallel/DDP wrapper's prefix).
FUNASR_IMPLICIT_SCOPE: tuple[str, str] = ("module.", "")
#: Containers a state dict may be nested in, in the order FunASR unwraps them.
NESTING_KEYS: tuple[str, ...] = ("state_dict", "model_state_dict", "model")
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOL_OPCODE = 0x80
#: Most a checkpoint's compressed zip entries may inflate to, together. ``torch.save`` stores every
#: entry uncompressed (the released files: 1-2 GB of stored tensors, memory-mapped); a deflated
#: entry is inflated whole into memory, so a 2 MB zip can otherwise claim 2 GB.
MAX_INFLATED_BYTES = 64 * 1024 * 1024
#: Longest byte string the unpickler builds from a length alone (``bytearray(n)``); byte strings
#: from the file's own bytes are bounded by the file.
MAX_PICKLED_BUFFER = 1024 * 1024


# --------------------------------------------------------------------------- reading model.pt

class InertObject:
    """Stand-in for a Python object in a checkpoint that is neither a tensor nor a plain container
    (a training config, an Enum member, an optimiser's bookkeeping, or anything hostile).

    Unpickling builds one of these instead of importing and calling what the file names: its
    class only records the global's name (``global_name``), and every way pickle has of filling
    an object in (``__setstate__``, item and list appends) is accepted and discarded.
    """

    global_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> "InertObject":
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> "InertObject":
        return _inert_class("<call>", self.global_name)()

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Iterable[Any]) -> None:
        pass

    def __repr__(self) -> str:
        return f"<inert {self.global_name}>"


_inert_classes: dict[tuple[str, str], type[InertObject]] = {}


def _inert_class(module: str, name: str) -> type[InertObject]:
    """One :class:`InertObject` subclass per global the file names (so they stay distinguishable)."""
    key = (module, name)
    if key not in _inert_classes:
        _inert_classes[key] = type("Inert", (InertObject,), {"global_name": f"{module}.{name}"})
    return _inert_classes[key]


class _Refused(pickle.UnpicklingError):
    """Something a checkpoint's pickle asks to build that no checkpoint needs (and that could
    allocate without bound); the message says what."""


def _bounded_bytearray(*args: Any) -> bytearray:
    """``bytearray`` as pickles of byte strings use it; a length alone (``bytearray(2_000_000_000)``,
    30 bytes of pickle) is refused past :data:`MAX_PICKLED_BUFFER`."""
    if args and isinstance(args[0], int) and args[0] > MAX_PICKLED_BUFFER:
        raise _Refused(f"the pickle asks for a zero-filled buffer of {args[0]:,} bytes (bytearray(n)); "
                       "a checkpoint never holds one")
    return bytearray(*args)


def _latin1_encode(text: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles of ``bytes`` use it (``latin1`` only)."""
    if str(encoding).lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591", "l1"):
        raise _Refused(f"the pickle encodes with {encoding!r}; only latin1 (how bytes are pickled) is read")
    return __import__("codecs").encode(text, "latin1", errors)


def _tensor_type(*args: Any) -> torch.Tensor:
    """Stands for ``torch.Tensor`` in a checkpoint: ``_rebuild_from_type_v2`` gets it as the type of
    the tensor rebuilt; calling it with a size (``torch.Tensor(2_000_000_000)``) is refused."""
    if args:
        raise _Refused("the pickle calls torch.Tensor(...) to allocate a tensor; checkpoint tensors are "
                       "rebuilt from the file's own storage")
    return torch.Tensor()


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> Any:
    return torch._tensor._rebuild_from_type_v2(func, torch.Tensor if new_type is _tensor_type else new_type,
                                               args, state)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """Globals a tensor checkpoint legitimately needs: torch's tensor rebuild functions, sizes,
    devices, dtypes and plain containers. Everything else becomes an :class:`InertObject`.
    Those that could build something from a size alone are bounded."""
    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch", "Size"): torch.Size,
        ("torch", "device"): torch.device,
        ("torch", "Tensor"): _tensor_type,
        ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
        ("_codecs", "encode"): _latin1_encode,  # how protocol 2 pickles bytes
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "complex"): complex,
        ("builtins", "bytearray"): _bounded_bytearray,
    }
    for name in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
                 "_rebuild_parameter_with_state"):
        function = getattr(torch._utils, name, None)
        if function is not None:
            allowed[("torch._utils", name)] = function
    for name in dir(torch):
        if isinstance(getattr(torch, name, None), torch.dtype):
            allowed[("torch", name)] = getattr(torch, name)
    return allowed


class _InertUnpickler(pickle.Unpickler):
    """Rebuilds tensors and plain containers; every other global becomes an inert stand-in."""

    _allowed: dict[tuple[str, str], Any] | None = None

    def find_class(self, module: str, name: str) -> Any:
        if _InertUnpickler._allowed is None:
            _InertUnpickler._allowed = _allowed_globals()
        # Protocol 2 names Python 2's modules (``__builtin__.bytearray``); pickle's own find_class maps them.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        found = _InertUnpickler._allowed.get((module, name))
        return found if found is not None else _inert_class(module, name)


def _inert_load(file: Any, **kwargs: Any) -> Any:
    return _InertUnpickler(file, **kwargs).load()


#: Passed to ``torch.load(pickle_module=...)``: torch wraps ``Unpickler`` (its wrapper maps storage
#: types itself, then defers to our ``find_class``) and calls ``load`` for legacy-format headers.
INERT_PICKLE = types.SimpleNamespace(__name__="emotion2vec_plus.inert_pickle", Unpickler=_InertUnpickler,
                                     load=_inert_load, UnpicklingError=pickle.UnpicklingError)


def _check_container(path: Path) -> None:
    """Refuse files that are not PyTorch checkpoints at all, before any unpickling, with what they are."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(64)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the checkpoint: {exc}") from exc
    if size == 0:
        raise CheckpointError(f"{path}: the checkpoint file is empty (0 bytes); download it again")
    if head.startswith(_ZIP_MAGIC):
        _check_zip_entries(path, size)
        return
    if head[0] == _PICKLE_PROTOCOL_OPCODE:
        return
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype", b"<html", b"<?xml", b"<")):
        what = "an HTML/XML page (a web page saved in place of the file?)"
    elif text.startswith(b"version https://git-lfs"):
        what = "a Git LFS pointer, not the file itself (run git lfs pull, or download the file)"
    elif text.startswith((b"{", b"[")):
        what = "JSON text"
    else:
        what = f"neither a zip nor a pickle file (starts with {head[:16]!r})"
    raise CheckpointError(f"{path}: not a PyTorch checkpoint: the file is {what}; download model.pt again")


def _check_zip_entries(path: Path, size: int) -> None:
    """Refuse a zip whose entries would inflate past :data:`MAX_INFLATED_BYTES` or claim bytes the
    file does not hold, from its central directory alone (PyTorch allocates each entry's declared
    size before reading it)."""
    damaged = f"{path}: the checkpoint is damaged or truncated and cannot be read"
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CheckpointError(f"{damaged} (its zip directory: {exc}); download model.pt again") from exc
    inflated = 0
    for entry in entries:
        if entry.compress_type == zipfile.ZIP_STORED:
            if entry.file_size != entry.compress_size or entry.header_offset + entry.compress_size > size:
                raise CheckpointError(f"{damaged} (entry {entry.filename!r} claims {entry.file_size:,} bytes the "
                                      "file does not hold); download model.pt again")
            continue
        inflated += entry.file_size
        if inflated > MAX_INFLATED_BYTES:
            raise CheckpointError(
                f"{path}: refused: its compressed zip entries would inflate to more than "
                f"{MAX_INFLATED_BYTES // (1024 * 1024)} MB in memory ({entry.filename!r} alone: "
                f"{entry.file_size:,} bytes from {entry.compress_size:,}); torch.save stores checkpoints "
                "uncompressed, so this is not one as published (a zip bomb?)")


def _torch_load(path: Path, **kwargs: Any) -> Any:
    """``torch.load`` memory-mapped (tensors stay in the page cache, not copied into the heap);
    files in the legacy non-zip format cannot be mapped and are read."""
    try:
        return torch.load(path, map_location="cpu", mmap=True, **kwargs)
    except RuntimeError as exc:
        if "mmap" not in str(exc):
            raise
        return torch.load(path, map_location="cpu", **kwargs)


def read_checkpoint_object(path: str | Path) -> Any:
    """Unpickle ``model.pt`` without running any code from it.

    The file is read with an unpickler that only rebuilds tensors and plain containers; any other
    object (a full training checkpoint such as the released emotion2vec+ files holds fairseq's
    configuration and optimiser history) comes back as an :class:`InertObject`, and nothing it
    names is imported or called. What the pickle may build from a size alone is bounded
    (``bytearray(n)``, ``torch.Tensor(n)``), and a zip whose compressed entries would inflate past
    :data:`MAX_INFLATED_BYTES` is refused from its directory, before anything is inflated.

    Raises:
        CheckpointError: missing, empty, not a PyTorch checkpoint, damaged, or refused as above;
            the message says which.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    _check_container(path)
    try:
        # Not torch's weights_only unpickler first: it builds bytearray(n) and torch.Tensor(n) of
        # any size the file names. This one builds only tensors and plain containers, bounded.
        return _torch_load(path, weights_only=False, pickle_module=INERT_PICKLE)
    except CheckpointError:
        raise
    except _Refused as exc:
        raise CheckpointError(f"{path}: refused: {exc}; this is not a checkpoint as published") from None
    except Exception as exc:  # torch raises many types for a damaged file; all mean "unreadable"
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: the checkpoint is damaged or truncated and cannot be read "
                              f"({type(exc).__name__}: {detail[:300]}); download model.pt again") from exc


def unwrap_state_dict(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint: flat, or nested under ``state_dict`` / ``model_state_dict`` /
    ``model`` (unwrapped in that order, as FunASR does). Names are returned as stored."""
    for key in NESTING_KEYS:
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{source}: no state dict found (expected a mapping of parameter names to tensors)")
    state = {name: value for name, value in obj.items() if isinstance(name, str) and isinstance(value, torch.Tensor)}
    if not state:
        raise CheckpointError(f"{source}: the checkpoint holds no tensors")
    return state


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of ``model.pt`` (see :func:`read_checkpoint_object`), names as stored."""
    return unwrap_state_dict(read_checkpoint_object(path), str(path))


# --------------------------------------------------------------------------- names

@dataclass
class NameMapping:
    """How checkpoint tensor names were matched to the model's parameter names."""

    tensors: dict[str, torch.Tensor]
    """Model parameter name -> checkpoint tensor, for every parameter found."""
    unused: list[str]
    """Checkpoint names no parameter took, with the matched wrapper prefix removed where it had one."""
    detected_prefix: str | None = None
    """A wrapper prefix recognised without a ``scope_map`` (e.g. ``"model."``), if one was needed."""


def map_checkpoint_names(
    state: Mapping[str, torch.Tensor],
    expected: Iterable[str],
    scope_map: Iterable[tuple[str, str]] = (),
    *,
    detect_prefix: bool = True,
) -> NameMapping:
    """Match checkpoint names to model names, as FunASR's ``load_pretrained_model`` does.

    For each model name ``k`` every (checkpoint prefix, model prefix) pair of ``scope_map`` plus
    FunASR's implicit ``("module.", "")`` is tried in order, and the last pair whose renamed
    key exists in the checkpoint wins; with none, ``k`` itself is used. The released
    emotion2vec+ ``config.yaml`` has ``scope_map: ['d2v_model.', none]``.

    If most names are still missing (at least half: what a wrapper does, not a damaged file),
    a single wrapper prefix (``d2v_model.``, ``model.``, ...) is recognised when stripping it
    from the checkpoint's names supplies every missing name.
    """
    expected = list(expected)
    pairs = [*scope_map, FUNASR_IMPLICIT_SCOPE]
    source_of: dict[str, str] = {}
    for name in expected:
        chosen = name
        for source_prefix, model_prefix in pairs:
            if name.startswith(model_prefix):
                candidate = source_prefix + name[len(model_prefix):]
                if candidate in state:
                    chosen = candidate
        if chosen in state:
            source_of[name] = chosen
    missing = [name for name in expected if name not in source_of]
    detected = None
    if detect_prefix and missing and 2 * len(missing) >= len(expected):
        detected = _wrapper_prefix(state, set(source_of.values()), missing)
        if detected is not None:
            source_of.update({name: detected + name for name in missing})
            logger.info("checkpoint tensor names carry the wrapper prefix %r; loading them without it", detected)
    taken = set(source_of.values())
    strip = [source for source, _ in pairs if source] + ([detected] if detected else [])
    unused = []
    for name in state:
        if name not in taken:
            prefix = next((p for p in strip if name.startswith(p)), "")
            unused.append(name[len(prefix):])
    return NameMapping({name: state[source] for name, source in source_of.items()}, unused, detected)


def _wrapper_prefix(state: Mapping[str, torch.Tensor], taken: set[str], missing: list[str]) -> str | None:
    """The one prefix whose removal turns untaken checkpoint names into all of ``missing``."""
    wanted = set(missing)
    counts: Counter[str] = Counter()
    for name in state:
        if name in taken:
            continue
        for index, char in enumerate(name[:-1]):
            if char == "." and name[index + 1:] in wanted:
                counts[name[: index + 1]] += 1
    for prefix, count in counts.most_common(1):
        if count == len(wanted):
            return prefix
    return None


# --------------------------------------------------------------------------- building the model

def load_state_dict_strict(model: Emotion2vecModel, state: Mapping[str, torch.Tensor], source: str,
                           scope_map: Iterable[tuple[str, str]] = ()) -> None:
    """Copy ``state`` into ``model``; fail naming every missing or mis-shaped tensor.

    Names are matched with :func:`map_checkpoint_names`. FunASR keeps random weights for
    missing or mis-shaped tensors and only logs it; here that is an error. Pre-training-only
    entries (decoder, EMA teacher) are ignored.
    """
    expected = model.state_dict()
    mapping = map_checkpoint_names(state, expected, scope_map)
    tensors = dict(mapping.tensors)
    scale_key = "modality_encoders.AUDIO.alibi_scale"
    if scale_key in tensors and tensors[scale_key].dim() == 4:
        tensors[scale_key] = tensors[scale_key].unsqueeze(0)  # older layout, as fairseq's upgrade step does
    missing = [name for name in expected if name not in tensors]
    misshaped = [
        f"{name} (checkpoint {tuple(tensors[name].shape)}, model {tuple(expected[name].shape)})"
        for name in expected
        if name in tensors and tensors[name].shape != expected[name].shape
    ]
    unexpected = [name for name in mapping.unused if not name.startswith(PRETRAINING_PREFIXES)]
    if missing or misshaped:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing tensor(s): " + ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else ""))
        if misshaped:
            parts.append(f"{len(misshaped)} mis-shaped tensor(s): " + ", ".join(misshaped[:20]) + (" ..." if len(misshaped) > 20 else ""))
        if missing and unexpected:
            parts.append(f"the checkpoint's other names look like {', '.join(unexpected[:3])}"
                         " (a wrapper prefix config.yaml's scope_map does not map?)")
        raise CheckpointError(
            f"{source}: the checkpoint does not fit the architecture in config.yaml: " + "; ".join(parts)
        )
    if unexpected:
        logger.warning("%s: ignoring %d tensor(s) the model does not use: %s", source, len(unexpected), ", ".join(unexpected[:10]))
    # One read of the weights (the pages are needed for the first forward pass anyway): a damaged
    # download with NaN/inf weights would otherwise print "angry nan%".
    broken = [name for name in expected if tensors[name].is_floating_point() and not bool(torch.isfinite(tensors[name]).all())]
    if broken:
        raise CheckpointError(f"{source}: {len(broken)} tensor(s) hold NaN or infinite values ({', '.join(broken[:5])}"
                              f"{' ...' if len(broken) > 5 else ''}): the file is damaged; download it again")
    for name, reference in expected.items():
        if tensors[name].dtype != reference.dtype:
            tensors[name] = tensors[name].to(reference.dtype)
    # assign=True adopts the loaded (memory-mapped) tensors instead of copying them into fresh ones.
    model.load_state_dict(tensors, strict=True, assign=True)


HEAD_NAMES: tuple[str, ...] = ("proj.weight", "proj.bias")


def _find_head(state: Mapping[str, torch.Tensor], config: Emotion2vecConfig,
               scope_map: tuple[tuple[str, str], ...]) -> torch.Tensor | None:
    """The classifier weight (C, D) if the checkpoint has one, found under the same names and
    wrapper prefix as the encoder's tensors (it is unprefixed in the released files)."""
    with torch.device("meta"):
        body = [name for name in Emotion2vecModel(config).state_dict() if name not in HEAD_NAMES]
    head = map_checkpoint_names(state, ["proj.weight"], scope_map, detect_prefix=False).tensors.get("proj.weight")
    if head is None:
        prefix = map_checkpoint_names(state, body, scope_map).detected_prefix
        head = state.get(f"{prefix}proj.weight") if prefix else None
    return head


def load_checkpoint(model_dir: str | Path) -> tuple[Emotion2vecModel, list[Label]]:
    """Build the model described by the directory's ``config.yaml`` and load its weights into it.

    The files are found as FunASR finds them (:func:`~emotion2vec_plus.models.config.checkpoint_files`):
    ``config.yaml``, ``model.pt`` (``emotion2vec_base.pt`` for emotion2vec_base, named by its
    ``configuration.json``) and ``tokens.txt``. Returns the model in eval mode and its
    classifier labels (empty for embedding-only checkpoints such as ``emotion2vec_base``).
    """
    files = checkpoint_files(model_dir)
    config_file = read_config_file(files.config)
    config: Emotion2vecConfig = architecture_of(config_file, str(files.config))
    state = read_state_dict(files.weights)
    head = _find_head(state, config, config_file.scope_map)
    if files.tokens is not None:
        labels = read_tokens(files.tokens)
    elif head is not None and head.shape[0] == len(default_labels()):
        labels = default_labels()
    elif head is not None:
        raise CheckpointError(
            f"{model_dir}: the checkpoint has a {head.shape[0]}-class head but no tokens.txt naming its classes"
        )
    else:
        labels = []
    with torch.device("meta"):
        model = Emotion2vecModel(config, num_classes=len(labels))
    load_state_dict_strict(model, state, str(files.weights), config_file.scope_map)
    return model.eval(), labels
