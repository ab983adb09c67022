"""The model card's leave-one-corpus-out attempt table and "by condition" table, from the records
``training/v3_loco.py`` appends to its ``--metrics-out`` file. Usage:

    python training/v3_card_tables.py docs/compact_v3_attempts.jsonl
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

CORPORA = ["RAVDESS", "CASIA", "nEMO", "EMOVO"]


def corpus_figures(splits: dict) -> dict[str, dict]:
    return {corpus: metrics for part in splits.values() for corpus, metrics in part.items()}


def loco_table(records: list[dict]) -> str:
    lines = ["| attempt | " + " | ".join(f"{c} UA (4-class)" for c in CORPORA) + " | mean UA | min UA | mean 4-class |",
             "|---" * (len(CORPORA) + 4) + "|"]
    for record in records:
        if record["protocol"] != "loco":
            continue
        figures = corpus_figures(record["splits"])
        if set(figures) != set(CORPORA):
            continue
        cells = [f"{figures[c]['ua']:.3f} ({figures[c]['ua4']:.3f})" for c in CORPORA]
        lines.append(f"| {record['tag']} | " + " | ".join(cells)
                     + f" | {record['mean_ua']:.3f} | {record['min_ua']:.3f} | {record['mean_ua4']:.3f} |")
    return "\n".join(lines)


def draws_pooled(conditions: dict) -> dict[str, dict]:
    """Conditions named "... (draw K)" (adaptation on random subsets) pooled into one per subset
    size: per corpus the mean UA over the draws and its range."""
    pooled: dict[str, dict] = {}
    for name, splits in conditions.items():
        match = re.fullmatch(r"(.*) \(draw \d+\)", name)
        if match is None:
            pooled[name] = corpus_figures(splits)
            continue
        target = pooled.setdefault(f"{match.group(1)}, mean of draws", {})
        for corpus, metrics in corpus_figures(splits).items():
            target.setdefault(corpus, {"draws": []})["draws"].append(metrics["ua"])
    for figures in pooled.values():
        for metrics in figures.values():
            if "draws" in metrics:
                metrics["ua"] = float(np.mean(metrics["draws"]))
                metrics["range"] = (min(metrics["draws"]), max(metrics["draws"]))
    return pooled


def condition_table(records: list[dict]) -> str:
    lines = ["| attempt | protocol | test audio | " + " | ".join(CORPORA) + " | mean |", "|---" * (len(CORPORA) + 4) + "|"]
    for record in records:
        conditions = draws_pooled({record.get("test_variants", ["clean"])[0]: record["splits"], **record.get("conditions", {})})
        for variant, figures in conditions.items():
            cells = [(f"{figures[c]['ua']:.3f}" + (" ({:.3f}–{:.3f})".format(*figures[c]["range"]) if "range" in figures[c] else ""))
                     if c in figures else "—" for c in CORPORA]
            mean = f"{np.mean([figures[c]['ua'] for c in CORPORA]):.3f}" if all(c in figures for c in CORPORA) else "—"
            lines.append(f"| {record['tag']} | {record['protocol']} | {variant} | " + " | ".join(cells) + f" | {mean} |")
    return "\n".join(lines)


def main() -> None:
    records = [json.loads(line) for line in Path(sys.argv[1]).read_text(encoding="utf-8").splitlines() if line.strip()]
    print("Leave one corpus out, UA over all classes the held-out corpus has (4-class in brackets):\n")
    print(loco_table(records))
    print("\nEvery record, by the audio the test clips were scored in:\n")
    print(condition_table(records))


if __name__ == "__main__":
    main()
