"""Check a real emotion2vec(+) checkpoint against FunASR: same files, same numbers?

For users who can download the released files (this project's CI cannot reach the hubs). Loads
the checkpoint with FunASR (the reference) and with this package, runs both on the bundled
sample clips (or the files given with --audio), and prints max |Δ| of frame features,
utterance embeddings and class scores per clip, plus whether the top emotion agrees.

Usage:
    python bench/verify_real_checkpoint.py large                 # a model name: cache, else download
    python bench/verify_real_checkpoint.py ~/models/emotion2vec_plus_large [--audio a.wav b.mp3]
    python bench/verify_real_checkpoint.py base --hub ms

Exit code 0 when every difference is within --tolerance (default 1e-4), 1 otherwise.

FunASR (``pip install funasr==1.4.16``) loads ``model.pt`` with ``torch.load``, which since
torch 2.6 refuses a file holding Python objects besides tensors. If it refuses the real file,
the script gives FunASR a temporary copy whose ``model.pt`` holds only the state dict that this
package read (without running any code from the file), and says so.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SAMPLES = sorted((REPO / "src" / "emotion2vec_plus" / "samples").glob("*.wav"))
TOLERANCE = 1e-4


@dataclass
class Row:
    """One clip's differences between FunASR and this package."""

    clip: str
    seconds: float
    frames: int
    frames_delta: float
    embedding_delta: float
    scores_delta: float | None
    same_top: bool | None
    funasr_top: str | None


def funasr_loadable_dir(model_dir: Path, scratch: Path) -> tuple[Path, str]:
    """``model_dir`` if FunASR's ``torch.load`` takes its weights file, else a temporary copy whose
    weights file holds only the tensors (read by this package without running code)."""
    from emotion2vec_plus.models.checkpoint import read_checkpoint_object
    from emotion2vec_plus.models.config import checkpoint_files

    files = checkpoint_files(model_dir)
    try:
        torch.load(files.weights, map_location="cpu", weights_only=True, mmap=True)
        return model_dir, "FunASR loaded the file as published"
    except Exception as exc:  # noqa: BLE001 - any refusal means FunASR cannot load it either
        import pickle

        reason = ("it holds Python objects besides tensors" if isinstance(exc, pickle.UnpicklingError)
                  else f"{type(exc).__name__}: {str(exc).strip()[:120]}")
    copy = scratch / "funasr_copy"
    shutil.copytree(model_dir, copy, ignore=shutil.ignore_patterns(files.weights.name))
    checkpoint = read_checkpoint_object(files.weights)
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    torch.save({"model": tensors}, copy / files.weights.name)
    return copy, f"torch.load(weights_only=True) refused the file ({reason}); FunASR got its tensors re-saved"


def compare(model_dir: Path, clips: list[Path], threads: int = 2) -> tuple[list[Row], str]:
    """Run FunASR and this package on ``clips``; one :class:`Row` per clip, and how FunASR loaded."""
    from funasr import AutoModel

    from emotion2vec_plus import Emotion2VecPlus, load_audio

    ours = Emotion2VecPlus(model_dir, num_threads=threads)
    with tempfile.TemporaryDirectory() as scratch:
        reference_dir, how = funasr_loadable_dir(model_dir, Path(scratch))
        with contextlib.redirect_stdout(io.StringIO()):
            reference = AutoModel(model=str(reference_dir), disable_update=True, disable_pbar=True,
                                  log_level="ERROR", ncpu=threads, device="cpu")
    rows = []
    for clip in clips:
        samples = load_audio(clip).samples
        with contextlib.redirect_stdout(io.StringIO()):
            ref_frames = reference.generate(samples, granularity="frame", extract_embedding=True)[0]
            ref = reference.generate(samples, granularity="utterance", extract_embedding=True)[0]
        frames = ours.extract_embedding(samples, granularity="frame")
        result = ours.predict(samples, extract_embedding=True)
        scores_delta = same_top = funasr_top = None
        if result.scores is not None and ref.get("scores") is not None:
            ref_scores = np.asarray(ref["scores"], dtype=np.float64)
            scores_delta = float(np.abs(np.array(list(result.scores.values())) - ref_scores).max())
            top = ref["labels"][int(ref_scores.argmax())]
            funasr_top = "unknown" if top == "<unk>" else top.split("/")[-1]
            same_top = result.emotion == funasr_top
        rows.append(Row(clip.name, len(samples) / 16000, frames.shape[0],
                        float(np.abs(frames - ref_frames["feats"]).max()),
                        float(np.abs(result.embedding - ref["feats"]).max()), scores_delta, same_top, funasr_top))
    return rows, how


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a model name (large, base, seed, ...) or a FunASR-format directory")
    parser.add_argument("--audio", nargs="+", type=Path, default=SAMPLES, help="clips to compare on (default: the bundled samples)")
    parser.add_argument("--hub", choices=["hf", "ms"], default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tolerance", type=float, default=TOLERANCE)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from emotion2vec_plus.errors import Emotion2VecError
    from emotion2vec_plus.models.hub import resolve_model_dir

    try:
        model_dir = resolve_model_dir(args.model, hub=args.hub)
    except Emotion2VecError as exc:
        print(f"cannot get the checkpoint: {exc}", file=sys.stderr)
        return 2
    rows, how = compare(Path(model_dir), args.audio, args.threads)
    print(f"checkpoint: {model_dir}\n{how}; torch {torch.__version__}, {args.threads} threads\n")
    print("| clip | s | frames | max\\|Δ\\| frames | max\\|Δ\\| embedding | max\\|Δ\\| scores | FunASR top | same top |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        scores = "—" if r.scores_delta is None else f"{r.scores_delta:.2e}"
        print(f"| {r.clip} | {r.seconds:.1f} | {r.frames} | {r.frames_delta:.2e} | {r.embedding_delta:.2e} | "
              f"{scores} | {r.funasr_top or '—'} | {'—' if r.same_top is None else 'yes' if r.same_top else 'NO'} |")
    worst = max(max(r.frames_delta, r.embedding_delta, r.scores_delta or 0.0) for r in rows)
    ok = worst <= args.tolerance  # a differing top class within the tolerance is a near-tie, shown above
    print(f"\nlargest difference {worst:.2e} (tolerance {args.tolerance:g}): {'OK' if ok else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
