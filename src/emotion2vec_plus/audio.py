"""Audio input: turn a file, bytes, a stream or an array into 16 kHz mono float32 samples.

Encoded inputs are decoded with ``soundfile`` (libsndfile: WAV, FLAC, Ogg Vorbis/Opus, AIFF, ...)
and otherwise with PyAV (FFmpeg: MP3, MP4/M4A/AAC, WebM, Matroska, ...). Before decoding, the framing
of WAV, Ogg and MP3 data is checked, because decoders silently return what precedes a cut in them.
Channels are averaged to mono and the result is resampled to :data:`SAMPLE_RATE` with soxr.

Every problem with an input raises a subclass of :class:`~emotion2vec_plus.errors.AudioError`
whose message names the input; conditions that still give a usable result (silence, clipping,
a few undecodable packets) are reported in :attr:`Audio.warnings` instead.
"""

from __future__ import annotations

import io
import math
import operator
import os
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

import av
import numpy as np
import soundfile as sf
import soxr

from .defaults import MAX_DURATION_S
from .errors import (
    AudioError,
    AudioFileNotFoundError,
    AudioTooLongError,
    AudioTooShortError,
    CorruptAudioError,
    EmptyAudioError,
    InvalidSamplesError,
    NotAudioError,
)

__all__ = [
    "DEFAULT_MAX_DURATION_S",
    "MIN_SAMPLES",
    "SAMPLE_RATE",
    "Audio",
    "AudioInfo",
    "AudioInput",
    "StreamedAudio",
    "describe_source",
    "load_audio",
    "replayable_input",
    "stream_audio",
]

SAMPLE_RATE: int = 16000
MIN_SAMPLES: int = 400  # one 25 ms frame at 16 kHz
DEFAULT_MAX_DURATION_S: float = MAX_DURATION_S

AudioInput = Union[
    str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, np.ndarray, tuple[np.ndarray, int]
]

_SILENCE_PEAK = 1e-4  # -80 dBFS
_CLIP_LEVEL = 0.999
_CLIP_FRACTION = 0.001
_BLOCK_FRAMES = 1 << 16
_MAX_CHANNELS_FIRST = 8

_SF_ERR_MALFORMED_FILE = 3
# libsndfile reports SF_COUNT_MAX frames when the header does not give the length (e.g. streamed FLAC).
_SF_UNKNOWN_FRAMES = 2**62
_SOUNDFILE_FORMATS = {"WAVEX": "wav", "IRCAM": "sf", "SVX": "iff"}

# Containers whose duration PyAV reads from the header; others (raw MP3, ADTS AAC, ...) estimate it
# from the bitrate, which is too rough to detect truncation or to enforce the limit before decoding.
_PYAV_EXACT_DURATION = {"mp4", "m4a", "webm", "matroska", "ogg"}
#: MP4 major brands of audio-only files saved as ``.m4a`` (iTunes / Apple Voice Memos / FFmpeg's ipod muxer).
_M4A_BRANDS = {"M4A", "M4B", "M4P"}
_PYAV_DTYPES = {
    "u8": np.uint8, "s16": np.int16, "s32": np.int32, "s64": np.int64, "flt": np.float32, "dbl": np.float64
}


@dataclass(frozen=True)
class AudioInfo:
    """What the input was before conversion to 16 kHz mono."""

    source: str
    """Display name used in messages: the path as given, ``<bytes>``, the file object's name or
    ``<stream>``, or ``<array>``."""
    format: str
    """Container, lower-case: ``wav``, ``flac``, ``ogg``, ``mp3``, ``m4a`` (an MP4 file whose brand
    says audio-only, as phones and iTunes write them), ``mp4``, ``webm``, ``array``, ..."""
    sample_rate: int
    """Original sample rate in Hz."""
    channels: int
    """Original number of channels."""
    duration_s: float
    """Original duration in seconds (decoded samples / original rate)."""


@dataclass
class Audio:
    """Decoded audio ready for the model."""

    samples: np.ndarray
    """1-D float32, mono, :data:`SAMPLE_RATE` Hz, C-contiguous."""
    info: AudioInfo
    warnings: list[str]
    """Conditions that did not prevent decoding but may make the result less meaningful."""

    @property
    def num_samples(self) -> int:
        """Number of :attr:`samples` (at :data:`SAMPLE_RATE`)."""
        return len(self.samples)

    @property
    def duration_s(self) -> float:
        """Duration of :attr:`samples` in seconds."""
        return len(self.samples) / SAMPLE_RATE


