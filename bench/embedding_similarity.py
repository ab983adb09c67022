"""Does the utterance embedding carry emotion? Cosines and nearest neighbours on held-out speakers.

For each corpus, every clip of the held-out speakers is embedded (``Emotion2VecPlus.predict(...,
embedding)``), and over all pairs of those clips this prints:

  * the cosine of a random pair (median, 5th and 95th percentile), of two clips of the same
    emotion by different speakers, of different emotions, of the same speaker and emotion, of a
    clip and its nearest neighbour, and of clips from two different corpora (languages);
  * ``same - different``: mean cosine of same-emotion pairs of different speakers minus that of
    different-emotion pairs of different speakers;
  * cross-speaker 10-nearest-neighbour emotion UA: each clip's emotion voted by its 10 most
    similar clips of *other* speakers of the same corpus;
  * for the bands of ``describe_similarity`` (pairs of clips by two different speakers): the
    percentiles of same-emotion and of different-emotion pairs, and for each cosine v the share of
    each that reaches v, per corpus and for the four corpora together (each weighing the same).

Held-out speakers: with ``--fold-models DIR`` (written by ``training/v2_train.py --save-folds``)
each fold's model embeds only the speakers it never saw; with ``--model NAME`` one model embeds
every speaker (fair for a model not trained on these corpora or for raw features). The bands of
``analytics.describe_similarity`` are read off these tables. Usage:

    python bench/embedding_similarity.py --fold-models FOLDS [--corpora RAVDESS,CASIA,nEMO,EMOVO]
    python bench/embedding_similarity.py --model compact --per-corpus 600
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "training"))
from corpora import ALL_CORPORA, fold_models, read_all  # noqa: E402


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def knn_ua(cos: np.ndarray, labels: np.ndarray, speakers: np.ndarray, k: int = 10) -> float:
    """Emotion UA of a vote among each clip's k nearest clips of other speakers."""
    masked = np.where(speakers[:, None] == speakers[None, :], -np.inf, cos)
    neighbours = np.argsort(-masked, axis=1)[:, :k]
    classes = sorted(set(labels))
    predicted = []
    for row in neighbours:
        votes = defaultdict(float)
        for j in row:
            votes[labels[j]] += 1
        predicted.append(max(votes, key=votes.get))
    predicted = np.array(predicted)
    return float(np.mean([np.mean(predicted[labels == c] == c) for c in classes]))


def statistics(z: np.ndarray, labels: np.ndarray, speakers: np.ndarray) -> dict:
    cos = z @ z.T
    n = len(z)
    upper = np.triu(np.ones((n, n), dtype=bool), 1)
    same_emotion = labels[:, None] == labels[None, :]
    same_speaker = speakers[:, None] == speakers[None, :]
    pairs = cos[upper]
    nearest = np.where(np.eye(n, dtype=bool), -np.inf, cos).max(1)
    cross_same = cos[upper & same_emotion & ~same_speaker]
    cross_different = cos[upper & ~same_emotion & ~same_speaker]
    return {
        "cross_same": cross_same,
        "cross_different": cross_different,
        "clips": n,
        "random_pair": [float(np.percentile(pairs, q)) for q in (5, 50, 95)],
        "same_emotion_other_speaker": float(np.median(cross_same)),
        "different_emotion": float(np.median(cos[upper & ~same_emotion])),
        "same_speaker_and_emotion": float(np.median(cos[upper & same_emotion & same_speaker])),
        "nearest_neighbour": [float(np.percentile(nearest, q)) for q in (50, 95)],
        "same_minus_different": float(cross_same.mean() - cross_different.mean()),
        "knn10_ua": knn_ua(cos, labels, speakers),
    }


