"""Loading FunASR-format checkpoint directories strictly."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml

from checkpoints import (Phase, fairseq_checkpoint, make_config, randomize_, released_config, released_names,
                         write_checkpoint_dir)
from emotion2vec_plus.models.checkpoint import InertObject, load_checkpoint, map_checkpoint_names, read_checkpoint_object
from emotion2vec_plus.models.config import Emotion2vecConfig
from emotion2vec_plus.errors import CheckpointError
from emotion2vec_plus.models.emotion2vec import Emotion2vecModel

SMALL = dict(embed_dim=64, num_heads=4, depth=1, prenet_depth=1, conv_pos_groups=4)


def state(num_classes: int = 9) -> tuple[dict, dict]:
    config = make_config(**SMALL)
    model = Emotion2vecModel(Emotion2vecConfig.from_model_conf(config["model_conf"]), num_classes=num_classes)
    randomize_(model, 0)
    return config, dict(model.state_dict())


@pytest.mark.parametrize("nest", [None, "model", "state_dict"])
def test_loads_flat_and_nested_state_dicts(tmp_path, nest):
    config, sd = state()
    sd["modality_encoders.AUDIO.decoder.blocks.0.0.weight"] = torch.zeros(3)  # pre-training only: ignored
    write_checkpoint_dir(tmp_path, config, sd, nest=nest)
    model, labels = load_checkpoint(tmp_path)
    assert [label.english for label in labels][:2] == ["angry", "disgusted"] and labels[-1].english == "unknown"
    assert torch.equal(model.proj.weight, sd["proj.weight"])
    assert not model.training


def test_missing_tensor_is_named(tmp_path):
    config, sd = state()
    del sd["blocks.0.attn.qkv.weight"]
    write_checkpoint_dir(tmp_path, config, sd)
    with pytest.raises(CheckpointError, match=r"missing tensor.*blocks\.0\.attn\.qkv\.weight"):
        load_checkpoint(tmp_path)


def test_misshaped_tensor_is_named_with_both_shapes(tmp_path):
    config, sd = state()
    sd["blocks.0.mlp.fc1.weight"] = torch.zeros(10, 64)
    write_checkpoint_dir(tmp_path, config, sd)
    with pytest.raises(CheckpointError, match=r"blocks\.0\.mlp\.fc1\.weight \(checkpoint \(10, 64\), model \(256, 64\)\)"):
        load_checkpoint(tmp_path)


def test_head_without_tokens_uses_the_nine_default_labels(tmp_path):
    config, sd = state()
    write_checkpoint_dir(tmp_path, config, sd, tokens=None)
    _, labels = load_checkpoint(tmp_path)
    assert len(labels) == 9 and labels[3].chinese == "开心"


def test_embedding_only_checkpoint_has_no_head(tmp_path):
    config, sd = state(num_classes=0)
    write_checkpoint_dir(tmp_path, config, sd, tokens=None)
    model, labels = load_checkpoint(tmp_path)
    assert model.proj is None and labels == []


def test_tokens_without_head_is_an_error(tmp_path):
    config, sd = state(num_classes=0)
    write_checkpoint_dir(tmp_path, config, sd)
    with pytest.raises(CheckpointError, match="proj.weight"):
        load_checkpoint(tmp_path)


class Payload:
    def __reduce__(self):
        return (print, ("code ran while loading",))


def test_pickled_code_in_model_pt_is_not_run(tmp_path, capsys):
    config, sd = state()
    write_checkpoint_dir(tmp_path, config, sd)
    torch.save({"model": sd, "extra": Payload()}, tmp_path / "model.pt")
    model, _ = load_checkpoint(tmp_path)
    assert torch.equal(model.proj.weight, sd["proj.weight"])
    assert "code ran" not in capsys.readouterr().out
    assert isinstance(read_checkpoint_object(tmp_path / "model.pt")["extra"], InertObject)


@pytest.mark.parametrize("content, message", [
    (b"this is not a checkpoint", "neither a zip nor a pickle"),
    (b"<!DOCTYPE html><html><body>Sign in</body></html>", "HTML"),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 1945790254\n", "Git LFS pointer"),
    (b"", "empty"),
])
def test_a_file_that_is_not_a_checkpoint_says_what_it_is(tmp_path, content, message):
    config, sd = state()
    write_checkpoint_dir(tmp_path, config, sd)
    (tmp_path / "model.pt").write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as error:
        load_checkpoint(tmp_path)
    assert "model.pt" in str(error.value) and "weights_only=False" not in str(error.value)


def test_truncated_checkpoint_is_reported_as_damaged(tmp_path):
    config, sd = state()
    write_checkpoint_dir(tmp_path, config, sd)
    data = (tmp_path / "model.pt").read_bytes()
    (tmp_path / "model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="damaged or truncated"):
        load_checkpoint(tmp_path)


def _zip_bomb(path, inflated_mib: int) -> None:
    """A zip laid out as torch.save writes one, but with ``archive/data.pkl`` deflated from
    ``inflated_mib`` MiB of zeros (1 MiB blocks, each deflated alone so they can be repeated)."""
    import struct
    import zlib

    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    stream = block * inflated_mib + zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    crc = 0
    for _ in range(inflated_mib):
        crc = zlib.crc32(bytes(1 << 20), crc)
    entries = [(b"archive/version", b"3\n", b"3\n", 0, zlib.crc32(b"3\n")),
               (b"archive/data.pkl", stream, None, 8, crc)]
    local, central = b"", b""
    for name, data, raw, method, checksum in entries:
        size = len(raw) if raw is not None else inflated_mib << 20
        header = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, checksum, len(data), size,
                             len(name), 0)
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, checksum, len(data),
                               size, len(name), 0, 0, 0, 0, 0, len(local)) + name
        local += header + name + data
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 2, 2, len(central), len(local), 0)
    path.write_bytes(local + central + end)


_REFUSED_IN_A_CAPPED_PROCESS = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))
from emotion2vec_plus.errors import CheckpointError
from emotion2vec_plus.models.checkpoint import load_checkpoint
try:
    load_checkpoint(sys.argv[1])
except CheckpointError as exc:
    print(exc)
# VmHWM: this program's own peak (ru_maxrss also counts the forking test process's size, which a
# Linux child inherits at fork).
print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) // 1024)
"""


