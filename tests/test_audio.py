"""Tests of emotion2vec_plus.audio: every input kind, every format, every error, on real files.

All files are written into tmp_path by the tests themselves: WAV/FLAC/Ogg Vorbis with soundfile,
MP3/M4A/Ogg Opus/WebM by encoding with PyAV. Real speech comes from ../shared/datasets (skipped if absent).
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import soxr

from emotion2vec_plus.audio import (
    DEFAULT_MAX_DURATION_S,
    MIN_SAMPLES,
    SAMPLE_RATE,
    Audio,
    AudioInfo,
    describe_source,
    load_audio,
    replayable_input,
    stream_audio,
)
from emotion2vec_plus.errors import (
    AudioError,
    AudioFileNotFoundError,
    AudioTooLongError,
    AudioTooShortError,
    CorruptAudioError,
    EmptyAudioError,
    InvalidSamplesError,
    NotAudioError,
)

ROOT = Path(__file__).resolve().parents[1]
SPEECH_CLIP = ROOT.parent / "shared" / "datasets" / "RAVDESS" / "Actor_01" / "03-01-01-01-01-01-01.flac"


def sine(seconds: float, rate: int, freq: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_frequency(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spectrum)])


def encode(
    path: Path, signal: np.ndarray, rate: int, codec: str, bit_rate: int | None = None, **options: str
) -> Path:
    """Encode a (N,) or (N, 2) float signal with PyAV; the container follows the file extension."""
    stereo = signal.ndim == 2
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "stereo" if stereo else "mono"
        if bit_rate:
            stream.bit_rate = bit_rate
        names = [f.name for f in stream.codec_context.codec.audio_formats]
        fmt = "fltp" if "fltp" in names else "flt"
        channels = signal.reshape(len(signal), -1)
        for start in range(0, len(signal), 1024):
            block = channels[start : start + 1024]
            array = block.T if fmt == "fltp" else block.reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(array), format=fmt, layout=stream.layout.name
            )
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def png_bytes() -> bytes:
    """A real 2x2 RGB PNG image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    pixels = zlib.compress(b"".join(b"\x00" + b"\xff\x00\x00" * 2 for _ in range(2)))
    header = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def expect_error(cls: type[AudioError], audio, source: str, *, match: str = "", **kwargs) -> AudioError:
    """Load ``audio``, expecting exactly ``cls``; the message must start with the input's name."""
    with pytest.raises(cls) as caught:
        load_audio(audio, **kwargs)
    error = caught.value
    assert type(error) is cls
    assert isinstance(error, AudioError)
    assert error.source == source
    assert str(error).startswith(f"{source}: ")
    assert match.lower() in error.reason.lower()
    return error


@pytest.fixture
def wav_path(tmp_path: Path) -> Path:
    path = tmp_path / "tone.wav"
    sf.write(path, sine(1.0, SAMPLE_RATE), SAMPLE_RATE)
    return path


MP3_FRAME_BYTES = 144  # 32 kbit/s at 16 kHz (MPEG-2 Layer III, 576 samples): constant, never padded


@pytest.fixture(scope="module")
def mp3_files(tmp_path_factory) -> dict[str, bytes]:
    """The same 2 s tone as MP3, with a Xing/Info header (the default) and without one."""
    folder = tmp_path_factory.mktemp("mp3")
    tone = sine(2.0, SAMPLE_RATE)
    xing = encode(folder / "xing.mp3", tone, SAMPLE_RATE, "libmp3lame", bit_rate=32000)
    plain = encode(folder / "plain.mp3", tone, SAMPLE_RATE, "libmp3lame", bit_rate=32000, write_xing="0")
    return {"xing": xing.read_bytes(), "plain": plain.read_bytes()}


@pytest.fixture
def speech_clip() -> Path:
    if not SPEECH_CLIP.is_file():
        pytest.skip(f"real speech clip not found at {SPEECH_CLIP} (the shared datasets folder is missing)")
    return SPEECH_CLIP


# ---------------------------------------------------------------- input kinds


def test_path_str_and_pathlike(wav_path: Path) -> None:
    for audio in (str(wav_path), wav_path):
        result = load_audio(audio)
        assert isinstance(result, Audio)
        assert result.info == AudioInfo(str(wav_path), "wav", SAMPLE_RATE, 1, 1.0)
        assert result.samples.dtype == np.float32 and result.samples.ndim == 1
        assert result.samples.flags.c_contiguous
        assert result.duration_s == 1.0
        assert result.warnings == []
        np.testing.assert_allclose(result.samples, sine(1.0, SAMPLE_RATE), atol=1e-4)


