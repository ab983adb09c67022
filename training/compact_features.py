"""Extract pooled Whisper-base encoder features of the training corpora, for head experiments.

For every clip (and optional augmented copies) this stores, per encoder layer, the mean and
standard deviation over the clip's valid frames: arrays (N, L, 512) in float16, where the L
layers are Whisper's hidden states [stem, block 1, ..., block 6 + ln_post] plus the last block
before ln_post. Usage:

    python training/compact_features.py --out ~/.cache/emotion2vec_plus/features \
        --variants clean,noise20,speed0.9,speed1.1 [--pad-to-30s]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpora import read_all  # noqa: E402

from emotion2vec_plus.models.whisper import load_whisper_encoder, log_mel_spectrogram  # noqa: E402

SR = 16000


def augment(wav: np.ndarray, variant: str, rng: np.random.Generator) -> np.ndarray:
    """clean | noiseNN (white noise at NN dB SNR) | speedX (tempo and pitch by X, by resampling) | gainNN (dB)."""
    if variant == "clean":
        return wav
    if variant.startswith("noise"):
        snr_db = float(variant[5:])
        power = float(np.mean(wav**2)) + 1e-12
        noise = rng.standard_normal(len(wav)).astype(np.float32)
        return (wav + noise * np.sqrt(power / 10 ** (snr_db / 10))).astype(np.float32)
    if variant.startswith("speed"):
        factor = float(variant[5:])
        return soxr.resample(wav, SR * factor, SR).astype(np.float32)
    if variant.startswith("gain"):
        return (wav * 10 ** (float(variant[4:]) / 20)).astype(np.float32)
    raise ValueError(f"unknown variant {variant!r}")


def padded_batches(wavs: list[np.ndarray], batch_size: int):
    """Length-sorted batches: (input indices, zero-padded (B, N) tensor, (B,) lengths)."""
    order = sorted(range(len(wavs)), key=lambda i: len(wavs[i]))
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        x = torch.zeros(len(batch), max(len(wavs[i]) for i in batch))
        lengths = torch.tensor([len(wavs[i]) for i in batch])
        for row, i in enumerate(batch):
            x[row, : len(wavs[i])] = torch.from_numpy(wavs[i])
        yield batch, x, lengths


@torch.inference_mode()
def pooled_features(encoder, wavs: list[np.ndarray], pad_to_30s: bool, batch_size: int = 16):
    """(N, L, D) means and stds over valid frames, in input order."""
    means: list[np.ndarray | None] = [None] * len(wavs)
    stds: list[np.ndarray | None] = [None] * len(wavs)
    for batch, x, lengths in padded_batches(wavs, batch_size):
        mel, frames = log_mel_spectrogram(x, lengths, pad_to_30s=pad_to_30s)
        out = encoder(mel, frames)
        layers = torch.stack([*out.hidden_states, out.pre_ln_post], dim=1)  # (B, L, T, D)
        true_frames = encoder.output_lengths(lengths // 160)  # pool only over the real audio
        for row, i in enumerate(batch):
            h = layers[row, :, : int(true_frames[row])]
            means[i] = h.mean(dim=1).numpy()
            stds[i] = h.std(dim=1, unbiased=False).numpy()
    return np.stack(means).astype(np.float16), np.stack(stds).astype(np.float16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variants", default="clean")
    parser.add_argument("--pad-to-30s", action="store_true", help="Whisper's 30-s padding instead of true length")
    parser.add_argument("--limit", type=int, default=None, help="first N clips only (quick checks)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    clips = read_all()[: args.limit]
    encoder = load_whisper_encoder()
    audio = [sf.read(c.path, dtype="float32")[0] for c in clips]
    meta = dict(paths=np.array([str(c.path) for c in clips]), corpus=np.array([c.corpus for c in clips]),
                speaker=np.array([c.speaker for c in clips]), label=np.array([c.label for c in clips]))
    for variant in args.variants.split(","):
        name = f"{variant}{'_pad30' if args.pad_to_30s else ''}"
        target = args.out / f"{name}.npz"
        if target.exists():
            print(f"{target} exists, skipped")
            continue
        rng = np.random.default_rng(0)
        started = time.perf_counter()
        wavs = [augment(w, variant, rng) for w in audio]
        means, stds = pooled_features(encoder, wavs, args.pad_to_30s)
        np.savez(target, means=means, stds=stds, **meta)
        seconds = sum(len(w) for w in wavs) / SR
        took = time.perf_counter() - started
        print(f"{name}: {len(wavs)} clips, {seconds / 60:.1f} min audio in {took:.0f} s (RTF {took / seconds:.4f})")


if __name__ == "__main__":
    main()
