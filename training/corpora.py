"""The emotional speech corpora in ../shared/datasets, read from their manifests.

Licences (see ../shared/datasets/README.md): RAVDESS and nEMO CC BY-NC-SA 4.0, CASIA and EMOVO
research use only. Anything trained on them is for non-commercial / research use. The audio is
never copied into this repository.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
CORPORA = ("RAVDESS", "CASIA")  # the compact model v1's training data
ALL_CORPORA = ("RAVDESS", "CASIA", "nEMO", "EMOVO")


@dataclass(frozen=True)
class Clip:
    path: Path
    corpus: str
    speaker: str
    label: str
    duration_s: float


def read_corpus(name: str, root: Path = DATASETS) -> list[Clip]:
    """All clips of one corpus, in manifest order."""
    manifest = root / name / "manifest.csv"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: corpus manifest not found (expected ../shared/datasets beside the repo)")
    with manifest.open(encoding="utf-8") as handle:
        return [Clip(root / name / row["path"], row["dataset"], row["speaker"], row["label"], float(row["duration_s"]))
                for row in csv.DictReader(handle)]


def read_all(root: Path = DATASETS, corpora: tuple[str, ...] = CORPORA) -> list[Clip]:
    return [clip for name in corpora for clip in read_corpus(name, root)]


def speaker_folds(clips: list[Clip], n_folds: int = 4) -> list[int]:
    """Speaker-independent folds over any corpora: each corpus's speakers (sorted) are dealt out
    round-robin, so every fold holds out about a quarter of every corpus's speakers and every
    speaker is tested exactly once."""
    fold_of: dict[tuple[str, str], int] = {}
    for corpus in sorted({c.corpus for c in clips}):
        speakers = sorted({c.speaker for c in clips if c.corpus == corpus})
        fold_of.update({(corpus, s): i % n_folds for i, s in enumerate(speakers)})
    return [fold_of[(c.corpus, c.speaker)] for c in clips]


def joint_folds(clips: list[Clip], n_folds: int = 4) -> list[int]:
    """Speaker-independent folds over both corpora: fold i holds out CASIA speaker i and one
    quarter of the RAVDESS actors (6 of 24), so every speaker is tested exactly once."""
    casia = sorted({c.speaker for c in clips if c.corpus == "CASIA"})
    ravdess = sorted({c.speaker for c in clips if c.corpus == "RAVDESS"})
    fold_of = {speaker: i % n_folds for i, speaker in enumerate(casia)}
    fold_of.update({speaker: i * n_folds // len(ravdess) for i, speaker in enumerate(ravdess)})
    return [fold_of[c.speaker] for c in clips]


def save_fold_speakers(stem: Path, clips: list[Clip], test_indices) -> None:
    """``stem.json``: the (corpus, speaker) pairs a fold's model never saw (beside ``stem.safetensors``)."""
    speakers = sorted({(clips[i].corpus, clips[i].speaker) for i in test_indices})
    stem.with_suffix(".json").write_text(json.dumps({"test_speakers": speakers}))


def fold_models(directory: Path, folds: str | None = None) -> list[tuple[str, set[tuple[str, str]]]]:
    """(model file, held-out (corpus, speaker) pairs) of each fold written by ``--save-folds``;
    ``folds`` ("0,1") picks some of them."""
    wanted = None if folds is None else {f"fold{f}" for f in folds.split(",")}
    runs = []
    for info_path in sorted(directory.glob("fold*.json")):
        if wanted is not None and info_path.stem not in wanted:
            continue
        speakers = {tuple(s) for s in json.loads(info_path.read_text())["test_speakers"]}
        runs.append((str(info_path.with_suffix(".safetensors")), speakers))
    return runs
