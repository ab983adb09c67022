"""Tests for model name resolution, caches and downloads. No test reaches the network.

Every test runs with ``HF_HUB_OFFLINE=1``, with huggingface_hub's own offline switch on, and
with every cache (ours, Hugging Face's, ModelScope's) under ``tmp_path``. Tests that exercise
the download step either replace the hub client with a fake that writes files, or rely on
huggingface_hub refusing to go online.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import huggingface_hub
import pytest
import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import LocalEntryNotFoundError

from emotion2vec_plus.models import hub
from emotion2vec_plus.errors import ModelError, ModelNotFoundError

TOKENS = [
    "生气/angry",
    "厌恶/disgusted",
    "恐惧/fearful",
    "开心/happy",
    "中立/neutral",
    "其他/other",
    "难过/sad",
    "吃惊/surprised",
    "<unk>",
]
CONFIG_YAML = "model: Emotion2vec\nmodel_conf:\n  embed_dim: 768\n  depth: 8\n"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
HF_LARGE_URL = "https://huggingface.co/emotion2vec/emotion2vec_plus_large"
MS_LARGE_URL = "https://modelscope.cn/models/iic/emotion2vec_plus_large"


def make_checkpoint(directory: Path, *, files: tuple[str, ...] = hub.DOWNLOAD_PATTERNS) -> Path:
    """Write a tiny but real checkpoint directory holding ``files``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in files:
        path = directory / name
        if name.endswith(".pt"):
            torch.save({"x": torch.zeros(2)}, path)
        elif name == "tokens.txt":
            path.write_text("\n".join(TOKENS) + "\n", encoding="utf-8")
        elif name == "config.yaml":
            path.write_text(CONFIG_YAML, encoding="utf-8")
        else:
            path.write_text("{}\n", encoding="utf-8")
    return directory


def make_hf_cache(
    hub_cache: Path, repo_id: str, *, files: tuple[str, ...] = hub.DOWNLOAD_PATTERNS
) -> Path:
    """Lay out ``repo_id`` as the standard Hugging Face cache does: blobs, snapshots, refs."""
    repo_dir = hub_cache / ("models--" + repo_id.replace("/", "--"))
    staged = make_checkpoint(repo_dir / "staged", files=files)
    snapshot = repo_dir / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo_dir / "blobs").mkdir()
    for index, name in enumerate(files):
        blob = repo_dir / "blobs" / f"{index:040x}"
        (staged / name).rename(blob)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    staged.rmdir()
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(COMMIT)
    return snapshot


def partial_dirs(parent: Path) -> list[Path]:
    return list(parent.glob(".*.partial")) if parent.exists() else []


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, default hub, and all caches inside ``tmp_path``."""
    monkeypatch.setenv(hub.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(hub.OFFLINE_ENV, raising=False)
    monkeypatch.delenv(hub.HUB_ENV, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
    # huggingface_hub reads these at import time; point the live values at tmp_path too.
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms_cache"))
    ms_config = sys.modules.get("modelscope_hub.config")
    if ms_config is not None:  # drop the process-wide config so MODELSCOPE_CACHE is re-read
        monkeypatch.setattr(ms_config, "_default_config", None)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let our code reach the download step; the hub client must be faked or stay offline.
    (The reachability check is skipped: these tests fake the hub, which is never reachable here.)"""
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hub, "_unreachable", lambda url, timeout_s=5.0: None)


class FakeHfSnapshot:
    """Stands in for ``huggingface_hub.snapshot_download``: nothing cached, downloads ``files``."""

    def __init__(self, files: tuple[str, ...] = hub.DOWNLOAD_PATTERNS, fail: bool = False) -> None:
        self.files = files
        self.fail = fail
        self.downloads: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> str:
        if kwargs.get("local_files_only"):
            raise LocalEntryNotFoundError("not cached")
        self.downloads.append(kwargs)
        make_checkpoint(Path(kwargs["local_dir"]), files=self.files)
        if self.fail:
            raise ConnectionError("connection reset after config.yaml")
        return str(kwargs["local_dir"])