def test_bytes_bytearray_memoryview(wav_path: Path) -> None:
    data = wav_path.read_bytes()
    for audio in (data, bytearray(data), memoryview(data)):
        result = load_audio(audio)
        assert result.info.source == "<bytes>"
        assert result.info.format == "wav"
        assert len(result.samples) == SAMPLE_RATE


def test_file_objects_are_read_and_left_open(wav_path: Path) -> None:
    stream = io.BytesIO(wav_path.read_bytes())
    result = load_audio(stream)
    assert result.info.source == "<stream>"
    assert len(result.samples) == SAMPLE_RATE
    assert not stream.closed

    with open(wav_path, "rb") as handle:
        result = load_audio(handle)
        assert not handle.closed
    assert result.info.source == str(wav_path)
    assert len(result.samples) == SAMPLE_RATE


def test_file_object_of_compressed_audio_uses_pyav(tmp_path: Path) -> None:
    data = encode(tmp_path / "tone.m4a", sine(1.0, SAMPLE_RATE), SAMPLE_RATE, "aac").read_bytes()
    stream = io.BytesIO(data)
    result = load_audio(stream)
    assert result.info.format == "m4a"
    assert not stream.closed


def test_unreadable_file_objects_are_audio_errors(wav_path: Path) -> None:
    with open(wav_path, encoding="latin-1") as handle:
        expect_error(AudioError, handle, str(wav_path), match="binary mode")
    expect_error(AudioError, handle, str(wav_path), match="closed file")


def test_array_with_sample_rate_and_tuple() -> None:
    tone = sine(1.0, 8000)
    for result in (load_audio(tone, sample_rate=8000), load_audio((tone, 8000))):
        assert result.info == AudioInfo("<array>", "array", 8000, 1, 1.0)
        assert abs(len(result.samples) - SAMPLE_RATE) <= 1


def test_bare_array_is_taken_as_16_khz_and_copied() -> None:
    tone = sine(0.5, SAMPLE_RATE)
    result = load_audio(tone)
    assert result.info.sample_rate == SAMPLE_RATE
    np.testing.assert_array_equal(result.samples, tone)
    result.samples[:] = 0
    assert tone.any(), "the caller's array must not be modified through the result"


def test_float64_array_becomes_float32() -> None:
    result = load_audio(sine(0.5, SAMPLE_RATE).astype(np.float64))
    assert result.samples.dtype == np.float32


