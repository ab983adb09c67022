"""Find emotion2vec checkpoints: known model names, local caches, and downloads.

A checkpoint is a directory in FunASR format holding ``config.yaml``, the weights (``model.pt``;
``emotion2vec_base.pt`` for emotion2vec_base, as its ``configuration.json`` says) and, for
models with a classifier head, ``tokens.txt``. :func:`resolve_model_dir` turns what a user typed
(a directory path or a model name such as ``"large"``) into such a directory:

1. an existing directory is checked and returned;
2. a known model name is looked up, without network access, in this package's cache
   (``<cache>/<hub>/<repo_id>/``) and then in the hub's own cache (the standard Hugging Face
   cache, or the ModelScope cache when ``modelscope`` is installed);
3. otherwise, unless downloads are disabled or offline mode is on, it is downloaded once into
   ``<cache>/<hub>/<repo_id>/``.

Every failure raises :class:`~emotion2vec_plus.errors.ModelNotFoundError` with a message that
says which files are needed, where to put them and where to get them.

Environment variables:

* ``EMOTION2VEC_HUB``: ``hf`` (default, Hugging Face) or ``ms`` (ModelScope);
  ``huggingface`` and ``modelscope`` are accepted too.
* ``EMOTION2VEC_CACHE``: cache root; default ``$XDG_CACHE_HOME/emotion2vec_plus``, or
  ``~/.cache/emotion2vec_plus``.
* ``EMOTION2VEC_OFFLINE`` or ``HF_HUB_OFFLINE`` set to ``1``/``true``: never download.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import tempfile
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import huggingface_hub

from .config import CONFIG_FILE, FILE_MAP, TOKENS_FILE, WEIGHTS_FILE, checkpoint_files
from ..fileio import sha256_file
from ..errors import CheckpointError, ModelNotFoundError

PathLike: TypeAlias = str | os.PathLike[str]

HF, MS = "hf", "ms"
HUB_ENV = "EMOTION2VEC_HUB"
CACHE_ENV = "EMOTION2VEC_CACHE"
OFFLINE_ENV = "EMOTION2VEC_OFFLINE"
HF_OFFLINE_ENV = "HF_HUB_OFFLINE"

HUB_NAMES = {HF: "Hugging Face", MS: "ModelScope"}
_HUB_ALIASES = {"hf": HF, "huggingface": HF, "ms": MS, "modelscope": MS}
_TRUE_VALUES = frozenset({"1", "true", "yes", "on"})

#: Files a checkpoint directory with the default names holds. ``tokens.txt`` is added for models
#: with a head; emotion2vec_base's weights are named otherwise (:attr:`ModelSpec.weights_file`).
CORE_FILES: tuple[str, ...] = (CONFIG_FILE, WEIGHTS_FILE)
#: Files fetched from a hub for a model whose weights are ``model.pt``: the checkpoint itself plus
#: its small metadata files (``configuration.json`` names the files, as FunASR reads it).
DOWNLOAD_PATTERNS: tuple[str, ...] = (*CORE_FILES, TOKENS_FILE, FILE_MAP, "README.md")

MODELSCOPE_INSTALL_HINT = 'pip install "emotion2vec-plus[modelscope]"'


@dataclass(frozen=True)
class ModelSpec:
    """One published emotion2vec checkpoint and where it lives on each hub.

    Architectures and file facts are from the released files; see docs/released_checkpoints.md
    for which are read from them and which are inferred.
    """

    name: str
    """Canonical short name, e.g. ``"large"``."""
    hf_repo: str | None
    """Hugging Face repository id; ``None`` where the model is published on ModelScope only."""
    ms_repo: str
    """ModelScope repository id."""
    embed_dim: int
    """Width of the embeddings the encoder produces."""
    has_head: bool
    """Whether the checkpoint has the 9-class emotion classifier (and hence ``tokens.txt``)."""
    size_mb: int
    """Download size of the weights file in MB (the released files also hold training state,
    about two thirds of their size, which is never loaded)."""
    description: str
    """One line for listings."""
    params_m: float = 93.2
    """Parameters used at inference, in millions (4 prenet + 8 main blocks, conv front end, head)."""
    weights_file: str = WEIGHTS_FILE
    """Name of the weights file in the repository (FunASR reads it from ``configuration.json``)."""

    def repo(self, hub: str) -> str:
        """The repository id on ``hub`` (``"hf"`` or ``"ms"``).

        Raises:
            ModelNotFoundError: the model is not published on that hub.
        """
        if resolve_hub(hub) == MS:
            return self.ms_repo
        if self.hf_repo is None:
            raise ModelNotFoundError(
                f"Model {self.name!r} is published on ModelScope only ({self.ms_repo}), not on Hugging Face: "
                f"use --hub {MS} or {HUB_ENV}={MS}" + _modelscope_hint()
            )
        return self.hf_repo

    def on_hub(self, hub: str) -> bool:
        """Whether the model is published on ``hub``."""
        return resolve_hub(hub) == MS or self.hf_repo is not None

    def url(self, hub: str) -> str:
        """The web page of the repository on ``hub``."""
        if resolve_hub(hub) == HF:
            return f"https://huggingface.co/{self.repo(hub)}"
        return f"https://modelscope.cn/models/{self.ms_repo}"


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="large",
            hf_repo="emotion2vec/emotion2vec_plus_large",
            ms_repo="iic/emotion2vec_plus_large",
            embed_dim=1024,
            has_head=True,
            size_mb=1946,
            params_m=162.1,
            description="emotion2vec+ large: 1024-d, 4 prenet + 8 blocks, 162M parameters, 9 emotions, most "
            "accurate (model.pt approx. 1.9 GB)",
        ),
        ModelSpec(
            name="base",
            hf_repo="emotion2vec/emotion2vec_plus_base",
            ms_repo="iic/emotion2vec_plus_base",
            embed_dim=768,
            has_head=True,
            size_mb=1120,
            description="emotion2vec+ base: 768-d, 4 prenet + 8 blocks, 93M parameters, 9 emotions "
            "(model.pt approx. 1.1 GB)",
        ),
        ModelSpec(
            name="seed",
            hf_repo="emotion2vec/emotion2vec_plus_seed",
            ms_repo="iic/emotion2vec_plus_seed",
            embed_dim=768,
            has_head=True,
            size_mb=1120,
            description="emotion2vec+ seed: 768-d, 93M parameters, 9 emotions, fine-tuned on academic "
            "emotion corpora only (model.pt approx. 1.1 GB)",
        ),
        ModelSpec(
            name="emotion2vec_base_finetuned",
            hf_repo=None,
            ms_repo="iic/emotion2vec_base_finetuned",
            embed_dim=768,
            has_head=True,
            size_mb=1130,
            weights_file="emotion2vec_base.pt",
            description="emotion2vec base fine-tuned (Jan. 2024 release, superseded by emotion2vec+; "
            "ModelScope only): 768-d, 9 emotions (emotion2vec_base.pt approx. 1.1 GB)",
        ),
        ModelSpec(
            name="emotion2vec_base",
            hf_repo="emotion2vec/emotion2vec_base",
            ms_repo="iic/emotion2vec_base",
            embed_dim=768,
            has_head=False,
            size_mb=1130,
            weights_file="emotion2vec_base.pt",
            description="emotion2vec base: self-supervised encoder, 768-d, embeddings only, no emotion "
            "classifier (emotion2vec_base.pt approx. 1.1 GB)",
        ),
    )
}

_SHORT_ALIASES = {
    "plus_large": "large",
    "plus_base": "base",
    "plus_seed": "seed",
    "base_finetuned": "emotion2vec_base_finetuned",
}


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def _build_aliases() -> dict[str, str]:
    aliases = dict(_SHORT_ALIASES)
    for spec in MODELS.values():
        repository = spec.ms_repo.split("/", 1)[1]
        # "emotion2vec/<repository>" is accepted even where Hugging Face does not publish the model:
        # resolving it then says where the model is.
        for alias in (spec.name, spec.ms_repo, repository, f"emotion2vec/{repository}"):
            aliases[_normalise(alias)] = spec.name
    return aliases


_ALIASES = _build_aliases()


def canonical_name(name: str) -> str | None:
    """The canonical name of a known model, or ``None``.

    Accepts, case-insensitively and with ``-`` or ``_``: the short name (``"large"``), the
    ``plus_`` form (``"plus_large"``), the repository name (``"emotion2vec_plus_large"``) and
    the Hugging Face or ModelScope repository id (``"emotion2vec/emotion2vec_plus_large"``,
    ``"iic/emotion2vec_plus_large"``).
    """
    return _ALIASES.get(_normalise(name))


def required_files(spec_or_has_head: ModelSpec | bool) -> tuple[str, ...]:
    """The files a complete checkpoint directory holds: config, weights, and ``tokens.txt`` only
    with a head. A bool stands for a model with the default file names."""
    if isinstance(spec_or_has_head, ModelSpec):
        core: tuple[str, ...] = (CONFIG_FILE, spec_or_has_head.weights_file)
        has_head = spec_or_has_head.has_head
    else:
        core, has_head = CORE_FILES, spec_or_has_head
    return (*core, TOKENS_FILE) if has_head else core


def download_files(spec: ModelSpec) -> tuple[str, ...]:
    """The files fetched from a hub for ``spec``: its checkpoint and small metadata files."""
    return (CONFIG_FILE, spec.weights_file, TOKENS_FILE, FILE_MAP, "README.md")


def _modelscope_hint() -> str:
    """`` (needs pip install ...)`` when the modelscope package is not installed, else empty."""
    return "" if importlib.util.find_spec("modelscope") else f" (needs {MODELSCOPE_INSTALL_HINT})"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE_VALUES


def is_offline() -> bool:
    """Whether downloads are disabled by ``EMOTION2VEC_OFFLINE`` or ``HF_HUB_OFFLINE``."""
    return _env_flag(OFFLINE_ENV) or _env_flag(HF_OFFLINE_ENV)


def default_cache_dir() -> Path:
    """``$EMOTION2VEC_CACHE``, else ``$XDG_CACHE_HOME/emotion2vec_plus``, else ``~/.cache/...``."""
    configured = os.environ.get(CACHE_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "emotion2vec_plus"


def resolve_hub(hub: str | None) -> str:
    """``"hf"`` or ``"ms"``: the argument if given, else ``$EMOTION2VEC_HUB``, else ``"hf"``.

    Raises:
        ValueError: the argument or the environment variable names no known hub.
    """
    if hub is not None:
        value, source = hub, "hub"
    else:
        value, source = os.environ.get(HUB_ENV, "").strip() or HF, HUB_ENV
    resolved = _HUB_ALIASES.get(value.strip().lower())
    if resolved is None:
        raise ValueError(
            f"{source}={value!r} is not a known model hub: use 'hf' (Hugging Face, also "
            "'huggingface') or 'ms' (ModelScope, also 'modelscope')"
        )
    return resolved


def _lookup(name: str) -> ModelSpec:
    canonical = canonical_name(name)
    if canonical is None:
        raise ModelNotFoundError(_unknown_message(name))
    return MODELS[canonical]


def model_cache_dir(
    name: str,
    *,
    hub: str | None = None,
    cache_dir: PathLike | None = None,
    revision: str | None = None,
) -> Path:
    """Where this package keeps (or expects) the files of model ``name``.

    ``<cache>/<hub>/<repo_id>``, e.g. ``~/.cache/emotion2vec_plus/hf/emotion2vec/
    emotion2vec_plus_large``; a non-default ``revision`` gets its own ``<repo_id>@<revision>``.
    """
    spec = _lookup(name)
    hub = resolve_hub(hub)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = root / hub / spec.repo(hub)
    if revision:
        path = path.with_name(f"{path.name}@{revision.replace('/', '--')}")
    return path


def _missing_files(directory: Path, names: tuple[str, ...]) -> list[str]:
    return [name for name in names if not (directory / name).is_file()]


#: Written into each of our cache entries at download: size, mtime and sha256 of every file (and
#: the sha256 the hub publishes for it, where it does), so a damaged copy is noticed on load.
FILES_RECORD = ".emotion2vec_files.json"


def _published_sha256(spec: ModelSpec, hub: str, revision: str | None) -> dict[str, str]:
    """sha256 of the model's large files as the hub lists them (Hugging Face's LFS metadata); {}
    when the hub does not say or cannot be asked."""
    if hub != HF or spec.hf_repo is None:
        return {}
    try:
        info = huggingface_hub.HfApi().model_info(spec.hf_repo, revision=revision, files_metadata=True)
    # Any failure only means there is nothing to compare with; the computed sha256 is still recorded.
    except Exception:
        return {}
    return {sibling.rfilename: sibling.lfs.sha256 for sibling in info.siblings or []
            if getattr(sibling, "lfs", None) is not None and getattr(sibling.lfs, "sha256", None)}


def _record_files(directory: Path, names: tuple[str, ...], published: dict[str, str], source: str) -> None:
    """Write :data:`FILES_RECORD`; refuse a file whose sha256 is not the one the hub publishes."""
    record = {}
    for name in names:
        path = directory / name
        if not path.is_file():
            continue
        digest = sha256_file(path)
        if name in published and published[name] != digest:
            raise ModelNotFoundError(f"{source}: {name} arrived damaged (sha256 {digest[:12]}..., the hub publishes "
                                     f"{published[name][:12]}...); try again")
        stat = path.stat()
        record[name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest,
                        "published_sha256": published.get(name)}
    (directory / FILES_RECORD).write_text(json.dumps(record, indent=1), encoding="utf-8")


def entry_problem(directory: Path, spec: ModelSpec) -> str | None:
    """Why a local copy of ``spec`` is not usable, or ``None``: a required file missing, or a file
    changed since it was downloaded (size, or sha256 when its size or time changed)."""
    if not directory.is_dir():
        return f"{directory} does not exist"
    missing = _missing_files(directory, required_files(spec))
    if missing:
        return f"{directory} lacks {', '.join(missing)}"
    try:
        record = json.loads((directory / FILES_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # copied in by hand, or made before records existed: nothing to compare with
    for name, expected in record.items() if isinstance(record, dict) else ():
        path = directory / name
        try:
            stat = path.stat()
        except OSError:
            return f"{path} is missing"
        if stat.st_size != expected.get("size"):
            return f"{path} is {stat.st_size:,} bytes, the download was {expected.get('size'):,}"
        if stat.st_mtime_ns != expected.get("mtime_ns") and sha256_file(path) != expected.get("sha256"):
            return f"{path} changed since it was downloaded (its sha256 differs)"
    return None


def _is_complete(directory: Path, spec: ModelSpec) -> bool:
    return entry_problem(directory, spec) is None


def _hf_cached(spec: ModelSpec, revision: str | None) -> Path | None:
    """The model's snapshot in the standard Hugging Face cache, without network access."""
    try:
        snapshot = huggingface_hub.snapshot_download(
            repo_id=spec.hf_repo,
            revision=revision,
            local_files_only=True,
            allow_patterns=list(download_files(spec)),
        )
    # LocalEntryNotFoundError (and IncompleteSnapshotError) subclass FileNotFoundError in every
    # huggingface_hub version: not cached, or only partly.
    except FileNotFoundError:
        return None
    return Path(snapshot)


