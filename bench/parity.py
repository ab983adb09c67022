"""Print how far this package's numbers are from FunASR's on the same checkpoint.

Random-weight checkpoints of the plus_base (768-d) and plus_large-width (1024-d) configurations
are built with FunASR's own model class and run by both implementations on real speech from
../shared/datasets (0.5 s, 3 s, 17 s). Usage: python bench/parity.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # checkpoint builders and speech clips

from checkpoints import CONFIG_768, CONFIG_1024, build_funasr_checkpoint  # noqa: E402
from conftest import speech_of_length  # noqa: E402


def main() -> None:
    from funasr import AutoModel

    from emotion2vec_plus import Emotion2VecPlus

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in (CONFIG_768, CONFIG_1024):
            directory = build_funasr_checkpoint(Path(tmp) / str(size["embed_dim"]), seed=11, **size)
            ours = Emotion2VecPlus(directory)
            reference = AutoModel(model=str(directory), disable_update=True, disable_pbar=True,
                                  log_level="ERROR", ncpu=torch.get_num_threads(), device="cpu")
            clips = [speech_of_length(s, offset=i * 7) for i, s in enumerate((0.5, 3.0, 17.0))]
            batched = ours.predict_batch(clips, extract_embedding=True)
            for clip, in_batch in zip(clips, batched):
                ref_frames = reference.generate(clip, granularity="frame", extract_embedding=True)[0]["feats"]
                ref = reference.generate(clip, granularity="utterance", extract_embedding=True)[0]
                frames = ours.extract_embedding(clip, granularity="frame")
                single = ours.predict(clip, extract_embedding=True)
                scores = np.array(list(single.scores.values()))
                rows.append((size["embed_dim"], len(clip) / 16000, frames.shape[0],
                             np.abs(frames - ref_frames).max(), np.abs(single.embedding - ref["feats"]).max(),
                             np.abs(scores - np.array(ref["scores"])).max(),
                             np.abs(in_batch.embedding - ref["feats"]).max()))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| dim | clip (s) | frames | max|Δ| frames | max|Δ| embedding | max|Δ| scores | max|Δ| embedding, padded batch |")
    print("|---|---|---|---|---|---|---|")
    for dim, seconds, frames, d_frames, d_emb, d_scores, d_batch in rows:
        print(f"| {dim} | {seconds:.1f} | {frames} | {d_frames:.2e} | {d_emb:.2e} | {d_scores:.2e} | {d_batch:.2e} |")


if __name__ == "__main__":
    main()
