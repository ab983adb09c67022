"""Cache the frozen part of the compact model v2's encoder for every training clip.

v2 fine-tunes Whisper-base's top blocks; the blocks below stay as released. Their output does
not change during training, so it is computed once per clip and augmentation variant and
stored: the input of block ``--first-tuned`` (512-d frames at 50 Hz, float16) of every clip of
RAVDESS, CASIA, nEMO and EMOVO, concatenated in one memory-mappable array per variant, plus an
index (clip -> offset, frames). About 1 GB per variant. Beside each variant,
``VARIANT_low_pooled.npy`` holds the hidden states below that block (0 .. first_tuned - 1), each
layer-normalised per frame and averaged over the clip (N, first_tuned * 512). Usage:

    python training/v2_features.py --out CACHE --variants clean,speed0.9,speed1.1,noise15

Variants: clean | speedX (tempo and pitch by X) | noiseNN (white noise at NN dB SNR) |
reverb (a synthetic room: exponentially decaying noise impulse response, RT60 0.3-0.8 s) |
trim (the clip cut to its speech, first to last Silero VAD region, with 0-0.6 s of the clip's own
audio kept on each side at random: what a segment of a longer recording looks like; the corpora
differ in how much silence they leave around each sentence, a cue a model must not learn) |
pad (cut to its speech with 0-0.3 s of its own audio, then 0-1 s of pink-noise room tone 25-50 dB
below the speech added on each side: every corpus with every amount of pause) |
roompad (as pad, but the room tone is the speaker's own, from the quiet edges of their clips
(``room_tone.room_tone``), at its own level: what the pauses of that speaker's recording hold) |
phone (a telephone channel: band-limited to 300-3400 Hz at 8 kHz, 8-bit mu-law, back to 16 kHz) |
babble (2-4 clips of other speakers of the same corpus and speaker fold, summed underneath at 5-15 dB
SNR: people talking in the background, and no audio crossing a split of either evaluation protocol).

Beside each variant, ``VARIANT_speech.npy`` holds the Silero speech probability of every cached
frame (float16, same offsets as the frames; a frame takes the probability of the 32 ms chunk its
middle falls in), so the training can pool the speech frames only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy.signal import fftconvolve

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compact_features import augment as basic_augment, padded_batches  # noqa: E402
from corpora import ALL_CORPORA, read_all, speaker_folds  # noqa: E402

from emotion2vec_plus.models.compact import HOP_SAMPLES  # noqa: E402
from emotion2vec_plus.models.whisper import load_whisper_encoder, log_mel_spectrogram  # noqa: E402

SR = 16000


TRIM_CONTEXT_S = 0.6


def trim_to_speech(wav: np.ndarray, rng: np.random.Generator, max_context_s: float = TRIM_CONTEXT_S) -> np.ndarray:
    """``wav`` from its first speech region's start to its last one's end, each side widened by a
    random 0 - ``max_context_s`` seconds of its own audio (the whole clip if the VAD finds no speech)."""
    from emotion2vec_plus.vad import speech_regions

    regions = speech_regions(wav)
    if not regions:
        return wav
    before, after = rng.uniform(0, max_context_s, size=2)
    start = max(0, regions[0].start - int(before * SR))
    end = min(len(wav), regions[-1].end + int(after * SR))
    return np.ascontiguousarray(wav[start:end])


PAD_MAX_S = 1.0
PAD_TRIM_CONTEXT_S = 0.3


def pink_noise(length: int, level: float, rng: np.random.Generator) -> np.ndarray:
    """``length`` samples of pink noise (power falling 3 dB per octave, as a quiet room's hum and
    rumble do more than white hiss) at RMS ``level``."""
    spectrum = np.fft.rfft(rng.standard_normal(length))
    freqs = np.fft.rfftfreq(length, 1 / SR)
    spectrum[1:] /= np.sqrt(freqs[1:] / freqs[1])
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, n=length)
    return (noise * level / (np.sqrt(np.mean(noise**2)) + 1e-12)).astype(np.float32)


def pad_with_room_tone(wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The clip cut to its speech (0 - PAD_TRIM_CONTEXT_S s of its own audio kept each side), then
    0 - PAD_MAX_S s of room tone added on each side at 25-50 dB below the speech: every corpus's
    speech with every amount of pause around it, so the amount of silence cannot stand for the
    corpus (RAVDESS leaves about 1 s around each sentence, nEMO almost none)."""
    wav = trim_to_speech(wav, rng, PAD_TRIM_CONTEXT_S)
    speech_rms = float(np.sqrt(np.mean(wav**2))) + 1e-8
    level = speech_rms * 10 ** (-rng.uniform(25, 50) / 20)
    before, after = (int(t * SR) for t in rng.uniform(0, PAD_MAX_S, size=2))
    tone = pink_noise(before + after + 1, level, rng)
    return np.ascontiguousarray(np.concatenate([tone[:before], wav, tone[before:before + after]]).astype(np.float32))