@pytest.mark.parametrize("dtype", [np.int16, np.int32])
def test_integer_arrays_are_scaled(dtype) -> None:
    full_scale = np.iinfo(dtype).max + 1
    ints = np.array([full_scale // 2, -full_scale // 4] * 400, dtype=dtype)
    result = load_audio(ints)
    np.testing.assert_allclose(result.samples[:2], [0.5, -0.25])


def test_stereo_downmix_is_channel_mean() -> None:
    left, right = sine(1.0, SAMPLE_RATE, 440), sine(1.0, SAMPLE_RATE, 660, amplitude=0.2)
    stereo = np.stack([left, right], axis=1)
    result = load_audio((stereo, SAMPLE_RATE))
    assert result.info.channels == 2
    np.testing.assert_allclose(result.samples, stereo.mean(axis=1), atol=1e-7)
    channels_first = load_audio((stereo.T.copy(), SAMPLE_RATE))
    assert channels_first.info.channels == 2
    np.testing.assert_array_equal(channels_first.samples, result.samples)


def test_stereo_file_downmix(tmp_path: Path) -> None:
    stereo = np.stack([sine(1.0, 22050, 440), sine(1.0, 22050, 440) * 0], axis=1)
    sf.write(tmp_path / "stereo.flac", stereo, 22050)
    result = load_audio(tmp_path / "stereo.flac")
    assert (result.info.channels, result.info.sample_rate) == (2, 22050)
    assert np.max(np.abs(result.samples)) == pytest.approx(0.25, abs=0.01)


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_files_are_resampled_to_16_khz(tmp_path: Path, rate: int) -> None:
    path = tmp_path / f"tone_{rate}.wav"
    sf.write(path, sine(1.5, rate, 1000.0), rate)
    result = load_audio(path)
    assert result.info.sample_rate == rate
    assert result.info.duration_s == pytest.approx(1.5)
    assert abs(len(result.samples) - int(1.5 * SAMPLE_RATE)) <= 1
    assert peak_frequency(result.samples, SAMPLE_RATE) == pytest.approx(1000.0, abs=2.0)


def test_name_overrides_the_display_name(wav_path: Path) -> None:
    assert load_audio(wav_path, name="clip 7").info.source == "clip 7"
    expect_error(AudioFileNotFoundError, wav_path.with_name("gone.wav"), "clip 7", name="clip 7")


def test_describe_source(wav_path: Path) -> None:
    assert describe_source(str(wav_path)) == str(wav_path)
    assert describe_source(wav_path) == str(wav_path)
    assert describe_source(b"RIFF") == "<bytes>"
    assert describe_source(io.BytesIO()) == "<stream>"
    assert describe_source(np.zeros(3)) == "<array>"
    assert describe_source((np.zeros(3), 8000)) == "<array>"
    assert describe_source(np.zeros(3), name="mine") == "mine"
    assert describe_source(42) == "<int>"  # type: ignore[arg-type]
    with open(wav_path, "rb") as handle:
        assert describe_source(handle) == str(wav_path)


def test_wrong_arguments_are_programming_errors(wav_path: Path) -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        load_audio(wav_path, sample_rate=8000)
    with pytest.raises(ValueError, match="contradicts"):
        load_audio((np.zeros(800), 8000), sample_rate=16000)
    with pytest.raises(ValueError, match="max_duration_s"):
        load_audio(wav_path, max_duration_s=0)
    with pytest.raises(TypeError, match="unsupported audio input"):
        load_audio(42)  # type: ignore[arg-type]


def test_unusable_arrays() -> None:
    expect_error(AudioError, np.zeros((2, 3, 800)), "<array>", match="1-D or 2-D")
    expect_error(AudioError, np.zeros(800, dtype=complex), "<array>", match="unsupported sample type")
    expect_error(AudioError, (np.zeros(800), 0), "<array>", match="invalid sample rate")


# ---------------------------------------------------------------- formats


FORMATS = [
    # (file name, rate, how to write it, expected AudioInfo.format)
    ("tone.wav", 16000, "soundfile", "wav"),
    ("tone.flac", 44100, "soundfile", "flac"),
    ("tone.ogg", 22050, "soundfile", "ogg"),  # Vorbis
    ("tone.mp3", 16000, "libmp3lame", "mp3"),
    ("tone.m4a", 44100, "aac", "m4a"),  # the brand FFmpeg and phones write for .m4a: M4A
    ("tone.mp4", 44100, "aac", "mp4"),
    ("tone.opus", 48000, "libopus", "ogg"),  # Opus in Ogg
    ("tone.webm", 48000, "libopus", "webm"),
]


@pytest.mark.parametrize(("file_name", "rate", "writer", "fmt"), FORMATS, ids=[f[0] for f in FORMATS])
def test_every_format_decodes(tmp_path: Path, file_name: str, rate: int, writer: str, fmt: str) -> None:
    path = tmp_path / file_name
    tone = sine(1.5, rate, 440.0)
    if writer == "soundfile":
        sf.write(path, tone, rate)
    else:
        encode(path, tone, rate, writer)
    for audio in (path, path.read_bytes()):
        result = load_audio(audio)
        assert result.info.format == fmt
        assert result.info.sample_rate == rate
        assert result.info.channels == 1
        assert result.info.duration_s == pytest.approx(1.5, abs=0.08)
        assert result.duration_s == pytest.approx(1.5, abs=0.08)
        assert peak_frequency(result.samples, SAMPLE_RATE) == pytest.approx(440.0, abs=3.0)
        assert result.warnings == []


def test_stereo_aac_decodes_planar_frames(tmp_path: Path) -> None:
    left, right = sine(1.0, 44100, 440), sine(1.0, 44100, 440, amplitude=0.1)
    path = encode(tmp_path / "stereo.m4a", np.stack([left, right], axis=1), 44100, "aac")
    result = load_audio(path)
    assert (result.info.channels, result.info.format) == (2, "m4a")
    assert np.max(np.abs(result.samples[2000:-2000])) == pytest.approx(0.3, abs=0.03)


PCM_IN_FFMPEG_CONTAINERS = [
    # (codec, container that libsndfile cannot open, the sample format FFmpeg decodes it to)
    ("pcm_u8", "mka", "u8"),
    ("pcm_s16le", "mka", "s16"),
    ("pcm_s32le", "mka", "s32"),
    ("pcm_f32le", "mka", "flt"),
    ("pcm_f64le", "mka", "dbl"),
    ("pcm_s16le_planar", "nut", "s16p"),
    ("pcm_s64le", "nut", "s64"),  # not supported by AudioFrame.to_ndarray()
]


@pytest.mark.parametrize(("codec", "ext", "sample_format"), PCM_IN_FFMPEG_CONTAINERS, ids=lambda v: v)
def test_every_pyav_sample_format(tmp_path: Path, codec: str, ext: str, sample_format: str) -> None:
    stereo = np.stack([sine(0.5, 8000), sine(0.5, 8000, 220.0, amplitude=0.25)], axis=1)
    path = tmp_path / f"pcm.{ext}"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=8000)
        stream.layout = "stereo"
        frame = av.AudioFrame.from_ndarray(stereo.reshape(1, -1), format="flt", layout="stereo")
        frame.sample_rate = 8000
        resampler = av.AudioResampler(format=sample_format, layout="stereo", rate=8000)
        for converted in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(converted):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with av.open(str(path)) as container:
        assert next(container.decode(audio=0)).format.name == sample_format

    result = load_audio(path)
    assert (result.info.sample_rate, result.info.channels, result.info.duration_s) == (8000, 2, 0.5)
    expected = soxr.resample(stereo.mean(axis=1), 8000, SAMPLE_RATE, quality="HQ")
    np.testing.assert_allclose(result.samples, expected, atol=0.01 if sample_format == "u8" else 1e-4)


def test_real_speech_flac(speech_clip: Path) -> None:
    result = load_audio(speech_clip)
    reference, rate = sf.read(speech_clip, dtype="float32")
    assert (result.info.format, result.info.sample_rate, result.info.channels) == ("flac", rate, 1)
    assert result.info.duration_s == pytest.approx(len(reference) / rate)
    assert result.warnings == []
    expected = soxr.resample(reference, rate, SAMPLE_RATE, quality="HQ")
    np.testing.assert_allclose(result.samples, expected, atol=1e-6)


@pytest.mark.parametrize(
    ("file_name", "codec"), [("speech.mp3", "libmp3lame"), ("speech.m4a", "aac"), ("speech.webm", "libopus")]
)
def test_real_speech_compressed(speech_clip: Path, tmp_path: Path, file_name: str, codec: str) -> None:
    speech, rate = sf.read(speech_clip, dtype="float32")
    encode_rate = 48000 if codec == "libopus" else rate
    path = encode(tmp_path / file_name, soxr.resample(speech, rate, encode_rate), encode_rate, codec)
    result = load_audio(path)
    assert result.duration_s == pytest.approx(len(speech) / rate, abs=0.08)
    assert result.warnings == []


def test_real_speech_stereo_44k_round_trip(speech_clip: Path, tmp_path: Path) -> None:
    speech, rate = sf.read(speech_clip, dtype="float32")
    speech_44k = soxr.resample(speech, rate, 44100, quality="HQ")
    sf.write(tmp_path / "speech.wav", np.stack([speech_44k, speech_44k], axis=1), 44100, subtype="FLOAT")
    result = load_audio(tmp_path / "speech.wav")
    assert abs(len(result.samples) - len(speech)) <= 1
    n = min(len(result.samples), len(speech))
    assert np.corrcoef(result.samples[:n], speech[:n])[0, 1] > 0.999


def test_streaming_hands_out_small_blocks_that_join_into_the_loaded_samples(tmp_path: Path) -> None:
    """A 3-minute 44.1 kHz stereo FLAC comes out in blocks of at most ~1.5 s at 16 kHz, resampled
    across block edges exactly as the whole signal is (soxr's stream)."""
    rng = np.random.default_rng(3)
    audio = 0.1 * rng.standard_normal((44100 * 180, 2)).astype(np.float32)
    path = tmp_path / "long.flac"
    sf.write(path, audio, 44100, subtype="PCM_16")
    blocks: list[np.ndarray] = []
    streamed = stream_audio(path, blocks.append)
    loaded = load_audio(path)
    assert len(blocks) > 100 and max(len(b) for b in blocks) <= 25000
    assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    assert np.array_equal(np.concatenate(blocks), loaded.samples)
    assert streamed.num_samples == len(loaded.samples) == 16000 * 180
    assert streamed.info == loaded.info and streamed.warnings == loaded.warnings
    whole = soxr.resample(sf.read(path, dtype="float32")[0].mean(axis=1), 44100, 16000, quality="HQ")
    assert np.abs(whole - loaded.samples).max() < 1e-5


def test_a_file_object_is_replayable_as_its_bytes(wav_path: Path) -> None:
    with open(wav_path, "rb") as f:
        data = replayable_input(f)
    assert data == wav_path.read_bytes()
    assert np.array_equal(load_audio(data).samples, load_audio(wav_path).samples)
    assert replayable_input(str(wav_path)) == str(wav_path)


# ---------------------------------------------------------------- errors


def test_missing_path(tmp_path: Path) -> None:
    path = tmp_path / "missing.wav"
    error = expect_error(AudioFileNotFoundError, path, str(path), match="not found")
    assert isinstance(error, FileNotFoundError)


def test_directory(tmp_path: Path) -> None:
    expect_error(AudioFileNotFoundError, tmp_path, str(tmp_path), match="directory")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file(wav_path: Path) -> None:
    wav_path.chmod(0)
    try:
        expect_error(AudioError, wav_path, str(wav_path), match="permission denied")
    finally:
        wav_path.chmod(0o644)


def test_text_file_named_wav(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("These are meeting notes, not a recording.\n" * 20)
    expect_error(NotAudioError, path, str(path), match="not an audio file")


def test_png_image(tmp_path: Path) -> None:
    expect_error(NotAudioError, png_bytes(), "<bytes>", match="not an audio file")
    path = tmp_path / "picture.mp3"
    path.write_bytes(png_bytes())
    expect_error(NotAudioError, path, str(path), match="not an audio file")


def test_random_bytes() -> None:
    noise = np.random.default_rng(1234).bytes(20000)
    expect_error(NotAudioError, noise, "<bytes>", match="no decoder recognised it")


def test_zero_length_wav(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, np.float32), SAMPLE_RATE)
    assert path.stat().st_size > 0  # a header, no samples
    expect_error(EmptyAudioError, path, str(path), match="contains no audio samples")


def test_empty_inputs(tmp_path: Path) -> None:
    expect_error(EmptyAudioError, b"", "<bytes>", match="contains no audio samples")
    expect_error(EmptyAudioError, io.BytesIO(), "<stream>", match="contains no audio samples")
    expect_error(EmptyAudioError, np.zeros(0, np.float32), "<array>", match="contains no audio samples")
    expect_error(EmptyAudioError, np.zeros((0, 2), np.float32), "<array>", match="contains no audio samples")
    path = tmp_path / "zero.flac"
    path.touch()
    expect_error(EmptyAudioError, path, str(path), match="empty")


@pytest.mark.parametrize("fraction", [0.3, 0.9])
def test_truncated_wav(tmp_path: Path, wav_path: Path, fraction: float) -> None:
    data = wav_path.read_bytes()
    path = tmp_path / "cut.wav"
    path.write_bytes(data[: int(len(data) * fraction)])
    error = expect_error(CorruptAudioError, path, str(path), match="truncated")
    assert "promises 1.00 s" in error.reason


def test_wav_cut_inside_its_header(tmp_path: Path, wav_path: Path) -> None:
    path = tmp_path / "header.wav"
    path.write_bytes(wav_path.read_bytes()[:30])
    expect_error(CorruptAudioError, path, str(path), match="truncated or corrupt")


@pytest.mark.parametrize("fraction", [0.3, 0.7])
def test_truncated_flac(tmp_path: Path, fraction: float) -> None:
    source = tmp_path / "tone.flac"
    sf.write(source, sine(2.0, SAMPLE_RATE), SAMPLE_RATE)
    path = tmp_path / "cut.flac"
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    expect_error(CorruptAudioError, path, str(path), match="truncated")


def test_truncated_real_flac_says_how_much_is_there(tmp_path: Path) -> None:
    """A speech FLAC cut at 90 %: the message gives the audio that is present, not 0.00 s."""
    from conftest import speech_clips

    data = speech_clips(4)[3].read_bytes()
    path = tmp_path / "cut.flac"
    path.write_bytes(data[: int(len(data) * 0.9)])
    error = expect_error(CorruptAudioError, path, str(path), match="truncated")
    present = float(error.reason.split("holds only ")[1].split(" s")[0])
    promised = float(error.reason.split("promises ")[1].split(" s")[0])
    assert 0.5 * promised < present < promised


def test_truncated_ogg(tmp_path: Path) -> None:
    source = tmp_path / "tone.ogg"
    sf.write(source, sine(2.0, SAMPLE_RATE), SAMPLE_RATE)
    path = tmp_path / "cut.ogg"
    data = source.read_bytes()
    path.write_bytes(data[:1500])
    expect_error(CorruptAudioError, path, str(path), match="last Ogg page is cut off")
    expect_error(CorruptAudioError, data[:20], "<bytes>", match="cut off")


def test_ogg_cut_at_a_page_boundary_is_a_warning(tmp_path: Path) -> None:
    """Whole pages are intact, so the audio decodes; only the missing end-of-stream mark shows the cut."""
    source = encode(tmp_path / "tone.opus", sine(2.0, 48000), 48000, "libopus")
    data = source.read_bytes()
    boundary = data.rindex(b"OggS", 0, len(data) // 2)
    result = load_audio(data[:boundary])
    assert result.duration_s < 1.5
    assert result.warnings == ["the Ogg stream ends without an end-of-stream mark; the file may be truncated"]


def test_whole_mp3s_decode(mp3_files: dict[str, bytes]) -> None:
    for data in mp3_files.values():
        result = load_audio(data)
        assert result.info.format == "mp3"
        assert result.duration_s == pytest.approx(2.0, abs=0.1)


@pytest.mark.parametrize("kind", ["xing", "plain"])
def test_mp3_cut_to_30_percent(tmp_path: Path, mp3_files: dict[str, bytes], kind: str) -> None:
    """A cut at an arbitrary byte almost always lands inside a frame: its last frame is incomplete."""
    data = mp3_files[kind]
    path = tmp_path / "cut.mp3"
    path.write_bytes(data[: int(len(data) * 0.3)])
    expect_error(CorruptAudioError, path, str(path), match="cut off")


@pytest.mark.parametrize("kind", ["xing", "plain"])
def test_mp3_cut_to_a_few_hundred_bytes(mp3_files: dict[str, bytes], kind: str) -> None:
    for size in (100, 300):
        expect_error(CorruptAudioError, mp3_files[kind][:size], "<bytes>", match="truncated")


def test_mp3_with_xing_header_cut_at_a_frame_boundary(mp3_files: dict[str, bytes]) -> None:
    """The Xing/Info header counts the frames, so losing whole frames is detected too."""
    data = mp3_files["xing"][: -10 * MP3_FRAME_BYTES]
    expect_error(CorruptAudioError, data, "<bytes>", match="promises")


def test_mp3_without_length_header_is_decoded_to_its_end(tmp_path: Path) -> None:
    """libsndfile would stop at a length estimated from the first frame's bitrate: 0.9 s of this 3.5 s."""
    options = {"write_xing": "0", "id3v2_version": "0"}
    loud = encode(tmp_path / "a.mp3", sine(0.5, SAMPLE_RATE), SAMPLE_RATE, "libmp3lame", 160000, **options)
    quiet = encode(tmp_path / "b.mp3", sine(3.0, SAMPLE_RATE), SAMPLE_RATE, "libmp3lame", 16000, **options)
    result = load_audio(loud.read_bytes() + quiet.read_bytes())
    assert result.duration_s == pytest.approx(3.5, abs=0.2)


def test_mp3_without_length_header_cut_at_a_frame_boundary_is_undetectable(
    mp3_files: dict[str, bytes],
) -> None:
    """Documented limitation: such a file is indistinguishable from a genuinely shorter MP3."""
    whole = load_audio(mp3_files["plain"])
    result = load_audio(mp3_files["plain"][: -10 * MP3_FRAME_BYTES])
    assert result.duration_s == pytest.approx(whole.duration_s - 10 * 576 / SAMPLE_RATE, abs=0.01)


@pytest.mark.parametrize("fraction", [0.3, 0.95])
def test_truncated_m4a(tmp_path: Path, fraction: float) -> None:
    data = encode(tmp_path / "tone.m4a", sine(2.0, SAMPLE_RATE), SAMPLE_RATE, "aac").read_bytes()
    path = tmp_path / "cut.m4a"
    path.write_bytes(data[: int(len(data) * fraction)])
    expect_error(CorruptAudioError, path, str(path), match="truncated or corrupt")


def test_truncated_m4a_with_index_first(tmp_path: Path) -> None:
    source = encode(tmp_path / "tone.m4a", sine(2.0, SAMPLE_RATE), SAMPLE_RATE, "aac", movflags="faststart")
    data = source.read_bytes()
    error = expect_error(CorruptAudioError, data[: len(data) // 2], "<bytes>", match="truncated")
    assert "container says 2.00 s" in error.reason


@pytest.mark.parametrize("file_name", ["tone.webm", "tone.opus"])
def test_truncated_opus(tmp_path: Path, file_name: str) -> None:
    data = encode(tmp_path / file_name, sine(2.0, 48000), 48000, "libopus").read_bytes()
    for size in (len(data) // 2, 300):
        expect_error(CorruptAudioError, data[:size], "<bytes>", match="truncated")


def test_too_short(tmp_path: Path) -> None:
    path = tmp_path / "click.wav"
    sf.write(path, sine(0.010, 48000), 48000)
    error = expect_error(AudioTooShortError, path, str(path), match="10.0 ms")
    assert "at least 25 ms" in error.reason
    load_audio(sine(MIN_SAMPLES / SAMPLE_RATE, SAMPLE_RATE))  # exactly one frame is enough


def test_too_long(tmp_path: Path) -> None:
    path = tmp_path / "long.flac"
    sf.write(path, sine(3.0, 8000), 8000)
    error = expect_error(AudioTooLongError, path, str(path), match="3.00 s", max_duration_s=2.0)
    assert "2.00 s" in error.reason and "max_duration_s" in error.reason
    assert load_audio(path, max_duration_s=None).info.duration_s == 3.0
    assert DEFAULT_MAX_DURATION_S == 4 * 3600.0
    expect_error(AudioTooLongError, (np.zeros(48000), 16000), "<array>", match="3.00 s", max_duration_s=2.0)


def test_too_long_compressed(tmp_path: Path, mp3_files: dict[str, bytes]) -> None:
    webm = encode(tmp_path / "tone.webm", sine(3.0, 48000), 48000, "libopus")
    expect_error(AudioTooLongError, webm, str(webm), match="is 3.0", max_duration_s=1.0)
    # An MP3 without a length header is stopped once decoding passes the limit.
    plain = mp3_files["plain"]
    expect_error(AudioTooLongError, plain, "<bytes>", match="decoding stopped", max_duration_s=1.0)


def test_nan_array() -> None:
    samples = sine(1.0, SAMPLE_RATE)
    samples[8000] = np.nan
    error = expect_error(InvalidSamplesError, samples, "<array>", match="NaN or infinite")
    assert "0.500 s" in error.reason


def test_inf_in_float_wav(tmp_path: Path) -> None:
    samples = sine(1.0, SAMPLE_RATE)
    samples[100:103] = np.inf
    path = tmp_path / "inf.wav"
    sf.write(path, samples, SAMPLE_RATE, subtype="FLOAT")
    error = expect_error(InvalidSamplesError, path, str(path), match="3 NaN or infinite")
    assert str(path) in str(error)


# ---------------------------------------------------------------- warnings


def test_silent_file_is_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    result = load_audio(path)
    assert result.warnings == ["silent: peak level -inf dBFS; the result is not meaningful"]
    quiet = load_audio(sine(1.0, SAMPLE_RATE, amplitude=1e-5))
    assert quiet.warnings == ["silent: peak level -100.0 dBFS; the result is not meaningful"]


def test_clipped_file_is_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "loud.wav"
    sf.write(path, np.clip(sine(1.0, SAMPLE_RATE, amplitude=2.0), -1, 1), SAMPLE_RATE, subtype="PCM_16")
    result = load_audio(path)
    assert len(result.warnings) == 1 and result.warnings[0].startswith("clipped: ")
    assert load_audio(sine(1.0, SAMPLE_RATE, amplitude=0.9)).warnings == []
