"""Pooled Whisper-base states of *joined* clips, for training the compact model on longer inputs.

The runtime scores anything up to the model's window (10 s) as one piece, so a piece is often
several sentences while every training clip is one (1-5 s). This makes inputs like those: each
speaker's clips of one emotion, in a random order, joined end to end into inputs of a random
length between ``--min-s`` and ``--max-s`` seconds (every clip used once per pass; a group
shorter than ``--min-s`` gives one input of all its clips). For each input it stores the 7
hidden states of the released encoder (as the runtime computes them: the stem, blocks 1-5, and
block 6 after ``ln_post``), each layer-normalised per frame and averaged over the input, so
``v2_frozen.py --joined`` can add them to the training set of the speakers a fold trains on;
``speech_features`` holds the same averaged over the speech frames only
(``v2_features.speech_frame_mask``).

    python training/v2_joined.py --out JOINED.npz [--passes 2] [--min-s 4] [--max-s 10]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compact_features import padded_batches  # noqa: E402
from corpora import ALL_CORPORA, read_all  # noqa: E402
from v2_features import augment, frame_speech, layer_norm_means, speech_frame_mask  # noqa: E402

from emotion2vec_plus.models.whisper import load_whisper_encoder, log_mel_spectrogram  # noqa: E402

SR = 16000


def joined_inputs(clips, passes: int, min_s: float, max_s: float, seed: int):
    """(samples, corpus, speaker, label) of every joined input."""
    groups: dict[tuple[str, str, str], list] = defaultdict(list)
    for clip in clips:
        groups[(clip.corpus, clip.speaker, clip.label)].append(clip)
    rng = np.random.default_rng(seed)
    out = []
    for (corpus, speaker, label), members in sorted(groups.items()):
        audio = [sf.read(c.path, dtype="float32")[0] for c in members]
        for _ in range(passes):
            made = 0
            parts: list[np.ndarray] = []
            target = rng.uniform(min_s, max_s) * SR
            for i in rng.permutation(len(audio)):
                parts.append(audio[i])
                if sum(len(p) for p in parts) >= target:
                    out.append((np.concatenate(parts)[: int(max_s * SR)], corpus, speaker, label))
                    made += 1
                    parts, target = [], rng.uniform(min_s, max_s) * SR
            if parts and (made == 0 or sum(len(p) for p in parts) >= min_s * SR / 2):
                out.append((np.concatenate(parts), corpus, speaker, label))
    return out


@torch.inference_mode()
def pooled_states(encoder, wavs: list[np.ndarray], batch_size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(N, 7 * 512) twice: each hidden state layer-normalised per frame and averaged over the
    valid frames, and over the speech frames only."""
    out = np.zeros((len(wavs), 7 * 512), np.float32)
    speech_out = np.zeros_like(out)
    for batch, x, lengths in padded_batches(wavs, batch_size):
        mel, frames = log_mel_spectrogram(x, lengths)
        result = encoder(mel, frames, return_layers=True)
        out[batch] = layer_norm_means(result.hidden_states, result.lengths).numpy()
        mask = torch.zeros(len(batch), result.hidden_states[0].shape[1], dtype=torch.bool)
        for row, i in enumerate(batch):
            n = int(result.lengths[row])
            mask[row, :n] = torch.from_numpy(speech_frame_mask(frame_speech(wavs[i], n)))
        speech_out[batch] = layer_norm_means(result.hidden_states, result.lengths, mask).numpy()
    return out, speech_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--passes", type=int, default=1)
    parser.add_argument("--min-s", type=float, default=4.0)
    parser.add_argument("--max-s", type=float, default=10.0)
    parser.add_argument("--variant", default="clean", help="augmentation of the joined audio (v2_features.py names)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    inputs = joined_inputs(read_all(corpora=ALL_CORPORA), args.passes, args.min_s, args.max_s, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    wavs = [augment(samples, args.variant, rng) if args.variant != "clean" else samples for samples, *_ in inputs]
    started = time.perf_counter()
    features, speech_features = pooled_states(load_whisper_encoder(), wavs)
    seconds = sum(len(w) for w in wavs) / SR
    np.savez(args.out, features=features, speech_features=speech_features, corpus=np.array([c for _, c, _, _ in inputs]),
             speaker=np.array([s for _, _, s, _ in inputs]), label=np.array([l for _, _, _, l in inputs]),
             seconds=np.array([len(w) / SR for w in wavs]))
    print(f"{len(wavs)} joined inputs, {seconds / 3600:.2f} h, in {time.perf_counter() - started:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
