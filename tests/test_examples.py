"""The scripts users already run (examples/) work unmodified against this package.

By default they use the bundled compact model, so they run on a fresh offline install (the
test runs them with the hubs unreachable). With ``--model large`` the test lays a checkpoint
out where the hub resolver's cache keeps ``emotion2vec/emotion2vec_plus_large``, so the
scripts go through the real name resolution with no network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT, speech_clips


@pytest.fixture()
def offline_env(small_checkpoint, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(small_checkpoint, cache / "hf" / "emotion2vec" / "emotion2vec_plus_large")
    env = dict(os.environ, EMOTION2VEC_CACHE=str(cache), HF_HUB_OFFLINE="1", EMOTION2VEC_HUB="hf")
    return env


def run_example(name: str, args: list[str], env: dict, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "examples" / name), *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("model", [[], ["--model", "large"]], ids=["bundled", "large"])
def test_cosine_similarity_example(offline_env, tmp_path, model):
    clips = []
    for index, clip in enumerate(speech_clips(2)):
        clips.append(tmp_path / f"clip{index}.flac")
        shutil.copy(clip, clips[-1])
    done = run_example("cosine_similarity.py", [*model, *map(str, clips)], offline_env, tmp_path)
    assert done.returncode == 0, done.stderr
    similarity = float(done.stdout.strip().split()[-1])
    a, b = (np.load(str(c) + ".npy") for c in clips)
    expected = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert similarity == pytest.approx(expected, abs=1e-4) and -1 <= similarity <= 1


@pytest.mark.parametrize("model", [[], ["--model", "large"]], ids=["bundled", "large"])
def test_batch_service_example(offline_env, tmp_path, model):
    clips = [str(c) for c in speech_clips(2)]
    done = run_example("batch_service.py", [*model, *clips], offline_env, tmp_path)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert [r["file"] for r in results] == clips
    for r in results:
        assert r["emotion"] == max(r["scores"], key=r["scores"].get) and 0 < r["confidence"] <= 1


def test_stream_client_example_streams_a_file_to_a_real_server(tmp_path):
    """examples/stream_client.py against ``emotion2vec-plus serve`` on a loopback port, paced at real time."""
    import socket
    import time
    import urllib.request

    import soundfile as sf

    parts = []
    for clip in speech_clips(18)[::9]:  # two sentences of one speaker, 0.8 s apart
        parts += [sf.read(clip, dtype="float32")[0], np.zeros(12800, np.float32)]
    path = tmp_path / "two sentences.wav"
    sf.write(path, np.concatenate(parts), 16000)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exe = os.path.join(os.path.dirname(sys.executable), "emotion2vec-plus")
    server = subprocess.Popen([exe, "serve", "--port", str(port), "--compute-type", "float32"],
                              stdout=subprocess.DEVNULL, stderr=open(tmp_path / "serve.log", "w"), env=dict(os.environ, EMOTION2VEC_API_KEY=""))
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, (tmp_path / "serve.log").read_text()
                time.sleep(0.2)
        started = time.monotonic()
        done = run_example("stream_client.py", [str(path), "--url", f"ws://127.0.0.1:{port}/v1/stream", "--jsonl"],
                           dict(os.environ), tmp_path)
        took = time.monotonic() - started
    finally:
        server.terminate()
        server.wait(30)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert sum(e["type"] == "utterance" for e in events) == 2
    assert events[0]["type"] == "session.started" and events[-1]["type"] == "session.ended"
    assert any(e["type"] == "emotion" for e in events)
    assert took >= sf.info(path).duration  # paced at real time, not sent at once
