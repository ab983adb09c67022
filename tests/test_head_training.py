"""train-head on real speech: angry vs neutral on CASIA, trained on 3 speakers, checked on a held-out 4th.

Uses the bundled compact model and ../shared/datasets/CASIA (skipped when absent). All tests share
one model and one embedding cache, so each clip is embedded at most once per test session.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import BUNDLED_DIM  # noqa: E402

from emotion2vec_plus.errors import Emotion2VecError
from emotion2vec_plus.heads import EmotionHead
from emotion2vec_plus.head_training import (
    EmbedStats,
    LabelledClip,
    TrainingDataError,
    confusion_png_path,
    embed_clips,
    format_confusion,
    read_labelled_data,
    train_head_from_data,
)

from conftest import DATASETS  # noqa: E402
CASIA = DATASETS / "CASIA"
TRAIN_SPEAKERS = ("ZhaoZuoxiang", "liuchanhg", "wangzhe")
HELD_OUT_SPEAKER = "zhaoquanyin"
PER_CLASS = 25
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def casia_rows() -> list[dict]:
    manifest = CASIA / "manifest.csv"
    if not manifest.is_file():
        pytest.skip(f"CASIA corpus not found at {manifest}")
    with manifest.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def pick(rows: list[dict], speaker: str, label: str, n: int = PER_CLASS) -> list[dict]:
    chosen = [row for row in rows if row["speaker"] == speaker and row["label"] == label][:n]
    assert len(chosen) == n, f"CASIA has only {len(chosen)} {label} clips of {speaker}"
    return chosen


@pytest.fixture(scope="module")
def model():
    from emotion2vec_plus.inference import Emotion2VecPlus

    return Emotion2VecPlus("compact")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("embedding_cache")


@pytest.fixture(scope="module")
def train_csv(casia_rows, tmp_path_factory) -> Path:
    """CSV (path relative to the CSV's folder, label, group) of 25 angry + 25 neutral clips of 3 speakers."""
    folder = tmp_path_factory.mktemp("train_csv")
    path = folder / "train.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "group"])
        for speaker in TRAIN_SPEAKERS:
            for label in ("angry", "neutral"):
                for row in pick(casia_rows, speaker, label):
                    writer.writerow([os.path.relpath(CASIA / row["path"], folder), label, speaker])
    return path


@pytest.fixture(scope="module")
def trained(model, train_csv, cache_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("heads") / "angry_neutral.safetensors"
    return train_head_from_data(model, train_csv, out, folds=5, cache_dir=cache_dir)


# --------------------------------------------------------------------------- the task
def test_grouped_cv_and_saved_head(trained, train_csv, model):
    report = trained
    assert report.n_clips == 150 and report.n_failed == 0 and report.failures == []
    assert report.labels == ["angry", "neutral"]
    assert report.cv == "grouped" and report.n_groups == 3
    m = report.metrics
    assert m.n_folds == 3 and len(m.fold_unweighted_accuracy) == 3  # leave-one-speaker-out
    assert m.n_samples == 150 and np.sum(m.confusion) == 150
    print(f"\nCV (leave-one-speaker-out) UA {m.unweighted_accuracy:.3f} WA {m.weighted_accuracy:.3f} "
          f"per fold {[round(x, 3) for x in m.fold_unweighted_accuracy]}")
    print(format_confusion(m))
    assert m.unweighted_accuracy > 0.7

    head = EmotionHead.load(report.head_path)
    head.check_embedding_model(model.model_name, model.embed_dim)
    assert head.labels == ["angry", "neutral"] and head.kind == "logreg" and head.embed_dim == BUNDLED_DIM
    assert head.metrics["unweighted_accuracy"] == pytest.approx(m.unweighted_accuracy)
    assert head.metrics["confusion"] == m.confusion
    t = head.training
    assert t["n_per_class"] == {"angry": 75, "neutral": 75}
    assert t["kind"] == "logreg" and t["folds"] == 3 and t["cv"] == "grouped" and t["l2"] == 0.01
    assert t["data_source"] == str(train_csv.resolve()) and t["date"]
    assert report.head_path.read_bytes()[:1] != b"\x80"  # safetensors, not a pickle

    png = report.confusion_png
    assert png == confusion_png_path(report.head_path) == report.head_path.with_name("angry_neutral.confusion.png")
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000


def test_held_out_speaker(trained, casia_rows, model, cache_dir):
    head = EmotionHead.load(trained.head_path)
    rows = pick(casia_rows, HELD_OUT_SPEAKER, "angry") + pick(casia_rows, HELD_OUT_SPEAKER, "neutral")
    clips = [LabelledClip(CASIA / row["path"], row["label"], HELD_OUT_SPEAKER) for row in rows]
    x, ok = embed_clips(model, clips, cache_dir)
    assert ok == list(range(50)) and x.shape == (50, BUNDLED_DIM)
    predicted = head.predict(x)
    truth = [clip.label for clip in clips]
    accuracy = float(np.mean([p == t for p, t in zip(predicted, truth)]))
    recall = {label: float(np.mean([p == label for p, t in zip(predicted, truth) if t == label]))
              for label in ("angry", "neutral")}
    print(f"\nheld-out speaker {HELD_OUT_SPEAKER}: accuracy {accuracy:.3f}, recall {recall}")
    assert accuracy > 0.7
    assert min(recall.values()) > 0.5


def test_second_run_uses_the_cache(trained, model, train_csv, cache_dir, tmp_path):
    report = train_head_from_data(model, train_csv, tmp_path / "again.safetensors", cache_dir=cache_dir)
    assert report.n_embedded == 0 and report.cache_hits == 150
    assert report.metrics.confusion == trained.metrics.confusion  # same embeddings, same seed
    cache_files = list(cache_dir.glob("*.npz"))
    assert [p.name for p in cache_files] == ["compact.npz"]
    assert not list(cache_dir.glob("*.partial"))


# --------------------------------------------------------------------------- folders, failures
def _copy(rows: list[dict], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for row in rows:
        shutil.copy(CASIA / row["path"], folder / Path(row["path"]).name)


def test_folder_of_labels(casia_rows, model, cache_dir, tmp_path):
    data = tmp_path / "data"
    _copy(pick(casia_rows, "wangzhe", "angry", 3), data / "angry")
    _copy(pick(casia_rows, "wangzhe", "neutral", 3)[:2], data / "neutral")
    _copy(pick(casia_rows, "wangzhe", "neutral", 3)[2:], data / "neutral" / "take2")  # nested
    (data / "neutral" / "notes.txt").write_text("not audio")
    clips = read_labelled_data(data)
    assert len(clips) == 6 and all(clip.group is None for clip in clips)
    assert sorted({clip.label for clip in clips}) == ["angry", "neutral"]
    assert any(clip.path.parent.name == "take2" and clip.label == "neutral" for clip in clips)

    report = train_head_from_data(model, data, tmp_path / "out" / "folder.safetensors", folds=3, cache_dir=cache_dir)
    assert report.cv == "stratified" and report.n_groups is None
    assert report.metrics.n_folds == 3 and report.metrics.n_samples == 6 and report.n_embedded == 6
    assert EmotionHead.load(report.head_path).training["n_per_class"] == {"angry": 3, "neutral": 3}
    assert (tmp_path / "out" / "folder.confusion.png").read_bytes()[:8] == PNG_MAGIC


def test_corrupt_clip_is_reported_and_skipped(casia_rows, model, cache_dir, tmp_path):
    data = tmp_path / "data"
    _copy(pick(casia_rows, "liuchanhg", "angry", 3), data / "angry")
    _copy(pick(casia_rows, "liuchanhg", "neutral", 3), data / "neutral")
    broken = data / "angry" / "broken.wav"
    good = (data / "neutral" / Path(pick(casia_rows, "liuchanhg", "neutral", 1)[0]["path"]).name).read_bytes()
    broken.write_bytes(good[:44] + b"\x00garbage" * 3)  # a WAV header with a truncated stream
    (data / "neutral" / "empty.flac").write_bytes(b"")

    report = train_head_from_data(model, data, tmp_path / "h.safetensors", folds=2, cache_dir=cache_dir)
    assert report.n_clips == 8 and report.n_failed == 2 and report.metrics.n_samples == 6
    failed = {Path(path).name: error for path, error in report.failures}
    assert set(failed) == {"broken.wav", "empty.flac"} and all(failed.values())
    assert EmotionHead.load(report.head_path).training["n_failed"] == 2


def test_cache_is_keyed_by_size_and_mtime_and_survives_damage(model, casia_rows, tmp_path):
    rows = pick(casia_rows, "wangzhe", "neutral", 6)
    files = []
    for i, row in enumerate(rows[:5]):
        files.append(tmp_path / f"clip{i}.flac")
        shutil.copy(CASIA / row["path"], files[-1])
    (tmp_path / "bad.wav").write_bytes(b"bad bytes, not audio")
    files.append(tmp_path / "bad.wav")
    cache = tmp_path / "cache"

    stats = EmbedStats()
    x, ok = embed_clips(model, files, cache, batch_size=2, stats=stats)
    assert ok == [0, 1, 2, 3, 4] and x.shape == (5, model.embed_dim) and stats.embedded == 5
    assert [Path(p).name for p, _ in stats.failures] == ["bad.wav"] and stats.cache_hits == 0
    assert stats.cache_path is not None and stats.cache_path.parent == cache and "/" not in stats.cache_path.name

    stats = EmbedStats()
    x2, _ = embed_clips(model, files, cache, stats=stats)
    assert stats.cache_hits == 5 and stats.embedded == 0  # only the bad clip is tried again
    np.testing.assert_array_equal(x, x2)

    shutil.copy(CASIA / rows[5]["path"], files[0])  # another clip under the same name -> re-embedded
    stats = EmbedStats()
    x3, _ = embed_clips(model, files[:5], cache, stats=stats)
    assert stats.embedded == 1 and stats.cache_hits == 4
    assert not np.allclose(x3[0], x[0]) and np.array_equal(x3[1:], x[1:])

    stats.cache_path.write_bytes(b"not an npz")  # a damaged cache is rebuilt, not fatal
    stats = EmbedStats()
    embed_clips(model, files[:5], cache, stats=stats)
    assert stats.embedded == 5
    stats = EmbedStats()
    embed_clips(model, files[:5], cache, stats=stats)
    assert stats.cache_hits == 5

    stats = EmbedStats()
    _, ok = embed_clips(model, files[:5], cache, use_cache=False, stats=stats)
    assert stats.embedded == 5 and stats.cache_hits == 0 and ok == list(range(5))


# --------------------------------------------------------------------------- bad data
def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def audio_pair(casia_rows, tmp_path) -> tuple[Path, Path]:
    rows = pick(casia_rows, "wangzhe", "angry", 2)
    _copy(rows, tmp_path / "audio")
    return tuple(tmp_path / "audio" / Path(row["path"]).name for row in rows)


def test_csv_reading(audio_pair, tmp_path):
    a, b = audio_pair
    csv_path = _write(tmp_path / "d.csv",
                      f"Path,Label,Speaker,extra\naudio/{a.name},x,s1,1\n\n{b},x,s2,2\naudio/{a.name},y,s1,3\n"
                      f"audio/{b.name}, y ,s2,4\n")
    clips = read_labelled_data(csv_path)
    assert [c.label for c in clips] == ["x", "x", "y", "y"]
    assert [c.group for c in clips] == ["s1", "s2", "s1", "s2"]
    assert clips[0].path == a.resolve() and clips[1].path == b


@pytest.mark.parametrize("text, message", [
    ("file,emotion\n{a},x\n", r"line 1: .*path,label.*missing path, label.*found columns: file, emotion"),
    ("path,group\n{a},s\n", r"line 1: .*missing label"),
    ("path,label\n{a},angry\n{b},angry\n", r"at least 2 labels.*only 'angry'"),
    ("path,label\n{a},angry\n{b},angry\n{a},neutral\n", r"at least 2 clips.*'neutral' \(1\)"),
    ("path,label\n{a},angry\nmissing.wav,angry\n", r"line 3: audio file not found: .*missing\.wav"),
    ("path,label\n{a},\n", r"line 2: empty label"),
    ("path,label,group\n{a},x,s\n{b},x\n", r"line 3: 2 cells but the header has 3 columns"),
    ("", r"empty CSV"),
    ("path,label\n", r"no clips"),
])
def test_bad_csv_is_a_clear_error_naming_the_file(audio_pair, tmp_path, text, message):
    a, b = audio_pair
    csv_path = _write(tmp_path / "bad.csv", text.format(a=a, b=b))
    with pytest.raises(TrainingDataError, match=message) as info:
        read_labelled_data(csv_path)
    assert str(info.value).startswith(str(csv_path))
    assert isinstance(info.value, Emotion2VecError) and isinstance(info.value, ValueError)


def test_bad_folders_and_missing_source(audio_pair, tmp_path):
    with pytest.raises(TrainingDataError, match=r"nope.*not found"):
        read_labelled_data(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TrainingDataError, match=r"empty: no audio files in label sub-folders"):
        read_labelled_data(empty)
    one = tmp_path / "one"
    _copy_files(audio_pair, one / "angry")
    with pytest.raises(TrainingDataError, match=r"one: a head needs clips of at least 2 labels, found only 'angry'"):
        read_labelled_data(one)
    loose = tmp_path / "loose"
    _copy_files(audio_pair, loose)
    with pytest.raises(TrainingDataError, match=r"directly in it"):
        read_labelled_data(loose)


def _copy_files(files, folder: Path) -> None:
    folder.mkdir(parents=True)
    for f in files:
        shutil.copy(f, folder / f.name)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        train_head_from_data(None, tmp_path, tmp_path / "h.safetensors", kind="svm")
    with pytest.raises(ValueError, match="folds"):
        train_head_from_data(None, tmp_path, tmp_path / "h.safetensors", folds=1)


# --------------------------------------------------------------------------- command line
def _parser() -> argparse.ArgumentParser:
    from emotion2vec_plus.cli import build_parser

    return build_parser()


def run_train_head_command(args: argparse.Namespace) -> int:
    from emotion2vec_plus.cli import main

    return main(args.argv)


def test_cli_end_to_end(trained, train_csv, cache_dir, tmp_path, capsys):
    out = tmp_path / "cli" / "head.safetensors"
    # float32 like the Python API that filled the cache: embeddings of each compute type are cached apart.
    argv = ["train-head", str(train_csv), "--out", str(out), "--folds", "3", "--cache", str(cache_dir),
            "--l2", "0.01", "--kind", "logreg", "--compute-type", "float32"]
    args = _parser().parse_args(argv)
    args.argv = argv
    assert args.command == "train-head"
    assert run_train_head_command(args) == 0
    stdout = capsys.readouterr().out
    assert "150 clips, 2 labels: angry 75, neutral 75; 3 groups" in stdout
    assert "embedded 0 clip(s), 150 from the cache" in stdout and "0 clips failed" in stdout
    assert "cross-validation (3 folds, grouped by 3 groups, 150 clips): UA" in stdout
    assert "per-fold UA:" in stdout and "true \\ predicted" in stdout
    assert f"head written to {out}" in stdout
    assert f"confusion matrix plot written to {out.with_name('head.confusion.png')}" in stdout
    assert out.is_file() and out.with_name("head.confusion.png").read_bytes()[:8] == PNG_MAGIC
    head = EmotionHead.load(out)
    assert head.training["data_source"] == str(train_csv.resolve()) and head.embedding_model == "compact"


@pytest.mark.parametrize("source", ["missing_dir", "bad.csv"])
def test_cli_bad_source_exits_2(tmp_path, capsys, source):
    _write(tmp_path / "bad.csv", "file,emotion\na.wav,x\n")
    argv = ["train-head", str(tmp_path / source), "--out", str(tmp_path / "h.safetensors")]
    args = _parser().parse_args(argv)
    args.argv = argv
    assert run_train_head_command(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and source in lines[0]
    assert "Traceback" not in captured.err and not (tmp_path / "h.safetensors").exists()


def test_each_compute_type_keeps_its_own_embedding_cache(casia_rows, tmp_path):
    """int8/bf16 embeddings differ slightly from float32 ones, so they never share a cache file."""
    from emotion2vec_plus import Emotion2VecPlus

    clips = [LabelledClip(CASIA / row["path"], row["label"], "s") for row in casia_rows[:2]]
    bf16 = Emotion2VecPlus(compute_type="bfloat16")
    x, ok = embed_clips(bf16, clips, tmp_path)
    assert ok == [0, 1] and x.shape == (2, BUNDLED_DIM)
    assert [p.name.split("-")[0] for p in tmp_path.glob("*.npz")] == ["compact_bfloat16"]
