"""Is a long recording's emotion the one of its clips? UA of joined clips by length, held-out speakers.

For every held-out speaker and emotion, that speaker's clips of that emotion (in a fixed random
order, repeated when there are too few) are joined end to end, as they are, into inputs of 10,
30, 60 and 300 s; each input should get that emotion. UA over those inputs is compared with UA
over the single clips of the same speakers ("clip" row), for all classes and for the usual 4
(angry, happy, neutral, sad: the argmax over those four classes' scores).

Held-out speakers: with ``--fold-models DIR`` (models written by ``training/v2_frozen.py
--save-folds DIR`` or ``training/v2_train.py --save-folds DIR``), each fold's model is run on the speakers it never saw; with
``--model NAME`` one model is run on every speaker (fair only for a model not trained on these
corpora, e.g. emotion2vec+). Usage:

    python bench/long_audio.py --fold-models FOLDS [--corpora RAVDESS,CASIA] [--lengths 10,30,60,300]
        [--max-long-inputs 16] [--compute-type bfloat16]
    python bench/long_audio.py --model compact --corpora EMOVO --window 30      # e.g. the old 30 s windows

Prints one Markdown table per corpus and the largest drop of a long row below the clip row.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "training"))
from corpora import ALL_CORPORA, Clip, fold_models, read_all  # noqa: E402

FOUR = ["angry", "happy", "neutral", "sad"]


def joined_inputs(clips: list[Clip], seconds: float, seed: int) -> list[tuple[np.ndarray, str, str]]:
    """(samples, label, speaker) inputs of about ``seconds`` from each speaker's clips of one emotion."""
    import soundfile as sf

    groups: dict[tuple[str, str], list[Clip]] = defaultdict(list)
    for clip in clips:
        groups[(clip.speaker, clip.label)].append(clip)
    rng = np.random.default_rng(seed)
    out = []
    for (speaker, label), members in sorted(groups.items()):
        audio = [sf.read(c.path, dtype="float32")[0] for c in rng.permutation(np.array(members, dtype=object))]
        total = sum(len(a) for a in audio)
        need = int(seconds * 16000)
        count = max(1, total // need) if seconds <= 10 else 1  # short inputs: every disjoint group
        position = 0
        for _ in range(count):
            parts, have = [], 0
            while have < need:
                piece = audio[position % len(audio)]
                parts.append(piece)
                have += len(piece)
                position += 1
            out.append((np.concatenate(parts)[:need], label, speaker))
    return out


def balanced_subset(inputs: list[tuple[np.ndarray, str, str]], most: int) -> list[tuple[np.ndarray, str, str]]:
    """At most ``most`` inputs, taken in turn from each emotion (in their given order)."""
    by_label: dict[str, list] = defaultdict(list)
    for item in inputs:
        by_label[item[1]].append(item)
    out, round_ = [], 0
    while len(out) < most and any(round_ < len(v) for v in by_label.values()):
        for label in sorted(by_label):
            if round_ < len(by_label[label]) and len(out) < most:
                out.append(by_label[label][round_])
        round_ += 1
    return out


def ua(truth: list[str], predicted: list[str]) -> float:
    present = sorted(set(truth))
    return float(np.mean([np.mean([p == t for p, t in zip(predicted, truth) if t == label]) for label in present]))


def predictions(model, inputs: list[tuple[np.ndarray, str, str]]) -> list[tuple[str, str, str | None]]:
    """(truth, predicted class, predicted among the 4 classes or None) per input."""
    out = []
    for (_, truth, _), result in zip(inputs, model.predict_batch([samples for samples, _, _ in inputs])):
        four = max(FOUR, key=lambda c: result.scores.get(c, 0.0)) if truth in FOUR else None
        out.append((truth, result.emotion, four))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fold-models", type=Path, default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--folds", default=None, help="with --fold-models: only these folds (e.g. 0,1)")
    parser.add_argument("--corpora", default=",".join(ALL_CORPORA))
    parser.add_argument("--lengths", default="10,30,60,300")
    parser.add_argument("--window", type=float, default=None, help="the model's window_s (default: the model's own)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compute-type", default="float32", help="float32 (default), bfloat16, int8, auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-long-inputs", type=int, default=0,
                        help="at most this many inputs per corpus, fold and length for lengths of 60 s and more, "
                             "taken in turn from each emotion (0: all); bounds the run time of the 300 s row")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()
    if (args.fold_models is None) == (args.model is None):
        parser.error("give exactly one of --fold-models and --model")

    import soundfile as sf

    from emotion2vec_plus import Emotion2VecPlus

    corpora = args.corpora.split(",")
    clips = read_all(corpora=tuple(corpora))
    runs: list[tuple[str, set[tuple[str, str]] | None]] = []
    if args.fold_models is not None:
        runs += fold_models(args.fold_models, args.folds)
    else:
        runs.append((args.model, None))
    names = ["clip"] + [f"{float(v):g} s" for v in args.lengths.split(",")]
    pooled: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    started = time.perf_counter()
    for model_name, speakers in runs:
        model = Emotion2VecPlus(model_name, num_threads=args.threads, window_s=args.window, compute_type=args.compute_type)
        for corpus in corpora:
            held_out = [c for c in clips if c.corpus == corpus and (speakers is None or (c.corpus, c.speaker) in speakers)]
            if not held_out:
                continue
            for name in names:
                inputs = ([(sf.read(c.path, dtype="float32")[0], c.label, c.speaker) for c in held_out] if name == "clip"
                          else joined_inputs(held_out, float(name[:-2]), args.seed))
                if args.max_long_inputs and name != "clip" and float(name[:-2]) >= 60:
                    inputs = balanced_subset(inputs, args.max_long_inputs)
                pooled[corpus][name] += predictions(model, inputs)
        print(f"{model_name}: done ({time.perf_counter() - started:.0f} s)", flush=True)
    summary = {}
    for corpus, by_length in pooled.items():
        print(f"\n{corpus} (held-out speakers)\n\n| input | inputs | UA, all classes | UA, 4 classes |\n|---|---|---|---|")
        summary[corpus] = {}
        for name in names:
            rows = by_length[name]
            four = [(t, f) for t, _, f in rows if f is not None]
            summary[corpus][name] = {"inputs": len(rows), "ua": ua([t for t, _, _ in rows], [p for _, p, _ in rows]),
                                     "ua4": ua([t for t, _ in four], [f for _, f in four]) if four else None}
            entry = summary[corpus][name]
            four_text = "—" if entry["ua4"] is None else f"{entry['ua4']:.3f}"
            print(f"| {name} | {entry['inputs']} | {entry['ua']:.3f} | {four_text} |")
        clip = summary[corpus]["clip"]
        drops = [clip["ua"] - v["ua"] for k, v in summary[corpus].items() if k != "clip"]
        print(f"\nlargest drop below the single-clip UA: {max(drops):+.3f}")
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
