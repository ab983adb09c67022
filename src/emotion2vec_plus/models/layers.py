"""Linear layers for fast CPU inference, and one function that runs any of them with the
epilogues a transformer block needs (GELU after the product, a residual added to it).

* :class:`PackedLinear` — bfloat16, the weight re-laid-out once for oneDNN's matrix-multiply
  kernels (``torch.ops.mkldnn._reorder_linear_weight``) instead of on every call, with GELU or
  a residual add fused into the product's epilogue (one pass over the output instead of two).
* :class:`Int8Linear` — int8 weights (symmetric, one scale per output channel) and int8
  activations quantised on the fly (FBGEMM's dynamic quantised linear: one scale per call,
  7-bit range so that AVX2's 16-bit pair sums cannot saturate), float32 in and out.
* :func:`linear` — ``layer(x)`` for any of these or a plain ``nn.Linear``, then GELU or
  ``+ residual``, fused where the layer can fuse them.

The conversions (:func:`pack_linear`, :func:`int8_linear`) are what ``runtime.compute`` applies
for ``compute_type="bfloat16"`` / ``"int8"``; models only call :func:`linear`.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn


def mkldnn_linear_available() -> bool:
    """Whether oneDNN's pre-packed bf16 linear runs here: the ops exist in this PyTorch build (x86
    builds with MKLDNN have them) *and* oneDNN will run bf16 with the ISA it may use (with
    ``ONEDNN_MAX_CPU_ISA=AVX2`` packing a bf16 weight raises). Probed once on a small layer."""
    global _mkldnn_linear_ok
    if _mkldnn_linear_ok is None:
        _mkldnn_linear_ok = _probe_mkldnn_linear()
    return _mkldnn_linear_ok


_mkldnn_linear_ok: bool | None = None


def _probe_mkldnn_linear() -> bool:
    ops = torch.ops.mkldnn
    if not (torch.backends.mkldnn.is_available() and hasattr(ops, "_linear_pointwise")
            and hasattr(ops, "_reorder_linear_weight")):
        return False
    try:
        with torch.inference_mode():
            weight = torch.linspace(-1, 1, 16 * 32).reshape(16, 32).to(torch.bfloat16)
            x = torch.linspace(-2, 2, 4 * 32).reshape(4, 32).to(torch.bfloat16)
            packed = ops._reorder_linear_weight(weight, None)
            y = ops._linear_pointwise(x, packed, None, "none", [], "")
            expected = F.linear(x.float(), weight.float())
            return bool(torch.allclose(y.float(), expected, rtol=2e-2, atol=5e-2))
    except RuntimeError:
        return False


class PackedLinear(nn.Module):
    """A bfloat16 ``nn.Linear`` whose weight is stored in oneDNN's blocked layout.

    Measured on an AMD Zen 4 core (AVX512-BF16), products of the model's shapes: 5-10 % faster
    than ``F.linear`` on the same bf16 weight (which oneDNN re-lays-out on every call), and a
    fused GELU or residual add saves another 5-10 % of the product's time.
    """

    def __init__(self, layer: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = layer.in_features, layer.out_features
        weight = layer.weight.detach().to(torch.bfloat16).contiguous()
        self.packed_weight = torch.ops.mkldnn._reorder_linear_weight(weight, None)
        self.bias = None if layer.bias is None else layer.bias.detach().to(torch.bfloat16)

    def forward(self, x: torch.Tensor, gelu: bool = False, residual: torch.Tensor | None = None) -> torch.Tensor:
        x = x.to(torch.bfloat16)
        if residual is not None:
            return torch.ops.mkldnn._linear_pointwise.binary(x, residual.to(torch.bfloat16), self.packed_weight,
                                                             self.bias, "add")
        return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, self.bias,
                                                  "gelu" if gelu else "none", [], "none" if gelu else "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bfloat16 (oneDNN pre-packed)"


def pack_linear(layer: nn.Linear) -> nn.Module:
    """``layer`` as a :class:`PackedLinear` where this build has oneDNN, else as a bf16 ``nn.Linear``."""
    if mkldnn_linear_available():
        return PackedLinear(layer)
    return layer.to(torch.bfloat16)


class Int8Linear(nn.Module):
    """``nn.Linear`` with int8 weights and dynamically quantised int8 activations (FBGEMM).

    The same kernel ``torch.ao.quantization.quantize_dynamic`` installs, called directly (no
    deprecated API). FBGEMM picks AVX512-VNNI, AVX-512 or AVX2 code at run time
    (``FBGEMM_ENABLE_INSTRUCTIONS`` caps it); the 7-bit activation range (``reduce_range``) keeps
    AVX2's ``vpmaddubsw`` pair sums below the int16 limit everywhere, so every CPU computes the
    same numbers. Inputs may be strided (the extractor's overlapping windows are read in place).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        weight = weight.detach().float()
        self.out_features, self.in_features = weight.shape
        scales = (weight.abs().amax(1).clamp_min(1e-12) / 127.5).double()
        zero_points = torch.zeros(self.out_features, dtype=torch.long)
        with warnings.catch_warnings():  # FBGEMM's packing takes a qint8 tensor, a type PyTorch deprecates
            warnings.filterwarnings("ignore", message=".*quantiz.*", category=UserWarning)
            quantized = torch.quantize_per_channel(weight, scales, zero_points, 0, torch.qint8)
            self.packed = torch.ops.quantized.linear_prepack(quantized, None if bias is None else bias.detach().float())

    @classmethod
    def from_linear(cls, layer: nn.Linear) -> "Int8Linear":
        return cls(layer.weight, layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features) if x.dim() != 2 else x
        y = torch.ops.quantized.linear_dynamic(rows.float(), self.packed, True)
        return y if x.dim() == 2 else y.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 (FBGEMM, dynamic)"


def linear(layer: nn.Module, x: torch.Tensor, gelu: bool = False, residual: torch.Tensor | None = None) -> torch.Tensor:
    """``layer(x)``, then GELU (exact, erf) or ``+ residual`` — fused into the product for a
    :class:`PackedLinear`, separate ops otherwise."""
    if isinstance(layer, PackedLinear):
        return layer(x, gelu=gelu, residual=residual)
    y = layer(x)
    if gelu:
        y = F.gelu(y)
    if residual is not None:
        y = y + residual
    return y


class SplitLinear(nn.Module):
    """One linear layer as several, over row blocks of its weight (q, k and v of a fused
    projection): each product's output is the size of one block, not of the whole."""

    def __init__(self, parts: list[nn.Module]) -> None:
        super().__init__()
        self.parts = nn.ModuleList(parts)

    @classmethod
    def from_linear(cls, layer: nn.Linear, blocks: int, convert) -> "SplitLinear":
        """``layer``'s rows in ``blocks`` equal blocks, each made a layer by ``convert(nn.Linear)``."""
        size = layer.out_features // blocks
        parts = []
        for index in range(blocks):
            part = nn.Linear(layer.in_features, size, bias=layer.bias is not None, device="meta")
            rows = slice(index * size, (index + 1) * size)
            part.weight = nn.Parameter(layer.weight.detach()[rows], requires_grad=False)
            if layer.bias is not None:
                part.bias = nn.Parameter(layer.bias.detach()[rows], requires_grad=False)
            parts.append(convert(part))
        return cls(parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([linear(part, x) for part in self.parts], dim=-1)