def describe_source(audio: AudioInput, name: str | None = None) -> str:
    """Return the display name of an input as used in error messages; never raises.

    ``name`` wins if given; otherwise a path is shown as given, raw bytes as ``<bytes>``, a file
    object by its ``name`` attribute (or ``<stream>``), and arrays as ``<array>``.
    """
    if name is not None:
        return name
    if isinstance(audio, (bytes, bytearray, memoryview)):
        return "<bytes>"
    if isinstance(audio, (np.ndarray, tuple)):
        return "<array>"
    try:
        if isinstance(audio, (str, os.PathLike)):
            return os.fsdecode(audio)
        if hasattr(audio, "read"):
            file_name = getattr(audio, "name", None)
            return os.fsdecode(file_name) if isinstance(file_name, (str, bytes)) else "<stream>"
    except Exception:  # a broken __fspath__ or name property must not hide the real error
        pass
    return f"<{type(audio).__name__}>"


def load_audio(
    audio: AudioInput,
    *,
    sample_rate: int | None = None,
    name: str | None = None,
    max_duration_s: float | None = DEFAULT_MAX_DURATION_S,
) -> Audio:
    """Decode ``audio`` to 16 kHz mono float32.

    Args:
        audio: One of
            - a path (``str`` or ``os.PathLike``) to an audio file;
            - the encoded file contents as ``bytes``, ``bytearray`` or ``memoryview``;
            - a binary file object (anything with ``.read()``), read from its current position
              to the end and left open;
            - a NumPy array of samples: shape ``(N,)``, ``(N, C)``, or ``(C, N)`` with
              ``C <= 8 < N``; integer samples are scaled to [-1, 1];
            - a tuple ``(array, sample_rate)``.
        sample_rate: Sample rate of a bare array. Without it an array is taken to be 16 kHz, as in
            FunASR. Encoded inputs carry their own rate, so passing it with them is a ``ValueError``
            (it is not the output rate, which is always :data:`SAMPLE_RATE`).
        name: Display name for messages and :attr:`AudioInfo.source` (default: :func:`describe_source`).
        max_duration_s: Reject inputs longer than this many seconds, where possible before decoding
            them; ``None`` for no limit.

    Returns:
        The samples, what the input was, and warnings (silent or clipped audio, skipped damaged
        packets, an Ogg stream that may be truncated).

    Raises:
        AudioFileNotFoundError: the path does not exist or is a directory.
        NotAudioError: no decoder recognises the input (text, image, random bytes, ...).
        CorruptAudioError: the format is recognised but the data is damaged or truncated.
        EmptyAudioError: the input holds no samples.
        AudioTooShortError: fewer than :data:`MIN_SAMPLES` samples (25 ms) after resampling.
        AudioTooLongError: longer than ``max_duration_s``.
        InvalidSamplesError: NaN or infinite samples.
        AudioError: any other problem with this input (unreadable file, unsupported array).
        TypeError: ``audio`` is of an unsupported type.
        ValueError: ``sample_rate`` given with an encoded input, or ``max_duration_s`` is not positive.
    """
    blocks: list[np.ndarray] = []
    streamed = stream_audio(audio, blocks.append, sample_rate=sample_rate, name=name, max_duration_s=max_duration_s)
    return Audio(np.concatenate(blocks), streamed.info, streamed.warnings)  # a copy even of one block: never the caller's array


@dataclass
class StreamedAudio:
    """What :func:`stream_audio` decoded, without the samples (those went to its callback)."""

    info: AudioInfo
    warnings: list[str]
    num_samples: int
    """Samples handed out, at :data:`SAMPLE_RATE`."""

    @property
    def duration_s(self) -> float:
        """Duration of the 16 kHz samples in seconds."""
        return self.num_samples / SAMPLE_RATE


