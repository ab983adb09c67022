"""Cache per-frame Whisper-base features of the training corpora, for frame-level head experiments.

For every clip this stores the 7 hidden states the compact model concatenates (stem, blocks 1-5,
block 6 after ln_post) over the clip's valid frames, averaged over non-overlapping groups of
``--pool`` frames (default 4: 50 Hz -> 12.5 Hz, 80 ms per step) to keep the cache and the
experiments small. Output: one .npz with ``frames`` (total_steps, 7, 512) float16, ``offsets``
(N + 1,) into it, and the clip metadata (paths, corpus, speaker, label). About 0.7 GB for
RAVDESS + CASIA at --pool 4. Keep it outside the repository. Usage:

    python training/frame_features.py --out /work/cache/frames [--pool 4] [--limit N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compact_features import padded_batches  # noqa: E402
from corpora import read_all  # noqa: E402

from emotion2vec_plus.models.whisper import load_whisper_encoder, log_mel_spectrogram  # noqa: E402

LAYERS = 7  # hidden_states[0..6]: stem, blocks 1-5, block 6 + ln_post (what compact.py concatenates)


def pool_steps(h: torch.Tensor, pool: int) -> torch.Tensor:
    """(T, ...) -> (ceil(T / pool), ...): means over consecutive groups (the last may be shorter)."""
    t = h.shape[0]
    full = t // pool
    parts = [h[: full * pool].reshape(full, pool, *h.shape[1:]).mean(1)] if full else []
    if t % pool:
        parts.append(h[full * pool :].mean(0, keepdim=True))
    return torch.cat(parts)


@torch.inference_mode()
def frame_features(encoder, wavs: list[np.ndarray], pool: int, batch_size: int = 8) -> list[np.ndarray]:
    out: list[np.ndarray | None] = [None] * len(wavs)
    for batch, x, lengths in padded_batches(wavs, batch_size):
        mel, frames = log_mel_spectrogram(x, lengths)
        enc = encoder(mel, frames)
        layers = torch.stack(enc.hidden_states[:LAYERS], dim=2)  # (B, T, 7, 512)
        for row, i in enumerate(batch):
            out[i] = pool_steps(layers[row, : int(enc.lengths[row])], pool).numpy().astype(np.float16)
    return out  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--pool", type=int, default=4)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"clean_pool{args.pool}.npz"
    clips = read_all()[: args.limit]
    encoder = load_whisper_encoder()
    started = time.perf_counter()
    wavs = [sf.read(c.path, dtype="float32")[0] for c in clips]
    feats = frame_features(encoder, wavs, args.pool)
    offsets = np.concatenate([[0], np.cumsum([len(f) for f in feats])])
    np.savez(target, frames=np.concatenate(feats), offsets=offsets, paths=np.array([str(c.path) for c in clips]),
             corpus=np.array([c.corpus for c in clips]), speaker=np.array([c.speaker for c in clips]),
             label=np.array([c.label for c in clips]))
    seconds = sum(len(w) for w in wavs) / 16000
    took = time.perf_counter() - started
    print(f"{target}: {len(clips)} clips, {offsets[-1]} steps, {seconds / 60:.1f} min audio in {took:.0f} s")


if __name__ == "__main__":
    main()