def _modelscope_snapshot_download() -> Callable[..., str] | None:
    """ModelScope's ``snapshot_download``, or ``None`` when the optional package is missing."""
    try:
        from modelscope.hub.snapshot_download import snapshot_download
    except ImportError:
        return None
    fetch: Callable[..., str] = snapshot_download
    return fetch


def _ms_cached(spec: ModelSpec, revision: str | None) -> Path | None:
    """The model's snapshot in the ModelScope cache, if ``modelscope`` is installed."""
    snapshot_download = _modelscope_snapshot_download()
    if snapshot_download is None:
        return None
    try:
        snapshot = snapshot_download(
            model_id=spec.ms_repo,
            revision=revision,
            local_files_only=True,
            allow_file_pattern=list(download_files(spec)),
        )
    # The "not cached" error type differs between modelscope versions; any failure of this
    # offline probe just means there is no usable copy there.
    except Exception:
        return None
    return Path(snapshot)


def local_model_dir(
    name: str,
    *,
    hub: str | None = None,
    cache_dir: PathLike | None = None,
    revision: str | None = None,
) -> Path | None:
    """The directory of a complete local copy of model ``name``, or ``None``. Never downloads.

    Looks in :func:`model_cache_dir`, then in the hub's own cache (Hugging Face cache for
    ``hf``; ModelScope cache for ``ms`` when ``modelscope`` is installed).

    Raises:
        ModelNotFoundError: ``name`` is not a known model name.
        ValueError: ``hub`` (or ``$EMOTION2VEC_HUB``) is not a known hub.
    """
    spec = _lookup(name)
    hub = resolve_hub(hub)
    if not spec.on_hub(hub):
        return None
    own = model_cache_dir(name, hub=hub, cache_dir=cache_dir, revision=revision)
    if _is_complete(own, spec):
        return own
    hub_copy = _hf_cached(spec, revision) if hub == HF else _ms_cached(spec, revision)
    if hub_copy is not None and _is_complete(hub_copy, spec):
        return hub_copy
    return None


