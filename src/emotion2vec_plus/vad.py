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

    def __init__(self, model: SileroVAD | None = None, *, eager: bool = False) -> None:
        self.model = model or default_vad()
        #: Run the network on every complete chunk as soon as it arrives (a live stream), rather
        #: than on steps of about 30 s (fewer, larger calls).
        self.eager = eager
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
            if complete >= (1 if self.eager else _CHUNKS_PER_STEP):
                self._run(complete)

    def drain(self) -> np.ndarray:
        """The probabilities computed since the last ``drain`` (of complete chunks only), handed
        over and no longer kept: a live stream's memory stays flat."""
        out = np.concatenate(self._probabilities) if self._probabilities else np.zeros(0, np.float32)
        self._probabilities.clear()
        return out

    def finish(self) -> np.ndarray:
        """The probability of every 32 ms chunk fed and not drained (the last one zero-padded);
        ends the stream."""
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


#: A chunk at least this likely to be speech is pooled (see :func:`speech_pooling_mask`).
POOL_SPEECH_PROBABILITY = 0.5
#: Audio pooled on either side of the speech chunks, in seconds.
POOL_MARGIN_S = 0.1


@dataclass(frozen=True)
class SpeechTrack:
    """Speech probabilities of a stretch of audio, as seen from one piece of it:
    ``probabilities[i]`` is that of the 32 ms chunk starting ``first_sample + i * CHUNK_SAMPLES``
    samples after the piece's first sample (negative when the track starts before the piece)."""

    probabilities: np.ndarray
    first_sample: int = 0


