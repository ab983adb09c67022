"""How the encoder runs: ``compute_type`` (float32, int8, bfloat16) and ``backend`` (torch, onnx).

The inference code never calls the network directly; it calls a *runner*
(``runner(wavs, num_samples) -> EncoderOutput``) made here, so windows, batching, frame scores,
results and custom heads are the same code for every mode. Only the encoder changes: the
classifier head always runs in float32 PyTorch on the embeddings the runner returns.

* ``torch`` + ``float32``: the model as loaded (the reference).
* ``torch`` + ``int8``: int8 weights (one scale per output channel) and int8 activations quantised
  on the fly (one scale per product) for the transformer blocks' ``nn.Linear`` layers
  (:class:`~emotion2vec_plus.models.layers.Int8Linear`: FBGEMM's kernel, AVX512-VNNI, AVX-512
  or AVX2 code chosen at run time; emotion2vec's conv extractor stays float32, see
  :data:`INT8_CONV_EXTRACTOR`). The MLP's second projection stays float32: its inputs (after
  GELU) have outliers that per-tensor activation quantisation handles badly (on 25 clips with
  the compact model, quantising it too raised the largest score change from 0.07 to 0.22).
  The classifier head and emotion2vec's feature projection stay float32 as well.
* ``torch`` + ``bfloat16``: the encoder under ``torch.autocast(dtype=torch.bfloat16)`` (products in
  bf16, norms and the residual stream in float32), its linear weights stored in bf16 once at load
  (:func:`cast_linear_weights`). A model whose ``BFLOAT16_NATIVE`` is set instead runs in bf16
  throughout, its linear layers pre-packed for oneDNN with GELU and residual adds fused
  (:func:`pack_bfloat16`; plain bf16 ``nn.Linear`` where the packed op is missing or capped away);
  emotion2vec has it off (see ``Emotion2vecModel.BFLOAT16_NATIVE`` for the measurement).
* ``onnx`` + ``float32`` / ``int8``: the full model exported to ONNX once (cached) and run with
  onnxruntime; int8 is onnxruntime's dynamic quantisation of the transformer blocks' MatMuls.
  See :mod:`emotion2vec_plus.runtime.onnx_backend`.
"""

from __future__ import annotations

import contextvars
import ctypes
import ctypes.util
import os
import platform
import re
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar

import torch
from torch import nn

from ..defaults import BACKENDS, COMPUTE_TYPE_CHOICES, COMPUTE_TYPES
from ..models.emotion2vec import EncoderOutput
from ..models.layers import Int8Linear, SplitLinear, pack_linear

#: What a user may ask for: a compute type, or ``"auto"`` (:func:`choose_compute_type`).

#: Linear layers int8 mode leaves in float32: the MLP's second projection (Whisper ``mlp.2``,
#: emotion2vec ``mlp.fc2``).
INT8_SKIP = re.compile(r"(^|\.)mlp\.(2|fc2)$")

Runner = Callable[[torch.Tensor, torch.Tensor], EncoderOutput]