def stream_audio(
    audio: AudioInput,
    on_samples: Callable[[np.ndarray], None],
    *,
    sample_rate: int | None = None,
    name: str | None = None,
    max_duration_s: float | None = DEFAULT_MAX_DURATION_S,
) -> StreamedAudio:
    """Decode ``audio`` block by block, handing each block of 16 kHz mono float32 samples to
    ``on_samples`` as soon as it is decoded and resampled, so memory does not grow with duration.

    Takes the same inputs and raises the same errors as :func:`load_audio` (which is this function
    collecting the blocks). Some errors can only be known at the end (a truncated file, NaN samples,
    fewer than 25 ms of audio), so ``on_samples`` may have received blocks before one is raised: treat
    what it received as void then. A file object is read to the end first; for a second pass over the
    same input, pass :func:`replayable_input` of it.
    """
    source = describe_source(audio, name)
    if max_duration_s is not None and not max_duration_s > 0:
        raise ValueError(f"max_duration_s must be positive or None, got {max_duration_s!r}")
    decoded = _Decoded(source, max_duration_s, on_samples)
    if isinstance(audio, (np.ndarray, tuple)):
        _decode_array(audio, sample_rate, decoded)
    else:
        if sample_rate is not None:
            raise ValueError(
                "sample_rate= only applies to NumPy arrays; encoded audio carries its own rate "
                f"(the output is always {SAMPLE_RATE} Hz)"
            )
        _decode_encoded(_encoded_input(audio, source), decoded)
    return decoded.finish()


def replayable_input(audio: AudioInput, name: str | None = None) -> AudioInput:
    """``audio`` in a form that can be decoded more than once: a file object is read into bytes
    (raising :class:`AudioError` naming it if it cannot be read); anything else is returned as is."""
    if isinstance(audio, (str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, tuple)):
        return audio
    if hasattr(audio, "read"):
        return _encoded_input(audio, describe_source(audio, name)).data
    return audio  # stream_audio raises the TypeError


