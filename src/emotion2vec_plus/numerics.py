"""How far two correct floating-point computations of the same network may drift apart.

The same model run by different kernels (PyTorch on AVX-512 or AVX2, onnxruntime's MLAS, a
padded batch instead of one clip, a matrix product instead of a convolution) rounds
differently, and deep networks amplify the differences where activations are large (Whisper's
hidden states reach ~400 in a few channels). An absolute tolerance that holds on one CPU fails
on another. The error model here is relative to each output's own magnitude, per dtype:

* ``rms``: the root-mean-square difference over the root-mean-square of the reference —
  rounding noise averages out, a wrong computation (one perturbed weight) does not;
* ``max``: the largest difference over the largest reference magnitude — catches a local blow-up
  that the mean would hide;
* ``atol``: a floor for outputs that are (almost) all zero.

Measured noise (ONNX float32 graph vs PyTorch float32, PyTorch forced to AVX-512, AVX2 and
no-vector kernels with ``ATEN_CPU_CAPABILITY``): rms ≤ 6.5e-6 and max ≤ 8.3e-5 on the compact
model's frames, ≤ 8e-7 / 1.4e-6 on emotion2vec. The float32 bounds below leave 12-15x margin,
and still refuse a graph with one bias entry off by 0.01 (rms 3.8e-4 to 1.8e-3,
``tests/test_onnx_backend.py``). float64 scales them by the ratio of the two epsilons.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    """Largest relative drift accepted between two correct computations in one dtype."""

    rms: float
    max: float
    atol: float


@dataclass(frozen=True)
class Drift:
    """How far ``actual`` is from ``expected`` (over the finite entries of ``expected``)."""

    rms: float
    """RMS of the difference."""
    max: float
    """Largest |difference|."""
    reference_rms: float
    """RMS of ``expected``."""
    reference_max: float
    """Largest |expected|."""

    @property
    def relative_rms(self) -> float:
        return self.rms / self.reference_rms if self.reference_rms else self.rms

    @property
    def relative_max(self) -> float:
        return self.max / self.reference_max if self.reference_max else self.max

    def within(self, tolerance: Tolerance) -> bool:
        """Whether the drift is rounding under ``tolerance``."""
        return (self.rms <= tolerance.rms * self.reference_rms + tolerance.atol
                and self.max <= tolerance.max * self.reference_max + tolerance.atol)

    def __str__(self) -> str:
        return (f"rms {self.relative_rms:.2e} of the reference rms, max {self.max:.3g} = "
                f"{self.relative_max:.2e} of the largest reference value")


_F32_EPS = float(np.finfo(np.float32).eps)
_F64_EPS = float(np.finfo(np.float64).eps)
FLOAT32 = Tolerance(rms=1e-4, max=1e-3, atol=1e-6)
FLOAT64 = Tolerance(rms=FLOAT32.rms * _F64_EPS / _F32_EPS, max=FLOAT32.max * _F64_EPS / _F32_EPS,
                    atol=FLOAT32.atol * _F64_EPS / _F32_EPS)


def tolerance_for(dtype: object) -> Tolerance:
    """:data:`FLOAT64` for float64 data, else :data:`FLOAT32`."""
    return FLOAT64 if str(dtype).replace("torch.", "") == "float64" else FLOAT32


def drift(actual: object, expected: object) -> Drift:
    """The :class:`Drift` of ``actual`` from ``expected`` (arrays or tensors of one shape)."""
    a = np.asarray(_numpy(actual), dtype=np.float64)
    e = np.asarray(_numpy(expected), dtype=np.float64)
    if a.shape != e.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {e.shape}")
    finite = np.isfinite(e)
    diff = np.abs(a[finite] - e[finite])
    if diff.size == 0:
        return Drift(0.0, 0.0, 0.0, 0.0)
    e = e[finite]
    return Drift(rms=float(np.sqrt(np.mean(diff * diff))), max=float(diff.max()),
                 reference_rms=float(np.sqrt(np.mean(e * e))), reference_max=float(np.abs(e).max()))


def is_close(actual: object, expected: object, tolerance: Tolerance | None = None) -> bool:
    """Whether ``actual`` is within rounding drift of ``expected`` (non-finite entries must match).
    The tolerance defaults to the one of ``expected``'s dtype."""
    a, e = _numpy(actual), _numpy(expected)
    if a.shape != e.shape or not np.array_equal(np.isfinite(a), np.isfinite(e)):
        return False
    return drift(a, e).within(tolerance or tolerance_for(e.dtype))


def assert_close(actual: object, expected: object, tolerance: Tolerance | None = None, what: str = "values") -> Drift:
    """Raise AssertionError (saying the measured drift) unless :func:`is_close`; returns the drift."""
    if not is_close(actual, expected, tolerance):
        a, e = _numpy(actual), _numpy(expected)
        detail = (f"shapes {a.shape} vs {e.shape}" if a.shape != e.shape else
                  "non-finite entries differ" if not np.array_equal(np.isfinite(a), np.isfinite(e)) else
                  f"{drift(a, e)} (allowed {tolerance or tolerance_for(e.dtype)})")
        raise AssertionError(f"{what} differ beyond rounding: {detail}")
    return drift(actual, expected)


def _numpy(x: object) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()  # type: ignore[union-attr]
    return np.asarray(x)
