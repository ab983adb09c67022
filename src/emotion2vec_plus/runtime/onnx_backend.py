"""ONNX export of the full model and an onnxruntime runner (``backend="onnx"``).

The graph is the whole model, unlike FunASR's export (encoder only, no padding mask):

* inputs: ``waveforms`` (B, N) float32, 16 kHz, zero-padded; ``lengths`` (B,) int64 samples;
* outputs: ``frames`` (B, T, D) frame features, ``frame_lengths`` (B,) int64 valid frames,
  ``embedding`` (B, D) the mean of the valid frames, and ``logits`` (B, C) of the model's
  classifier head (absent for embedding-only models);
* batch and length axes are dynamic; padded batches give each clip what it gets alone.

The forward pass exported here is written without data-dependent Python branches (the PyTorch
forward skips masking work when nothing is padded, which a trace would freeze) but calls the
same modules, so weights and numerics are those of :mod:`emotion2vec_plus.models.emotion2vec` and
:mod:`emotion2vec_plus.models.compact`. Every export is checked against PyTorch on a batch of another
size and other lengths than the traced one before it is used.

onnx and onnxruntime are optional (``pip install "emotion2vec-plus[onnx]"``) and imported
only here, only when needed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..models.compact import CompactEmotionModel
from ..defaults import ONNX_OPSET
from ..errors import ModelError
from ..models.emotion2vec import Emotion2vecModel, EncoderOutput
from ..numerics import FLOAT32, Tolerance, drift
from ..fileio import sha256_file

OPSET = ONNX_OPSET
#: Bump when the exported graph changes, so cached exports are rebuilt.
EXPORT_VERSION = 4
INPUT_NAMES = ["waveforms", "lengths"]
OUTPUT_NAMES = ["frames", "frame_lengths", "embedding", "logits"]
#: How far the exported float32 graph may drift from PyTorch (see :mod:`emotion2vec_plus.numerics`).
VERIFY_TOLERANCE: Tolerance = FLOAT32


def require_onnxruntime():
    """Import onnxruntime, or explain how to install it."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError as exc:
        raise ModelError("backend='onnx' and export-onnx need the onnx and onnxruntime packages: "
                         "pip install 'emotion2vec-plus[onnx]'") from exc
    return onnxruntime


# --------------------------------------------------------------------------- exported forward