class _Decoded:
    """Decoded audio handed on block by block as 16 kHz mono, with what is needed to validate it:
    clipping and peak level at the original rate, NaN samples, and the duration limit."""

    def __init__(self, source: str, max_duration_s: float | None, on_samples: Callable[[np.ndarray], None]) -> None:
        self.source = source
        self.max_duration_s = max_duration_s
        self.on_samples = on_samples
        self.format = ""
        self.rate = 0
        self.channels = 0
        self.frames = 0
        """Frames decoded at the original rate (of the first block, if the rate changes midway)."""
        self.seconds = 0.0
        self.num_samples = 0
        self.clipped_values = 0
        self.values = 0
        self.peak = 0.0
        self.invalid = 0
        self.first_invalid_s = 0.0
        self.warnings: list[str] = []
        self._resampler: StreamResampler | None = None
        self._resampler_rate = 0

    @property
    def duration_s(self) -> float:
        return self.seconds

    def check_duration(self, duration_s: float) -> None:
        """Raise if a known total duration exceeds the limit."""
        if self.max_duration_s is not None and duration_s > self.max_duration_s:
            raise AudioTooLongError(
                self.source,
                f"audio is {duration_s:.2f} s long, more than the limit of {self.max_duration_s:.2f} s; "
                "pass a larger max_duration_s (or None) to load it",
                limit_s=self.max_duration_s, duration_s=duration_s,
            )

    def add(self, block: np.ndarray, rate: int) -> None:
        """Take a float32 block of shape (frames, channels) sampled at ``rate`` Hz."""
        if not self.rate:
            self.rate, self.channels = rate, block.shape[1]
        # Count clipping per channel: the mono mix of one clipped channel no longer reaches full scale.
        self.clipped_values += int(np.count_nonzero(np.abs(block) >= _CLIP_LEVEL))
        self.values += block.size
        mono = block[:, 0] if block.shape[1] == 1 else block.mean(axis=1, dtype=np.float32)
        finite = np.isfinite(mono)
        if self.invalid or not finite.all():
            if not self.invalid:
                self.first_invalid_s = self.seconds + int(np.argmin(finite)) / rate
            self.invalid += len(mono) - int(np.count_nonzero(finite))
        elif len(mono):
            self.peak = max(self.peak, float(np.max(np.abs(mono))))
            self._hand_on(mono, rate)
        self.frames += len(mono) if rate == self.rate else round(len(mono) * self.rate / rate)
        self.seconds += len(mono) / rate
        if self.max_duration_s is not None and self.seconds > self.max_duration_s:
            raise AudioTooLongError(
                self.source,
                f"audio is longer than the limit of {self.max_duration_s:.2f} s (decoding stopped at "
                f"{self.seconds:.2f} s); pass a larger max_duration_s (or None) to load it",
                limit_s=self.max_duration_s,
            )

    def _hand_on(self, mono: np.ndarray, rate: int, last: bool = False) -> None:
        if rate != self._resampler_rate:  # the first block, or a stream that changes rate midway (HE-AAC)
            self._flush()
            self._resampler_rate = rate
            self._resampler = None if rate == SAMPLE_RATE else StreamResampler(rate, self.source)
        out = mono if self._resampler is None else self._resampler(mono, last)
        if len(out):
            self.num_samples += len(out)
            self.on_samples(np.ascontiguousarray(out, dtype=np.float32))

    def _flush(self) -> None:
        if self._resampler is not None:
            self._hand_on(np.zeros(0, np.float32), self._resampler_rate, last=True)
            self._resampler = None

    def finish(self) -> StreamedAudio:
        """Flush the resampler, validate what was decoded and collect the warnings."""
        source = self.source
        if self.seconds == 0:
            raise EmptyAudioError(source, "contains no audio samples")
        if self.invalid:
            raise InvalidSamplesError(
                source, f"contains {self.invalid} NaN or infinite samples (the first at {self.first_invalid_s:.3f} s)"
            )
        self._flush()
        warnings = list(self.warnings)
        if self.peak < _SILENCE_PEAK:
            level = f"{20 * math.log10(self.peak):.1f}" if self.peak > 0 else "-inf"
            warnings.append(f"silent: peak level {level} dBFS; the result is not meaningful")
        clipped = self.clipped_values / self.values
        if clipped >= _CLIP_FRACTION:
            warnings.append(
                f"clipped: {clipped:.1%} of samples are at full scale; the recording is distorted "
                "and the result may be less reliable"
            )
        if self.num_samples < MIN_SAMPLES:
            raise AudioTooShortError(
                source,
                f"audio is {1000 * self.num_samples / SAMPLE_RATE:.1f} ms long; at least 25 ms "
                f"({MIN_SAMPLES} samples at {SAMPLE_RATE} Hz) is needed",
            )
        info = AudioInfo(source, self.format, self.rate, self.channels, self.seconds)
        return StreamedAudio(info, warnings, self.num_samples)


def _decode_array(
    audio: np.ndarray | tuple[np.ndarray, int], sample_rate: int | None, out: _Decoded
) -> None:
    if isinstance(audio, tuple):
        if len(audio) != 2 or not isinstance(audio[0], np.ndarray):
            raise TypeError("an audio tuple must be (numpy array, sample_rate)")
        array, rate = audio[0], operator.index(audio[1])
        if sample_rate is not None and sample_rate != rate:
            raise ValueError(f"sample_rate={sample_rate} contradicts the rate {rate} in the tuple")
    else:
        array, rate = audio, SAMPLE_RATE if sample_rate is None else operator.index(sample_rate)
    if rate <= 0:
        raise AudioError(out.source, f"invalid sample rate {rate} Hz")
    if array.ndim == 1:
        array = array[:, None]
    elif array.ndim == 2:
        if array.shape[0] <= _MAX_CHANNELS_FIRST < array.shape[1]:
            array = array.T
    else:
        raise AudioError(out.source, f"expected a 1-D or 2-D array of samples, got shape {array.shape}")
    out.format = "array"
    if array.size == 0:
        return
    out.check_duration(array.shape[0] / rate)
    out.add(_to_float32(array, out.source), rate)


def _to_float32(array: np.ndarray, source: str) -> np.ndarray:
    """Convert samples to float32, scaling integers to [-1, 1]."""
    kind, bits = array.dtype.kind, array.dtype.itemsize * 8
    if kind == "f":
        return array.astype(np.float32, copy=False)
    if kind in "iu":
        scaled = array.astype(np.float32) * np.float32(2.0 ** (1 - bits))
        return scaled - np.float32(1.0) if kind == "u" else scaled
    raise AudioError(
        source, f"unsupported sample type {array.dtype}; expected integer or floating-point samples"
    )


