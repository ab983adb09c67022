"""Speaker-independent experiments for the compact model's emotion head; prints tables.

Reads the pooled Whisper features written by compact_features.py and compares feature sets
(layers, pooling), heads (logistic regression, MLP) and training augmentation under:

- joint:  4 folds over both corpora; fold i holds out CASIA speaker i and 6 RAVDESS actors,
          trains on everything else (both corpora), reports UA/WA per corpus;
- RAVDESS: trained and tested on RAVDESS only (same actor folds);
- CASIA:  trained and tested on CASIA only (leave one speaker out);
- cross-corpus: train on one corpus, test on the other (shared classes only).

Usage: python training/compact_experiments.py --features DIR [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpora import Clip, joint_folds  # noqa: E402

from emotion2vec_plus.heads import classification_metrics, train_head  # noqa: E402

LAYERS = 8  # stem, blocks 1-6 (6 incl. ln_post), block 6 before ln_post


def load(features: Path, variant: str) -> dict:
    data = np.load(features / f"{variant}.npz")
    return {key: data[key] for key in data.files}


def feature_set(data: dict, name: str) -> np.ndarray:
    means, stds = data["means"].astype(np.float32), data["stds"].astype(np.float32)
    n = means.shape[0]
    if name == "last-mean":
        return means[:, 6]
    if name == "all-mean":
        return means[:, :7].reshape(n, -1)
    if name == "all-mean+std":
        return np.concatenate([means[:, :7], stds[:, :7]], axis=1).reshape(n, -1)
    if name == "upper-mean":  # blocks 3-6
        return means[:, 3:7].reshape(n, -1)
    if name == "upper-mean+std":
        return np.concatenate([means[:, 3:7], stds[:, 3:7]], axis=1).reshape(n, -1)
    if name == "avg-layers-mean":  # unweighted layer mix: the frame-level-compatible option
        return means[:, 1:7].mean(axis=1)
    raise ValueError(name)


def run_folds(x_by_variant: dict[str, np.ndarray], labels: np.ndarray, folds: np.ndarray, train_mask: np.ndarray,
              test_mask: np.ndarray, train_variants: list[str], probabilities: np.ndarray | None = None,
              **head) -> np.ndarray:
    """Out-of-fold predictions (strings) for samples in test_mask; '' elsewhere. With
    ``probabilities`` (N, C) given, the out-of-fold class probabilities are written into it
    (columns in the head's label order, which ``label_order`` fixes)."""
    predictions = np.array([""] * len(labels), dtype=object)
    for fold in np.unique(folds[test_mask]):
        train = train_mask & (folds != fold)
        test = test_mask & (folds == fold)
        x_train = np.concatenate([x_by_variant[v][train] for v in train_variants])
        y_train = np.concatenate([labels[train]] * len(train_variants))
        model = train_head(x_train, list(y_train), embedding_model="compact-experiment", **head)
        predictions[test] = model.predict(x_by_variant["clean"][test])
        if probabilities is not None:
            probabilities[test] = model.predict_proba(x_by_variant["clean"][test])
    return predictions


def report(name: str, labels: np.ndarray, predictions: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    present = sorted(set(labels[mask]) | set(predictions[mask]))
    metrics = classification_metrics(list(labels[mask]), list(predictions[mask]), present)
    return metrics.unweighted_accuracy, metrics.weighted_accuracy


def few_shot_ua(z: np.ndarray, labels: np.ndarray, speakers: np.ndarray, test: np.ndarray, shots: int = 5,
                seeds: int = 3) -> float:
    """Teach a held-out speaker's emotions from ``shots`` clips per class (logistic regression on
    the embeddings ``z``) and score the rest of that speaker's clips: mean UA over speakers and seeds."""
    scores = []
    for speaker in sorted(set(speakers[test])):
        idx = np.where(test & (speakers == speaker))[0]
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            train = np.concatenate([rng.choice(idx[labels[idx] == c], shots, replace=False) for c in sorted(set(labels[idx]))])
            rest = np.setdiff1d(idx, train)
            head = train_head(z[train], list(labels[train]), embedding_model="few-shot", l2=1e-2)
            truth = list(labels[rest])
            scores.append(classification_metrics(truth, head.predict(z[rest]), sorted(set(labels[idx]))).unweighted_accuracy)
    return float(np.mean(scores))


def bottleneck_projection(x: np.ndarray, labels: np.ndarray, dim: int, seed: int = 0):
    """A learned linear projection to ``dim`` (trained jointly with a linear classifier on top)."""
    import torch

    classes = sorted(set(labels))
    y = torch.tensor([classes.index(v) for v in labels])
    counts = torch.bincount(y, minlength=len(classes)).float()
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    projection, classifier = torch.nn.Linear(x.shape[1], dim), torch.nn.Linear(dim, len(classes))
    optimiser = torch.optim.AdamW([*projection.parameters(), *classifier.parameters()], lr=1e-3, weight_decay=1e-2)
    data = torch.from_numpy(x)
    for _ in range(60):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(order), 64):
            batch = order[start : start + 64]
            logits = classifier(projection(torch.nn.functional.dropout(data[batch], 0.2)))
            loss = torch.nn.functional.cross_entropy(logits, y[batch], weight=len(y) / (len(classes) * counts))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return projection


def embedding_choice(data: dict, labels: np.ndarray, folds: np.ndarray) -> None:
    """Which utterance embedding carries emotion best for new speakers: few-shot UA per candidate."""
    import torch

    concat = feature_set(data, "all-mean")
    candidates: dict[str, list[float]] = {"concat-7-layers (3584-d)": [], "learned-projection (256-d)": [],
                                          "best single layer: block 3 (512-d)": [], "last layer (512-d)": []}
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        mean, scale = concat[train].mean(0), concat[train].std(0) + 1e-5
        z = ((concat - mean) / scale).astype(np.float32)
        projection = bottleneck_projection(z[train], labels[train], 256)
        with torch.no_grad():
            projected = projection(torch.from_numpy(z)).numpy()
        means = data["means"].astype(np.float32)
        for name, emb in zip(candidates, (z, projected, means[:, 3], means[:, 6])):
            candidates[name].append(few_shot_ua(emb, labels, data["speaker"], test))
    print("| embedding | few-shot UA (5 clips per class, held-out speakers) |")
    print("|---|---|")
    for name, values in candidates.items():
        print(f"| {name} | {np.mean(values):.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--sets", default="last-mean,all-mean,all-mean+std,upper-mean+std,avg-layers-mean")
    parser.add_argument("--heads", default="logreg")
    parser.add_argument("--augment", default="", help="comma-separated extra training variants, e.g. noise15,speed0.9")
    parser.add_argument("--l2", type=float, default=1e-2)
    parser.add_argument("--base", default="clean", help="feature file for evaluation (clean or clean_pad30)")
    parser.add_argument("--embedding-choice", action="store_true", help="compare candidate embeddings by few-shot UA")
    args = parser.parse_args()

    clean = load(args.features, args.base)
    labels = clean["label"]
    corpus = clean["corpus"]
    clips = [Clip(Path(p), c, s, l, 0.0) for p, c, s, l in zip(clean["paths"], corpus, clean["speaker"], labels)]
    folds = np.array(joint_folds(clips))
    ravdess, casia = corpus == "RAVDESS", corpus == "CASIA"
    casia_folds = np.array([sorted(set(clean["speaker"][casia])).index(s) if c else -1
                            for s, c in zip(clean["speaker"], casia)])
    shared = np.isin(labels, sorted(set(labels[casia])))
    variants = ["clean"] + [v for v in args.augment.split(",") if v]
    raw = {"clean": clean} | {v: load(args.features, v) for v in variants[1:]}
    everything = np.ones(len(labels), dtype=bool)
    if args.embedding_choice:
        embedding_choice(clean, labels, folds)
        return

    print(f"features: {args.features} ({args.base}); training variants: {variants}; l2={args.l2}")
    print("| features | head | joint RAVDESS UA / WA | joint CASIA UA / WA | RAVDESS-only UA | CASIA-only UA | RAVDESS→CASIA UA | CASIA→RAVDESS UA | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for set_name in args.sets.split(","):
        x = {v: feature_set(raw[v], set_name) for v in variants}
        for kind in args.heads.split(","):
            head = dict(kind=kind, l2=args.l2 if kind == "logreg" else 1e-2, epochs=60)
            started = time.perf_counter()
            joint = run_folds(x, labels, folds, everything, everything, variants, **head)
            r_only = run_folds(x, labels, folds, ravdess, ravdess, variants, **head)
            c_only = run_folds(x, labels, casia_folds, casia, casia, variants, **head)
            # cross-corpus: one "fold" whose training side is the other corpus
            r2c = run_folds(x, labels, np.where(casia, 0, 1), ravdess & shared, casia, variants, **head)
            c2r = run_folds(x, labels, np.where(ravdess, 0, 1), casia, ravdess & shared, variants, **head)
            cells = [report("joint-R", labels, joint, ravdess), report("joint-C", labels, joint, casia)]
            print(f"| {set_name} | {kind} | {cells[0][0]:.3f} / {cells[0][1]:.3f} | {cells[1][0]:.3f} / {cells[1][1]:.3f} "
                  f"| {report('', labels, r_only, ravdess)[0]:.3f} | {report('', labels, c_only, casia)[0]:.3f} "
                  f"| {report('', labels, r2c, casia)[0]:.3f} | {report('', labels, c2r, ravdess & shared)[0]:.3f} "
                  f"| {time.perf_counter() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()