def _masked_mean(frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    valid = (torch.arange(frames.shape[1])[None, :] < lengths[:, None]).to(frames.dtype)
    return (frames * valid[..., None]).sum(1) / lengths.clamp_min(1)[:, None].to(frames.dtype)


class ExportGraph(nn.Module):
    """(waveforms, lengths) -> (frames, frame_lengths, embedding[, logits]) for export."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not isinstance(model, (Emotion2vecModel, CompactEmotionModel)):
            raise TypeError(f"cannot export {type(model).__name__}")
        self.model = model

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor):
        out = self.model.traceable_forward(waveforms, lengths)  # the model's own forward, export-friendly
        frames, frame_lengths = out.frames, out.lengths
        embedding = _masked_mean(frames, frame_lengths)
        head = self.model.head
        if head is None:
            return frames, frame_lengths, embedding
        return frames, frame_lengths, embedding, head(embedding)


def output_names(model: nn.Module) -> list[str]:
    return OUTPUT_NAMES if model.head is not None else OUTPUT_NAMES[:3]


# --------------------------------------------------------------------------- export

def _example_batch(sizes: Sequence[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    width = max(sizes)
    wavs = torch.zeros(len(sizes), width)
    for row, size in enumerate(sizes):
        t = torch.arange(size) / 16000
        wavs[row, :size] = 0.1 * torch.randn(size, generator=generator) + 0.3 * torch.sin(2 * math.pi * (150 + 40 * row) * t)
    return wavs, torch.tensor(sizes, dtype=torch.long)


def _export_fp32(model: nn.Module, path: Path, opset: int) -> None:
    graph = ExportGraph(model).eval()
    # Traced on a padded batch of two: the traced path is the masked one, valid for any batch.
    wavs, lengths = _example_batch([20_123, 13_457], seed=0)
    names = output_names(model)
    axes = {"waveforms": {0: "batch", 1: "samples"}, "lengths": {0: "batch"},
            "frames": {0: "batch", 1: "time"}, "frame_lengths": {0: "batch"}, "embedding": {0: "batch"},
            "logits": {0: "batch"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings about the input checks frozen by the trace
        torch.onnx.export(graph, (wavs, lengths), str(path), dynamo=False, opset_version=opset,
                          input_names=INPUT_NAMES, output_names=names,
                          dynamic_axes={k: v for k, v in axes.items() if k in INPUT_NAMES + names})


def verify_graph(model: nn.Module, path: str | os.PathLike, tolerance: Tolerance | None = None) -> dict[str, float]:
    """Run the graph on a padded batch of three (another size and lengths than the traced batch)
    and compare each clip with PyTorch on that clip alone; raise ModelError when an output drifts
    beyond float32 rounding (:mod:`emotion2vec_plus.numerics`: relative to that output's own
    magnitude, so the check holds on every CPU's kernels and still refuses a wrong graph).
    Returns the worst |difference| per output."""
    tolerance = tolerance or VERIFY_TOLERANCE
    session = _session(path, num_threads=None)
    wavs, lengths = _example_batch([9_871, 31_337, 17_000], seed=1)
    got = dict(zip(output_names(model), session.run(None, {"waveforms": wavs.numpy(), "lengths": lengths.numpy()})))
    worst = {name: 0.0 for name in got}
    graph = ExportGraph(model).eval()
    with torch.inference_mode():
        for row, size in enumerate(lengths.tolist()):
            ref = graph(wavs[row : row + 1, :size], lengths[row : row + 1])
            out = model(wavs[row : row + 1, :size], lengths[row : row + 1])
            ref = (out.frames, out.lengths) + tuple(ref[2:])
            for name, value in zip(got, ref):
                value = value[0].numpy()
                mine = got[name][row]
                if name == "frames":
                    mine = mine[: value.shape[0]]
                    if int(got["frame_lengths"][row]) != value.shape[0]:
                        raise ModelError(f"{path}: exported graph gives {int(got['frame_lengths'][row])} frames, "
                                         f"PyTorch {value.shape[0]}")
                if not np.array_equal(np.isfinite(value), np.isfinite(mine)):
                    raise ModelError(f"{path}: exported graph's {name} differs from PyTorch in non-finite entries")
                measured = drift(mine, value)
                worst[name] = max(worst[name], measured.max)
                if not measured.within(tolerance):
                    raise ModelError(f"{path}: exported graph's {name} differs from PyTorch beyond float32 rounding: "
                                     f"{measured} (allowed rms {tolerance.rms:g}, max {tolerance.max:g})")
    return worst


def quantize_graph_int8(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """onnxruntime dynamic int8 quantisation (weights per channel) of the transformer blocks'
    MatMuls with constant weights, the same layers as PyTorch int8 mode: not the MLP's second
    projection, the front end, the feature projection or the head."""
    require_onnxruntime()
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False)
    blocks = [node.name for node in graph.graph.node
              if node.op_type in ("MatMul", "Gemm") and re.search(r"blocks\.\d+/", node.name)
              and not re.search(r"/mlp/(mlp\.2|fc2)/", node.name)]
    if not blocks:
        raise ModelError(f"{source}: no transformer MatMul nodes found to quantise")
    quiet = logging.getLogger()  # onnxruntime.quantization logs advice on the root logger
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, nodes_to_quantize=blocks,
                             per_channel=True, extra_options={"MatMulConstBOnly": True})
    finally:
        quiet.setLevel(level)


def export_onnx(model: nn.Module, path: str | os.PathLike, *, int8: bool = False, opset: int = OPSET,
                verify: bool = True, metadata: dict[str, Any] | None = None) -> Path:
    """Export ``model`` (float32, CPU) to ``path`` (written atomically) plus a JSON sidecar
    ``path.with_suffix('.json')``: labels, dims, opset, inputs/outputs, sha256 of the graph.

    The float32 graph is checked against PyTorch (:func:`verify_graph`) before it is kept; with
    ``int8`` that checked graph is then quantised.
    """
    require_onnxruntime()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as tmp:
        fp32 = Path(tmp) / "model.onnx"
        _export_fp32(model, fp32, opset)
        check = verify_graph(model, fp32) if verify else None
        final = fp32
        if int8:
            final = Path(tmp) / "model.int8.onnx"
            quantize_graph_int8(fp32, final)
        os.replace(final, path)
    info = {
        "format": "emotion2vec-plus/onnx", "export_version": EXPORT_VERSION, "opset": opset,
        "compute_type": "int8" if int8 else "float32",
        "inputs": {"waveforms": ["batch", "samples", "float32, 16 kHz, zero-padded"], "lengths": ["batch", "int64 samples"]},
        "outputs": output_names(model), "embed_dim": int(model.embed_dim), "hop_samples": int(model.hop_samples),
        "sample_rate": 16000, "num_classes": int(model.head(torch.zeros(1, model.embed_dim)).shape[-1]) if model.head is not None else 0,
        "max_abs_diff_vs_torch": check, "torch_version": torch.__version__, "sha256": sha256_file(path),
        "pooling": getattr(model, "pooling", "frames"),
        **(metadata or {}),
    }
    if info["pooling"] == "speech":
        info["pooling_note"] = ("this model averages only its speech frames: the graph's embedding and logits "
                                "average every frame; for the model's own numbers average the frames output over "
                                "emotion2vec_plus.vad.speech_pooling_mask and apply the head (the package's onnx "
                                "backend does)")
    sidecar_path(path).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def sidecar_path(path: str | os.PathLike) -> Path:
    return Path(path).with_suffix(".json")


# --------------------------------------------------------------------------- cache and runner

def _file_hash(path: Path, memo_path: Path) -> str:
    """sha256 of a model file, remembered by (size, mtime) so a 1 GB model.pt is hashed once."""
    stat = path.stat()
    key = str(path.resolve())
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        memo = {}
    entry = memo.get(key)
    if entry and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
        return entry["sha256"]
    digest = sha256_file(path)
    memo[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    try:
        tmp = memo_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo, indent=1), encoding="utf-8")
        os.replace(tmp, memo_path)
    except OSError:
        pass
    return digest


def cache_key(model: nn.Module, source_files: Sequence[str | os.PathLike], cache_root: Path) -> str:
    """Hash of the model files, the architecture config, the opset and the export code version."""
    cache_root.mkdir(parents=True, exist_ok=True)
    config = getattr(model, "config", None) or getattr(getattr(model, "spec", None), "layers", None)
    material = {
        "files": [_file_hash(Path(f), cache_root / "file_hashes.json") for f in source_files],
        "config": repr(config), "opset": OPSET, "export_version": EXPORT_VERSION, "torch": torch.__version__,
    }
    adapter = getattr(model, "adapter_digest", None)  # the compact model's projection, re-mapped by an adapter
    if adapter:
        material["adapter"] = adapter
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def onnx_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    from ..models.hub import default_cache_dir

    return Path(cache_dir).expanduser() / "onnx" if cache_dir is not None else default_cache_dir() / "onnx"


def cached_export(model: nn.Module, *, model_name: str, source_files: Sequence[str | os.PathLike], int8: bool,
                  cache_dir: str | os.PathLike | None = None) -> Path:
    """The exported graph for this model, made once and reused: ``<cache>/onnx/<name>-<key>[-int8].onnx``."""
    root = onnx_cache_dir(cache_dir)
    key = cache_key(model, source_files, root)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(model_name)).name or "model")
    path = root / f"{safe}-{key[:16]}{'-int8' if int8 else ''}.onnx"
    if path.is_file() and sidecar_path(path).is_file():
        return path
    metadata = {"model": str(model_name), "cache_key": key}
    if not int8:
        return export_onnx(model, path, metadata=metadata)
    # int8: quantise the (cached, verified) float32 graph instead of exporting again.
    fp32 = cached_export(model, model_name=model_name, source_files=source_files, int8=False, cache_dir=cache_dir)
    with tempfile.TemporaryDirectory(dir=root, prefix=".quantize-") as tmp:
        quantized = Path(tmp) / "model.int8.onnx"
        quantize_graph_int8(fp32, quantized)
        os.replace(quantized, path)
    info = json.loads(sidecar_path(fp32).read_text(encoding="utf-8"))
    info.update(compute_type="int8", sha256=sha256_file(path), max_abs_diff_vs_torch=None)
    sidecar_path(path).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _session(path: str | os.PathLike, num_threads: int | None):
    ort = require_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(num_threads) if num_threads else torch.get_num_threads()
    options.inter_op_num_threads = 1
    # onnxruntime's worker threads otherwise spin after every run, taking the cores from whatever runs
    # next in the process: a PyTorch model's 2 s clip took 0.129 s instead of 0.051 s right after an
    # onnx run (compact model, 2 threads, AVX2 EPYC).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxRunner:
    """Runs an exported graph with onnxruntime; ``runner(wavs, num_samples) -> EncoderOutput``."""

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None) -> None:
        self.path = Path(path)
        self.session = _session(path, num_threads)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, wavs: torch.Tensor | np.ndarray, num_samples: torch.Tensor | np.ndarray) -> dict[str, np.ndarray]:
        """All graph outputs by name."""
        feeds = {"waveforms": np.ascontiguousarray(torch.as_tensor(wavs).cpu().numpy(), dtype=np.float32),
                 "lengths": np.ascontiguousarray(torch.as_tensor(num_samples).cpu().numpy(), dtype=np.int64)}
        return dict(zip(self.output_names, self.session.run(None, feeds)))

    def __call__(self, wavs: torch.Tensor, num_samples: torch.Tensor) -> EncoderOutput:
        out = self.run(wavs, num_samples)
        return EncoderOutput(frames=torch.from_numpy(out["frames"]), lengths=torch.from_numpy(out["frame_lengths"]))


def load_onnx_runner(model: nn.Module, *, model_name: str, source_files: Sequence[str | os.PathLike], int8: bool,
                     cache_dir: str | os.PathLike | None = None, num_threads: int | None = None) -> OnnxRunner:
    require_onnxruntime()
    path = cached_export(model, model_name=model_name, source_files=source_files, int8=int8, cache_dir=cache_dir)
    return OnnxRunner(path, num_threads=num_threads)