def _unknown_message(name: str) -> str:
    known = ", ".join(MODELS)
    return (
        f"{name!r} is neither an existing directory nor a known model name. Known names: {known} "
        "(also accepted: 'plus_large', 'emotion2vec_plus_large', "
        "'emotion2vec/emotion2vec_plus_large', 'iic/emotion2vec_plus_large' and the same for the "
        "others). To use a local checkpoint, pass the directory that holds its config.yaml, "
        "model.pt and tokens.txt."
    )


def _not_found_message(spec: ModelSpec, hub: str, target: Path, reason: str) -> str:
    other = MS if hub == HF else HF
    lines = [
        f"Model {spec.name!r} ({spec.repo(hub)} on {HUB_NAMES[hub]}) is not available: {reason}.",
        f"It needs the files {', '.join(required_files(spec))}. To fix this, either:",
        f"  - download them from {spec.url(hub)} and put them in {target}",
        "  - or pass the path of a local directory holding them instead of the model name",
    ]
    if spec.on_hub(other):
        lines.append(f"  - or use {HUB_NAMES[other]} instead: --hub {other} or {HUB_ENV}={other}"
                     + (_modelscope_hint() if other == MS else ""))
    if is_offline():
        lines.append(
            f"  - or allow downloads: unset {OFFLINE_ENV} and {HF_OFFLINE_ENV} (offline mode is on)"
        )
    lines.append("  - or use the bundled compact model, which needs no download: Emotion2VecPlus() in Python, "
                 "--model compact on the command line")
    return "\n".join(lines)


