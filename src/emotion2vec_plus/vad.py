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
        chunk with zeros, the last chunk zero-padded). Runs in blocks (:class:`VadStream`), so
        memory does not grow with the recording's length."""
        stream = VadStream(self)
        stream.push(samples.float().reshape(-1).numpy())
        return torch.from_numpy(stream.finish())

    @torch.inference_mode()
    def chunk_probabilities(self, windows: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None
                            ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Probabilities of consecutive chunks, each given as its 576 samples (64 of context, then
        its own 512): (C, 576) -> (C,), with the recurrent state carried in and out."""
        x = F.pad(windows, (0, 64), mode="reflect")[:, None]  # (C, 1, 640)
        x = self.stft_conv(x)
        x = (x[:, :129] ** 2 + x[:, 129:] ** 2).sqrt()
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
        x = F.relu(self.conv4(x)).squeeze(-1)  # (C, 128): one step per chunk
        states, state = self.lstm(x[None], state)  # the state runs on from chunk to chunk
        y = self.final_conv(F.relu(states[0]).T[None])  # (1, 1, C)
        return torch.sigmoid(y)[0, 0], state


#: Chunks run through the network at once (about 30 s of audio, a few MB of activations).
_CHUNKS_PER_STEP = 1024


class VadStream:
    """Speech probabilities of a recording that arrives in blocks of any size.

    ``push`` the 16 kHz samples as they come and call ``finish`` at the end: the probabilities are
    the same as :class:`SileroVAD` gives for the whole recording at once (the 64 samples of
    context and the recurrent state are carried across blocks), and memory stays a few MB
    whatever the length.
    """

    def __init__(self, model: SileroVAD | None = None) -> None:
        self.model = model or default_vad()
        self._pending = np.zeros(CONTEXT_SAMPLES, np.float32)  # context of the next chunk, then its samples
        self._state: tuple[torch.Tensor, torch.Tensor] | None = None
        self._probabilities: list[np.ndarray] = []
        self.num_samples = 0

    def push(self, samples: np.ndarray) -> None:
        """Feed the next 16 kHz mono samples (any number; a long array is taken one step at a time,
        so it is never copied whole)."""
        samples = np.asarray(samples, np.float32)
        self.num_samples += len(samples)
        step = _CHUNKS_PER_STEP * CHUNK_SAMPLES
        for start in range(0, len(samples), step):
            self._pending = np.concatenate([self._pending, samples[start : start + step]])
            complete = (len(self._pending) - CONTEXT_SAMPLES) // CHUNK_SAMPLES
            if complete >= _CHUNKS_PER_STEP:
                self._run(complete)

    def finish(self) -> np.ndarray:
        """The probability of every 32 ms chunk fed (the last one zero-padded); ends the stream."""
        complete = (len(self._pending) - CONTEXT_SAMPLES) // CHUNK_SAMPLES
        if complete:
            self._run(complete)
        if len(self._pending) > CONTEXT_SAMPLES or self.num_samples == 0:
            tail = CHUNK_SAMPLES - (len(self._pending) - CONTEXT_SAMPLES)
            self._pending = np.concatenate([self._pending, np.zeros(tail, np.float32)])
            self._run(1)
        return np.concatenate(self._probabilities) if self._probabilities else np.zeros(0, np.float32)

    def _run(self, chunks: int) -> None:
        for first in range(0, chunks, _CHUNKS_PER_STEP):
            count = min(_CHUNKS_PER_STEP, chunks - first)
            span = self._pending[first * CHUNK_SAMPLES : (first + count) * CHUNK_SAMPLES + CONTEXT_SAMPLES]
            windows = torch.from_numpy(span).unfold(0, CHUNK_SAMPLES + CONTEXT_SAMPLES, CHUNK_SAMPLES)
            probabilities, self._state = self.model.chunk_probabilities(windows, self._state)
            self._probabilities.append(probabilities.numpy().copy())
        self._pending = self._pending[chunks * CHUNK_SAMPLES :].copy()


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
    stream = VadStream()
    stream.push(np.ascontiguousarray(samples, dtype=np.float32))
    return stream.finish()


@dataclass(frozen=True)
class SpeechRegion:
    """A stretch of speech, in samples at 16 kHz."""

    start: int
    end: int

    @property
    def duration_s(self) -> float:
        return (self.end - self.start) / SAMPLE_RATE


def speech_regions(
    samples: np.ndarray | None = None,
    *,
    num_samples: int | None = None,
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
    would overlap meet halfway). ``probabilities`` from :func:`speech_probabilities` or a
    :class:`VadStream` may be passed, with ``num_samples`` instead of the samples, to avoid
    running the network again or holding the recording in memory.
    """
    if probabilities is None:
        if samples is None:
            raise ValueError("speech_regions needs the samples or their probabilities")
        probs = speech_probabilities(samples)
    else:
        probs = probabilities
    total = len(samples) if samples is not None else num_samples
    if total is None:
        raise ValueError("speech_regions needs num_samples with probabilities and no samples")
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
        raw.append([start, total])
    min_speech = int(round(min_speech_s * SAMPLE_RATE))
    kept = [(a, b) for a, b in raw if b - a >= min_speech]
    pad = int(round(pad_s * SAMPLE_RATE))
    regions = []
    for i, (a, b) in enumerate(kept):
        low, high = max(0, a - pad), min(total, b + pad)
        if i > 0:  # padding never crosses the middle of the pause to a neighbour
            low = max(low, (kept[i - 1][1] + a) // 2)
        if i + 1 < len(kept):
            high = min(high, (b + kept[i + 1][0]) // 2)
        regions.append(SpeechRegion(low, high))
    return regions
