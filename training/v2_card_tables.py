"""Print the compact v2 model card's accuracy and embedding tables (Markdown) from the JSON lines
that ``v2_frozen.py`` / ``v2_train.py`` append with ``--metrics-out``.

Usage: python training/v2_card_tables.py docs/compact_v2_metrics.jsonl [--tag TAG]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

CORPORA = ["RAVDESS", "CASIA", "nEMO", "EMOVO"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("metrics", type=Path)
    parser.add_argument("--tag", default=None, help="only records with this tag (default: the last folds record's)")
    args = parser.parse_args()
    records = [json.loads(line) for line in args.metrics.read_text().splitlines() if line.strip()]
    folds = [r for r in records if r["protocol"] == "folds" and "pooled" in r and len(r.get("splits", {})) == 4]
    tag = args.tag or folds[-1]["tag"]
    folds = [r for r in folds if r["tag"] == tag][-1]
    loco = [r for r in records if r["protocol"] == "loco" and r["tag"] == tag]

    print(f"### Held-out speakers (4 folds), {tag}\n")
    print("| corpus | clips | UA | WA | UA per fold | 10-NN UA (per fold) | same − different cosine (per fold) |")
    print("|---|---|---|---|---|---|---|")
    for corpus in CORPORA:
        pooled = folds["pooled"][corpus]
        per_fold = [folds["splits"][f"fold{i}"][corpus] for i in range(4)]
        print(f"| {corpus} | {pooled['n_samples']} | {pooled['ua']:.3f} | {pooled['weighted_accuracy']:.3f} | "
              + " / ".join(f"{p['ua']:.3f}" for p in per_fold) + " | "
              + " / ".join(f"{p['embedding']['knn10_ua']:.3f}" for p in per_fold) + " | "
              + " / ".join(f"{p['embedding']['same_minus_different']:+.3f}" for p in per_fold) + " |")
    print(f"\nCalibration: logits divided by {folds['temperature']:.2f} (minimises the out-of-fold NLL).\n")
    for corpus in CORPORA:
        pooled = folds["pooled"][corpus]
        labels = pooled["labels"]
        print(f"{corpus}, held-out speakers — confusion (rows: truth, columns: prediction)\n")
        print("| | " + " | ".join(labels) + " |")
        print("|---" * (len(labels) + 1) + "|")
        for label, row in zip(labels, pooled["confusion"]):
            if sum(row):
                print(f"| **{label}** | " + " | ".join(str(v) for v in row) + " |")
        print()
    if loco:
        record = loco[-1]
        print("### Leave one corpus out (trained on the other three)\n")
        print("| held-out corpus | UA | WA | 10-NN UA | same − different cosine |")
        print("|---|---|---|---|---|")
        for corpus in CORPORA:
            split = record["splits"].get(f"without {corpus}", {}).get(corpus)
            if split:
                print(f"| {corpus} | {split['ua']:.3f} | {split['weighted_accuracy']:.3f} | "
                      f"{split['embedding']['knn10_ua']:.3f} | {split['embedding']['same_minus_different']:+.3f} |")


if __name__ == "__main__":
    main()