# --- names, hubs, cache location ---------------------------------------------------------


@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        ("large", "large"),
        ("LARGE", "large"),
        ("plus_large", "large"),
        ("plus-large", "large"),
        ("emotion2vec_plus_large", "large"),
        ("emotion2vec/emotion2vec_plus_large", "large"),
        ("iic/emotion2vec_plus_large", "large"),
        (" IIC/Emotion2Vec_Plus_Large ", "large"),
        ("base", "base"),
        ("plus_base", "base"),
        ("emotion2vec/emotion2vec_plus_base", "base"),
        ("seed", "seed"),
        ("iic/emotion2vec_plus_seed", "seed"),
        ("emotion2vec_base_finetuned", "emotion2vec_base_finetuned"),
        ("base_finetuned", "emotion2vec_base_finetuned"),
        ("iic/emotion2vec_base_finetuned", "emotion2vec_base_finetuned"),
        ("emotion2vec_base", "emotion2vec_base"),
        ("emotion2vec/emotion2vec_base", "emotion2vec_base"),
        ("huge", None),
        ("emotion2vec/huge", None),
        ("", None),
    ],
)
def test_canonical_name(alias: str, expected: str | None) -> None:
    assert hub.canonical_name(alias) == expected


def test_model_table() -> None:
    assert list(hub.MODELS) == [
        "large",
        "base",
        "seed",
        "emotion2vec_base_finetuned",
        "emotion2vec_base",
    ]
    assert hub.MODELS["large"].embed_dim == 1024
    assert {spec.embed_dim for name, spec in hub.MODELS.items() if name != "large"} == {768}
    assert [name for name, spec in hub.MODELS.items() if not spec.has_head] == ["emotion2vec_base"]
    for spec in hub.MODELS.values():
        assert spec.hf_repo is None or spec.hf_repo.startswith("emotion2vec/")
        assert spec.ms_repo.startswith("iic/")
        assert spec.size_mb > 0 and "approx." in spec.description
    # Facts of the released files (docs/released_checkpoints.md): large is 4 + 8 blocks, 162 M
    # parameters in a 1,945,790,254-byte model.pt; emotion2vec_base's weights are emotion2vec_base.pt;
    # the fine-tuned base model is on ModelScope only.
    assert hub.MODELS["large"].params_m == pytest.approx(162.1) and hub.MODELS["large"].size_mb == 1946
    assert [name for name, spec in hub.MODELS.items() if spec.hf_repo is None] == ["emotion2vec_base_finetuned"]
    assert hub.required_files(hub.MODELS["large"]) == ("config.yaml", "model.pt", "tokens.txt")
    assert hub.required_files(hub.MODELS["emotion2vec_base"]) == ("config.yaml", "emotion2vec_base.pt")
    assert hub.required_files(True) == ("config.yaml", "model.pt", "tokens.txt")
    assert hub.required_files(False) == ("config.yaml", "model.pt")


def test_resolve_hub_argument_env_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert hub.resolve_hub(None) == "hf"
    monkeypatch.setenv(hub.HUB_ENV, "ModelScope")
    assert hub.resolve_hub(None) == "ms"
    assert hub.resolve_hub("huggingface") == "hf"  # the argument beats the environment
    assert hub.resolve_hub(" HF ") == "hf"
    monkeypatch.setenv(hub.HUB_ENV, "ms")
    assert hub.resolve_hub(None) == "ms"
    monkeypatch.setenv(hub.HUB_ENV, "")
    assert hub.resolve_hub(None) == "hf"