def pad_with_own_room_tone(wav: np.ndarray, tone: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The clip cut to its speech (0 - PAD_TRIM_CONTEXT_S s of its own audio kept each side), then
    0 - PAD_MAX_S s of ``tone`` (the speaker's room tone, from a random point, at its own level)
    added on each side with 5 ms crossfades: a sentence as it sits between pauses in that speaker's
    recording. The pink noise of :func:`pad_with_room_tone` is 25-50 dB below the speech; a real
    room is often louder (nEMO's about 25-29 dB below) and never pink."""
    from room_tone import crossfaded

    wav = trim_to_speech(wav, rng, PAD_TRIM_CONTEXT_S)
    looped = np.concatenate([tone, tone])
    sides = []
    for length in (int(t * SR) for t in rng.uniform(0, PAD_MAX_S, size=2)):
        length = min(length, len(tone))
        start = int(rng.integers(0, len(tone)))
        sides.append(looped[start:start + length])
    return np.ascontiguousarray(crossfaded([sides[0], wav, sides[1]]).astype(np.float32))


def speaker_room_tones(clips: list, audio: list[np.ndarray]) -> dict[tuple[str, str], np.ndarray]:
    """Every (corpus, speaker)'s room tone (:func:`room_tone.room_tone` of all their clips)."""
    from room_tone import room_tone

    by_speaker: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
    for clip, wav in zip(clips, audio):
        by_speaker[(clip.corpus, clip.speaker)].append(wav)
    return {speaker: room_tone(wavs) for speaker, wavs in by_speaker.items()}


def telephone(wav: np.ndarray) -> np.ndarray:
    """``wav`` as a narrow-band telephone line carries it: 300-3400 Hz at 8 kHz, 8-bit mu-law."""
    import soxr
    from scipy.signal import butter, sosfilt

    narrow = soxr.resample(wav, SR, 8000)
    narrow = sosfilt(butter(4, [300, 3400], btype="bandpass", fs=8000, output="sos"), narrow)
    peak = float(np.max(np.abs(narrow))) + 1e-9
    x = np.clip(narrow / peak, -1, 1)
    mu = 255.0
    coded = np.round((np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)) * 127) / 127
    decoded = np.sign(coded) * np.expm1(np.abs(coded) * np.log1p(mu)) / mu * peak
    return soxr.resample(decoded.astype(np.float32), 8000, SR).astype(np.float32)[: len(wav)]


BABBLE_TALKERS = (2, 4)
BABBLE_SNR_DB = (5.0, 15.0)


def babble(wav: np.ndarray, talkers: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """``wav`` with 2-4 of ``talkers`` (random clips, each looped or cut to its length, from a
    random point) summed underneath at 5-15 dB below its own level."""
    background = np.zeros(len(wav), np.float32)
    for _ in range(int(rng.integers(BABBLE_TALKERS[0], BABBLE_TALKERS[1] + 1))):
        other = talkers[int(rng.integers(len(talkers)))]
        other = np.tile(other, int(np.ceil(len(wav) / len(other))) + 1)
        start = int(rng.integers(len(other) - len(wav) + 1))
        talker = other[start:start + len(wav)]
        background += talker / (np.sqrt(np.mean(talker**2)) + 1e-8)
    level = np.sqrt(np.mean(wav**2)) * 10 ** (-rng.uniform(*BABBLE_SNR_DB) / 20)
    return (wav + background * level / (np.sqrt(np.mean(background**2)) + 1e-8)).astype(np.float32)


def babble_sources(clips: list) -> list[list[int]]:
    """For each clip, the clips its babble may be drawn from without leaking audio across either
    evaluation protocol: the same corpus (leave-one-corpus-out) and the same speaker fold
    (:func:`corpora.speaker_folds`), other speakers where that group has any (CASIA has one
    speaker per fold: then that speaker's other clips)."""
    folds = speaker_folds(clips)
    groups: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i, (clip, fold) in enumerate(zip(clips, folds)):
        groups[(clip.corpus, fold)].append(i)
    sources = []
    for i, (clip, fold) in enumerate(zip(clips, folds)):
        group = groups[(clip.corpus, fold)]
        others = [j for j in group if clips[j].speaker != clip.speaker]
        sources.append(others or [j for j in group if j != i])
    return sources


def frame_speech(wav: np.ndarray, frames: int) -> np.ndarray:
    """The speech probability of each of the first ``frames`` 20 ms frames of ``wav`` (that of the
    32 ms Silero chunk holding the frame's middle; 1 where the clip is too short for a chunk)."""
    from emotion2vec_plus.vad import SpeechTrack, frame_speech_probabilities, speech_probabilities

    probabilities = frame_speech_probabilities(SpeechTrack(speech_probabilities(wav)), frames, HOP_SAMPLES)
    return (probabilities if len(probabilities) else np.ones(frames)).astype(np.float16)


def speech_frame_mask(probabilities: np.ndarray) -> np.ndarray:
    """The frames a model pooling only speech averages, from the cached per-frame speech
    probabilities (:func:`emotion2vec_plus.vad.speech_frames`, as the runtime picks them)."""
    from emotion2vec_plus.vad import speech_frames

    return speech_frames(probabilities, HOP_SAMPLES)


def save_frame_speech(path: Path, wavs: list[np.ndarray], counts: np.ndarray) -> None:
    """``VARIANT_speech.npy``: :func:`frame_speech` of every clip, concatenated as the frames are."""
    np.save(path, np.concatenate([frame_speech(w, int(n)) for w, n in zip(wavs, counts)]))


def augment(wav: np.ndarray, variant: str, rng: np.random.Generator) -> np.ndarray:
    if variant == "phone":
        return telephone(wav)
    if variant == "trim":
        return trim_to_speech(wav, rng)
    if variant == "pad":
        return pad_with_room_tone(wav, rng)
    if variant == "reverb":
        rt60 = rng.uniform(0.3, 0.8)
        t = np.arange(int(rt60 * SR)) / SR
        response = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60)
        response[0] = 1.0
        wet = fftconvolve(wav, response)[: len(wav)]
        return (wet * np.sqrt(np.mean(wav**2) / (np.mean(wet**2) + 1e-12))).astype(np.float32)
    return basic_augment(wav, variant, rng)


def layer_norm_means(states: list[torch.Tensor], lengths: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(B, len(states) * d): each (B, T, d) state layer-normalised per frame (no affine) and
    averaged over the first ``lengths`` frames of each row (or the frames ``mask`` (B, T) picks)."""
    if mask is None:
        mask = torch.arange(states[0].shape[1])[None, :] < lengths[:, None]
    weights = mask.float()[..., None]
    return torch.cat([(torch.nn.functional.layer_norm(s, (s.shape[-1],)) * weights).sum(1) / weights.sum(1)
                      for s in states], dim=-1)


@torch.inference_mode()
def frozen_frames(encoder, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input of the first tuned block (B, T, 512), the valid frames of each clip, and the
    hidden states below it (0 .. first_tuned - 1), each layer-normalised per frame and averaged
    over the valid frames (B, first_tuned * 512). The first is the raw output of the last frozen
    block (``encoder`` holds only the frozen blocks), not ``hidden_states[-1]``, which is that
    output after ``ln_post``."""
    mel, frames = log_mel_spectrogram(x, lengths)
    out = encoder(mel, frames, return_layers=True)
    return out.pre_ln_post, out.lengths, layer_norm_means(out.hidden_states[:-1], out.lengths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variants", default="clean")
    parser.add_argument("--first-tuned", type=int, default=3, help="first Whisper block that is fine-tuned")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    clips = read_all(corpora=ALL_CORPORA)
    encoder = load_whisper_encoder()
    encoder.blocks = encoder.blocks[: args.first_tuned]  # nothing above the cached layer is run
    audio = [sf.read(c.path, dtype="float32")[0] for c in clips]
    meta = {"paths": [str(c.path) for c in clips], "corpus": [c.corpus for c in clips],
            "speaker": [c.speaker for c in clips], "label": [c.label for c in clips],
            "first_tuned": args.first_tuned}
    (args.out / "clips.json").write_text(json.dumps(meta))
    for variant in args.variants.split(","):
        target = args.out / f"{variant}.npy"
        speech_file = args.out / f"{variant}_speech.npy"
        if target.exists() and speech_file.exists():
            print(f"{target} exists, skipped")
            continue
        rng = np.random.default_rng(0)
        started = time.perf_counter()
        if variant == "babble":
            wavs = [babble(w, [audio[j] for j in sources], rng) for w, sources in zip(audio, babble_sources(clips))]
        elif variant == "roompad":
            tones = speaker_room_tones(clips, audio)
            wavs = [pad_with_own_room_tone(w, tones[(c.corpus, c.speaker)], rng) for w, c in zip(audio, clips)]
        else:
            wavs = [augment(w, variant, rng) for w in audio]
        if target.exists():  # an older cache: only the speech probabilities are missing
            save_frame_speech(speech_file, wavs, np.load(args.out / f"{variant}_index.npz")["counts"])
            print(f"{speech_file}: written in {time.perf_counter() - started:.0f} s", flush=True)
            continue
        pieces: list[np.ndarray | None] = [None] * len(wavs)
        low_pooled = np.zeros((len(wavs), args.first_tuned * 512), np.float32)
        for batch, x, lengths in padded_batches(wavs, args.batch_size):
            hidden, valid, pooled = frozen_frames(encoder, x, lengths)
            low_pooled[batch] = pooled.numpy()
            for row, i in enumerate(batch):
                pieces[i] = hidden[row, : int(valid[row])].numpy().astype(np.float16)
        np.save(args.out / f"{variant}_low_pooled.npy", low_pooled)
        counts = np.array([len(p) for p in pieces])
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        np.save(target.with_suffix(".partial.npy"), np.concatenate(pieces))
        target.with_suffix(".partial.npy").rename(target)
        np.savez(args.out / f"{variant}_index.npz", offsets=offsets, counts=counts)
        save_frame_speech(speech_file, wavs, counts)
        seconds = sum(len(w) for w in wavs) / SR
        took = time.perf_counter() - started
        print(f"{variant}: {len(wavs)} clips, {seconds / 3600:.2f} h audio, {counts.sum()} frames in {took:.0f} s", flush=True)


if __name__ == "__main__":
    main()
