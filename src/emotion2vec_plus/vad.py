"""Voice activity detection: where the speech is in a long recording.

The network is Silero VAD (v6, 16 kHz; MIT licence; weights taken from the ``silero-vad`` PyPI
package's default model, ``silero_vad.jit``), re-implemented here in plain PyTorch so it runs on a
whole recording at once: the convolutional front end over every 32 ms chunk in one batch, the
recurrent state in one ``nn.LSTM`` call. It gives one speech probability per 512 samples, the same
numbers as the package's own TorchScript model fed chunk by chunk
(``tests/test_vad.py`` compares them). The package itself is never imported: importing it sets
PyTorch's thread count to 1 for the whole process.

:func:`speech_regions` turns the probabilities into speech regions with the usual hysteresis
(enter speech above ``threshold``, leave it after ``min_silence_s`` below ``threshold - 0.15``),
dropping regions shorter than ``min_speech_s`` and padding each by ``pad_s``.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import ModelNotFoundError

SAMPLE_RATE = 16000
CHUNK_SAMPLES = 512  # 32 ms: one probability per chunk
CONTEXT_SAMPLES = 64  # each chunk also sees the 64 samples before it
WEIGHTS_FILE = "silero_vad.jit"


def weights_path() -> Path:
    """``silero_vad.jit``, the default 16 kHz model of the installed ``silero-vad`` package
    (located without importing the package)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError("voice activity detection needs the silero-vad package: pip install 'silero-vad>=6.2'")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / WEIGHTS_FILE
    if not path.is_file():
        raise ModelNotFoundError(f"{path}: Silero VAD weights missing from the silero-vad package; reinstall it")
    return path


#: TorchScript parameter names of the package's model -> this module's names.
_RENAMES = {"stft.forward_basis_buffer": "stft_conv.weight",
            **{f"encoder.{i}.reparam_conv.{kind}": f"conv{i + 1}.{kind}" for i in range(4) for kind in ("weight", "bias")},
            **{f"decoder.rnn.{kind}": f"lstm.{kind}_l0" for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")},
            "decoder.decoder.2.weight": "final_conv.weight", "decoder.decoder.2.bias": "final_conv.bias"}


class SileroVAD(nn.Module):
    """Silero VAD v6 for 16 kHz audio: waveform -> speech probability per 32 ms chunk."""

    def __init__(self) -> None:
        super().__init__()
        self.stft_conv = nn.Conv1d(1, 258, kernel_size=256, stride=128, bias=False)
        self.conv1 = nn.Conv1d(129, 128, 3, padding=1)
        self.conv2 = nn.Conv1d(128, 64, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(64, 64, 3, stride=2, padding=1)
        self.conv4 = nn.Conv1d(64, 128, 3, padding=1)
        self.lstm = nn.LSTM(128, 128, batch_first=True)
        self.final_conv = nn.Conv1d(128, 1, 1)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "SileroVAD":
        """The weights of the package's TorchScript model (its 16 kHz branch); only tensors are taken."""
        scripted = torch.jit.load(str(path or weights_path()), map_location="cpu")
        tensors = {**dict(scripted._model.named_parameters()), **dict(scripted._model.named_buffers())}
        model = cls()
        model.load_state_dict({ours: tensors[theirs].detach().clone() for theirs, ours in _RENAMES.items()}, strict=True)
        return model.eval()

    @torch.inference_mode()
    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        """(N,) float waveform at 16 kHz -> (ceil(N / 512),) speech probabilities, chunk by chunk
        as the reference model sees it (each chunk with the 64 samples before it, the first
        chunk with zeros, the last chunk zero-padded)."""
        samples = samples.float().reshape(-1)
        chunks = max(1, -(-samples.numel() // CHUNK_SAMPLES))
        padded = F.pad(samples, (CONTEXT_SAMPLES, chunks * CHUNK_SAMPLES - samples.numel()))
        windows = padded.unfold(0, CHUNK_SAMPLES + CONTEXT_SAMPLES, CHUNK_SAMPLES)  # (C, 576)
        x = F.pad(windows, (0, 64), mode="reflect")[:, None]  # (C, 1, 640)
        x = self.stft_conv(x)
        x = (x[:, :129] ** 2 + x[:, 129:] ** 2).sqrt()
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
        x = F.relu(self.conv4(x)).squeeze(-1)  # (C, 128): one step per chunk
        states, _ = self.lstm(x[None])  # the state runs on from chunk to chunk
        y = self.final_conv(F.relu(states[0]).T[None])  # (1, 1, C)
        return torch.sigmoid(y)[0, 0]


_model: SileroVAD | None = None
_model_lock = threading.Lock()


def default_vad() -> SileroVAD:
    """The process's Silero VAD, loaded once."""
    global _model
    with _model_lock:
        if _model is None:
            _model = SileroVAD.load()
        return _model


def speech_probabilities(samples: np.ndarray) -> np.ndarray:
    """Speech probability (0-1) of every 32 ms chunk of 16 kHz ``samples``."""
    return default_vad()(torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))).numpy()


@dataclass(frozen=True)
class SpeechRegion:
    """A stretch of speech, in samples at 16 kHz."""

    start: int
    end: int

    @property
    def duration_s(self) -> float:
        return (self.end - self.start) / SAMPLE_RATE


def speech_regions(
    samples: np.ndarray,
    *,
    threshold: float = 0.5,
    min_speech_s: float = 0.25,
    min_silence_s: float = 0.1,
    pad_s: float = 0.03,
    probabilities: np.ndarray | None = None,
) -> list[SpeechRegion]:
    """Speech regions of 16 kHz ``samples`` (sorted, not overlapping, inside the audio).

    Speech starts at a chunk whose probability reaches ``threshold`` and ends once the
    probability has stayed below ``threshold - 0.15`` for ``min_silence_s``; regions shorter than
    ``min_speech_s`` are dropped, the rest padded by ``pad_s`` on each side (neighbours that
    would overlap meet halfway). ``probabilities`` from :func:`speech_probabilities` may be passed
    to avoid running the network again.
    """
    probs = speech_probabilities(samples) if probabilities is None else probabilities
    exit_threshold = threshold - 0.15
    min_silence = int(round(min_silence_s * SAMPLE_RATE))
    raw: list[list[int]] = []
    start: int | None = None
    silence_since: int | None = None
    for index, p in enumerate(probs):
        position = index * CHUNK_SAMPLES
        if p >= threshold:
            silence_since = None
            if start is None:
                start = position
        elif start is not None and p < exit_threshold:
            if silence_since is None:
                silence_since = position
            if position + CHUNK_SAMPLES - silence_since >= min_silence:
                raw.append([start, silence_since])
                start, silence_since = None, None
    if start is not None:
        raw.append([start, len(samples)])
    min_speech = int(round(min_speech_s * SAMPLE_RATE))
    kept = [(a, b) for a, b in raw if b - a >= min_speech]
    pad = int(round(pad_s * SAMPLE_RATE))
    regions = []
    for i, (a, b) in enumerate(kept):
        low, high = max(0, a - pad), min(len(samples), b + pad)
        if i > 0:  # padding never crosses the middle of the pause to a neighbour
            low = max(low, (kept[i - 1][1] + a) // 2)
        if i + 1 < len(kept):
            high = min(high, (b + kept[i + 1][0]) // 2)
        regions.append(SpeechRegion(low, high))
    return regions
