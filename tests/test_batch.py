"""Batch jobs: discovery, outputs, failures, resuming (also after SIGKILL) and the command line."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from conftest import BUNDLED_DIM, speech_clips
from emotion2vec_plus import Emotion2VecPlus
from emotion2vec_plus.jobs import BatchInputError, BatchSummary, find_audio_files, run_batch
from emotion2vec_plus.jobs.store import npy_names

CLIP_S = 1.5  # real speech trimmed to this length keeps the tests fast


def speech(index: int, seconds: float = CLIP_S) -> np.ndarray:
    """``seconds`` of real speech from the middle of RAVDESS clip ``index`` (16 kHz float32)."""
    audio, rate = sf.read(speech_clips(index + 1)[index], dtype="float32")
    assert rate == 16000
    start = max(0, (len(audio) - int(seconds * rate)) // 2)
    return audio[start:start + int(seconds * rate)]


def write_mp3(path: Path, signal_: np.ndarray, rate: int = 16000) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libmp3lame", rate=rate)
        stream.layout = "mono"
        for start in range(0, len(signal_), 1152):
            block = np.ascontiguousarray(signal_[start:start + 1152][None], dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def model() -> Emotion2VecPlus:
    return Emotion2VecPlus()  # the bundled compact model: offline


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> dict:
    """data/{a.flac, x/B.WAV, x/y/c.mp3, x/y/D.Flac, x/broken.wav, x/notes.txt} of real speech."""
    root = tmp_path_factory.mktemp("batch") / "data"
    (root / "x" / "y").mkdir(parents=True)
    sf.write(root / "a.flac", speech(0), 16000)
    sf.write(root / "x" / "B.WAV", speech(1, 1.0), 16000, subtype="PCM_16")
    write_mp3(root / "x" / "y" / "c.mp3", speech(2, 2.0))
    sf.write(root / "x" / "y" / "D.Flac", speech(3), 16000)
    (root / "x" / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage, not audio")
    (root / "x" / "notes.txt").write_text("listening notes, not a list of files\n")
    audio = [root / "a.flac", root / "x" / "B.WAV", root / "x" / "y" / "D.Flac", root / "x" / "y" / "c.mp3"]
    return {"root": root, "audio": sorted(audio), "broken": root / "x" / "broken.wav"}


def read_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]


# ------------------------------------------------------------------------------------------ discovery
def test_find_audio_files_walks_folders_case_insensitively_and_skips_notes(tree):
    root = tree["root"]
    found = find_audio_files([root])
    assert found == sorted(tree["audio"] + [tree["broken"]])  # sorted, no notes.txt
    assert all(p.is_absolute() for p in found)


def test_find_audio_files_keeps_order_and_drops_duplicates(tree, tmp_path, monkeypatch):
    root = tree["root"]
    monkeypatch.chdir(root)
    found = find_audio_files(["x/y/c.mp3", str(root / "a.flac"), root / "x" / "y" / "c.mp3", "x/y"])
    assert found == [root / "x" / "y" / "c.mp3", root / "a.flac", root / "x" / "y" / "D.Flac"]


def test_txt_and_csv_lists_resolve_relative_paths_against_their_folder(tree, tmp_path):
    root = tree["root"]
    txt = root / "x" / "list.txt"  # inside the tree; not audio, so never picked up by a folder walk
    txt.write_text("# clips to run\n\ny/c.mp3\n" + str(root / "a.flac") + "\n../a.flac\n")
    assert find_audio_files([txt]) == [root / "x" / "y" / "c.mp3", root / "a.flac"]
    txt.unlink()

    with_header = tmp_path / "with_header.csv"
    with with_header.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["speaker", "path"])
        writer.writerow(["s1", str(root / "x" / "B.WAV")])
        writer.writerow(["s2", os.path.relpath(root / "a.flac", tmp_path)])
    assert find_audio_files([with_header]) == [root / "x" / "B.WAV", root / "a.flac"]

    first_column = tmp_path / "first_column.csv"
    first_column.write_text(f"file,label\n{root / 'a.flac'},happy\n{root / 'x'},folder\n")
    assert find_audio_files([first_column]) == [root / "a.flac", root / "x" / "B.WAV", tree["broken"],
                                                root / "x" / "y" / "D.Flac", root / "x" / "y" / "c.mp3"]


def test_missing_inputs_and_bad_lists_are_clear_errors(tree, tmp_path):
    with pytest.raises(BatchInputError, match="input not found: .*nowhere.wav"):
        find_audio_files([tree["root"], tmp_path / "nowhere.wav"])
    listing = tmp_path / "list.txt"
    listing.write_text("gone.wav\n")
    with pytest.raises(BatchInputError, match=r"list.txt:1: file not found: gone.wav"):
        find_audio_files([listing])
    binary = tmp_path / "list.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage\x81")
    with pytest.raises(BatchInputError, match="cannot read the list"):
        find_audio_files([binary])


def test_npy_names_mirror_the_tree_sanitised_and_without_collisions(tmp_path):
    root = tmp_path
    files = [root / "a" / "clip.wav", root / "a" / "clip.mp3", root / "a" / "Other.FLAC",
             root / "b" / 'we:ird<name>?.wav', root / "b" / "..wav"]
    names = npy_names(files, root)
    assert names[files[0]] == "a/clip.wav.npy" and names[files[1]] == "a/clip.mp3.npy"
    assert names[files[2]] == "a/Other.npy"
    assert names[files[3]] == "b/we_ird_name__.npy"
    assert len(set(names.values())) == len(files)
    for name in names.values():
        target = (tmp_path / "out" / "embeddings" / name).resolve()
        assert target.is_relative_to((tmp_path / "out" / "embeddings").resolve())
        assert all(part not in ("", ".", "..") for part in name.split("/"))


# ------------------------------------------------------------------------------------------ outputs
@pytest.fixture(scope="module")
def first_run(model, tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "job"
    summary = run_batch(model, [tree["root"]], out, embeddings="both", workers=2, batch_size=2, progress=False)
    return out, summary


def test_outputs_jsonl_parquet_and_npy_mirror(first_run, tree, model):
    out, summary = first_run
    assert isinstance(summary, BatchSummary)
    assert (summary.done, summary.failed, summary.skipped) == (4, 1, 0)
    assert summary.audio_hours == pytest.approx((2 * CLIP_S + 1.0 + 2.0) / 3600, rel=0.05)
    assert summary.files_per_s > 0 and summary.audio_s_per_s > 0 and summary.wall_s > 0

    lines = read_lines(out)
    assert sorted(line["path"] for line in lines) == sorted(map(str, tree["audio"] + [tree["broken"]]))
    for line in lines:
        assert {"path", "size", "mtime", "status", "emotion", "confidence", "scores", "duration_s", "error",
                "model", "granularity"} <= set(line)
        assert line["size"] == os.stat(line["path"]).st_size and line["mtime_ns"] == os.stat(line["path"]).st_mtime_ns
        assert line["model"] == "compact" and line["granularity"] == "utterance"
    ok = {line["path"]: line for line in lines if line["status"] == "ok"}
    assert len(ok) == 4
    for line in ok.values():
        assert line["emotion"] in line["scores"] and line["error"] is None
        assert line["confidence"] == pytest.approx(max(line["scores"].values()))
        assert sum(line["scores"].values()) == pytest.approx(1.0, abs=1e-4)
    assert ok[str(tree["root"] / "x" / "y" / "c.mp3")]["duration_s"] == pytest.approx(2.0, abs=0.1)

    # Parquet: one row per successful file, fixed-size lists, labels in the metadata.
    table = pq.read_table(out / "embeddings.parquet")
    assert table.num_rows == 4 and sorted(table["path"].to_pylist()) == sorted(ok)
    schema = table.schema
    assert str(schema.field("embedding").type) == f"fixed_size_list<element: float>[{BUNDLED_DIM}]"
    labels = json.loads(schema.metadata[b"labels"])
    assert labels == [label.english for label in model.labels]
    assert schema.field("scores").type.list_size == len(labels)
    rows = table.to_pylist()
    for row in rows:
        assert len(row["embedding"]) == model.embed_dim
        assert dict(zip(labels, row["scores"])) == pytest.approx(ok[row["path"]]["scores"], abs=1e-6)
        assert row["emotion"] == ok[row["path"]]["emotion"]

    # .npy files mirror the input tree below the common root and equal the Parquet rows.
    npys = sorted(p.relative_to(out / "embeddings").as_posix() for p in (out / "embeddings").rglob("*.npy"))
    assert npys == ["a.npy", "x/B.npy", "x/y/D.npy", "x/y/c.npy"]
    for row in rows:
        assert row["embedding_file"] == ok[row["path"]]["embedding_file"]
        vector = np.load(out / row["embedding_file"])
        assert vector.shape == (model.embed_dim,) and vector.dtype == np.float32
        np.testing.assert_allclose(vector, np.asarray(row["embedding"], dtype=np.float32))
    assert not list((out / "embeddings.parquet.parts").glob("*.tmp-*"))


def test_a_corrupt_file_is_one_error_line(first_run, tree):
    out, _ = first_run
    errors = [line for line in read_lines(out) if line["status"] == "error"]
    assert len(errors) == 1 and errors[0]["path"] == str(tree["broken"])
    assert "broken.wav" in errors[0]["error"] and errors[0]["emotion"] is None
    assert errors[0]["error_type"] == "CorruptAudioError"  # what kind of problem, for programs and the WebUI


def test_batch_results_match_predict(first_run, tree, model):
    out, _ = first_run
    clip = tree["root"] / "x" / "y" / "c.mp3"
    line = next(line for line in read_lines(out) if line["path"] == str(clip))
    direct = model.predict(clip)
    assert line["emotion"] == direct.emotion
    assert line["scores"] == pytest.approx(direct.scores, abs=1e-4)


def test_progress_callback_counts_every_file_once(model, tree, tmp_path):
    calls: list[tuple[int, int]] = []
    summary = run_batch(model, [tree["root"]], tmp_path / "out", batch_size=2, progress=lambda done, total: calls.append((done, total)))
    total = summary.done + summary.failed
    assert calls and calls[-1] == (total, total) and all(t == total for _, t in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)  # never goes back


def test_rerun_skips_everything_and_duplicates_nothing(first_run, tree, model):
    out, _ = first_run
    before = (out / "results.jsonl").read_bytes()
    summary = run_batch(model, [tree["root"]], out, embeddings="both", progress=False)
    assert (summary.done, summary.failed, summary.skipped, summary.skipped_failed) == (0, 0, 5, 1)
    assert (out / "results.jsonl").read_bytes() == before
    assert pq.read_table(out / "embeddings.parquet").num_rows == 4


def test_retry_failed_replaces_the_error_line(model, tree, tmp_path):
    out = tmp_path / "job"
    run_batch(model, [tree["broken"], tree["audio"][0]], out, progress=False)
    summary = run_batch(model, [tree["broken"], tree["audio"][0]], out, progress=False, retry_failed=True)
    assert (summary.done, summary.failed, summary.skipped) == (0, 1, 1)
    lines = read_lines(out)
    assert [line["status"] for line in lines] == ["ok", "error"]


def test_a_changed_file_is_redone_once(model, tree, tmp_path):
    clip = tmp_path / "in" / "clip.flac"
    clip.parent.mkdir()
    sf.write(clip, speech(4), 16000)
    out = tmp_path / "job"
    run_batch(model, [clip.parent], out, progress=False)
    sf.write(clip, speech(5, 1.0), 16000)
    summary = run_batch(model, [clip.parent], out, progress=False)
    assert (summary.done, summary.skipped) == (1, 0)
    lines = read_lines(out)
    assert len(lines) == 1 and lines[0]["duration_s"] == pytest.approx(1.0, abs=0.01)
    table = pq.read_table(out / "embeddings.parquet")
    assert table["size"].to_pylist() == [clip.stat().st_size]


def test_a_cut_last_line_and_lost_lines_are_redone_exactly_once(model, tree, tmp_path):
    out = tmp_path / "job"
    inputs = [tree["root"]]
    run_batch(model, inputs, out, batch_size=1, progress=False)
    lines = (out / "results.jsonl").read_bytes().splitlines(keepends=True)
    assert len(lines) == 5
    # As if killed after the Parquet part and 2 lines of the last window were written, and in the
    # middle of writing the third: the fragment is dropped and the 3 files redone once.
    (out / "results.jsonl").write_bytes(b"".join(lines[:2]) + lines[2][:25])
    (out / "embeddings.parquet").unlink()
    leftovers = [out / "embeddings.parquet.tmp-999", out / "embeddings.parquet.parts" / "part-00002.parquet.tmp-999",
                 out / "embeddings" / "x" / "y" / "c.npy.tmp-999"]
    for leftover in leftovers:
        leftover.parent.mkdir(parents=True, exist_ok=True)
        leftover.write_bytes(b"half-written")
    summary = run_batch(model, inputs, out, batch_size=1, progress=False)
    assert not any(leftover.exists() for leftover in leftovers)
    assert summary.skipped == 2 and summary.done + summary.failed == 3
    paths = [line["path"] for line in read_lines(out)]
    assert sorted(paths) == sorted(map(str, tree["audio"] + [tree["broken"]]))
    table = pq.read_table(out / "embeddings.parquet")
    assert sorted(table["path"].to_pylist()) == sorted(map(str, tree["audio"]))
    assert len(list((out / "embeddings.parquet.parts").glob("part-*.parquet"))) >= 2


def test_frame_granularity_writes_frame_features_as_npy(model, tree, tmp_path):
    out = tmp_path / "job"
    clip = tree["root"] / "x" / "B.WAV"
    summary = run_batch(model, [clip], out, granularity="frame", embeddings="parquet", progress=False)
    assert summary.done == 1
    (line,) = read_lines(out)
    assert line["granularity"] == "frame" and "frames" not in line
    frames = np.load(out / line["embedding_file"])
    assert line["embedding_file"] == "embeddings/B.npy"
    assert frames.ndim == 2 and frames.shape[1] == model.embed_dim
    assert abs(frames.shape[0] - 1.0 * model.frame_rate) <= 2
    row = pq.read_table(out / "embeddings.parquet").to_pylist()[0]
    assert row["num_frames"] == frames.shape[0]
    np.testing.assert_allclose(row["embedding"], frames.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_an_out_dir_of_another_model_is_refused(first_run, tree, small_model):
    out, _ = first_run
    with pytest.raises(BatchInputError, match="another --out"):
        run_batch(small_model, [tree["root"]], out, progress=False)


# ------------------------------------------------------------------------------------------ killed job
def test_sigkill_at_any_moment_then_resume_processes_each_file_once(tmp_path):
    inputs = tmp_path / "in"
    for index in range(14):
        folder = inputs / f"speaker{index % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"clip{index:02d}.flac", speech(index, 1.0), 16000)
    out = tmp_path / "job"
    command = [sys.executable, "-m", "emotion2vec_plus.cli", "batch", str(inputs), "--out", str(out),
               "--batch-size", "1", "--workers", "2", "--embeddings", "both", "--no-progress"]
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    results = out / "results.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and job.poll() is None:
        if results.exists() and results.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.01)
    assert job.poll() is None, "the job ended before it could be killed"
    job.send_signal(signal.SIGKILL)
    job.wait(timeout=30)
    done_before = results.read_bytes().count(b"\n")
    assert 3 <= done_before < 14

    finished = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert f"skipped {done_before}" in finished.stdout

    wanted = sorted(str(p) for p in inputs.rglob("*.flac"))
    paths = [line["path"] for line in read_lines(out)]
    assert sorted(paths) == wanted  # each file exactly once
    assert all(line["status"] == "ok" for line in read_lines(out))
    table = pq.read_table(out / "embeddings.parquet")
    assert sorted(table["path"].to_pylist()) == wanted
    assert len(list((out / "embeddings").rglob("*.npy"))) == 14


# ------------------------------------------------------------------------------------------ command line
def batch_cli(argv: list[str]) -> int:
    from emotion2vec_plus.cli import main

    return main(["batch", *argv])


def test_cli_exit_codes(tree, tmp_path, capsys):
    good = [str(p) for p in tree["audio"][:2]]
    assert batch_cli([*good, "--out", str(tmp_path / "ok"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "done 2, failed 0, skipped 0" in out

    code = batch_cli([*good, str(tree["broken"]), "--out", str(tmp_path / "ok"), "--no-progress"])
    assert code == 1 and "done 0, failed 1, skipped 2" in capsys.readouterr().out
    code = batch_cli([*good, str(tree["broken"]), "--out", str(tmp_path / "ok"), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1 and "--retry-failed" in captured.out  # the earlier failure still counts


def test_cli_user_errors_are_one_line(tree, tmp_path, capsys):
    code = batch_cli([str(tree["root"]), str(tmp_path / "missing.wav"), "--out", str(tmp_path / "job")])
    err = capsys.readouterr().err
    assert code == 2 and err == f"error: input not found: {tmp_path / 'missing.wav'}\n"
    assert not (tmp_path / "job").exists()

    listing = tmp_path / "files.txt"
    listing.write_bytes(b"\xff\xfe\xfa")
    code = batch_cli([str(listing), "--out", str(tmp_path / "job")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: cannot read the list") and err.count("\n") == 1


def test_cli_registers_the_batch_subcommand():
    from emotion2vec_plus import cli
    from emotion2vec_plus.cli import batch as batch_command

    args = cli.build_parser().parse_args(["batch", "x.wav", "--out", "o"])
    assert args.command == "batch" and args.run is batch_command.run


def test_two_jobs_never_share_an_out_dir(model, tree, tmp_path):
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "job"
    out.mkdir()
    with open(out / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(BatchInputError, match="another batch job"):
            run_batch(model, [tree["audio"][0]], out, progress=False)
    assert not (out / "results.jsonl").exists()
    assert run_batch(model, [tree["audio"][0]], out, progress=False).done == 1


def test_stage_files_uses_safe_unique_names_inside_the_folder(tmp_path):
    from emotion2vec_plus.jobs import stage_files

    source = tmp_path / "upload.bin"
    source.write_bytes(b"abc")
    folder = tmp_path / "job" / "inputs"
    folder.mkdir(parents=True)
    (folder / "clip.wav").write_bytes(b"already here")
    staged = stage_files([("../../evil.wav", source), ("clip.wav", source), ("clip.wav", source),
                          ("a\\b:c?.mp3", source), ("..", source), ("", source)], folder)
    assert [p.name for p in staged] == ["evil.wav", "clip-2.wav", "clip-3.wav", "b_c_.mp3", "_", "file"]
    assert all(p.parent == folder and p.read_bytes() == b"abc" for p in staged)
    assert (folder / "clip.wav").read_bytes() == b"already here"  # never overwritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job", "upload.bin"]


def test_results_csv_and_npy_zip_for_people(tmp_path):
    import zipfile

    from emotion2vec_plus.jobs import read_results, write_results_csv, zip_npy_embeddings

    out = tmp_path / "job"
    (out / "embeddings" / "sub").mkdir(parents=True)
    assert zip_npy_embeddings(out) is None  # no .npy files: no archive
    lines = [
        {"path": "/data/a.wav", "size": 1, "mtime_ns": 2, "status": "ok", "emotion": "happy", "confidence": 0.91234567,
         "scores": {"happy": 0.91234567, "sad": 0.08765433}, "duration_s": 1.5, "error": None, "model": "compact",
         "granularity": "utterance", "embedding_file": "embeddings/a.npy"},
        {"path": "/data/b,\"odd\".mp3", "size": 1, "mtime_ns": 2, "status": "error", "emotion": None, "confidence": None,
         "scores": None, "duration_s": None, "error": "b: not audio", "model": "compact", "granularity": "utterance",
         "embedding_file": None},
    ]
    (out / "results.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"path": "/data/cut', encoding="utf-8")
    assert [r["path"] for r in read_results(out)] == ["/data/a.wav", '/data/b,"odd".mp3']  # the cut line is left out
    assert read_results(tmp_path / "nothing") == []

    path = write_results_csv(out)
    assert path == out / "results.csv" and path.read_bytes().startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
    assert rows[0] == ["path", "status", "emotion", "confidence", "duration_s", "error", "model", "granularity",
                       "embedding_file", "score_happy", "score_sad"]
    assert rows[1][:4] == ["/data/a.wav", "ok", "happy", "0.912346"] and rows[1][-2:] == ["0.912346", "0.0876543"]
    assert rows[2][:3] == ['/data/b,"odd".mp3', "error", ""] and rows[2][5] == "b: not audio"
    given = write_results_csv(out, out / "given.csv", order=['/data/b,"odd".mp3', "/data/a.wav"])
    assert [row[0] for row in csv.reader(given.read_text(encoding="utf-8-sig").splitlines())][1:] == [
        '/data/b,"odd".mp3', "/data/a.wav"]  # the order the inputs were given in, not the order processed

    np.save(out / "embeddings" / "a.npy", np.ones(4, np.float32))
    np.save(out / "embeddings" / "sub" / "c.npy", np.zeros((2, 4), np.float32))
    archive = zip_npy_embeddings(out)
    with zipfile.ZipFile(archive) as handle:
        assert sorted(handle.namelist()) == ["a.npy", "sub/c.npy"]
        assert np.load(io.BytesIO(handle.read("sub/c.npy"))).shape == (2, 4)


def test_sigkill_during_the_parquet_combine_then_resume(tmp_path):
    """Killed while embeddings.parquet is being combined from its parts: the final name is never a
    half file, and the re-run combines it whole (every file once) and leaves no temporary behind."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for index in range(40):
        sf.write(inputs / f"clip{index:02d}.flac", speech(index, 0.6), 16000)
    out = tmp_path / "job"
    command = [sys.executable, "-m", "emotion2vec_plus.cli", "batch", str(inputs), "--out", str(out),
               "--batch-size", "1", "--workers", "1", "--embeddings", "parquet", "--no-progress"]
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    killed = False
    while time.monotonic() < deadline and job.poll() is None:
        if list(out.glob("embeddings.parquet.tmp-*")):  # the combine is writing
            job.send_signal(signal.SIGKILL)
            killed = True
            break
    job.wait(timeout=30)
    if not killed:
        pytest.skip("the combine finished between two polls; nothing was killed")
    if (out / "embeddings.parquet").exists():  # an earlier combine's file: whole and readable, never half written
        pq.read_table(out / "embeddings.parquet")
    finished = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert finished.returncode == 0, finished.stderr
    wanted = sorted(str(p) for p in inputs.glob("*.flac"))
    assert sorted(pq.read_table(out / "embeddings.parquet")["path"].to_pylist()) == wanted
    assert sorted(line["path"] for line in read_lines(out)) == wanted
    assert not list(out.rglob("*.tmp-*"))


def test_a_file_longer_than_the_model_holds_in_memory_is_streamed_in_a_batch(tmp_path):
    """A batch job decodes ahead in threads; a file past hold_in_memory_s comes through as speech
    regions only (no samples held) and is scored streamed, with the result it gets on its own."""
    clips = [sf.read(p, dtype="float32")[0] for p in speech_clips(6)]
    data = tmp_path / "data"
    data.mkdir()
    sf.write(data / "long.flac", np.concatenate([x for c in clips for x in (c, np.zeros(8000, np.float32))]), 16000)
    sf.write(data / "short.wav", clips[0], 16000)
    model = Emotion2VecPlus(hold_in_memory_s=12.0)
    summary = run_batch(model, [data], tmp_path / "out", embeddings="none", progress=False)
    assert (summary.done, summary.failed) == (2, 0)
    lines = {Path(line["path"]).name: line for line in read_lines(tmp_path / "out")}
    alone = Emotion2VecPlus().predict(str(data / "long.flac"))
    assert lines["long.flac"]["duration_s"] == pytest.approx(alone.duration_s, abs=0.01) and alone.duration_s > 20
    assert lines["long.flac"]["scores"] == pytest.approx(alone.scores, abs=1e-4)