def frame_speech_probabilities(track: SpeechTrack, num_frames: int, hop_samples: int) -> np.ndarray:
    """The speech probability of each of a piece's ``num_frames`` encoder frames (one per
    ``hop_samples``): that of the chunk the frame's middle falls in (empty for an empty track)."""
    probabilities = np.asarray(track.probabilities, dtype=np.float32).reshape(-1)
    if num_frames <= 0 or not len(probabilities):
        return np.zeros(0, np.float32)
    middle = np.arange(num_frames) * hop_samples + hop_samples // 2 - track.first_sample
    return probabilities[np.clip(middle // CHUNK_SAMPLES, 0, len(probabilities) - 1)]


def speech_frames(probabilities: np.ndarray, hop_samples: int, threshold: float = POOL_SPEECH_PROBABILITY,
                  margin_s: float = POOL_MARGIN_S) -> np.ndarray:
    """The frames to pool, from their speech probabilities (:func:`frame_speech_probabilities`):
    those of speech (``>= threshold``) and ``margin_s`` on either side; every frame when none is
    speech, so a piece without speech is pooled whole."""
    speech = np.asarray(probabilities, dtype=np.float32).reshape(-1) >= threshold
    if not speech.any():
        return np.ones(len(speech), bool)
    margin = int(round(margin_s * SAMPLE_RATE / hop_samples))
    counts = np.concatenate([[0], np.cumsum(speech)])
    frames = np.arange(len(speech))
    return counts[np.minimum(frames + margin + 1, len(speech))] - counts[np.maximum(frames - margin, 0)] > 0


def speech_pooling_mask(track: SpeechTrack, num_frames: int, hop_samples: int) -> np.ndarray:
    """Which of a piece's ``num_frames`` encoder frames a model that pools only speech averages
    (:func:`speech_frames` of :func:`frame_speech_probabilities`; every frame without a track).

    A model trained so (the compact model's ``pooling: "speech"``) gives one answer for an
    utterance however much silence surrounds it: a corpus clip with its own pauses, the same
    sentence as a segment of a long recording, or a live stream's final."""
    probabilities = frame_speech_probabilities(track, num_frames, hop_samples)
    return speech_frames(probabilities, hop_samples) if len(probabilities) else np.ones(max(num_frames, 0), bool)


@dataclass(frozen=True)
class SpeechRegion:
    """A stretch of speech, in samples at 16 kHz."""

    start: int
    end: int

    @property
    def duration_s(self) -> float:
        return (self.end - self.start) / SAMPLE_RATE


#: Defaults of :func:`speech_regions` and :class:`RegionTracker`.
THRESHOLD = 0.5
MIN_SPEECH_S = 0.25
MIN_SILENCE_S = 0.1
PAD_S = 0.03


class RegionTracker:
    """Speech regions found online, one 32 ms probability at a time.

    The same rule as :func:`speech_regions` (which runs this tracker over a whole recording):
    speech starts at a chunk whose probability reaches ``threshold`` and ends once the probability
    has stayed below ``threshold - 0.15`` for ``min_silence_s``; regions shorter than
    ``min_speech_s`` are dropped, the rest padded by ``pad_s`` on each side. A region is known
    ``min_silence_s`` after its speech ends, so a live stream gets exactly the regions an offline
    pass over the same audio gets.

    Padding never reaches a neighbour: a region only closes after ``min_silence_s`` of silence,
    so neighbours are at least that far apart, which must be at least ``2 * pad_s``.
    """

    def __init__(self, *, threshold: float = THRESHOLD, min_speech_s: float = MIN_SPEECH_S,
                 min_silence_s: float = MIN_SILENCE_S, pad_s: float = PAD_S) -> None:
        if min_silence_s < 2 * pad_s:
            raise ValueError(f"min_silence_s ({min_silence_s}) must be at least twice pad_s ({pad_s})")
        self.threshold = threshold
        self.exit_threshold = threshold - 0.15
        self.min_silence = int(round(min_silence_s * SAMPLE_RATE))
        self.min_speech = int(round(min_speech_s * SAMPLE_RATE))
        self.pad = int(round(pad_s * SAMPLE_RATE))
        self.chunks = 0
        #: Where the open region's speech started (unpadded), or None outside speech.
        self.start: int | None = None
        #: Where the silence that may end the open region began, or None.
        self.silence_since: int | None = None
        self._last_end = 0  # padded end of the last region given out

    @property
    def position(self) -> int:
        """Samples covered by the probabilities seen so far."""
        return self.chunks * CHUNK_SAMPLES

    @property
    def open_start(self) -> int | None:
        """The padded start of the region in progress (speech seen, its end not yet known)."""
        return None if self.start is None else max(self._last_end, self.start - self.pad)

    def speech_until(self) -> int | None:
        """While a region is open: the position up to which it is certainly speech (its end is
        at least here); None outside speech."""
        if self.start is None:
            return None
        return self.silence_since if self.silence_since is not None else self.position

    def push(self, probabilities: np.ndarray) -> list[SpeechRegion]:
        """Take the next chunks' probabilities; the regions that ended among them."""
        closed: list[SpeechRegion] = []
        for p in np.asarray(probabilities, dtype=np.float32):
            position = self.position
            self.chunks += 1
            if p >= self.threshold:
                self.silence_since = None
                if self.start is None:
                    self.start = position
            elif self.start is not None and p < self.exit_threshold:
                if self.silence_since is None:
                    self.silence_since = position
                if position + CHUNK_SAMPLES - self.silence_since >= self.min_silence:
                    region = self._close(self.silence_since, total=None)
                    if region is not None:
                        closed.append(region)
        return closed

    def finish(self, num_samples: int) -> list[SpeechRegion]:
        """End of the recording (``num_samples`` long): the region still open, if any."""
        if self.start is None:
            return []
        region = self._close(num_samples, total=num_samples)
        return [] if region is None else [region]

    def _close(self, end: int, total: int | None) -> SpeechRegion | None:
        start, self.start, self.silence_since = self.start, None, None
        assert start is not None
        if end - start < self.min_speech:
            return None
        low = max(self._last_end, start - self.pad)
        high = end + self.pad if total is None else min(total, end + self.pad)
        self._last_end = high
        return SpeechRegion(low, high)


def speech_regions(
    samples: np.ndarray | None = None,
    *,
    num_samples: int | None = None,
    threshold: float = THRESHOLD,
    min_speech_s: float = MIN_SPEECH_S,
    min_silence_s: float = MIN_SILENCE_S,
    pad_s: float = PAD_S,
    probabilities: np.ndarray | None = None,
) -> list[SpeechRegion]:
    """Speech regions of 16 kHz ``samples`` (sorted, not overlapping, inside the audio).

    Speech starts at a chunk whose probability reaches ``threshold`` and ends once the
    probability has stayed below ``threshold - 0.15`` for ``min_silence_s``; regions shorter than
    ``min_speech_s`` are dropped, the rest padded by ``pad_s`` on each side
    (:class:`RegionTracker`, which finds the same regions online). ``probabilities`` from
    :func:`speech_probabilities` or a :class:`VadStream` may be passed, with ``num_samples``
    instead of the samples, to avoid running the network again or holding the recording in memory.
    """
    if probabilities is None:
        if samples is None:
            raise ValueError("speech_regions needs the samples or their probabilities")
        probabilities = speech_probabilities(samples)
    total = len(samples) if samples is not None else num_samples
    if total is None:
        raise ValueError("speech_regions needs num_samples with probabilities and no samples")
    tracker = RegionTracker(threshold=threshold, min_speech_s=min_speech_s, min_silence_s=min_silence_s, pad_s=pad_s)
    regions = tracker.push(probabilities)
    regions += tracker.finish(total)
    return [SpeechRegion(r.start, min(r.end, total)) for r in regions]