@dataclass(frozen=True)
class CpuFeatures:
    """What the CPU offers the kernels that matter here, as the kernels will see it."""

    name: str
    flags: frozenset[str]
    aten_capability: str
    """PyTorch's vector level (``AVX512``, ``AVX2``, ``DEFAULT``; lowered by ``ATEN_CPU_CAPABILITY``)."""
    onednn_max_isa: str
    """``ONEDNN_MAX_CPU_ISA`` if set (a cap on the ISA oneDNN, PyTorch's bf16 matmul library, uses)."""

    def _onednn_allows(self, level: str) -> bool:
        cap = self.onednn_max_isa.strip().upper()
        if cap in ("", "ALL", "DEFAULT") or cap not in _ONEDNN_LEVELS:
            return True
        return _ONEDNN_LEVELS.index(cap) >= _ONEDNN_LEVELS.index(level)

    @property
    def amx_bf16(self) -> bool:
        """bf16 matrix units that oneDNN will use (Intel Sapphire Rapids and later)."""
        return {"amx_tile", "amx_bf16"} <= self.flags and self._onednn_allows("AVX512_CORE_AMX")

    @property
    def avx512_bf16(self) -> bool:
        """bf16 dot-product instructions that oneDNN and PyTorch's AVX-512 kernels will use (AMD Zen 4,
        Intel Cooper Lake and later)."""
        return ("avx512_bf16" in self.flags and self.aten_capability == "AVX512"
                and self._onednn_allows("AVX512_CORE_BF16"))

    @property
    def avx2(self) -> bool:
        return "avx2" in self.flags and self.aten_capability != "DEFAULT"

    @property
    def vnni(self) -> bool:
        return bool({"avx512_vnni", "avx_vnni"} & self.flags)

    def summary(self) -> str:
        """e.g. ``AMD EPYC: AVX-512, AVX512-BF16, VNNI, no AMX``."""
        parts = [("AVX-512" if self.aten_capability == "AVX512" else "AVX2" if self.avx2 else "no AVX2")]
        parts += [name for name, present in (("AVX512-BF16", self.avx512_bf16), ("VNNI", self.vnni)) if present]
        if self.onednn_max_isa:
            parts.append(f"oneDNN capped at {self.onednn_max_isa}")
        parts.append("AMX-BF16" if self.amx_bf16 else "no AMX")
        return f"{self.name}: {', '.join(parts)}"


#: oneDNN's ISA levels in order (the values ``ONEDNN_MAX_CPU_ISA`` takes).
_ONEDNN_LEVELS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
                  "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16")
_cpu_features: CpuFeatures | None = None


def cpu_features() -> CpuFeatures:
    """This machine's :class:`CpuFeatures` (read once from ``/proc/cpuinfo``; empty flags elsewhere)."""
    global _cpu_features
    if _cpu_features is None:
        name, flags = platform.processor() or platform.machine(), frozenset()
        try:
            for line in open("/proc/cpuinfo", encoding="utf-8", errors="replace"):
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    name = value.strip()
                if key.strip() in ("flags", "Features"):
                    flags = frozenset(value.split())
                    break
        except OSError:
            pass
        try:
            capability = torch.backends.cpu.get_cpu_capability()
        except (AttributeError, RuntimeError):
            capability = "DEFAULT"
        _cpu_features = CpuFeatures(name, flags, capability, os.environ.get("ONEDNN_MAX_CPU_ISA", ""))
    return _cpu_features


def choose_compute_type(backend: str, device: torch.device, features: CpuFeatures | None = None, *,
                        compact: bool = False) -> tuple[str, str]:
    """``compute_type="auto"``: the fastest mode measured for this hardware, and why.

    Measured (``bench/drift.py``, 2 threads; README "Compute types and ONNX"): where the CPU has
    bf16 instructions that the kernels use — AMX units (Intel Sapphire Rapids) or AVX512-BF16
    (AMD Zen 4) — bfloat16 is fastest (compact model 1.8x float32 on both; plus_large size 2.0x
    and 2.1x, where int8 gives 1.4x and 1.6x). Without them bf16 is emulated and far slower than
    float32 (6.6x slower on an AVX2-only AMD EPYC; 10x with the kernels forced to AVX2 here),
    while dynamic int8 is faster than float32 on every x86 CPU measured (compact model 1.6-1.7x;
    plus_large size on an AVX2-only AMD EPYC 1.3x on a 2 s clip, 1.1-1.3x over a directory) and
    agreed with float32 on >= 99.7 % of argmax decisions (an earlier bundled model; not v3 or v3.1, see
    ``compact`` below). A CPU without AVX2 gets float32. ONNX has no
    bf16 mode: it gets int8 wherever AVX2 is there.

    ``compact`` (the bundled model) keeps float32 where the rule would pick int8: on 800 real clips
    of the four corpora (``bench/drift.py --per-corpus 200``, AVX2-only AMD EPYC) the v3.1 model's
    int8 agreed with float32 on 97.1 % of argmax decisions (RAVDESS 98.5, CASIA 96.0, nEMO 96.0,
    EMOVO 98.0; largest score change 0.12) and onnx int8 on 93.6 %, below the 99 % a fast mode
    must keep, for only 1.18x the speed (v3: 97.5 % and 94.4 %, 1.23x). Its bfloat16 keeps 99.25 %
    (RAVDESS 99.5, CASIA 99.5, nEMO 99.0, EMOVO 99.0; largest score change 0.028; 2.25x float32's
    speed, one thread, AMD EPYC with AVX512-BF16), so the bf16 choice above holds for it.
    """
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bfloat16", "CUDA device with bf16 support"
        return "float32", "CUDA device without bf16 support"
    features = features or cpu_features()
    if backend == "torch" and (features.amx_bf16 or features.avx512_bf16):
        units = "AMX units" if features.amx_bf16 else "AVX512-BF16 instructions"
        return "bfloat16", f"{features.summary()}: bf16 on {units} is fastest"
    if features.avx2:
        emulated = "" if backend == "onnx" else "; bf16 would be emulated"
        if compact:
            return "float32", (f"{features.summary()}: float32 for the bundled model (its int8 agreed with float32 "
                               f"on 97.1 % of real clips, below 99 %){emulated}")
        return "int8", f"{features.summary()}: int8 is faster than float32{emulated}"
    return "float32", f"{features.summary()}: no AVX2, float32"