@pytest.mark.parametrize("kind, problem", [
    ("bytearray", "zero-filled buffer of 2,000,000,000 bytes"),
    ("tensor", "torch.Tensor(...)"),
    ("zip bomb", "would inflate to more than 64 MB"),
])
def test_a_model_pt_that_would_allocate_gigabytes_is_refused_before_it_does(tmp_path, kind, problem):
    """A 30-byte pickle of ``bytearray(2_000_000_000)`` and a 2 MB zip bomb used to allocate > 2 GB
    before being refused (here, in a process capped at 1.5 GB, they ended as 'damaged')."""
    config, sd = state()
    write_checkpoint_dir(tmp_path, config, sd)
    weights = tmp_path / "model.pt"
    if kind == "bytearray":
        weights.write_bytes(b"\x80\x02cbuiltins\nbytearray\nJ\x00\x945w\x85R.")  # 30 bytes
    elif kind == "tensor":
        weights.write_bytes(b"\x80\x02ctorch\nTensor\nJ\x00\x945w\x85R.")
    else:
        _zip_bomb(weights, 2048)
        assert weights.stat().st_size < 3 << 20
    done = subprocess.run([sys.executable, "-c", _REFUSED_IN_A_CAPPED_PROCESS, str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    message, peak_mb = done.stdout.strip().rsplit("\n", 1)
    assert message.startswith(f"{weights}: refused: ") and problem in message, message
    assert int(peak_mb) < 1024, f"peak RSS {peak_mb} MB"


def test_a_bytes_holding_checkpoint_still_loads(tmp_path):
    """Byte strings pickled from the file's own bytes (protocol 2: bytearray of _codecs.encode) stay readable."""
    path = tmp_path / "model.pt"
    torch.save({"w": torch.ones(3), "note": b"\x00\xffabc", "buffer": bytearray(b"xyz")}, path, pickle_protocol=2)
    loaded = read_checkpoint_object(path)
    assert loaded["note"] == b"\x00\xffabc" and loaded["buffer"] == bytearray(b"xyz")
    assert torch.equal(loaded["w"], torch.ones(3))


# ----------------------------------------------------------------- the released layout

def released_dir(tmp_path, *, num_classes: int = 9, tokens=True, checkpoint=None, trap=None):
    """A small model written as the hubs publish emotion2vec+: prefixed names under ``model``,
    config.yaml with scope_map; or, with ``checkpoint="fairseq"``, inside a training checkpoint."""
    config, sd = state(num_classes)
    directory = write_checkpoint_dir(tmp_path, released_config(config), released_names(sd),
                                     tokens=None if not tokens else __import__("checkpoints").TOKENS, nest="model")
    if checkpoint == "fairseq":
        torch.save(fairseq_checkpoint(released_names(sd), trap=trap), directory / "model.pt")
    return directory, sd


def test_released_layout_loads_through_scope_map(tmp_path):
    directory, sd = released_dir(tmp_path)
    text = (directory / "config.yaml").read_text()
    assert "scope_map:\n- d2v_model.\n- none" in text and "image:" in text and "tokenizer: CharTokenizer" in text
    names = list(torch.load(directory / "model.pt")["model"])
    assert names[0].startswith("d2v_model.") and "proj.weight" in names
    model, labels = load_checkpoint(directory)
    assert len(labels) == 9
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, sd[name]), name


def test_fairseq_training_checkpoint_loads_without_running_its_code(tmp_path):
    trap = tmp_path / "pwned"
    directory, sd = released_dir(tmp_path / "m", checkpoint="fairseq", trap=trap)
    with pytest.raises(Exception):  # what FunASR's and torch's safe loader do with this file
        torch.load(directory / "model.pt", weights_only=True)
    model, _ = load_checkpoint(directory)
    assert not trap.exists()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, sd[name]), name
    raw = read_checkpoint_object(directory / "model.pt")
    assert not trap.exists()
    assert isinstance(raw["args"], InertObject) and raw["args"].global_name == "argparse.Namespace"
    assert isinstance(raw["cfg"]["model"]["phase"], InertObject)
    assert raw["cfg"]["model"]["phase"].global_name == f"{Phase.__module__}.Phase"
    assert [type(p).global_name for p in raw["extra_state"]["payload"]] == ["io.open", f"{os.system.__module__}.system"]
    assert raw["optimizer_history"][0]["num_updates"] == 100000