_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def _endpoint(hub: str) -> str:
    """The address the hub's client downloads from (``HF_ENDPOINT`` / ModelScope's domain settings apply)."""
    if hub == HF:
        from huggingface_hub import constants

        return str(constants.ENDPOINT)
    try:
        from modelscope.hub.utils.utils import get_endpoint
    except ImportError:
        return "https://www.modelscope.cn"
    return str(get_endpoint())


def _unreachable(url: str, timeout_s: float = 5.0) -> str | None:
    """Why ``url``'s host cannot be reached (its name does not resolve, or no connection within
    ``timeout_s``), or ``None``. Hub clients retry for tens of seconds before giving up; this
    answers in at most ``timeout_s``. Not checked when a proxy is configured (the client may
    reach the hub only through it)."""
    if any(os.environ.get(name) for name in _PROXY_VARIABLES):
        return None
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            return None
    except OSError as exc:
        return f"cannot reach {parts.hostname}:{port} ({exc.strerror or type(exc).__name__})"


def _fetch(spec: ModelSpec, hub: str, destination: Path, revision: str | None) -> None:
    """Download the checkpoint files of ``spec`` from ``hub`` into the directory ``destination``."""
    if hub == HF:
        huggingface_hub.snapshot_download(
            repo_id=spec.hf_repo,
            revision=revision,
            local_dir=destination,
            allow_patterns=list(download_files(spec)),
        )
        return
    snapshot_download = _modelscope_snapshot_download()
    if snapshot_download is None:
        raise ModuleNotFoundError(
            f"the modelscope package is not installed ({MODELSCOPE_INSTALL_HINT})"
        )
    snapshot_download(
        model_id=spec.ms_repo,
        revision=revision,
        local_dir=str(destination),
        allow_file_pattern=list(download_files(spec)),
    )


