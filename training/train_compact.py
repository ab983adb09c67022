"""Train the bundled compact model's emotion head and write it into the package.

Steps: read the pooled Whisper features made by compact_features.py (clean + augmented
copies); evaluate the recipe speaker-independently (joint folds over RAVDESS + CASIA,
corpus-only, cross-corpus) with the project's own head training code; train the final head
on all clips; write src/emotion2vec_plus/assets/compact_v1.safetensors and print the model
card tables. Usage:

    python training/compact_features.py --out FEATURES --variants clean,noise15,speed0.9,speed1.1
    python training/train_compact.py --features FEATURES --augment noise15,speed0.9,speed1.1

Licence of the result: trained on RAVDESS (CC BY-NC-SA 4.0) and CASIA (research only), so the
head is for non-commercial research use.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compact_experiments import run_folds  # noqa: E402
from corpora import Clip, joint_folds  # noqa: E402

from emotion2vec_plus.compact import COMPACT_NAME, default_compact_path, pooled_layer_features, save_compact  # noqa: E402
from emotion2vec_plus.heads import classification_metrics, train_head  # noqa: E402
from emotion2vec_plus.whisper import ASSET_INFO_NAME  # noqa: E402

LAYERS = [0, 1, 2, 3, 4, 5, 6]
TRAINED_LABELS = ["angry", "disgusted", "fearful", "happy", "neutral", "sad", "surprised"]


def metrics_dict(labels: np.ndarray, predictions: np.ndarray, mask: np.ndarray) -> dict:
    present = [l for l in TRAINED_LABELS if l in set(labels[mask]) | set(predictions[mask])]
    return classification_metrics(list(labels[mask]), list(predictions[mask]), present).to_dict()


def _scaled_log_probabilities(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    logits = np.log(np.clip(probabilities, 1e-300, None)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


def nll(probabilities: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of the true class after dividing the logits by ``temperature``."""
    index = np.array([TRAINED_LABELS.index(v) for v in labels])
    return float(-_scaled_log_probabilities(probabilities, temperature)[np.arange(len(index)), index].mean())