def test_embedding_only_released_checkpoint_with_decoder_projection_has_no_head(tmp_path):
    """A decoder's own ``proj`` (pre-training only) must not be taken for the emotion head."""
    config, sd = state(num_classes=0)
    sd = released_names(sd)
    sd["d2v_model.modality_encoders.AUDIO.decoder.proj.weight"] = torch.zeros(9, 64)
    sd["d2v_model.modality_encoders.AUDIO.decoder.proj.bias"] = torch.zeros(9)
    write_checkpoint_dir(tmp_path, make_config(**SMALL), sd, tokens=None, nest="model")
    model, labels = load_checkpoint(tmp_path)
    assert labels == [] and model.proj is None


@pytest.mark.parametrize("prefix", ["d2v_model.", "model.", "module.", "encoder.wrapped."])
@pytest.mark.parametrize("nest", [None, "model"])
def test_a_common_wrapper_prefix_is_recognised_without_scope_map(tmp_path, prefix, nest):
    config, sd = state()
    write_checkpoint_dir(tmp_path, config, {prefix + k: v for k, v in sd.items()}, nest=nest)
    model, _ = load_checkpoint(tmp_path)
    assert torch.equal(model.proj.weight, sd["proj.weight"])
    assert torch.equal(model.blocks[0].attn.qkv.weight, sd["blocks.0.attn.qkv.weight"])