@dataclass(frozen=True)
class _Encoded:
    """An encoded input: a file on disk or bytes in memory."""

    path: Path | None = None
    data: bytes = b""

    @contextmanager
    def open(self) -> Iterator[BinaryIO]:
        if self.path is None:
            yield io.BytesIO(self.data)
        else:
            with open(self.path, "rb") as f:
                yield f


def _encoded_input(audio: AudioInput, source: str) -> _Encoded:
    if isinstance(audio, (str, os.PathLike)):
        return _Encoded(path=_checked_path(audio, source))
    if isinstance(audio, (bytes, bytearray, memoryview)):
        data = bytes(audio)
    elif hasattr(audio, "read"):
        try:
            data = audio.read()
        except (OSError, ValueError) as e:  # ValueError: the file object is closed
            raise AudioError(source, f"cannot read from the file object: {e}") from e
        if not isinstance(data, (bytes, bytearray)):
            raise AudioError(source, "the file object must be opened in binary mode ('rb')")
        data = bytes(data)
    else:
        raise TypeError(
            f"unsupported audio input of type {type(audio).__name__}: expected a path, bytes, "
            "a binary file object, a NumPy array or an (array, sample_rate) tuple"
        )
    if not data:
        raise EmptyAudioError(source, "contains no audio samples (0 bytes)")
    return _Encoded(data=data)


def _checked_path(audio: str | os.PathLike, source: str) -> Path:
    path = Path(os.fsdecode(audio))
    try:
        is_file, size = path.is_file(), path.stat().st_size
        if is_file:
            with open(path, "rb"):
                pass
    except (FileNotFoundError, NotADirectoryError) as e:
        raise AudioFileNotFoundError(source, "file not found") from e
    except PermissionError as e:
        raise AudioError(source, "permission denied: the file cannot be read") from e
    except (OSError, ValueError) as e:
        raise AudioError(source, f"cannot read the file: {e}") from e
    if path.is_dir():
        raise AudioFileNotFoundError(source, "is a directory, not an audio file")
    if not is_file:
        raise AudioFileNotFoundError(source, "is not a regular file")
    if size == 0:
        raise EmptyAudioError(source, "contains no audio samples (the file is empty)")
    return path


class _CannotOpen(Exception):
    """A decoder could not open the input; ``recognised`` if it still knew the format."""

    def __init__(self, detail: str, recognised: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.recognised = recognised


def _decode_encoded(encoded: _Encoded, out: _Decoded) -> None:
    with encoded.open() as f:
        head = f.read(16)
        # The decoders silently return whatever precedes a cut in these formats: check their framing first.
        if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
            _check_wav_chunks(f, out.source)
        elif head[:4] == b"OggS":
            _check_ogg_pages(f, out)
        elif head[:3] == b"ID3" or _mpeg_frame(head, 0) is not None:
            f.seek(0)
            _check_mpeg_frames(f.read(), out.source)
        failures = []
        for decode in (_decode_soundfile, _decode_pyav):
            f.seek(0)
            try:
                decode(f, out)
                return
            except _CannotOpen as e:
                failures.append(e)
    if any(failure.recognised for failure in failures) or _looks_like_audio(head):
        detail = next((failure.detail for failure in failures if failure.recognised), failures[-1].detail)
        raise CorruptAudioError(out.source, f"file is truncated or corrupt: {detail}")
    raise NotAudioError(out.source, "not an audio file (no decoder recognised it)")


def _decode_soundfile(f: BinaryIO, out: _Decoded) -> None:
    try:
        sound = sf.SoundFile(f)
    except sf.LibsndfileError as e:
        raise _CannotOpen(e.error_string, recognised=e.code == _SF_ERR_MALFORMED_FILE) from e
    with sound:
        declared, rate = sound.frames, sound.samplerate
        # soundfile stops reading at the length libsndfile reports. For an MP3 without a Xing header that
        # is an estimate from the first frame's bitrate, and for a FLAC without a length it is a sentinel
        # soundfile fails on; FFmpeg reads both to the end.
        if sound.format == "MP3" or declared >= _SF_UNKNOWN_FRAMES:
            raise _CannotOpen("libsndfile does not know the exact length", recognised=True)
        out.format = _SOUNDFILE_FORMATS.get(sound.format, sound.format.lower())
        out.check_duration(declared / rate)
        try:
            while len(block := sound.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)):
                out.add(block, rate)
        except sf.LibsndfileError as e:
            detail = e.error_string
            if out.frames < declared:
                present = out.frames + _decodable_frames(sound, out.frames)
                detail = f"{_promise(declared / rate, present / rate)} ({detail})"
            raise CorruptAudioError(out.source, f"file is truncated or corrupt: {detail}") from e
    if out.frames < declared:
        promise = _promise(declared / rate, out.frames / rate)
        raise CorruptAudioError(out.source, f"file is truncated: {promise}")