def check_compute_options(compute_type: str, backend: str, device: torch.device) -> None:
    """Refuse unknown or unsupported combinations with a ValueError naming the options
    (``"auto"`` is resolved by :func:`choose_compute_type` before this check)."""
    if compute_type not in COMPUTE_TYPES:
        raise ValueError(f"compute_type must be one of {', '.join(COMPUTE_TYPE_CHOICES)}; got {compute_type!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if backend == "onnx" and compute_type == "bfloat16":
        raise ValueError("compute_type='bfloat16' is only available with backend='torch'; "
                         "backend='onnx' supports compute_type='float32' or 'int8'")
    if backend == "onnx" and device.type != "cpu":
        raise ValueError(f"backend='onnx' runs on the CPU (onnxruntime's CPU provider); got device={str(device)!r}: "
                         "use device='cpu' or backend='torch'")
    if compute_type == "int8" and device.type != "cpu":
        raise ValueError(f"compute_type='int8' (dynamic quantisation) runs on the CPU only; got device={str(device)!r}: "
                         "use device='cpu', or compute_type='float32' or 'bfloat16' on the GPU")


def _module_prefixes(model: nn.Module, targets: Sequence[nn.Module | None]) -> list[str]:
    wanted = [t for t in targets if t is not None]
    return [name for name, module in model.named_modules() if any(module is t for t in wanted)]


def int8_linear_names(model: nn.Module) -> list[str]:
    """Names of the ``nn.Linear`` layers that int8 mode quantises: the encoder's, not the head's or
    the compact model's embedding projection, not the MLP's second projection (:data:`INT8_SKIP`).

    emotion2vec's ``project_features`` linear stays float32 too: the model reads its weight's
    device, which a quantised layer no longer has as a tensor (one 512 x D layer, ~1% of the work).
    """
    skip = _module_prefixes(model, [getattr(model, "head", None), getattr(model, "project", None)])
    names = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or "project_features" in name or INT8_SKIP.search(name):
            continue
        if any(name == prefix or name.startswith(prefix + ".") for prefix in skip):
            continue
        names.append(name)
    return names


def quantize_linear_int8(model: nn.Module) -> nn.Module:
    """Int8 weights and dynamically quantised activations for the encoder's linear layers
    (:func:`int8_linear_names`), in place (CPU): each becomes a
    :class:`~emotion2vec_plus.models.layers.Int8Linear` (FBGEMM's kernel, the one
    ``torch.ao.quantization.quantize_dynamic`` installs, without its deprecated API)."""
    replace_linears(model, int8_linear_names(model), Int8Linear.from_linear)
    if INT8_CONV_EXTRACTOR:
        for module in model.modules():  # emotion2vec's conv feature extractor: int8 window products
            if hasattr(module, "use_int8_products"):
                module.use_int8_products()
    return model


#: Whether int8 mode also quantises emotion2vec's conv feature extractor (layers 2-7). Off: on 120
#: real-speech clips with a random-weight plus_large-size checkpoint it cut int8's CPU time by a
#: third (137.7 -> 94.8 CPU s) but tripled the largest score change against float32 (0.025 ->
#: 0.077; embedding relative RMS 0.043 -> 0.064), the trade the MLP's second projection was
#: refused for (:data:`INT8_SKIP`). Kept for measuring it again on released weights.
INT8_CONV_EXTRACTOR = False


def replace_linears(model: nn.Module, names: Sequence[str], convert: Callable[[nn.Linear], nn.Module]) -> None:
    """Replace each named ``nn.Linear`` of ``model`` by ``convert(layer)``, in place."""
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, convert(getattr(parent, child)))


