"""Print the model card's metric tables (Markdown) from docs/compact_metrics.json.

Usage: python training/card_tables.py [docs/compact_metrics.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TITLES = {
    "joint_ravdess": "RAVDESS, joint training, held-out actors (4 folds × 6 actors)",
    "joint_casia": "CASIA, joint training, held-out speaker (4 folds × 1 speaker)",
    "ravdess_only": "RAVDESS only, held-out actors",
    "casia_only_leave_one_speaker_out": "CASIA only, leave one speaker out",
    "cross_ravdess_to_casia": "cross-corpus: train RAVDESS → test CASIA",
    "cross_casia_to_ravdess": "cross-corpus: train CASIA → test RAVDESS (CASIA's 6 classes)",
}


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "docs" / "compact_metrics.json"
    evaluation = json.loads(path.read_text())["evaluation"]
    print("| evaluation | clips | UA | WA |")
    print("|---|---|---|---|")
    for key, title in TITLES.items():
        m = evaluation[key]
        print(f"| {title} | {m['n_samples']} | {m['unweighted_accuracy']:.3f} | {m['weighted_accuracy']:.3f} |")
    for key in ("joint_ravdess", "joint_casia", "cross_ravdess_to_casia"):
        m = evaluation[key]
        print(f"\n{TITLES[key]} — confusion (rows: truth, columns: prediction)\n")
        print("| | " + " | ".join(m["labels"]) + " |")
        print("|---" * (len(m["labels"]) + 1) + "|")
        for label, row in zip(m["labels"], m["confusion"]):
            print(f"| **{label}** | " + " | ".join(str(v) for v in row) + " |")


if __name__ == "__main__":
    main()
