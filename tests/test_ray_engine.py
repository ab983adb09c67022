"""The Ray engine of the batch job: same outputs as the local engine, resuming, the command line."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import speech_clips

try:  # without the 'ray' extra, skip these tests with a clear reason
    import ray  # noqa: F401
    import ray.data  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    pytest.skip(f"ray[data] is not installed (pip install 'emotion2vec-plus[ray]'): {exc}", allow_module_level=True)

from emotion2vec_plus import Emotion2VecPlus
from emotion2vec_plus.jobs import run_batch
from emotion2vec_plus.cli import main as cli_main
from emotion2vec_plus.jobs.ray import _start_ray, run_batch_ray

pytestmark = pytest.mark.slow

N_CLIPS = 8


def read_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    """8 real RAVDESS clips in two folders and one corrupt file."""
    root = tmp_path_factory.mktemp("ray") / "data"
    clips = []
    for index, clip in enumerate(speech_clips(N_CLIPS)):
        target = root / f"speaker{index % 2}" / clip.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(clip, target)
        clips.append(target)
    broken = root / "broken.wav"
    broken.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage, not audio")
    return {"root": root, "clips": clips, "broken": broken}


@pytest.fixture(scope="module")
def runs(inputs, tmp_path_factory) -> dict:
    """The same job with the local engine and with the Ray engine (local Ray instance), timed."""
    base = tmp_path_factory.mktemp("ray-out")
    started = time.perf_counter()
    local = run_batch(Emotion2VecPlus(), [inputs["root"]], base / "local", embeddings="both", batch_size=4,
                      progress=False)
    local_s = time.perf_counter() - started
    started = time.perf_counter()
    remote = run_batch_ray("compact", [inputs["root"]], base / "ray", embeddings="both", batch_size=4,
                           progress=False)
    ray_s = time.perf_counter() - started
    print(f"\nlocal engine {local_s:.1f} s, ray engine {ray_s:.1f} s (incl. Ray start and worker model load)")
    return {"local": (base / "local", local), "ray": (base / "ray", remote)}


def test_ray_engine_writes_the_same_results_as_the_local_engine(runs, inputs):
    (local_out, local), (ray_out, remote) = runs["local"], runs["ray"]
    assert (remote.done, remote.failed, remote.skipped) == (local.done, local.failed, local.skipped) == (N_CLIPS, 1, 0)
    # Ray workers ship Result.to_dict, whose durations are rounded to the millisecond.
    assert remote.audio_hours == pytest.approx(local.audio_hours, abs=N_CLIPS * 0.0005 / 3600)

    local_lines = {line["path"]: line for line in read_lines(local_out)}
    ray_lines = {line["path"]: line for line in read_lines(ray_out)}
    assert len(read_lines(ray_out)) == N_CLIPS + 1  # one line per file, no duplicates
    assert set(ray_lines) == set(local_lines) == {str(p) for p in inputs["clips"] + [inputs["broken"]]}
    for path, line in ray_lines.items():
        other = local_lines[path]
        assert list(line) == list(other)  # the same fields in the same order
        for field in ("size", "mtime", "mtime_ns", "status", "emotion", "model", "granularity", "embedding_file",
                      "warnings", "duration_s"):
            assert line[field] == other[field], (path, field)
        if line["status"] == "ok":
            assert line["confidence"] == pytest.approx(other["confidence"], abs=1e-4)
            assert list(line["scores"]) == list(other["scores"])
            assert line["scores"] == pytest.approx(other["scores"], abs=1e-4)

    # The corrupt file is one error line, as with the local engine.
    error = ray_lines[str(inputs["broken"])]
    assert error["status"] == "error" and error["emotion"] is None and "broken.wav" in error["error"]
    assert error["error"] == local_lines[str(inputs["broken"])]["error"]
    assert error["error_type"] == local_lines[str(inputs["broken"])]["error_type"] == "CorruptAudioError"


def test_ray_engine_parquet_and_npy_match_the_local_engine(runs):
    (local_out, _), (ray_out, _) = runs["local"], runs["ray"]
    local_table = pq.read_table(local_out / "embeddings.parquet")
    ray_table = pq.read_table(ray_out / "embeddings.parquet")
    assert ray_table.schema.equals(local_table.schema, check_metadata=True)
    assert ray_table.num_rows == local_table.num_rows == N_CLIPS
    local_rows = {row["path"]: row for row in local_table.to_pylist()}
    for row in ray_table.to_pylist():
        other = local_rows[row["path"]]
        assert row["emotion"] == other["emotion"]
        assert (row["size"], row["mtime_ns"], row["embedding_file"]) == (other["size"], other["mtime_ns"],
                                                                         other["embedding_file"])
        np.testing.assert_allclose(row["embedding"], other["embedding"], atol=1e-4)
        np.testing.assert_allclose(row["scores"], other["scores"], atol=1e-4)

    local_npy = sorted(p.relative_to(local_out).as_posix() for p in local_out.rglob("*.npy"))
    ray_npy = sorted(p.relative_to(ray_out).as_posix() for p in ray_out.rglob("*.npy"))
    assert ray_npy == local_npy and len(ray_npy) == N_CLIPS
    for name in ray_npy:
        vector = np.load(ray_out / name)
        assert vector.dtype == np.float32
        np.testing.assert_allclose(vector, np.load(local_out / name), atol=1e-4)


def test_ray_engine_rerun_skips_everything_without_starting_ray(runs, inputs):
    ray_out, _ = runs["ray"]
    before = (ray_out / "results.jsonl").read_bytes()
    summary = run_batch_ray("compact", [inputs["root"]], ray_out, embeddings="both", batch_size=4, progress=False)
    assert (summary.done, summary.failed, summary.skipped, summary.skipped_failed) == (0, 0, N_CLIPS + 1, 1)
    assert (ray_out / "results.jsonl").read_bytes() == before
    assert pq.read_table(ray_out / "embeddings.parquet").num_rows == N_CLIPS
    assert not ray.is_initialized()  # nothing was sent to Ray


def test_the_local_ray_instance_listens_on_127_0_0_1_only():
    ray_module, started = _start_ray(None)
    assert started
    try:
        assert ray_module.util.get_node_ip_address() == "127.0.0.1"
        assert ray_module.get_runtime_context().gcs_address.startswith("127.0.0.1:")
        assert all(node["NodeManagerAddress"] == "127.0.0.1" for node in ray_module.nodes())
    finally:
        ray_module.shutdown()


def batch_cli(argv: list[str]) -> int:
    return cli_main(["batch", *argv])


def test_cli_engine_ray_writes_the_files_and_exits_1_for_a_corrupt_file(inputs, tmp_path, capsys):
    out = tmp_path / "job"
    argv = [*map(str, inputs["clips"][:3]), str(inputs["broken"]), "--out", str(out), "--engine", "ray",
            "--ray-workers", "1", "--batch-size", "2", "--no-progress"]
    assert batch_cli(argv) == 1
    captured = capsys.readouterr()
    assert "done 3, failed 1, skipped 0" in captured.out
    lines = read_lines(out)
    assert sorted(line["status"] for line in lines) == ["error", "ok", "ok", "ok"]
    assert pq.read_table(out / "embeddings.parquet").num_rows == 3
    assert not ray.is_initialized()  # the Ray instance it started is shut down