def bfloat16_linear_names(model: nn.Module) -> list[str]:
    """The encoder's ``nn.Linear`` layers that bf16 mode pre-packs (not the head's or the
    compact model's projection; not emotion2vec's feature projection, whose weight the model
    reads to find its device)."""
    skip = _module_prefixes(model, [getattr(model, "head", None), getattr(model, "project", None)])
    return [name for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and "project_features" not in name
            and not any(name == prefix or name.startswith(prefix + ".") for prefix in skip)]


def pack_bfloat16(model: nn.Module) -> nn.Module:
    """The encoder in bf16 throughout, its linear layers pre-packed for oneDNN
    (:func:`~emotion2vec_plus.models.layers.pack_linear`), in place. A fused q/k/v projection
    (``attn.qkv``) becomes three packed layers, so each output is the size of the input."""
    cast_encoder(model, torch.bfloat16)
    names = bfloat16_linear_names(model)
    replace_linears(model, [n for n in names if n.endswith("attn.qkv")],
                    lambda layer: SplitLinear.from_linear(layer, 3, pack_linear))
    replace_linears(model, [n for n in names if not n.endswith("attn.qkv")], pack_linear)
    return model


class TorchRunner:
    """Runs the PyTorch model (float32, int8-quantised, bf16 throughout, or under bf16 autocast).

    ``method`` names the model's method to call (default: ``forward``); another method with the same
    signature and output type (e.g. the compact model's ``projection_input_frames``) runs in the
    same mode as the model was prepared for."""

    def __init__(self, model: nn.Module, compute_type: str, device: torch.device, method: str = "forward") -> None:
        self.model = model
        self.compute_type = compute_type
        self.device = device
        self.autocast = compute_type == "bfloat16" and not bfloat16_native(model)
        self.call = getattr(model, method) if method != "forward" else model

    def __call__(self, wavs: torch.Tensor, num_samples: torch.Tensor) -> EncoderOutput:
        with torch.inference_mode():
            if self.autocast:
                with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16):
                    out = self.call(wavs, num_samples)
            else:
                out = self.call(wavs, num_samples)
            if out.frames.dtype != torch.float32:
                out = EncoderOutput(frames=out.frames.float(), lengths=out.lengths)
            return out


def bfloat16_native(model: nn.Module) -> bool:
    """Whether ``model`` runs in bfloat16 throughout once its encoder is cast (its ``BFLOAT16_NATIVE``;
    only a post-LN model, whose residual stream stays O(1), may set it: Whisper's pre-LN stream
    reaches ~400, where bf16 would drop the blocks' updates); otherwise bf16 means autocast."""
    return bool(getattr(model, "BFLOAT16_NATIVE", False))