def test_scope_map_follows_funasr_semantics():
    """Pairs are (checkpoint prefix, model prefix); the last pair that matches wins; module. is implicit."""
    t = {name: torch.tensor([float(i)]) for i, name in enumerate(
        ["student.blocks.0.w", "blocks.0.w", "d2v.proj.w", "module.norm.w", "norm.w"])}
    mapping = map_checkpoint_names(t, ["blocks.0.w", "proj.w", "norm.w", "absent.w"],
                                   [("student.blocks.", "blocks."), ("d2v.", "")])
    assert {k: v.item() for k, v in mapping.tensors.items()} == {"blocks.0.w": 0.0, "proj.w": 2.0, "norm.w": 3.0}
    assert sorted(mapping.unused) == ["blocks.0.w", "norm.w"]


def test_missing_tensor_in_released_layout_is_named_without_the_prefix(tmp_path):
    directory, _ = released_dir(tmp_path)
    checkpoint = torch.load(directory / "model.pt")
    del checkpoint["model"]["d2v_model.blocks.0.attn.qkv.weight"]
    torch.save(checkpoint, directory / "model.pt")
    with pytest.raises(CheckpointError, match=r"1 missing tensor\(s\): blocks\.0\.attn\.qkv\.weight$"):
        load_checkpoint(directory)


def test_unmapped_prefix_error_shows_the_checkpoint_names(tmp_path):
    config, sd = state()
    sd = {("a." if i % 2 else "b.") + k: v for i, (k, v) in enumerate(sd.items())}  # no single wrapper
    write_checkpoint_dir(tmp_path, config, sd)
    with pytest.raises(CheckpointError, match=r"missing tensor.*other names look like [ab]\."):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("key, value", [("depth", 100000), ("embed_dim", 10**9), ("num_heads", 0)])
def test_absurd_architecture_values_are_refused_before_building(tmp_path, key, value):
    config, sd = state()
    config["model_conf"][key] = value
    write_checkpoint_dir(tmp_path, config, sd)
    with pytest.raises(CheckpointError, match=f"{key} {value} is outside"):
        load_checkpoint(tmp_path)


BILLION_LAUGHS = "".join(
    [f"l0: &l0 [{', '.join(['lol'] * 10)}]\n"]
    + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 9)]
) + "model: *l8\n"  # 10^9 values in nine lines


def test_a_config_yaml_alias_bomb_is_refused_while_parsing(tmp_path):
    """``model: *l8`` used to hang the loader (+60 MB/s while str() expanded it): it is refused at
    once, in a process capped at 1.5 GB of address space."""
    config, sd = state()
    write_checkpoint_dir(tmp_path, config, sd)
    path = tmp_path / "config.yaml"
    path.write_text(BILLION_LAUGHS + "\n".join(line for line in path.read_text().splitlines()
                                                if not line.startswith("model:")))
    script = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))
        from emotion2vec_plus.errors import CheckpointError
        from emotion2vec_plus.models.checkpoint import load_checkpoint
        try:
            load_checkpoint({str(tmp_path)!r})
        except CheckpointError as exc:
            print(exc)
            sys.exit(3)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr[-2000:]
    message = done.stdout.strip()
    assert message.startswith(f"{path}: cannot read the model configuration")
    assert "aliases" in message and "100,000 values" in message and len(message) < 400


@pytest.mark.parametrize("text, problem", [
    ("a: &a [1, *a]\n", "refers to itself"),
    ("model_conf: " + "[" * 50_000 + "]" * 50_000 + "\n", "nested too deeply"),
    ("x: &x {depth: 2}\nmodel_conf: {modalities: {audio: *x}}\n", None),  # a small alias is fine
])
def test_config_yaml_self_reference_and_deep_nesting_are_typed_errors(tmp_path, text, problem):
    from emotion2vec_plus.models.config import read_config_file

    path = tmp_path / "config.yaml"
    path.write_text(text)
    if problem is None:
        assert read_config_file(path).model_conf["modalities"]["audio"] == {"depth": 2}
        return
    with pytest.raises(CheckpointError, match=problem):
        read_config_file(path)