PERCENTILES = (5, 10, 25, 50, 75, 90, 95)
GRID = (-0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def share_at_least(values: np.ndarray, v: float) -> float:
    return float(np.mean(values >= v)) if len(values) else float("nan")


def band_table(report: dict, corpora: list[str]) -> None:
    """Percentiles of cross-speaker same- and different-emotion pairs, and the share of each reaching
    each cosine on GRID, per corpus and pooled (every corpus weighing the same). Moves the pair arrays
    out of ``report`` (they are not JSON) into ``report[corpus]["bands"]``."""
    rows = {}
    for corpus in corpora:
        if corpus not in report:
            continue
        same, different = report[corpus].pop("cross_same"), report[corpus].pop("cross_different")
        if len(same) == 0 or len(different) == 0:  # one held-out speaker: no cross-speaker pairs
            continue
        rows[corpus] = (same, different)
        report[corpus]["bands"] = {
            "same_percentiles": [float(np.percentile(same, q)) for q in PERCENTILES],
            "different_percentiles": [float(np.percentile(different, q)) for q in PERCENTILES],
            "same_reaching": [share_at_least(same, v) for v in GRID],
            "different_reaching": [share_at_least(different, v) for v in GRID]}
    if not rows:
        return
    print("\nPairs of clips by two different speakers, percentiles " + " / ".join(f"p{q}" for q in PERCENTILES) + ":")
    print("| corpus | same emotion | different emotion |")
    print("|---|---|---|")
    for corpus, (same, different) in rows.items():
        bands = report[corpus]["bands"]
        print(f"| {corpus} | " + " / ".join(f"{v:.2f}" for v in bands["same_percentiles"]) + " | "
              + " / ".join(f"{v:.2f}" for v in bands["different_percentiles"]) + " |")
    print("\nShare of those pairs reaching each cosine, same emotion / different emotion "
          "(all: the corpora weighing the same):")
    print("| cosine ≥ | " + " | ".join(rows) + " | all |")
    print("|---" * (len(rows) + 2) + "|")
    pooled = {}
    for i, v in enumerate(GRID):
        cells = []
        same_all, different_all = [], []
        for corpus in rows:
            bands = report[corpus]["bands"]
            cells.append(f"{bands['same_reaching'][i]:.0%} / {bands['different_reaching'][i]:.0%}")
            same_all.append(bands["same_reaching"][i])
            different_all.append(bands["different_reaching"][i])
        pooled[v] = (float(np.mean(same_all)), float(np.mean(different_all)))
        print(f"| {v:+.1f} | " + " | ".join(cells) + f" | {pooled[v][0]:.0%} / {pooled[v][1]:.0%} |")
    report["bands_all"] = {"grid": list(GRID), "same_reaching": [pooled[v][0] for v in GRID],
                           "different_reaching": [pooled[v][1] for v in GRID]}


def finite_or_null(value):
    """``report`` with NaN (a statistic with no pairs, e.g. one held-out speaker) as ``null``: strict JSON."""
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_or_null(v) for v in value]
    return None if isinstance(value, float) and value != value else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fold-models", type=Path, default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--folds", default=None, help="with --fold-models: only these folds (e.g. 0,1)")
    parser.add_argument("--corpora", default=",".join(ALL_CORPORA))
    parser.add_argument("--per-corpus", type=int, default=0, help="at most this many clips per corpus (0: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()
    if (args.fold_models is None) == (args.model is None):
        parser.error("give exactly one of --fold-models and --model")

    from emotion2vec_plus import Emotion2VecPlus

    corpora = args.corpora.split(",")
    clips = read_all(corpora=tuple(corpora))
    if args.per_corpus:
        rng = np.random.default_rng(0)
        kept = []
        for corpus in corpora:
            members = [c for c in clips if c.corpus == corpus]
            kept += [members[i] for i in sorted(rng.permutation(len(members))[: args.per_corpus])]
        clips = kept
    runs = fold_models(args.fold_models, args.folds) if args.fold_models is not None else [(args.model, None)]
    embedded: dict[str, list[tuple[np.ndarray, str, str]]] = defaultdict(list)  # per run, by corpus
    by_run = []
    for model_name, speakers in runs:
        model = Emotion2VecPlus(model_name, num_threads=args.threads)
        chosen = [c for c in clips if speakers is None or (c.corpus, c.speaker) in speakers]
        results = model.predict_batch([str(c.path) for c in chosen], extract_embedding=True, errors="raise")
        rows = [(r.embedding, c.label, f"{c.corpus}/{c.speaker}", c.corpus) for c, r in zip(chosen, results)]
        by_run.append(rows)
        for e, label, speaker, corpus in rows:
            embedded[corpus].append((e, label, speaker))
        print(f"{model_name}: {len(rows)} clips embedded", file=sys.stderr, flush=True)

    report = {}
    print("| corpus | clips | random pair p5 / median / p95 | same emotion, other speaker | different emotion | "
          "same speaker and emotion | nearest neighbour median / p95 | same − different | 10-NN UA |")
    print("|---|---|---|---|---|---|---|---|---|")
    for corpus in corpora:
        if not embedded[corpus]:
            continue
        z = unit(np.stack([e for e, _, _ in embedded[corpus]]).astype(np.float64))
        labels = np.array([l for _, l, _ in embedded[corpus]])
        speakers = np.array([s for _, _, s in embedded[corpus]])
        s = statistics(z, labels, speakers)
        report[corpus] = s
        print(f"| {corpus} | {s['clips']} | {s['random_pair'][0]:.2f} / {s['random_pair'][1]:.2f} / {s['random_pair'][2]:.2f} "
              f"| {s['same_emotion_other_speaker']:.2f} | {s['different_emotion']:.2f} | {s['same_speaker_and_emotion']:.2f} "
              f"| {s['nearest_neighbour'][0]:.2f} / {s['nearest_neighbour'][1]:.2f} | {s['same_minus_different']:+.3f} "
              f"| {s['knn10_ua']:.3f} |")
    band_table(report, corpora)
    # Pairs across corpora, within one run (a fold model only compares what it embedded itself).
    cross = []
    for rows in by_run:
        for a in range(len(corpora)):
            for b in range(a + 1, len(corpora)):
                za = [e for e, _, _, c in rows if c == corpora[a]]
                zb = [e for e, _, _, c in rows if c == corpora[b]]
                if za and zb:
                    cross.append((unit(np.stack(za).astype(np.float64)) @ unit(np.stack(zb).astype(np.float64)).T).ravel())
    if cross:
        values = np.concatenate(cross)
        report["cross_corpus_pair"] = [float(np.percentile(values, q)) for q in (5, 50, 95)]
        print("\nclips of two different corpora (languages): p5 / median / p95 = "
              + " / ".join(f"{v:.2f}" for v in report["cross_corpus_pair"]))
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(finite_or_null(report), indent=2, allow_nan=False))


if __name__ == "__main__":
    main()