def make_runner(
    model: nn.Module,
    *,
    compute_type: str,
    backend: str,
    device: torch.device,
    model_name: str,
    source_files: Sequence[os.PathLike | str],
    cache_dir: str | os.PathLike | None = None,
    num_threads: int | None = None,
) -> Runner:
    """The runner for one mode. int8 on torch quantises ``model`` in place; onnx exports (or
    reuses a cached export of) ``model`` and keeps ``model`` itself for the head. The torch
    backend also applies :func:`tune_c_allocator` (once per process)."""
    check_compute_options(compute_type, backend, device)
    if backend == "onnx":
        from .onnx_backend import load_onnx_runner

        return load_onnx_runner(model, model_name=model_name, source_files=source_files,
                                int8=compute_type == "int8", cache_dir=cache_dir, num_threads=num_threads)
    tune_c_allocator()
    if compute_type == "int8":
        quantize_linear_int8(model)
    if compute_type == "bfloat16":
        if bfloat16_native(model):
            pack_bfloat16(model)
        else:
            cast_linear_weights(model, torch.bfloat16)
    return TorchRunner(model, compute_type, device)


def cast_linear_weights(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Store the encoder's ``nn.Linear`` weights in ``dtype`` once, in place (not the head's).

    Autocast would otherwise cast every float32 weight again on every call: for a 1024-d,
    12-block model that is ~0.6 GB read and 0.3 GB written per forward pass, about as long as the
    bf16 matrix products themselves on a 2 s clip. Norms, convolutions and the head keep float32
    parameters (convolutions still compute in bf16 under autocast).
    """
    skip = _module_prefixes(model, [getattr(model, "head", None), getattr(model, "project", None)])
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        if any(name == prefix or name.startswith(prefix + ".") for prefix in skip):
            continue
        module.to(dtype)
    return model


def cast_encoder(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Every parameter and buffer of the encoder in ``dtype``, in place; the head stays float32."""
    head = getattr(model, "head", None)
    model.to(dtype)
    if head is not None:
        head.float()
    return model


#: glibc ``mallopt`` parameters.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: Largest ``M_MMAP_THRESHOLD`` glibc accepts on 64-bit systems.
MMAP_THRESHOLD_BYTES = 32 << 20
TRIM_THRESHOLD_BYTES = 512 << 20
_allocator_tuned: bool | None = None