def test_loading_holds_no_second_copy_of_the_weights(tmp_path):
    """Peak memory while loading a training checkpoint (weights + 2x Adam moments) grows by at most
    one copy of the weights: tensors are memory-mapped and adopted (their pages are read once, by
    the NaN check, and stay as the page cache the model runs from), never copied, and the
    optimiser state is never read (reading it would add twice the weights)."""
    size = dict(embed_dim=768, num_heads=12, depth=2, prenet_depth=1)
    config = make_config(**size)
    model = Emotion2vecModel(Emotion2vecConfig.from_model_conf(config["model_conf"]), num_classes=9)
    sd = released_names(dict(model.state_dict()))
    weight_bytes = sum(t.numel() * t.element_size() for t in sd.values())
    write_checkpoint_dir(tmp_path, released_config(config), sd, nest="model")
    torch.save(fairseq_checkpoint(sd), tmp_path / "model.pt")
    file_bytes = (tmp_path / "model.pt").stat().st_size
    assert file_bytes > 2.9 * weight_bytes
    script = textwrap.dedent(f"""
        import re, torch
        from emotion2vec_plus.models.checkpoint import load_checkpoint
        def peak():
            return int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) * 1024
        before = peak()
        model, _ = load_checkpoint({str(tmp_path)!r})
        print(before, peak())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    before, after = map(int, out.stdout.split())
    grown = after - before
    print(f"weights {weight_bytes / 1e6:.0f} MB, file {file_bytes / 1e6:.0f} MB, peak RSS grew {grown / 1e6:.0f} MB")
    assert grown < 1.5 * weight_bytes


def test_emotion2vec_base_layout_loads_without_head(tmp_path):
    """As emotion2vec_base is published: weights in emotion2vec_base.pt named by configuration.json,
    no tokens.txt, some float64 tensors, pre-training decoder tensors beside the encoder's."""
    import json

    config, sd = state(num_classes=0)
    sd = {k: (v.double() if k.endswith("extra_tokens") else v) for k, v in sd.items()}
    sd["modality_encoders.AUDIO.decoder.blocks.0.0.weight"] = torch.zeros(4, 4)
    sd["modality_encoders.AUDIO.decoder.proj.weight"] = torch.zeros(64, 64)
    write_checkpoint_dir(tmp_path, config, {}, tokens=None, nest=None)
    (tmp_path / "model.pt").unlink()
    torch.save({"model": sd}, tmp_path / "emotion2vec_base.pt")
    (tmp_path / "configuration.json").write_text(json.dumps(
        {"framework": "pytorch", "file_path_metas": {"init_param": "emotion2vec_base.pt", "config": "config.yaml"}}))
    model, labels = load_checkpoint(tmp_path)
    assert labels == [] and model.proj is None
    extra = model.modality_encoders["AUDIO"].extra_tokens
    assert extra.dtype == torch.float32 and torch.equal(extra, sd["modality_encoders.AUDIO.extra_tokens"].float())


def test_nan_weights_are_refused_naming_the_tensors(tmp_path):
    """A damaged download whose tensors hold NaN must not load and print 'angry nan%'."""
    config, sd = state()
    sd["blocks.0.mlp.fc1.weight"][3, 5] = float("nan")
    sd["proj.bias"][0] = float("inf")
    write_checkpoint_dir(tmp_path, config, sd)
    with pytest.raises(CheckpointError, match=r"2 tensor\(s\) hold NaN or infinite values \(blocks\.0\.mlp\.fc1\.weight, proj\.bias\)"):
        load_checkpoint(tmp_path)