def _decodable_frames(sound: sf.SoundFile, start: int, step: int = 1024) -> int:
    """How many frames past ``start`` still decode, in small steps: a failed large read returns
    nothing, so without this a file 90 % present would be reported as holding 0 s."""
    count = 0
    try:
        sound.seek(start)
        while len(block := sound.read(step, dtype="float32", always_2d=True)):
            count += len(block)
    except (sf.LibsndfileError, RuntimeError):
        pass
    return count


def _promise(promised_s: float, present_s: float) -> str:
    return f"the header promises {promised_s:.2f} s of audio but the file holds only {present_s:.2f} s"


def _decode_pyav(f: BinaryIO, out: _Decoded) -> None:
    try:
        container = av.open(f, metadata_errors="ignore")
    except av.error.FFmpegError as e:
        raise _CannotOpen(_pyav_detail(e), recognised=False) from e
    with container:
        if not container.streams.audio:
            kind = container.format.long_name
            if container.streams.video:
                raise NotAudioError(out.source, f"not an audio file (no audio stream; FFmpeg sees {kind})")
            # Damage if the file starts like an audio container (e.g. an MP4 cut inside its index).
            raise _CannotOpen(f"no readable audio stream in the {kind} container", recognised=False)
        stream = container.streams.audio[0]
        out.format = _pyav_format(container, stream)
        expected_s = _pyav_duration(container, stream, out.format)
        if expected_s is not None:
            out.check_duration(expected_s)
        good = bad = 0
        decode_error = demux_error = None
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.error.FFmpegError as e:
                    bad, decode_error = bad + 1, e
                    continue
                good += 1
                for frame in frames:
                    out.add(_frame_samples(frame), frame.sample_rate)
        except av.error.FFmpegError as e:
            demux_error = e
    if decode_error is not None and (out.frames == 0 or bad >= good):
        detail = _pyav_detail(decode_error)
        raise CorruptAudioError(
            out.source, f"file is corrupt: {bad} of {bad + good} packets could not be decoded ({detail})"
        )
    if demux_error is not None and out.frames == 0:
        raise CorruptAudioError(out.source, f"file is truncated or corrupt: {_pyav_detail(demux_error)}")
    if expected_s is not None and expected_s - out.duration_s > max(0.05, 0.001 * expected_s):
        raise CorruptAudioError(
            out.source,
            f"file is truncated: the container says {expected_s:.2f} s but only "
            f"{out.duration_s:.2f} s of audio could be decoded",
        )
    if demux_error is not None:
        out.warnings.append(
            f"decoding stopped early at {out.duration_s:.2f} s ({_pyav_detail(demux_error)}); "
            "the audio may be incomplete"
        )
    if bad:
        packets = "1 damaged packet was" if bad == 1 else f"{bad} damaged packets were"
        out.warnings.append(f"{packets} skipped; the audio has gaps")


def _pyav_detail(error: av.error.FFmpegError) -> str:
    return error.strerror or str(error)


def _pyav_format(container: av.container.InputContainer, stream: av.audio.stream.AudioStream) -> str:
    names = container.format.name.split(",")
    if "mp4" in names:
        brand = str(container.metadata.get("major_brand", "")).strip().upper()
        return "m4a" if brand in _M4A_BRANDS else "mp4"
    if "matroska" in names:
        # FFmpeg has one demuxer for both; WebM allows only Opus and Vorbis audio.
        return "webm" if stream.codec_context.name in ("opus", "vorbis") else "matroska"
    return names[0]