def test_resolve_hub_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"hub='github'.*'hf'.*'ms'"):
        hub.resolve_hub("github")
    monkeypatch.setenv(hub.HUB_ENV, "s3")
    with pytest.raises(ValueError, match=r"EMOTION2VEC_HUB='s3'"):
        hub.resolve_hub(None)
    with pytest.raises(ValueError, match="EMOTION2VEC_HUB"):
        hub.resolve_model_dir("large")


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert hub.default_cache_dir() == tmp_path / "cache"
    monkeypatch.delenv(hub.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub.default_cache_dir() == tmp_path / "xdg" / "emotion2vec_plus"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert hub.default_cache_dir() == tmp_path / "home" / ".cache" / "emotion2vec_plus"


def test_model_cache_dir_layout(cache: Path) -> None:
    assert hub.model_cache_dir("large") == cache / "hf" / "emotion2vec" / "emotion2vec_plus_large"
    assert (
        hub.model_cache_dir("plus_seed", hub="ms") == cache / "ms" / "iic" / "emotion2vec_plus_seed"
    )
    assert hub.model_cache_dir("large", cache_dir="/x", revision="refs/pr/1") == Path(
        "/x/hf/emotion2vec/emotion2vec_plus_large@refs--pr--1"
    )


# --- local directories -------------------------------------------------------------------


def test_local_directory(tmp_path: Path) -> None:
    model_dir = make_checkpoint(tmp_path / "my model")
    assert hub.resolve_model_dir(model_dir) == model_dir
    assert hub.resolve_model_dir(str(model_dir), download=False) == model_dir
    # tokens.txt is optional for a directory given by path (e.g. emotion2vec_base)
    (model_dir / "tokens.txt").unlink()
    assert hub.resolve_model_dir(model_dir) == model_dir


def test_local_directory_missing_files(tmp_path: Path) -> None:
    model_dir = make_checkpoint(tmp_path / "ckpt", files=("tokens.txt",))
    with pytest.raises(ModelNotFoundError) as info:
        hub.resolve_model_dir(model_dir)
    message = str(info.value)
    assert str(model_dir) in message
    assert "missing config.yaml, model.pt" in message
    assert isinstance(info.value, ModelError)


def test_directory_named_like_a_model_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_checkpoint(tmp_path / "large")
    monkeypatch.chdir(tmp_path)
    assert hub.resolve_model_dir("large") == tmp_path / "large"


# --- caches ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hub_name", "relative"),
    [("hf", "hf/emotion2vec/emotion2vec_plus_large"), ("ms", "ms/iic/emotion2vec_plus_large")],
)
def test_own_cache_found(cache: Path, hub_name: str, relative: str) -> None:
    model_dir = make_checkpoint(cache / relative)
    for name in ("large", "emotion2vec_plus_large", "iic/emotion2vec_plus_large"):
        assert hub.resolve_model_dir(name, hub=hub_name) == model_dir
        assert hub.resolve_model_dir(name, hub=hub_name, download=False) == model_dir
    assert hub.download_model("large", hub=hub_name) == model_dir
    assert hub.local_model_dir("large", hub=hub_name) == model_dir