def download_model(
    name: str,
    *,
    hub: str | None = None,
    cache_dir: PathLike | None = None,
    revision: str | None = None,
) -> Path:
    """A complete local copy of model ``name``, downloading it once if there is none.

    An existing copy found by :func:`local_model_dir` is returned without network access.
    Otherwise the files are downloaded into a hidden temporary sibling of
    :func:`model_cache_dir`, checked, and renamed into place, so an interrupted download is
    never taken for a complete one.

    Raises:
        ModelNotFoundError: unknown name; offline with no local copy; ``modelscope`` missing
            for ``hub="ms"``; or the download failed or lacked a required file.
        ValueError: ``hub`` (or ``$EMOTION2VEC_HUB``) is not a known hub.
    """
    spec = _lookup(name)
    hub = resolve_hub(hub)
    spec.repo(hub)  # refuses a model this hub does not publish, saying where it is
    found = local_model_dir(name, hub=hub, cache_dir=cache_dir, revision=revision)
    if found is not None:
        return found
    target = model_cache_dir(name, hub=hub, cache_dir=cache_dir, revision=revision)
    damage = entry_problem(target, spec) if target.exists() else None
    if is_offline():
        reason = (f"the cached copy is damaged ({damage}) and offline mode is on" if damage
                  else "it is not in the cache and offline mode is on")
        raise ModelNotFoundError(_not_found_message(spec, hub, target, reason))

    problem = _unreachable(_endpoint(hub))
    if problem is not None:
        raise ModelNotFoundError(_not_found_message(spec, hub, target, f"downloading it failed: {problem}"))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(
        tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    )
    try:
        try:
            _fetch(spec, hub, partial, revision)
        # Hub clients raise many types (HTTP, connection, OS, validation errors); all of
        # them mean the same to the user, who gets the full how-to-fix message plus the cause.
        except Exception as exc:
            reason = f"downloading it failed ({type(exc).__name__}: {exc})"
            # The message carries the cause; the client's own chain of tracebacks would bury it.
            raise ModelNotFoundError(_not_found_message(spec, hub, target, reason)) from None
        missing = _missing_files(partial, required_files(spec))
        if missing:
            reason = f"the download from {spec.url(hub)} lacks {', '.join(missing)}"
            raise ModelNotFoundError(_not_found_message(spec, hub, target, reason))
        _record_files(partial, download_files(spec), _published_sha256(spec, hub, revision), spec.url(hub))
        if target.exists() and not _is_complete(target, spec):
            shutil.rmtree(target)  # an incomplete or damaged copy left in our cache: replace it
        try:
            partial.rename(target)
        except OSError:
            # Another process finished the same download first; keep its copy.
            if not _is_complete(target, spec):
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def resolve_model_dir(
    name_or_path: PathLike,
    *,
    hub: str | None = None,
    cache_dir: PathLike | None = None,
    download: bool = True,
    revision: str | None = None,
) -> Path:
    """The checkpoint directory for a directory path or a known model name.

    An existing directory must hold ``config.yaml`` and ``model.pt`` (``tokens.txt`` is
    optional: models without it use the standard labels or have no head). A model name is
    resolved with :func:`local_model_dir` and, if ``download`` is true and offline mode is off,
    :func:`download_model`.

    Raises:
        ModelNotFoundError: the directory lacks files, the name is unknown, or the model is
            neither cached nor downloadable; the message says how to fix it.
        ValueError: ``hub`` (or ``$EMOTION2VEC_HUB``) is not a known hub.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        try:
            files = checkpoint_files(path)
        except CheckpointError as exc:
            raise ModelNotFoundError(f"Model directory {path} is not usable: {exc}") from exc
        missing = [f.name for f in (files.config, files.weights) if not f.is_file()]
        if missing:
            raise ModelNotFoundError(
                f"Model directory {path} is incomplete: missing {', '.join(missing)}. A model "
                "directory holds config.yaml, model.pt (or the weights file its configuration.json "
                "names) and, for a model with an emotion classifier, tokens.txt."
            )
        return path.absolute()

    name = os.fspath(name_or_path)
    spec = _lookup(name)
    if download:
        return download_model(name, hub=hub, cache_dir=cache_dir, revision=revision)
    found = local_model_dir(name, hub=hub, cache_dir=cache_dir, revision=revision)
    if found is not None:
        return found
    hub = resolve_hub(hub)
    spec.repo(hub)
    target = model_cache_dir(name, hub=hub, cache_dir=cache_dir, revision=revision)
    damage = entry_problem(target, spec) if target.exists() else None
    reason = (f"the cached copy is damaged ({damage}) and downloading is disabled" if damage
              else "it is not in the cache and downloading is disabled")
    raise ModelNotFoundError(_not_found_message(spec, hub, target, reason))


@dataclass(frozen=True)
class ModelStatus:
    """A known model and whether a complete copy of it is available locally."""

    spec: ModelSpec
    cached: bool
    path: Path | None


def list_models(*, hub: str | None = None, cache_dir: PathLike | None = None) -> list[ModelStatus]:
    """Every known model with its local availability on ``hub``. Never downloads."""
    statuses = []
    for spec in MODELS.values():
        path = local_model_dir(spec.name, hub=hub, cache_dir=cache_dir)
        statuses.append(ModelStatus(spec=spec, cached=path is not None, path=path))
    return statuses
