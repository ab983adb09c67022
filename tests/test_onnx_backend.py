"""compute_type (float32 / int8 / bfloat16) and backend (torch / onnx): the exported graph equals
PyTorch, padded batches equal single clips, shapes are dynamic, exports are cached, quantised modes
drift within bounds, the export-onnx command writes a loadable graph, bad options are refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from emotion2vec_plus import Emotion2VecPlus, ModelError
from emotion2vec_plus.cli import main

pytest.importorskip("onnxruntime")
from emotion2vec_plus.runtime import onnx_backend  # noqa: E402
from emotion2vec_plus.runtime.onnx_backend import OnnxRunner, export_onnx  # noqa: E402

SAMPLES = sorted((Path(__file__).resolve().parents[1] / "src" / "emotion2vec_plus" / "samples").glob("*.wav"))


def _clips(sizes, seed=0):
    rng = np.random.default_rng(seed)
    clips = []
    for size in sizes:
        t = np.arange(size) / 16000
        clips.append((0.1 * rng.standard_normal(size) + 0.3 * np.sin(2 * np.pi * 170 * t)).astype(np.float32))
    return clips


def _padded(clips):
    wavs = torch.zeros(len(clips), max(len(c) for c in clips))
    for row, clip in enumerate(clips):
        wavs[row, : len(clip)] = torch.from_numpy(clip)
    return wavs, torch.tensor([len(c) for c in clips])


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("onnx_cache")


@pytest.fixture(scope="module")
def small_pair(small_checkpoint, cache):
    reference = Emotion2VecPlus(small_checkpoint)
    onnx = Emotion2VecPlus(small_checkpoint, backend="onnx", cache_dir=cache)
    return reference, onnx


@pytest.fixture(scope="module")
def compact_modes(cache):
    return {
        ("torch", "float32"): Emotion2VecPlus(),
        ("onnx", "float32"): Emotion2VecPlus(backend="onnx", cache_dir=cache),
        ("onnx", "int8"): Emotion2VecPlus(backend="onnx", compute_type="int8", cache_dir=cache),
        ("torch", "int8"): Emotion2VecPlus(compute_type="int8"),
        ("torch", "bfloat16"): Emotion2VecPlus(compute_type="bfloat16"),
    }


# ----------------------------------------------------------------- options

@pytest.mark.parametrize("kwargs, words", [
    ({"compute_type": "float16"}, ["compute_type", "float32", "int8", "bfloat16"]),
    ({"backend": "tensorrt"}, ["backend", "torch", "onnx"]),
    ({"backend": "onnx", "compute_type": "bfloat16"}, ["bfloat16", "onnx", "torch"]),
])
def test_bad_options_are_refused_naming_the_choices(small_checkpoint, kwargs, words):
    with pytest.raises(ValueError) as info:
        Emotion2VecPlus(small_checkpoint, **kwargs)
    assert all(word in str(info.value) for word in words)


def test_cli_rejects_an_unknown_compute_type(small_checkpoint, capsys):
    with pytest.raises(SystemExit):
        main(["predict", str(SAMPLES[0]), "--model", str(small_checkpoint), "--compute-type", "fp16"])
    assert "--compute-type" in capsys.readouterr().err


def test_without_onnxruntime_the_package_imports_and_onnx_is_a_clear_error(small_checkpoint):
    code = (
        "import sys; sys.modules['onnxruntime'] = None; sys.modules['onnx'] = None\n"
        "from emotion2vec_plus import Emotion2VecPlus, ModelError\n"
        f"m = Emotion2VecPlus({str(small_checkpoint)!r}, compute_type='int8')\n"
        f"assert m.predict({str(SAMPLES[0])!r}).emotion\n"
        "try:\n"
        f"    Emotion2VecPlus({str(small_checkpoint)!r}, backend='onnx')\n"
        "except ModelError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pip install 'emotion2vec-plus[onnx]'" in out.stdout


# ----------------------------------------------------------------- small random-weight checkpoint

def test_onnx_float32_equals_torch_float32(small_pair):
    reference, onnx = small_pair
    clips = _clips([12_345, 40_000, 7_777], seed=1)
    ours = onnx.predict_batch([(c, 16000) for c in clips], granularity="frame", extract_embedding=True)
    theirs = reference.predict_batch([(c, 16000) for c in clips], granularity="frame", extract_embedding=True)
    for a, b in zip(ours, theirs):
        assert a.embedding.shape == b.embedding.shape
        assert np.abs(a.embedding - b.embedding).max() < 1e-4
        assert max(abs(a.scores[k] - b.scores[k]) for k in a.scores) < 1e-4
        assert np.abs(np.array([f.scores for f in a.frames]) - np.array([f.scores for f in b.frames])).max() < 1e-4
        assert a.emotion == b.emotion


def test_graph_outputs_padded_batch_equals_one_by_one_on_new_shapes(small_pair):
    reference, onnx = small_pair
    runner = onnx._runner
    assert isinstance(runner, OnnxRunner)
    assert runner.output_names == ["frames", "frame_lengths", "embedding", "logits"]
    # traced with a batch of 2 (20123 and 13457 samples); run batches of 4 and 1 of other lengths
    clips = _clips([5_000, 33_333, 16_000, 8_123], seed=2)
    batch = runner.run(*_padded(clips))
    assert batch["frames"].shape[:2] == (4, batch["frame_lengths"].max())
    for row, clip in enumerate(clips):
        alone = runner.run(*_padded([clip]))
        n = int(alone["frame_lengths"][0])
        assert int(batch["frame_lengths"][row]) == n
        assert np.abs(batch["frames"][row, :n] - alone["frames"][0]).max() < 1e-4
        for name in ("embedding", "logits"):
            assert np.abs(batch[name][row] - alone[name][0]).max() < 1e-4
        with torch.inference_mode():
            out = reference.model(torch.from_numpy(clip)[None])
            logits = reference.model.head(out.frames.mean(1))
        assert np.abs(alone["frames"][0] - out.frames[0].numpy()).max() < 1e-4
        assert np.abs(alone["embedding"][0] - out.frames[0].mean(0).numpy()).max() < 1e-4
        assert np.abs(alone["logits"][0] - logits[0].numpy()).max() < 1e-4


def test_second_load_reuses_the_cached_export(small_checkpoint, small_pair, cache, monkeypatch):
    _, onnx = small_pair
    path = onnx._runner.path
    assert path.parent == cache / "onnx" and path.with_suffix(".json").is_file()
    before = path.stat().st_mtime_ns

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_backend, "export_onnx", no_export)
    again = Emotion2VecPlus(small_checkpoint, backend="onnx", cache_dir=cache)
    assert again._runner.path == path and path.stat().st_mtime_ns == before


def test_int8_and_bfloat16_drift_is_bounded(small_checkpoint, small_pair, cache):
    reference, _ = small_pair
    clips = [(c, 16000) for c in _clips([16_000, 24_000], seed=3)]
    want = reference.predict_batch(clips, extract_embedding=True)
    scale = max(np.abs(r.embedding).max() for r in want)
    for kwargs in ({"compute_type": "int8"}, {"compute_type": "bfloat16"},
                   {"compute_type": "int8", "backend": "onnx", "cache_dir": cache}):
        got = Emotion2VecPlus(small_checkpoint, **kwargs).predict_batch(clips, extract_embedding=True)
        for a, b in zip(got, want):
            assert np.abs(a.embedding - b.embedding).max() < 0.2 * scale, kwargs
            assert max(abs(a.scores[k] - b.scores[k]) for k in a.scores) < 0.2, kwargs


def test_custom_head_and_long_input_windows_work_with_onnx(small_checkpoint, cache):
    from emotion2vec_plus.heads import train_head

    rng = np.random.default_rng(0)
    head = train_head(rng.standard_normal((20, 256)).astype(np.float32), ["a", "b"] * 10,
                      embedding_model=str(small_checkpoint), epochs=5)
    m = Emotion2VecPlus(small_checkpoint, backend="onnx", cache_dir=cache, head=head, window_s=1.0)
    result = m.predict((_clips([40_000], seed=4)[0], 16000), granularity="frame")
    assert set(result.scores) == {"a", "b"} and len(result.segments) == 3 and result.frames


# ----------------------------------------------------------------- the bundled compact model

def test_compact_onnx_equals_torch_and_all_modes_agree_on_the_samples(compact_modes):
    results = {mode: m.predict_batch(SAMPLES, extract_embedding=True) for mode, m in compact_modes.items()}
    reference = results[("torch", "float32")]
    for a, b in zip(results[("onnx", "float32")], reference):
        assert np.abs(a.embedding - b.embedding).max() < 1e-4
        assert max(abs(a.scores[k] - b.scores[k]) for k in a.scores) < 1e-4
    for mode, got in results.items():
        agree = np.mean([a.emotion == b.emotion for a, b in zip(got, reference)])
        assert agree == 1.0, mode
        drift = max(max(abs(a.scores[k] - b.scores[k]) for k in a.scores) for a, b in zip(got, reference))
        assert drift < 0.1, (mode, drift)


def test_compact_graph_frames_and_padded_batch(compact_modes):
    m = compact_modes[("onnx", "float32")]
    reference = compact_modes[("torch", "float32")].model
    clips = [sf.read(path, dtype="float32")[0] for path in SAMPLES[:3]]
    batch = m._runner.run(*_padded(clips))
    for row, clip in enumerate(clips):
        with torch.inference_mode():
            out = reference(torch.from_numpy(clip)[None])
        n = int(out.lengths[0])
        assert int(batch["frame_lengths"][row]) == n
        frames = out.frames[0].numpy()
        # standardised features reach ~150: float32 rounding is relative (PyTorch's own padded
        # batch differs from one clip by the same order)
        assert np.abs(batch["frames"][row, :n] - frames).max() < 1e-4 + 5e-5 * np.abs(frames).max()
        assert np.abs(batch["embedding"][row] - frames.mean(0)).max() < 1e-4
        with torch.inference_mode():
            logits = reference.head(torch.from_numpy(frames.mean(0))[None])[0].numpy()
        finite = np.isfinite(logits)
        assert np.array_equal(finite, np.isfinite(batch["logits"][row]))
        assert np.abs(batch["logits"][row][finite] - logits[finite]).max() < 1e-4


# ----------------------------------------------------------------- export-onnx command

@pytest.mark.parametrize("int8", [False, True])
def test_export_onnx_command_writes_a_loadable_graph(small_checkpoint, tmp_path, capsys, int8):
    import onnxruntime

    out = tmp_path / "model.onnx"
    code = main(["export-onnx", "--model", str(small_checkpoint), "--out", str(out)] + (["--int8"] if int8 else []))
    assert code == 0, capsys.readouterr().err
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["opset"] == 17 and info["embed_dim"] == 256 and info["num_classes"] == 9
    assert info["compute_type"] == ("int8" if int8 else "float32") and len(info["sha256"]) == 64
    assert info["labels"][:2] == ["angry", "disgusted"]
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    wavs, lengths = _padded(_clips([9_000, 4_000]))
    frames, frame_lengths, embedding, logits = session.run(None, {"waveforms": wavs.numpy(), "lengths": lengths.numpy()})
    assert frames.shape[0] == 2 and embedding.shape == (2, 256) and logits.shape == (2, 9)
    assert frame_lengths.tolist() == [27, 12]  # FunASR's conv length formula
    if int8:  # the blocks' linear layers are quantised, not the MLP's second projection or the head
        import onnx

        quantized = [n.name for n in onnx.load(str(out)).graph.node if n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul")]
        assert any("/attn/qkv/" in n for n in quantized) and any("/mlp/fc1/" in n for n in quantized)
        assert not any("/mlp/fc2/" in n or "/proj/" in n.replace("/attn/proj/", "") for n in quantized)


@pytest.mark.parametrize("which", ["emotion2vec", "compact"])
def test_export_check_refuses_a_graph_with_one_weight_off(small_pair, compact_modes, tmp_path, which):
    """The check's tolerance (float32 rounding relative to each output's magnitude) passes the
    right graph on any CPU's kernels, and still refuses one whose single bias entry of the first
    block's attention output is off by 0.01."""
    import re

    import onnx
    from onnx import numpy_helper

    model = (small_pair[0] if which == "emotion2vec" else compact_modes[("torch", "float32")]).model
    good = tmp_path / "good.onnx"
    onnx_backend._export_fp32(model, good, onnx_backend.OPSET)
    worst = onnx_backend.verify_graph(model, good)
    assert set(worst) >= {"frames", "embedding"} and all(np.isfinite(v) for v in worst.values())

    graph = onnx.load(str(good))
    (bias,) = [t for t in graph.graph.initializer if re.search(r"(^|\.)blocks\.0\.attn\.(out|proj)\.bias$", t.name)][:1]
    values = numpy_helper.to_array(bias).copy()
    values[0] += 0.01
    bias.CopyFrom(numpy_helper.from_array(values, bias.name))
    bad = tmp_path / "bad.onnx"
    onnx.save(graph, str(bad))
    with pytest.raises(ModelError, match="differs from PyTorch beyond float32 rounding"):
        onnx_backend.verify_graph(model, bad)


def test_a_graph_that_fails_the_check_is_not_kept(small_pair, tmp_path, monkeypatch):
    reference, _ = small_pair
    monkeypatch.setattr(onnx_backend, "VERIFY_TOLERANCE", onnx_backend.Tolerance(rms=0.0, max=0.0, atol=0.0))
    with pytest.raises(ModelError, match="differs from PyTorch"):
        export_onnx(reference.model, tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()


def test_encode_batch_and_classify_batch_use_the_selected_backend(small_pair):
    reference, onnx = small_pair
    wavs, lengths = _padded(_clips([16_000, 9_000], seed=5))
    relative = lengths / lengths.max()
    assert torch.allclose(onnx.encode_batch(wavs, relative), reference.encode_batch(wavs, relative), atol=1e-4)
    probs, _, index, labels = onnx.classify_batch(wavs, relative)
    want, _, want_index, _ = reference.classify_batch(wavs, relative)
    assert torch.allclose(probs, want, atol=1e-4) and torch.equal(index, want_index) and len(labels) == 9