def fit_temperature(probabilities: np.ndarray, truth: np.ndarray) -> float:
    """The temperature (0.5-50, log grid then refinement) minimising out-of-fold NLL."""
    labels = np.array(TRAINED_LABELS)[truth]
    grid = np.exp(np.linspace(np.log(0.5), np.log(50), 200))
    best = min(grid, key=lambda t: nll(probabilities, labels, t))
    fine = np.linspace(best * 0.95, best * 1.05, 41)
    return float(min(fine, key=lambda t: nll(probabilities, labels, t)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--augment", default="noise15,speed0.9,speed1.1")
    parser.add_argument("--l2", type=float, default=1e-2)
    parser.add_argument("--out", type=Path, default=default_compact_path())
    parser.add_argument("--metrics-out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "compact_metrics.json")
    args = parser.parse_args()

    variants = ["clean"] + [v for v in args.augment.split(",") if v]
    raw = {v: np.load(args.features / f"{v}.npz") for v in variants}
    clean = raw["clean"]
    labels, corpus, speaker = clean["label"], clean["corpus"], clean["speaker"]
    features = {v: pooled_layer_features(raw[v]["means"].astype(np.float32), LAYERS) for v in variants}
    mean = features["clean"].mean(axis=0)
    scale = features["clean"].std(axis=0) + 1e-5
    x = {v: (f - mean) / scale for v, f in features.items()}

    clips = [Clip(Path(p), c, s, l, 0.0) for p, c, s, l in zip(clean["paths"], corpus, speaker, labels)]
    folds = np.array(joint_folds(clips))
    ravdess, casia = corpus == "RAVDESS", corpus == "CASIA"
    casia_folds = np.array([sorted(set(speaker[casia])).index(s) if c else -1 for s, c in zip(speaker, casia)])
    shared = np.isin(labels, sorted(set(labels[casia])))
    everything = np.ones(len(labels), dtype=bool)
    head_args = dict(kind="logreg", l2=args.l2, label_order=TRAINED_LABELS)

    joint_probabilities = np.zeros((len(labels), len(TRAINED_LABELS)))
    joint = run_folds(x, labels, folds, everything, everything, variants, probabilities=joint_probabilities, **head_args)
    temperature = fit_temperature(joint_probabilities, np.array([TRAINED_LABELS.index(v) for v in labels]))
    ravdess_only = run_folds(x, labels, folds, ravdess, ravdess, variants, **head_args)
    casia_only = run_folds(x, labels, casia_folds, casia, casia, variants, **head_args)
    r2c = run_folds(x, labels, np.where(casia, 0, 1), ravdess & shared, casia, variants, **head_args)
    c2r = run_folds(x, labels, np.where(ravdess, 0, 1), casia, ravdess & shared, variants, **head_args)
    evaluation = {
        "joint_ravdess": metrics_dict(labels, joint, ravdess),
        "joint_casia": metrics_dict(labels, joint, casia),
        "ravdess_only": metrics_dict(labels, ravdess_only, ravdess),
        "casia_only_leave_one_speaker_out": metrics_dict(labels, casia_only, casia),
        "cross_ravdess_to_casia": metrics_dict(labels, r2c, casia),
        "cross_casia_to_ravdess": metrics_dict(labels, c2r, ravdess & shared),
    }
    for name, m in evaluation.items():
        print(f"{name:36} UA {m['unweighted_accuracy']:.3f}  WA {m['weighted_accuracy']:.3f}  "
              f"folds {['%.3f' % v for v in m['fold_unweighted_accuracy']]}")

    x_all = np.concatenate([x[v] for v in variants])
    y_all = np.concatenate([labels] * len(variants))
    training = {"corpora": {"RAVDESS": int(ravdess.sum()), "CASIA": int(casia.sum())}, "augmentation": variants,
                "layers": LAYERS, "l2": args.l2, "date": date.today().isoformat(),
                "licence": "non-commercial research use (trained on RAVDESS CC BY-NC-SA 4.0 and CASIA research-only)"}
    head = train_head(x_all, list(y_all), embedding_model=COMPACT_NAME, **head_args)
    # Temperature scaling: logistic regression on 3584 features is over-confident; dividing the
    # logits by T (fitted on out-of-fold predictions) calibrates confidences, argmax unchanged.
    head.params["weight"] = head.params["weight"] / temperature
    head.params["bias"] = head.params["bias"] / temperature
    training["temperature"] = temperature
    training["calibration"] = {"out_of_fold_nll_before": nll(joint_probabilities, labels, 1.0),
                               "out_of_fold_nll_after": nll(joint_probabilities, labels, temperature)}
    print(f"temperature {temperature:.2f}: out-of-fold NLL {training['calibration']['out_of_fold_nll_before']:.3f} "
          f"-> {training['calibration']['out_of_fold_nll_after']:.3f}")
    head.metrics = evaluation
    head.training = training
    encoder_info = json.loads((default_compact_path().parent / ASSET_INFO_NAME).read_text())
    save_compact(args.out, LAYERS, mean, scale, head,
                 {"encoder_sha256": encoder_info["sha256"], "untrained_labels": ["other", "unknown"], "pad_to_30s": False})
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    args.out.with_suffix(".json").write_text(json.dumps(
        {"file": args.out.name, "sha256": digest, "bytes": args.out.stat().st_size, "built_by": "training/train_compact.py",
         "licence": training["licence"]}, indent=2) + "\n")
    args.metrics_out.parent.mkdir(parents=True, exist_ok=True)
    # keep other sections (e.g. "frame_level_heads_tried" from frame_heads.py) across retraining
    previous = json.loads(args.metrics_out.read_text()) if args.metrics_out.is_file() else {}
    args.metrics_out.write_text(json.dumps(previous | {"evaluation": evaluation, "training": training}, indent=1))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB) and {args.metrics_out}")


if __name__ == "__main__":
    main()
