"""A speaker's room tone from their own clips, and clips joined without clicks.

What the pauses of a real recording hold is the room the speaker is in. The segmentation
benchmark fills the pauses between joined clips with it, and the ``roompad`` training variant
pads clips with it, each from the speaker's own clips (the benchmark's held-out speakers are
never in a fold's training set, so neither sees the other's room).
"""

from __future__ import annotations

import numpy as np

SR = 16000


def crossfaded(pieces: list[np.ndarray], fade: int = SR // 200) -> np.ndarray:
    """``pieces`` end to end, each join a ``fade``-sample raised-cosine crossfade (no clicks)."""
    ramp = (0.5 - 0.5 * np.cos(np.linspace(0, np.pi, fade))).astype(np.float32)
    out = pieces[0]
    for piece in pieces[1:]:
        if len(out) < fade or len(piece) < fade:
            out = np.concatenate([out, piece])
            continue
        blend = out[-fade:] * ramp[::-1] + piece[:fade] * ramp
        out = np.concatenate([out[:-fade], blend, piece[fade:]])
    return out


def room_tone(audio: list[np.ndarray]) -> np.ndarray:
    """A speaker's room tone: the stretches of the non-speech edges of their clips (before the first
    and after the last speech the voice-activity detector finds, less 0.1 s) in which every 20 ms
    frame is as quiet as the quietest fifth of all their frames, at least 40 ms long, joined with
    5 ms crossfades; at least 2 s (repeated if short). The level test matters for corpora whose
    clips are cut close to the speech (nEMO, CASIA): there the edges hold the onsets and tails of
    words, which would otherwise be spliced into the pauses. The runs and crossfades matter there
    too: single quiet frames from all over the edges, butted together, make a click every 20 ms
    (an earlier version did that)."""
    from emotion2vec_plus.vad import speech_regions

    margin, frame = SR // 10, SR // 50
    def frames_of(samples: np.ndarray) -> np.ndarray:
        usable = len(samples) // frame * frame
        return samples[:usable].reshape(-1, frame)

    def quiet_runs(samples: np.ndarray, quiet: float) -> list[np.ndarray]:
        frames = frames_of(samples)
        if not len(frames):
            return []
        ok = np.sqrt(np.mean(frames**2, axis=1)) <= quiet
        runs, start = [], None
        for index, flag in enumerate(list(ok) + [False]):
            if flag and start is None:
                start = index
            elif not flag and start is not None:
                if index - start >= 2:
                    runs.append(frames[start:index].reshape(-1))
                start = None
        return runs

    every = np.concatenate([frames_of(samples) for samples in audio if len(samples) >= frame])
    quiet = np.percentile(np.sqrt(np.mean(every**2, axis=1)), 20)
    parts = []
    for samples in audio:
        regions = speech_regions(samples)
        if regions:
            for edge in (samples[: max(0, regions[0].start - margin)], samples[regions[-1].end + margin :]):
                parts += quiet_runs(edge, quiet)
    if sum(len(p) for p in parts) < SR // 2:  # too few quiet edge stretches: the quiet stretches anywhere
        parts = [run for samples in audio for run in quiet_runs(samples, quiet)]
    tone = crossfaded(parts) if parts else np.zeros(SR, np.float32)
    return crossfaded([tone] * -(-2 * SR // len(tone))) if len(tone) < 2 * SR else tone