def test_hub_chosen_by_environment(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ms_dir = make_checkpoint(cache / "ms" / "iic" / "emotion2vec_plus_base")
    monkeypatch.setenv(hub.HUB_ENV, "modelscope")
    assert hub.resolve_model_dir("base") == ms_dir


def test_explicit_cache_dir(tmp_path: Path) -> None:
    model_dir = make_checkpoint(tmp_path / "elsewhere" / "hf" / "emotion2vec" / "emotion2vec_plus_base")
    assert hub.resolve_model_dir("base", cache_dir=tmp_path / "elsewhere") == model_dir


def test_model_without_head_needs_no_tokens(cache: Path) -> None:
    model_dir = make_checkpoint(
        cache / "hf" / "emotion2vec" / "emotion2vec_base", files=("config.yaml", "emotion2vec_base.pt")
    )
    assert hub.resolve_model_dir("emotion2vec_base") == model_dir


def test_emotion2vec_base_weights_are_found_by_configuration_json(tmp_path: Path, cache: Path) -> None:
    """emotion2vec_base publishes emotion2vec_base.pt, named by configuration.json (as FunASR reads it)."""
    from emotion2vec_plus.models.config import checkpoint_files

    model_dir = make_checkpoint(cache / "hf" / "emotion2vec" / "emotion2vec_base",
                                files=("config.yaml", "emotion2vec_base.pt"))
    (model_dir / "configuration.json").write_text(
        '{"framework": "pytorch", "task": "emotion-recognition", "model": {"type": "emotion2vec"},'
        ' "file_path_metas": {"init_param": "emotion2vec_base.pt", "config": "config.yaml"}}')
    files = checkpoint_files(model_dir)
    assert files.weights == model_dir / "emotion2vec_base.pt" and files.tokens is None
    assert hub.resolve_model_dir(model_dir) == model_dir  # also as a plain directory
    (model_dir / "configuration.json").write_text('{"file_path_metas": {"init_param": "../../etc/passwd"}}')
    with pytest.raises(ModelNotFoundError, match="does not name a file inside"):
        hub.resolve_model_dir(model_dir)


def test_modelscope_only_model_on_hugging_face_says_where_it_is(cache: Path, online: None) -> None:
    with pytest.raises(ModelNotFoundError, match=r"ModelScope only \(iic/emotion2vec_base_finetuned\).*--hub ms"):
        hub.resolve_model_dir("emotion2vec_base_finetuned", hub="hf")
    assert hub.local_model_dir("emotion2vec_base_finetuned", hub="hf") is None
    assert not cache.exists()


def test_hf_hub_cache_found(tmp_path: Path, cache: Path) -> None:
    snapshot = make_hf_cache(tmp_path / "hf_home" / "hub", "emotion2vec/emotion2vec_plus_large")
    assert hub.local_model_dir("large") == snapshot
    assert hub.resolve_model_dir("plus_large", download=False) == snapshot
    assert (snapshot / "model.pt").is_symlink()
    assert not cache.exists()  # nothing copied or created in our cache


def test_download_model_offline_uses_hf_cache_end_to_end(tmp_path: Path, cache: Path) -> None:
    """The real huggingface_hub call (``local_files_only``), no fakes."""
    snapshot = make_hf_cache(tmp_path / "hf_home" / "hub", "emotion2vec/emotion2vec_plus_seed")
    path = hub.download_model("emotion2vec/emotion2vec_plus_seed")
    assert path == snapshot
    assert (path / "tokens.txt").read_text(encoding="utf-8").splitlines() == TOKENS
    assert torch.load(path / "model.pt")["x"].shape == (2,)
    assert hub.resolve_model_dir("seed") == snapshot
    assert not cache.exists()


def test_hf_hub_cache_incomplete_is_ignored(tmp_path: Path) -> None:
    make_hf_cache(
        tmp_path / "hf_home" / "hub",
        "emotion2vec/emotion2vec_plus_large",
        files=("config.yaml", "tokens.txt"),
    )
    assert hub.local_model_dir("large") is None
    with pytest.raises(ModelNotFoundError, match="offline mode is on"):
        hub.resolve_model_dir("large")


def test_hf_hub_cache_other_revision_not_used(tmp_path: Path) -> None:
    make_hf_cache(tmp_path / "hf_home" / "hub", "emotion2vec/emotion2vec_plus_large")
    assert hub.local_model_dir("large", revision="v2") is None
    assert hub.local_model_dir("large", revision=COMMIT) is not None


def test_ms_hub_cache_found(tmp_path: Path) -> None:
    pytest.importorskip("modelscope")
    snapshot = make_checkpoint(
        tmp_path / "ms_cache" / "models" / "iic--emotion2vec_plus_large" / "snapshots" / "master"
    )
    assert hub.local_model_dir("large", hub="ms") == snapshot
    assert hub.resolve_model_dir("large", hub="ms") == snapshot
    assert hub.local_model_dir("large", hub="hf") is None


def test_own_cache_revision_is_separate(cache: Path) -> None:
    make_checkpoint(cache / "hf" / "emotion2vec" / "emotion2vec_plus_large")
    pinned = make_checkpoint(cache / "hf" / "emotion2vec" / "emotion2vec_plus_large@v2")
    assert hub.resolve_model_dir("large", revision="v2") == pinned
    with pytest.raises(ModelNotFoundError, match="emotion2vec_plus_large@v3"):
        hub.resolve_model_dir("large", revision="v3")


def test_interrupted_download_is_not_complete(cache: Path) -> None:
    parent = cache / "hf" / "emotion2vec"
    # A full temporary sibling (renamed into place only after verification) and a target
    # directory holding only part of the files.
    make_checkpoint(parent / ".emotion2vec_plus_large.k3j9x.partial")
    make_checkpoint(parent / "emotion2vec_plus_large", files=("config.yaml", "tokens.txt"))
    assert hub.local_model_dir("large") is None
    assert not hub.list_models()[0].cached
    with pytest.raises(ModelNotFoundError):
        hub.resolve_model_dir("large")


# --- failures and their messages ---------------------------------------------------------


def test_offline_nothing_cached_message(cache: Path) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        hub.resolve_model_dir("large")
    message = str(info.value)
    for needed in (
        "config.yaml",
        "model.pt",
        "tokens.txt",
        str(cache / "hf" / "emotion2vec" / "emotion2vec_plus_large"),
        HF_LARGE_URL,
        "--hub ms",
        "EMOTION2VEC_HUB=ms",
        "local directory",
        "offline",
    ):
        assert needed in message, needed
    assert not cache.exists()


def test_offline_nothing_cached_message_ms(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(hub.OFFLINE_ENV, "true")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(ModelNotFoundError) as info:
        hub.download_model("large", hub="ms")
    message = str(info.value)
    assert MS_LARGE_URL in message
    assert str(cache / "ms" / "iic" / "emotion2vec_plus_large") in message
    assert "--hub hf" in message and "EMOTION2VEC_OFFLINE" in message


def test_no_head_model_message_omits_tokens() -> None:
    with pytest.raises(ModelNotFoundError) as info:
        hub.resolve_model_dir("emotion2vec_base")
    assert "config.yaml, emotion2vec_base.pt." in str(info.value)
    assert "tokens.txt" not in str(info.value)


def test_download_disabled_message(cache: Path, online: None) -> None:
    with pytest.raises(ModelNotFoundError, match="downloading is disabled") as info:
        hub.resolve_model_dir("base", download=False)
    assert "https://huggingface.co/emotion2vec/emotion2vec_plus_base" in str(info.value)
    assert not cache.exists()


@pytest.mark.parametrize("name", ["huge", "emotion2vec/emotion2vec_plus_huge", "./no/such/dir"])
def test_unknown_name_lists_known_names(name: str) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        hub.resolve_model_dir(name)
    message = str(info.value)
    assert repr(name) in message
    for known in hub.MODELS:
        assert known in message
    with pytest.raises(ModelNotFoundError):
        hub.local_model_dir(name)


def test_existing_file_is_not_a_model(tmp_path: Path) -> None:
    file = tmp_path / "model.pt"
    file.write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match="neither an existing directory"):
        hub.resolve_model_dir(file)


# --- list_models -------------------------------------------------------------------------


def test_list_models(tmp_path: Path, cache: Path) -> None:
    make_checkpoint(cache / "hf" / "emotion2vec" / "emotion2vec_plus_base")
    snapshot = make_hf_cache(tmp_path / "hf_home" / "hub", "emotion2vec/emotion2vec_plus_large")
    statuses = {status.spec.name: status for status in hub.list_models()}
    assert list(statuses) == list(hub.MODELS)
    assert statuses["large"].cached and statuses["large"].path == snapshot
    assert (
        statuses["base"].cached
        and statuses["base"].path == cache / "hf" / "emotion2vec" / "emotion2vec_plus_base"
    )
    for name in ("seed", "emotion2vec_base_finetuned", "emotion2vec_base"):
        assert not statuses[name].cached and statuses[name].path is None
    assert not any(status.cached for status in hub.list_models(hub="ms"))


# --- the download step -------------------------------------------------------------------


def test_download_with_real_library_offline_fails_cleanly(cache: Path, online: None) -> None:
    """Our offline switch is off, so the real snapshot_download runs and refuses (offline)."""
    with pytest.raises(ModelNotFoundError) as info:
        hub.download_model("large")
    message = str(info.value)
    assert "downloading it failed" in message and "LocalEntryNotFoundError" in message
    assert HF_LARGE_URL in message
    parent = cache / "hf" / "emotion2vec"
    assert not (parent / "emotion2vec_plus_large").exists()
    assert partial_dirs(parent) == []


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: nothing listens there


@pytest.mark.parametrize("hub_name", ["hf", "ms"])
def test_an_unreachable_hub_fails_at_once_naming_the_bundled_model(cache: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     hub_name: str) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    for name in hub._PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(hub, "_endpoint", lambda which: f"http://127.0.0.1:{_closed_port()}")
    fake = FakeHfSnapshot()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    monkeypatch.setattr(hub, "_modelscope_snapshot_download", lambda: fake)
    with pytest.raises(ModelNotFoundError) as info:
        hub.download_model("large", hub=hub_name)
    message = str(info.value)
    assert "cannot reach 127.0.0.1" in message and "bundled compact model" in message and "--model compact" in message
    assert fake.downloads == []  # the hub client (which retries for tens of seconds) was never started
    assert partial_dirs(cache / hub_name) == [] if (cache / hub_name).exists() else True


def test_with_a_proxy_the_reachability_check_is_left_to_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    for name in hub._PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert "cannot reach" in hub._unreachable(url)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert hub._unreachable(url) is None


def test_download_hf(cache: Path, online: None, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeHfSnapshot()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    target = cache / "hf" / "emotion2vec" / "emotion2vec_plus_large"
    assert hub.resolve_model_dir("large", revision=None) == target
    assert {p.name for p in target.iterdir()} == {*hub.DOWNLOAD_PATTERNS, hub.FILES_RECORD}
    (call,) = fake.downloads
    assert call["repo_id"] == "emotion2vec/emotion2vec_plus_large"
    assert call["revision"] is None
    assert set(call["allow_patterns"]) == {
        "config.yaml",
        "model.pt",
        "tokens.txt",
        "configuration.json",
        "README.md",
    }
    assert Path(call["local_dir"]).parent == target.parent and Path(call["local_dir"]) != target
    assert partial_dirs(target.parent) == []
    # Downloaded once: the next call finds the cached copy.
    assert hub.download_model("large") == target
    assert len(fake.downloads) == 1


def test_download_hf_revision(cache: Path, online: None, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeHfSnapshot()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    path = hub.download_model("large", revision="v1.0")
    assert path == cache / "hf" / "emotion2vec" / "emotion2vec_plus_large@v1.0"
    assert fake.downloads[0]["revision"] == "v1.0"


def test_download_replaces_incomplete_copy(
    cache: Path, online: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = make_checkpoint(
        cache / "hf" / "emotion2vec" / "emotion2vec_plus_base", files=("config.yaml",)
    )
    monkeypatch.setattr(huggingface_hub, "snapshot_download", FakeHfSnapshot())
    assert hub.download_model("base") == target
    assert (target / "model.pt").is_file() and (target / "tokens.txt").is_file()


def test_download_interrupted_leaves_nothing(
    cache: Path, online: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        huggingface_hub, "snapshot_download", FakeHfSnapshot(files=("config.yaml",), fail=True)
    )
    with pytest.raises(ModelNotFoundError, match="ConnectionError") as info:
        hub.download_model("large")
    assert info.value.__cause__ is None and info.value.__suppress_context__  # one traceback, the cause in the message
    parent = cache / "hf" / "emotion2vec"
    assert not (parent / "emotion2vec_plus_large").exists()
    assert partial_dirs(parent) == []
    assert hub.local_model_dir("large") is None


def test_download_missing_required_file(
    cache: Path, online: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        huggingface_hub, "snapshot_download", FakeHfSnapshot(files=("config.yaml", "model.pt"))
    )
    with pytest.raises(ModelNotFoundError, match=r"lacks tokens\.txt"):
        hub.download_model("large")
    parent = cache / "hf" / "emotion2vec"
    assert not (parent / "emotion2vec_plus_large").exists()
    assert partial_dirs(parent) == []


def test_download_ms_without_modelscope(
    cache: Path, online: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in ("modelscope", "modelscope.hub", "modelscope.hub.snapshot_download"):
        monkeypatch.setitem(sys.modules, module, None)  # makes the import fail
    assert hub.local_model_dir("large", hub="ms") is None
    with pytest.raises(ModelNotFoundError) as info:
        hub.resolve_model_dir("large", hub="ms")
    message = str(info.value)
    assert 'pip install "emotion2vec-plus[modelscope]"' in message
    assert MS_LARGE_URL in message and "--hub hf" in message
    assert partial_dirs(cache / "ms" / "iic") == []


def test_download_ms(cache: Path, online: None, monkeypatch: pytest.MonkeyPatch) -> None:
    ms_snapshot = pytest.importorskip("modelscope.hub.snapshot_download")
    calls: list[dict[str, Any]] = []

    def fake(**kwargs: Any) -> str:
        if kwargs.get("local_files_only"):
            raise ValueError("not cached")
        calls.append(kwargs)
        make_checkpoint(Path(kwargs["local_dir"]))
        return str(kwargs["local_dir"])

    monkeypatch.setattr(ms_snapshot, "snapshot_download", fake)
    target = cache / "ms" / "iic" / "emotion2vec_plus_seed"
    assert hub.resolve_model_dir("seed", hub="ms") == target
    (call,) = calls
    assert call["model_id"] == "iic/emotion2vec_plus_seed"
    assert "model.pt" in call["allow_file_pattern"] and "tokens.txt" in call["allow_file_pattern"]
    assert Path(call["local_dir"]).parent == target.parent
    assert partial_dirs(target.parent) == []


def test_download_emotion2vec_base_fetches_its_own_weights_file(
    cache: Path, online: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeHfSnapshot(files=("config.yaml", "emotion2vec_base.pt", "configuration.json"))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    target = cache / "hf" / "emotion2vec" / "emotion2vec_base"
    assert hub.resolve_model_dir("emotion2vec_base") == target
    assert "emotion2vec_base.pt" in fake.downloads[0]["allow_patterns"]
    assert (target / "emotion2vec_base.pt").is_file()


def test_a_damaged_cache_entry_is_not_cached_and_is_downloaded_again(
    cache: Path, online: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The download records each file's size and sha256; flipped bytes (same size) are noticed on
    load, the entry is reported not cached, and the next call downloads it again."""
    fake = FakeHfSnapshot()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    target = hub.resolve_model_dir("large")
    record = json.loads((target / hub.FILES_RECORD).read_text())
    assert record["model.pt"]["sha256"] == hashlib.sha256((target / "model.pt").read_bytes()).hexdigest()
    data = bytearray((target / "model.pt").read_bytes())
    data[-20:-10] = bytes(10)  # 10 bytes flipped in place: same size, new mtime
    (target / "model.pt").write_bytes(bytes(data))
    assert "changed since it was downloaded" in hub.entry_problem(target, hub.MODELS["large"])
    assert not {s.spec.name: s for s in hub.list_models()}["large"].cached
    with pytest.raises(ModelNotFoundError, match=r"damaged .*changed since it was downloaded.*downloading is disabled"):
        hub.resolve_model_dir("large", download=False)
    assert hub.resolve_model_dir("large") == target and len(fake.downloads) == 2
    assert hub.entry_problem(target, hub.MODELS["large"]) is None


def test_a_download_whose_sha256_differs_from_the_published_one_is_refused(
    cache: Path, online: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(huggingface_hub, "snapshot_download", FakeHfSnapshot())
    monkeypatch.setattr(hub, "_published_sha256", lambda *a: {"model.pt": "0" * 64})
    with pytest.raises(ModelNotFoundError, match="arrived damaged"):
        hub.download_model("large")
    assert not (cache / "hf" / "emotion2vec" / "emotion2vec_plus_large").exists()