def _pyav_duration(
    container: av.container.InputContainer, stream: av.audio.stream.AudioStream, fmt: str
) -> float | None:
    """The audio duration the container's header states, or None if it gives none we can trust."""
    if fmt not in _PYAV_EXACT_DURATION:
        return None
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and len(container.streams) == 1:
        return container.duration / av.time_base
    return None


def _frame_samples(frame: av.AudioFrame) -> np.ndarray:
    """A decoded frame as float32 of shape (samples, channels), for every FFmpeg sample format."""
    # Read the planes directly: frame.to_ndarray() does not support the 64-bit integer formats.
    dtype = _PYAV_DTYPES[frame.format.name.removesuffix("p")]
    channels = frame.layout.nb_channels
    if frame.format.is_planar:
        planes = [np.frombuffer(plane, dtype, frame.samples) for plane in frame.planes[:channels]]
        array = np.stack(planes, axis=1)
    else:
        array = np.frombuffer(frame.planes[0], dtype, frame.samples * channels).reshape(-1, channels)
    return _to_float32(array, "<frame>")


def _looks_like_audio(head: bytes) -> bool:
    """Whether ``head`` starts like a common audio container, so a decoding failure means damage."""
    if head[:4] in (b"RIFF", b"RF64", b"FORM") and head[8:12] in (b"WAVE", b"AIFF", b"AIFC"):
        return True
    if head[:4] in (b"fLaC", b"OggS", b"caff", b".snd", b"\x1aE\xdf\xa3") or head[:3] == b"ID3":
        return True
    if head[4:8] == b"ftyp":  # MP4 / M4A
        return True
    is_adts = len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0
    return is_adts or _mpeg_frame(head, 0) is not None


def _check_wav_chunks(f: BinaryIO, source: str) -> None:
    """Raise if a WAV file ends before its data chunk does (libsndfile just shortens it)."""
    size = f.seek(0, io.SEEK_END)
    pos, byte_rate = 12, 0
    while pos + 8 <= size:
        f.seek(pos)
        chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
        if chunk_id == b"fmt " and chunk_size >= 12:
            byte_rate = int.from_bytes(f.read(12)[8:12], "little")  # 0 if the file ends first
        elif chunk_id == b"data":
            present = size - pos - 8
            # 0 and 0xFFFFFFFF are placeholders left by writers that could not seek back to the header.
            if chunk_size not in (0, 0xFFFFFFFF) and chunk_size > present and byte_rate:
                promise = _promise(chunk_size / byte_rate, present / byte_rate)
                raise CorruptAudioError(source, f"file is truncated: {promise}")
            return
        pos += 8 + chunk_size + (chunk_size & 1)


@dataclass(frozen=True)
class _MpegFrame:
    length: int
    samples: int
    rate: int
    side_info: int  # bytes of Layer III side information after the header, where a Xing tag starts


_MPEG_KBPS = {  # by (MPEG-1, layer); bitrate index 1..14
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPEG_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}  # by version bits


