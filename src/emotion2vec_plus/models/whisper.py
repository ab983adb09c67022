"""OpenAI Whisper *base* encoder and Whisper's log-mel front end, in plain PyTorch + NumPy.

The backbone of the compact, package-shipped speech-emotion model. No openai-whisper,
ctranslate2 or librosa at run time; the fp16 weights ship in ``assets/`` (built once by
``tools/build_whisper_encoder.py`` from a CTranslate2 ``model.bin`` of faster-whisper-base;
MIT licence, OpenAI Whisper weights) and were checked against CTranslate2's own encoder
(``docs/whisper_encoder.md``).

Typical use::

    from emotion2vec_plus.models.whisper import load_whisper_encoder, log_mel_spectrogram
    encoder = load_whisper_encoder()                     # float32, eval mode, sha256 checked
    mel, frames = log_mel_spectrogram(wavs, num_samples) # wavs (B, N) 16 kHz, padded with anything
    out = encoder(mel, frames)                           # out.hidden_states: 7 x (B, T, 512)
    # out.lengths (B,) = ceil(frames / 2): 50 encoder frames per second of audio

Two modes:

* **true length** (default, ``pad_to_30s=False``): each clip gives ``num_samples // 160``
  mel frames and ``ceil(that / 2)`` encoder frames; the positional embedding is sliced to the
  true length. A padded batch gives each clip exactly what it gets alone (reflect padding of
  the STFT is done at each clip's own end, the log-mel ceiling is each clip's own, padded mel
  and stem frames are zeroed, padded frames are masked as attention keys).
* **Whisper's 30 s** (``pad_to_30s=True``): every clip is zero-padded (or trimmed) to
  480000 samples, as ``whisper.pad_or_trim`` + ``whisper.log_mel_spectrogram`` do: 3000 mel
  frames, 1500 encoder frames, all valid. This is what Whisper (and CTranslate2) compute.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, ModelNotFoundError
from ..fileio import sha256_file
from .registry import WHISPER_FILE, asset_path

__all__ = [
    "SAMPLE_RATE", "N_FFT", "HOP_LENGTH", "N_MELS", "N_SAMPLES_30S", "N_FRAMES_30S",
    "ASSET_NAME", "ASSET_INFO_NAME",
    "mel_filterbank", "log_mel_spectrogram", "log_mel_spectrogram_traceable", "sinusoids",
    "WhisperEncoderConfig", "WhisperEncoderOutput", "WhisperEncoder",
    "default_weights_path", "load_whisper_encoder", "read_safetensors",
]

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
N_MELS = 80
N_SAMPLES_30S = 30 * SAMPLE_RATE          # 480000
N_FRAMES_30S = N_SAMPLES_30S // HOP_LENGTH  # 3000 mel frames -> 1500 encoder frames

ASSET_NAME = WHISPER_FILE
ASSET_INFO_NAME = "whisper_base_encoder.json"


# --------------------------------------------------------------------------- front end

def _hz_to_mel_slaney(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    f_sp = 200.0 / 3.0
    mels = hz / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    log_region = hz >= min_log_hz
    mels = np.where(log_region, min_log_mel + np.log(np.maximum(hz, 1e-300) / min_log_hz) / logstep, mels)
    return mels


def _mel_to_hz_slaney(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    f_sp = 200.0 / 3.0
    freqs = f_sp * mels
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    log_region = mels >= min_log_mel
    return np.where(log_region, min_log_hz * np.exp(logstep * (mels - min_log_mel)), freqs)


def mel_filterbank(n_mels: int = N_MELS, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Slaney-style mel filters, ``(n_mels, n_fft // 2 + 1)`` float32.

    The same as ``librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)`` (Slaney mel
    scale, Slaney area normalisation, 0 Hz to Nyquist), which is what Whisper's
    ``mel_filters.npz`` holds.
    """
    fmin, fmax = 0.0, sample_rate / 2.0
    fftfreqs = np.linspace(0.0, sample_rate / 2.0, 1 + n_fft // 2)
    mel_pts = np.linspace(_hz_to_mel_slaney(fmin), _hz_to_mel_slaney(fmax), n_mels + 2)
    mel_f = _mel_to_hz_slaney(mel_pts)
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fftfreqs[None, :]
    weights = np.zeros((n_mels, 1 + n_fft // 2), dtype=np.float64)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0.0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels])
    weights *= enorm[:, None]
    return weights.astype(np.float32)


_MEL_CACHE: dict[tuple[int, str], torch.Tensor] = {}


def _mel_tensor(n_mels: int, device: torch.device) -> torch.Tensor:
    key = (n_mels, str(device))
    if key not in _MEL_CACHE:
        _MEL_CACHE[key] = torch.from_numpy(mel_filterbank(n_mels)).to(device)
    return _MEL_CACHE[key]


def log_mel_spectrogram(
    wavs: torch.Tensor,
    num_samples: torch.Tensor | None = None,
    pad_to_30s: bool = False,
    n_mels: int = N_MELS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Whisper's log-mel spectrogram of a (padded) batch of 16 kHz clips.

    Args:
      wavs: ``(B, N)`` float waveforms (a 1-D tensor is taken as one clip); samples of clip
        ``b`` at and after ``num_samples[b]`` are ignored, whatever they hold.
      num_samples: ``(B,)`` true lengths in samples; ``None`` means all ``N`` are valid.
      pad_to_30s: zero-pad (or trim) every clip to 480000 samples first, exactly as
        ``whisper.pad_or_trim`` followed by ``whisper.log_mel_spectrogram``: 3000 frames each.

    Returns:
      ``mel`` ``(B, n_mels, F)`` float32 (float64 for float64 input) and ``frames`` ``(B,)`` int64, the valid frames of each
      clip (``num_samples // 160``, or 3000 with ``pad_to_30s``). Frames at and after
      ``frames[b]`` are 0.

    Per clip, exactly Whisper: STFT (n_fft 400, hop 160, periodic Hann, ``center=True`` reflect
    padding at the clip's own ends), last STFT frame dropped, power, mel, ``log10(max(x,1e-10))``,
    ``max(x, x.max() - 8)`` with the max over that clip's valid frames, ``(x + 4) / 4``.
    In true-length mode each clip must have at least 201 samples (``torch.stft``'s reflect
    padding needs more than ``n_fft // 2``).
    """
    if wavs.dim() == 1:
        wavs = wavs.unsqueeze(0)
    if wavs.dim() != 2:
        raise ValueError(f"wavs must be (B, N), got shape {tuple(wavs.shape)}")
    # float64 input stays float64 (for exactness checks); anything else is computed in float32.
    dtype = torch.float64 if wavs.dtype == torch.float64 else torch.float32
    wavs = wavs.to(dtype)
    batch, n_max = wavs.shape
    device = wavs.device
    if num_samples is None:
        lengths = torch.full((batch,), n_max, dtype=torch.long, device=device)
    else:
        lengths = torch.as_tensor(num_samples, device=device).to(torch.long).reshape(-1)
        if lengths.numel() != batch:
            raise ValueError(f"num_samples has {lengths.numel()} entries for a batch of {batch}")
        if bool((lengths > n_max).any()) or bool((lengths < 0).any()):
            raise ValueError(f"num_samples must lie in [0, {n_max}], got {lengths.tolist()}")

    pad = N_FFT // 2
    positions = torch.arange(n_max, device=device)
    if pad_to_30s:
        # whisper.pad_or_trim: zeros after each clip's own end, up to 30 s (or trimmed to it).
        keep = positions.unsqueeze(0) < lengths.unsqueeze(1)
        audio = torch.where(keep, wavs, torch.zeros((), device=device))
        if n_max >= N_SAMPLES_30S:
            audio = audio[:, :N_SAMPLES_30S]
        else:
            audio = F.pad(audio, (0, N_SAMPLES_30S - n_max))
        padded = F.pad(audio.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        frames = torch.full((batch,), N_FRAMES_30S, dtype=torch.long, device=device)
    else:
        if bool((lengths <= pad).any()):
            raise ValueError(
                f"every clip needs at least {pad + 1} samples (got {lengths.min().item()}); "
                "use pad_to_30s=True for shorter audio"
            )
        # Reflect padding ('center=True') at each clip's own start and end, gathered in one go:
        # padded index i reads source j = i - pad, mirrored at 0 and at length - 1.
        j = torch.arange(n_max + 2 * pad, device=device).unsqueeze(0) - pad
        j = j.abs()
        last = (lengths - 1).unsqueeze(1)
        j = torch.where(j > last, 2 * last - j, j)
        j = j.clamp(0, n_max - 1)          # positions past a clip's end + pad are masked later
        padded = torch.gather(wavs, 1, j.expand(batch, -1))
        frames = lengths // HOP_LENGTH

    window = torch.hann_window(N_FFT, periodic=True, device=device, dtype=dtype)
    stft = torch.stft(padded, N_FFT, HOP_LENGTH, window=window, center=False, return_complex=True)
    magnitudes = stft[..., :-1].abs() ** 2                       # (B, 201, F)
    mel_spec = _mel_tensor(n_mels, device).to(dtype) @ magnitudes  # (B, n_mels, F)
    log_spec = torch.clamp(mel_spec, min=1e-10).log10()

    n_frames = log_spec.shape[-1]
    valid = torch.arange(n_frames, device=device).unsqueeze(0) < frames.unsqueeze(1)  # (B, F)
    if not pad_to_30s:
        max_frames = int(frames.max().item())
        log_spec, valid = log_spec[..., :max_frames], valid[:, :max_frames]
    ceiling = log_spec.masked_fill(~valid.unsqueeze(1), float("-inf")).amax(dim=(1, 2), keepdim=True)
    log_spec = torch.maximum(log_spec, ceiling - 8.0)
    log_spec = (log_spec + 4.0) / 4.0
    log_spec = log_spec.masked_fill(~valid.unsqueeze(1), 0.0)
    return log_spec, frames


# --------------------------------------------------------------------------- encoder

def log_mel_spectrogram_traceable(wavs: torch.Tensor, num_samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`log_mel_spectrogram` (true-length mode) with the STFT as a matrix product, for ONNX export.

    ONNX's STFT is not exported by PyTorch for complex output; framing by gather and a DFT
    matrix (Hann window folded in, float64 so the spectrum matches the FFT) is exact enough
    and runs everywhere.
    """
    n_max = wavs.shape[1]
    pad = N_FFT // 2
    index = (torch.arange(n_max + 2 * pad) - pad).abs()[None, :]
    last = (num_samples - 1)[:, None]
    index = torch.where(index > last, 2 * last - index, index).clamp_min(0)
    padded = torch.gather(wavs.float(), 1, index.expand(wavs.shape[0], -1))
    starts = torch.arange(n_max // HOP_LENGTH) * HOP_LENGTH  # the last STFT frame is dropped, as Whisper does
    framed = padded[:, starts[:, None] + torch.arange(N_FFT)[None, :]]  # (B, F, 400)
    bins = N_FFT // 2 + 1
    window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64)
    angle = 2 * math.pi * torch.outer(torch.arange(N_FFT, dtype=torch.float64),
                                      torch.arange(bins, dtype=torch.float64)) / N_FFT
    basis = torch.cat([window[:, None] * torch.cos(angle), -window[:, None] * torch.sin(angle)], dim=1)
    spectrum = framed.double() @ basis
    power = (spectrum[..., :bins] ** 2 + spectrum[..., bins:] ** 2).float()
    mel = power @ _mel_tensor(N_MELS, torch.device("cpu")).t()  # (B, F, 80)
    log_spec = torch.clamp(mel, min=1e-10).log10().transpose(1, 2)
    frames = torch.div(num_samples, HOP_LENGTH, rounding_mode="floor")
    valid = (torch.arange(log_spec.shape[-1])[None, :] < frames[:, None])[:, None, :]
    ceiling = log_spec.masked_fill(~valid, float("-inf")).amax(dim=(1, 2), keepdim=True)
    log_spec = (torch.maximum(log_spec, ceiling - 8.0) + 4.0) / 4.0
    return log_spec.masked_fill(~valid, 0.0), frames


def sinusoids(length: int, channels: int, max_timescale: float = 10000) -> torch.Tensor:
    """Whisper's sinusoidal positional embedding ``(length, channels)`` (float32).

    Only a fallback: the shipped weights carry the 1500x512 table CTranslate2 stores (the fp16
    table of the original checkpoint, within one fp16 ulp of this function's output).
    """
    log_timescale_increment = np.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-log_timescale_increment * torch.arange(channels // 2))
    scaled_time = torch.arange(length)[:, None] * inv_timescales[None, :]
    return torch.cat([torch.sin(scaled_time), torch.cos(scaled_time)], dim=1).to(torch.float32)


@dataclass(frozen=True)
class WhisperEncoderConfig:
    """Whisper *base* encoder dimensions."""

    n_mels: int = 80
    n_ctx: int = 1500
    d: int = 512
    heads: int = 8
    layers: int = 6
    mlp: int = 2048


@dataclass
class WhisperEncoderOutput:
    """What :class:`WhisperEncoder` returns.

    Attributes:
      last_hidden_state: ``(B, T, d)`` the final output, after ``ln_post`` (what Whisper and
        CTranslate2 return as the encoder output).
      hidden_states: with ``return_layers=True`` a list of ``layers + 1`` tensors ``(B, T, d)``:
        ``[0]`` after the conv stem + positional embedding, ``[i]`` after block ``i`` for
        ``i < layers``, and ``[layers]`` after the last block **and** ``ln_post`` (the same tensor
        as ``last_hidden_state``); ``None`` with ``return_layers=False``.
      pre_ln_post: ``(B, T, d)`` the last block's output before ``ln_post`` (always set).
      lengths: ``(B,)`` int64 valid encoder frames per clip, ``ceil(mel_frames / 2)``.
      padding_mask: ``(B, T)`` bool, True at padded frames (all False when nothing is padded).
        Hidden states are 0 at padded frames.
    """

    last_hidden_state: torch.Tensor
    hidden_states: list[torch.Tensor] | None
    pre_ln_post: torch.Tensor
    lengths: torch.Tensor
    padding_mask: torch.Tensor = field(repr=False)


class MultiHeadAttention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d, bias=False)
        self.value = nn.Linear(d, d)
        self.out = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        b, t, d = x.shape
        h = self.heads
        q = self.query(x).view(b, t, h, d // h).transpose(1, 2)
        k = self.key(x).view(b, t, h, d // h).transpose(1, 2)
        v = self.value(x).view(b, t, h, d // h).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class ResidualAttentionBlock(nn.Module):
    def __init__(self, d: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(d, heads)
        self.attn_ln = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, mlp), nn.GELU(), nn.Linear(mlp, d))
        self.mlp_ln = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.attn_ln(x), attn_mask)
        return x + self.mlp(self.mlp_ln(x))


class WhisperEncoder(nn.Module):
    """Whisper's audio encoder (openai-whisper's ``AudioEncoder``), parameter names included.

    ``state_dict()`` keys: ``conv1.{weight,bias}``, ``conv2.{weight,bias}``,
    ``positional_embedding`` (buffer, ``(n_ctx, d)``), ``blocks.{i}.attn.{query,value,out}.{weight,bias}``,
    ``blocks.{i}.attn.key.weight``, ``blocks.{i}.{attn_ln,mlp_ln}.{weight,bias}``,
    ``blocks.{i}.mlp.{0,2}.{weight,bias}``, ``ln_post.{weight,bias}``.
    """

    def __init__(self, config: WhisperEncoderConfig | None = None) -> None:
        super().__init__()
        cfg = config or WhisperEncoderConfig()
        self.config = cfg
        self.conv1 = nn.Conv1d(cfg.n_mels, cfg.d, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(cfg.d, cfg.d, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positional_embedding", sinusoids(cfg.n_ctx, cfg.d))
        self.blocks = nn.ModuleList(ResidualAttentionBlock(cfg.d, cfg.heads, cfg.mlp) for _ in range(cfg.layers))
        self.ln_post = nn.LayerNorm(cfg.d)

    @staticmethod
    def output_lengths(mel_frames: torch.Tensor) -> torch.Tensor:
        """Encoder frames for ``mel_frames`` mel frames: ``ceil(mel_frames / 2)``."""
        return torch.div(mel_frames + 1, 2, rounding_mode="floor")

    def forward(
        self,
        mel: torch.Tensor,
        mel_frames: torch.Tensor | None = None,
        return_layers: bool = True,
    ) -> WhisperEncoderOutput:
        """Encode ``mel`` ``(B, n_mels, F)``; ``mel_frames`` ``(B,)`` valid frames (None: all ``F``).

        Any ``F`` up to ``2 * n_ctx`` (3000) works: the positional embedding is sliced to the
        output length ``T = ceil(F / 2)``. Frames past ``mel_frames[b]`` are ignored.
        """
        if mel.dim() == 2:
            mel = mel.unsqueeze(0)
        if mel.dim() != 3 or mel.shape[1] != self.config.n_mels:
            raise ValueError(f"mel must be (B, {self.config.n_mels}, F), got {tuple(mel.shape)}")
        param = self.conv1.weight
        mel = mel.to(dtype=param.dtype, device=param.device)
        batch, _, n_frames = mel.shape
        max_frames = 2 * self.config.n_ctx
        if n_frames > max_frames:
            raise ValueError(f"at most {max_frames} mel frames (30 s) fit the encoder, got {n_frames}")
        if mel_frames is None:
            mel_frames = torch.full((batch,), n_frames, dtype=torch.long, device=mel.device)
        else:
            mel_frames = torch.as_tensor(mel_frames, device=mel.device).to(torch.long).reshape(-1)
            if mel_frames.numel() != batch:
                raise ValueError(f"mel_frames has {mel_frames.numel()} entries for a batch of {batch}")
            if bool((mel_frames < 1).any()) or bool((mel_frames > n_frames).any()):
                raise ValueError(f"mel_frames must lie in [1, {n_frames}], got {mel_frames.tolist()}")
        padded = bool((mel_frames < n_frames).any())

        lengths = self.output_lengths(mel_frames)
        n_out = (n_frames + 1) // 2
        out_valid = torch.arange(n_out, device=mel.device).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)

        if padded:
            in_valid = torch.arange(n_frames, device=mel.device).unsqueeze(0) < mel_frames.unsqueeze(1)
            mel = mel * in_valid.unsqueeze(1).to(mel.dtype)
            x = F.gelu(self.conv1(mel))
            # conv2 reads conv1's output at the clip's own end: zero it there as conv padding does.
            x = x * in_valid.unsqueeze(1).to(x.dtype)
            x = F.gelu(self.conv2(x))
        else:
            x = F.gelu(self.conv1(mel))
            x = F.gelu(self.conv2(x))
        x = x.transpose(1, 2)                                   # (B, T, d)
        x = x + self.positional_embedding[:n_out].to(x.dtype)

        if padded:
            keep = out_valid.unsqueeze(-1).to(x.dtype)
            attn_mask = out_valid[:, None, None, :]             # (B, 1, 1, T): True = attend
            x = x * keep
        else:
            keep, attn_mask = None, None

        hidden: list[torch.Tensor] | None = [x] if return_layers else None
        for i, block in enumerate(self.blocks):
            x = block(x, attn_mask)
            if keep is not None:
                x = x * keep
            if hidden is not None and i < len(self.blocks) - 1:
                hidden.append(x)
        pre_ln_post = x
        x = self.ln_post(x)
        if keep is not None:
            x = x * keep
        if hidden is not None:
            hidden.append(x)
        return WhisperEncoderOutput(
            last_hidden_state=x,
            hidden_states=hidden,
            pre_ln_post=pre_ln_post,
            lengths=lengths,
            padding_mask=~out_valid,
        )


# --------------------------------------------------------------------------- loading

_SAFETENSORS_DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "BF16": None}


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file: with the ``safetensors`` package when installed, else a
    small NumPy reader of the format (8-byte header size, JSON header, raw little-endian data)."""
    try:
        from safetensors.torch import load_file
    except ImportError:
        pass
    else:
        return load_file(str(path))
    raw = Path(path).read_bytes()
    try:
        (size,) = np.frombuffer(raw[:8], dtype="<u8")
        header = json.loads(raw[8:8 + int(size)].decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not a safetensors file ({exc})") from exc
    base = 8 + int(size)
    state = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES.get(entry["dtype"])
        if dtype is None:
            raise CheckpointError(f"{path}: {name} has unsupported dtype {entry['dtype']}")
        start, end = entry["data_offsets"]
        array = np.frombuffer(raw[base + start:base + end], dtype=np.dtype(dtype).newbyteorder("<"))
        state[name] = torch.from_numpy(array.reshape(entry["shape"]).astype(dtype, copy=True))
    return state


def default_weights_path() -> Path:
    """The shipped ``assets/whisper_base_encoder.safetensors``."""
    return asset_path(ASSET_NAME)


def _asset_info() -> dict:
    info_path = asset_path(ASSET_INFO_NAME)
    if not info_path.is_file():
        raise ModelNotFoundError(
            f"Whisper encoder record {info_path} is missing: reinstall emotion2vec-plus or "
            "rebuild it with tools/build_whisper_encoder.py"
        )
    return json.loads(info_path.read_text(encoding="utf-8"))


def load_whisper_encoder(
    path: str | Path | None = None,
    expected_sha256: str | None = None,
    verify: bool = True,
) -> WhisperEncoder:
    """The Whisper base encoder with the shipped fp16 weights, as float32, in eval mode.

    Args:
      path: a safetensors file; default the package asset.
      expected_sha256: checked against the file; default the sha256 recorded in
        ``assets/whisper_base_encoder.json`` (for the package asset, and for any other
        ``path`` too, unless ``verify=False``).
      verify: check the sha256 (a ~41 MB hash, some 0.1 s).

    Raises:
      ModelNotFoundError: the file (or its record) is missing.
      CheckpointError: sha256 mismatch, or missing / unexpected / mis-shaped tensors.
    """
    weights = Path(path) if path is not None else default_weights_path()
    if not weights.is_file():
        raise ModelNotFoundError(
            f"Whisper encoder weights not found at {weights}: reinstall emotion2vec-plus "
            "(the wheel must ship assets/*) or rebuild them with tools/build_whisper_encoder.py"
        )
    if verify:
        expected = expected_sha256 or _asset_info()["sha256"]
        actual = sha256_file(weights)
        if actual != expected:
            raise CheckpointError(
                f"{weights}: sha256 {actual} differs from the recorded {expected}; the file is "
                "corrupt or was changed: rebuild it with tools/build_whisper_encoder.py"
            )
    state = read_safetensors(weights)
    model = WhisperEncoder()
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{weights}: missing tensors {missing}, unexpected tensors {unexpected}")
    bad = [f"{k}: {tuple(v.shape)} != {tuple(own[k].shape)}" for k, v in state.items() if v.shape != own[k].shape]
    if bad:
        raise CheckpointError(f"{weights}: mis-shaped tensors: {bad}")
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
    return model.float().eval()