def tune_c_allocator() -> bool:
    """Let glibc reuse freed memory for the encoder's temporaries instead of returning it to the OS.

    By default glibc serves blocks above a (dynamic, at most 32 MiB) threshold with fresh
    ``mmap`` pages and unmaps them on free, so every forward pass page-faults and zero-fills
    each temporary again: ~1.3 million page faults and ~20 % of the time of a 4 x 20 s
    float32 batch here. With the threshold fixed at 32 MiB and up to 512 MiB of freed memory kept
    for reuse, those temporaries (the model keeps them below 32 MiB, see ``model.py``) come from
    memory the process already has. Process-wide and once; returns whether it was applied
    (glibc only; ``EMOTION2VEC_TUNE_MALLOC=0`` turns it off).
    """
    global _allocator_tuned
    if _allocator_tuned is not None:
        return _allocator_tuned
    _allocator_tuned = False
    if os.environ.get("EMOTION2VEC_TUNE_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _allocator_tuned = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    if _allocator_tuned:
        _start_trimmer()
    return _allocator_tuned


#: The most freed memory the process keeps: once its resident size has grown this much since
#: the last trim, :func:`release_freed_memory` runs (checked every :data:`TRIM_CHECK_S`).
TRIM_GROWTH_BYTES = 128 << 20
TRIM_CHECK_S = 1.0
_trimmer: threading.Thread | None = None


def _resident_bytes() -> int:
    with open("/proc/self/statm", "rb") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _start_trimmer() -> None:
    """A daemon thread that gives freed memory back whenever the process has grown by
    :data:`TRIM_GROWTH_BYTES` since the last time, and once each time it turns idle.

    Freed blocks (below the 32 MiB mmap threshold) stay in glibc's heaps, and small objects that
    live on (a long input's per-piece results, Python objects) keep those heaps from shrinking: a
    long recording's RSS grew by 2-8 MB per minute of audio, none of it data. ``malloc_trim``
    returns the free pages wherever they are in the heap. Trimming only on growth keeps the
    steady state (the same forward pass again and again) free of page faults. Growth alone misses
    memory freed right after a trim that ran while it was still in use (that trim's RSS becomes
    the new baseline): seen as 640 MB kept for good in a test. So the thread also trims when the
    process goes from busy to idle (under :data:`IDLE_CPU_SHARE` of one core over a check),
    which a busy steady state never does.
    """
    global _trimmer
    if _trimmer is not None or _malloc_trim() is None or not os.path.exists("/proc/self/statm"):
        return

    def watch(baseline: int, cpu: float) -> None:
        pause = threading.Event()  # never set: a sleep without importing time into this module
        was_idle = True
        while not pause.wait(TRIM_CHECK_S):
            now = process_cpu_seconds()
            idle, cpu = now - cpu < IDLE_CPU_SHARE * TRIM_CHECK_S, now
            if _resident_bytes() - baseline > TRIM_GROWTH_BYTES or (idle and not was_idle):
                release_freed_memory()
                baseline = _resident_bytes()
            was_idle = idle

    # The baseline is read here, not when the thread first runs: a busy caller holding the GIL could
    # otherwise have grown by gigabytes before the thread reads it, and that growth would never count.
    _trimmer = threading.Thread(target=watch, args=(_resident_bytes(), process_cpu_seconds()),
                                name="emotion2vec-trim", daemon=True)
    _trimmer.start()


#: A check interval in which the process used less CPU than this share of one core counts as idle.
IDLE_CPU_SHARE = 0.05


def process_cpu_seconds() -> float:
    """CPU time of the whole process (every thread), in seconds."""
    times = os.times()
    return times.user + times.system


def release_freed_memory() -> bool:
    """Give the memory the C allocator holds free back to the system (glibc ``malloc_trim(0)``).

    :func:`tune_c_allocator` has glibc keep freed memory for the next forward pass; after a long
    input (or a burst of them in the REST service) that can be hundreds of MB nobody uses. A few
    milliseconds; returns whether anything was released (``False`` off glibc).
    """
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False


_malloc_trim_function: object = None  # glibc's malloc_trim once looked up; False where there is none


def _malloc_trim() -> Callable[[int], int] | None:
    global _malloc_trim_function
    if _malloc_trim_function is None:
        _malloc_trim_function = False
        if sys.platform.startswith("linux"):
            try:
                function = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
            except (OSError, AttributeError):  # not glibc
                function = None
            if function is not None:
                function.argtypes, function.restype = [ctypes.c_size_t], ctypes.c_int
                _malloc_trim_function = function
    return _malloc_trim_function or None


_MODEL_THREAD_NAME = "emotion2vec-model"
_model_thread: ThreadPoolExecutor | None = None
_model_thread_lock = threading.Lock()
T = TypeVar("T")


def model_thread() -> ThreadPoolExecutor:
    """The process's one thread for model work started by the interfaces (REST service, WebUI).

    PyTorch's OpenMP runtime keeps a team of worker threads for every thread that has run a
    parallel operator. Once two teams exist on a machine with no spare core, libgomp stops
    spinning between operators and wakes its workers through the kernel each time, ~60 us per
    operator: a 2 s clip took 104 ms instead of 78 ms (bfloat16, 2 threads) on a second thread
    after the main thread had loaded the model. Loading and running every model on this one
    thread keeps a single team.
    """
    global _model_thread
    with _model_thread_lock:
        if _model_thread is None:
            _model_thread = ThreadPoolExecutor(1, thread_name_prefix=_MODEL_THREAD_NAME)
        return _model_thread


def on_model_thread(function: Callable[..., T], *args, **kwargs) -> T:
    """Run ``function(*args, **kwargs)`` on :func:`model_thread` and wait for it (re-entrant).

    The caller's context variables go along (the WebUI's progress tracking lives in them).
    """
    if threading.current_thread().name.startswith(_MODEL_THREAD_NAME):
        return function(*args, **kwargs)
    context = contextvars.copy_context()
    return model_thread().submit(context.run, function, *args, **kwargs).result()