def _mpeg_frame(data: bytes, pos: int) -> _MpegFrame | None:
    """Parse the MPEG audio frame header at ``pos``; None if there is no valid one."""
    if pos + 4 > len(data) or data[pos] != 0xFF or data[pos + 1] & 0xE0 != 0xE0:
        return None
    b1, b2, b3 = data[pos + 1], data[pos + 2], data[pos + 3]
    version, layer = (b1 >> 3) & 3, 4 - ((b1 >> 1) & 3)
    bitrate_index, rate_index = b2 >> 4, (b2 >> 2) & 3
    # Reserved values, and the free-format bitrate whose frame length is not in the header.
    if version == 1 or layer == 4 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    mpeg1 = version == 3
    bitrate = _MPEG_KBPS[(mpeg1, layer if mpeg1 or layer == 1 else 2)][bitrate_index - 1] * 1000
    rate, padding, mono = _MPEG_RATES[version][rate_index], (b2 >> 1) & 1, b3 >> 6 == 3
    if layer == 1:
        return _MpegFrame((12 * bitrate // rate + padding) * 4, 384, rate, 0)
    samples = 1152 if mpeg1 or layer == 2 else 576
    side_info = (17 if mono else 32) if mpeg1 else (9 if mono else 17)
    return _MpegFrame(samples // 8 * bitrate // rate + padding, samples, rate, side_info)


def _check_mpeg_frames(data: bytes, source: str) -> None:
    """Raise if MPEG audio (MP3) is truncated, as far as its frame headers show.

    A last frame that runs past the end of the data is cut off, and a file that ends cleanly with fewer
    frames than its Xing/Info/VBRI header counts has lost whole frames. A cut at a frame boundary of a
    file without such a header is indistinguishable from a shorter file.
    """
    pos = 0
    while data[pos : pos + 3] == b"ID3" and pos + 10 <= len(data):
        size = 0
        for byte in data[pos + 6 : pos + 10]:  # "synchsafe": 7 bits per byte
            size = size << 7 | byte & 0x7F
        pos += 10 + size + (10 if data[pos + 5] & 0x10 else 0)  # header, tag, optional footer
    first = _mpeg_frame(data, pos)
    if first is None:
        return
    promised = _mpeg_frame_count(data, pos, first)
    frames = 0
    while (frame := _mpeg_frame(data, pos)) is not None:
        if pos + frame.length > len(data):
            present = f"{len(data) - pos} of {frame.length} bytes present"
            raise CorruptAudioError(source, f"file is truncated: its last MPEG frame is cut off ({present})")
        pos += frame.length
        frames += 1
    if promised is not None and frames - 1 < promised and pos == len(data):  # the tag frame has no audio
        seconds_per_frame = first.samples / first.rate
        promise = _promise(promised * seconds_per_frame, (frames - 1) * seconds_per_frame)
        raise CorruptAudioError(source, f"file is truncated: {promise}")


def _mpeg_frame_count(data: bytes, pos: int, frame: _MpegFrame) -> int | None:
    """The frame count in a Xing/Info or VBRI tag in the frame at ``pos``, or None."""
    tag = pos + 4 + frame.side_info
    if data[tag : tag + 4] in (b"Xing", b"Info"):
        flags = int.from_bytes(data[tag + 4 : tag + 8], "big")
        return int.from_bytes(data[tag + 8 : tag + 12], "big") if flags & 1 else None
    if data[pos + 36 : pos + 40] == b"VBRI":
        return int.from_bytes(data[pos + 50 : pos + 54], "big")
    return None


def _check_ogg_pages(f: BinaryIO, out: _Decoded) -> None:
    """Raise if the last Ogg page is cut off; warn if the stream ends without its end-of-stream mark."""
    size = f.seek(0, io.SEEK_END)
    pos = flags = 0
    while pos + 27 <= size:
        f.seek(pos)
        header = f.read(27)
        if header[:4] != b"OggS":
            return  # trailing junk such as a stray tag: not a cut
        lacing = f.read(header[26])
        end = pos + 27 + header[26] + sum(lacing)
        if end > size:
            break
        pos, flags = end, header[5]
    if pos < size:
        f.seek(pos)
        if f.read(4) == b"OggS"[: size - pos]:  # the rest is the start of a page, not junk
            raise CorruptAudioError(
                out.source, f"file is truncated: its last Ogg page is cut off ({size - pos} bytes present)"
            )
        return
    if not flags & 0x04:
        out.warnings.append("the Ogg stream ends without an end-of-stream mark; the file may be truncated")


class StreamResampler:
    """Mono float32 blocks at ``rate`` -> 16 kHz, as they arrive (soxr, high quality): the same
    samples whatever the block sizes."""

    def __init__(self, rate: int, source: str) -> None:
        self.source = source
        try:
            self._stream = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        except (ValueError, RuntimeError) as e:
            raise AudioError(source, f"cannot resample from {rate} Hz to {SAMPLE_RATE} Hz: {e}") from e

    def __call__(self, mono: np.ndarray, last: bool = False) -> np.ndarray:
        """The 16 kHz samples of the next block (``last``: also whatever the filter still holds)."""
        try:
            return self._stream.resample_chunk(np.ascontiguousarray(mono, dtype=np.float32), last=last)
        except (ValueError, RuntimeError) as e:
            raise AudioError(self.source, f"cannot resample to {SAMPLE_RATE} Hz: {e}") from e
