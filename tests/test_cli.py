"""The command line, run in-process and once as the installed console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BUNDLED_DIM, speech_clips
from emotion2vec_plus.cli import main


def test_predict_prints_a_line_per_file_and_fails_for_a_bad_one(small_checkpoint, tmp_path, capsys):
    good = [str(p) for p in speech_clips(2)]
    bad = tmp_path / "notes.m4a"
    bad.write_text("meeting notes, not audio")
    code = main(["predict", good[0], str(bad), good[1], "--model", str(small_checkpoint)])
    out, err = capsys.readouterr()
    assert code == 1
    lines = out.strip().splitlines()
    assert len(lines) == 2 and all("%" in line for line in lines) and good[1] in lines[1]
    assert "notes.m4a" in err and "1 of 3 file(s) failed" in err


def test_predict_json_and_output_dir(small_checkpoint, tmp_path, capsys):
    clip = str(speech_clips(1)[0])
    code = main(["predict", clip, "--model", str(small_checkpoint), "--json", "--embedding",
                 "--granularity", "frame", "--output-dir", str(tmp_path / "out")])
    out, _ = capsys.readouterr()
    assert code == 0
    data = json.loads(out)
    assert data["status"] == "ok" and data["granularity"] == "frame" and len(data["frames"]) > 10
    assert len(data["embedding"]) == len(data["frames"])
    run = next((tmp_path / "out").iterdir())
    assert {p.name for p in run.iterdir()} == {"processed_audio.wav", "result.json", "embedding.npy"}


def test_no_segments_scores_a_clip_of_several_sentences_once(small_checkpoint, tmp_path, capsys):
    """A clip of two sentences within the window: its utterances are reported by default and left
    out with --no-segments, the clip's own result the same either way."""
    import numpy as np
    import soundfile as sf

    first, second = (sf.read(p, dtype="float32")[0] for p in speech_clips(2))
    clip = tmp_path / "two_sentences.wav"
    sf.write(clip, np.concatenate([first, np.zeros(16000, np.float32), second]), 16000)
    results = []
    for extra in ([], ["--no-segments"]):
        assert main(["predict", str(clip), "--model", str(small_checkpoint), "--window", "12", "--json", *extra]) == 0
        results.append(json.loads(capsys.readouterr().out))
    with_segments, without = results
    assert len(with_segments["segments"]) == 2 and not without.get("segments")
    assert without["scores"] == pytest.approx(with_segments["scores"], abs=1e-6)


def test_unknown_model_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("EMOTION2VEC_CACHE", str(tmp_path))
    code = main(["predict", "x.wav", "--model", "no-such-model"])
    _, err = capsys.readouterr()
    assert code == 2 and err.startswith("error:") and "Traceback" not in err


def test_models_lists_known_models(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EMOTION2VEC_CACHE", str(tmp_path))
    assert main(["models", "--json"]) == 0
    names = {m["name"] for m in json.loads(capsys.readouterr().out)}
    assert {"large", "base", "seed", "emotion2vec_base"} <= names


def test_console_script_is_installed():
    beside_python = Path(sys.executable).parent / "emotion2vec-plus"
    exe = str(beside_python) if beside_python.exists() else shutil.which("emotion2vec-plus")
    assert exe, "the emotion2vec-plus console script is not installed"
    done = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "predict" in done.stdout


def test_file_names_with_control_characters_are_printed_escaped(small_checkpoint, tmp_path, capsys):
    """A name with a newline and an ANSI escape can neither forge a result line nor drive the terminal."""
    import soundfile as sf

    from conftest import speech_of_length

    hostile = tmp_path / "call\n😊 happy 99.0%  forged.wav\x1b[2J.wav"
    sf.write(hostile, speech_of_length(3.0), 16000, format="WAV")
    broken = tmp_path / "bad\x1b]0;title\x07.wav"
    broken.write_text("not audio")
    code = main(["predict", str(hostile), str(broken), "--model", str(small_checkpoint)])
    out, err = capsys.readouterr()
    assert code == 1
    assert len(out.strip().splitlines()) == 1 and "\x1b" not in out and "\\n😊 happy 99.0%" in out
    assert "\x1b" not in err and "\x07" not in err and "\\x1b]0;title\\x07" in err


def test_a_file_name_that_is_not_utf8_is_one_error_and_the_others_run(small_checkpoint, tmp_path, capsys):
    """Such a name used to stop ``--output-dir`` for every other file and put invalid UTF-8 in ``--json``."""
    clip = speech_clips(1)[0]
    odd = os.path.join(os.fsencode(tmp_path), b"bad\xff\xfename.flac")
    with open(odd, "wb") as handle:
        handle.write(clip.read_bytes())
    odd_name = os.fsdecode(odd)
    code = main(["predict", odd_name, str(clip), "--model", str(small_checkpoint), "--output-dir", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 1 and out.count("%") == 1 and str(clip) in out and "saved to" in out
    assert "bad\\xff\\xfename.flac" in err and "not valid UTF-8" in err
    assert len(list((tmp_path / "out").iterdir())) == 1  # the good file's run folder

    code = main(["predict", odd_name, str(clip), "--model", str(small_checkpoint), "--json"])
    out = capsys.readouterr().out
    records = [json.loads(line) for line in out.encode("utf-8").splitlines()]  # encodes: no lone surrogates
    assert code == 1 and [r["status"] for r in records] == ["error", "ok"]
    assert records[0]["source"] == str(tmp_path / "bad\\xff\\xfename.flac")


def test_a_head_file_with_deeply_nested_metadata_is_exit_code_2(small_checkpoint, tmp_path, capsys):
    """Metadata JSON nested 100,000 deep used to end ``predict``/``batch --head`` in a RecursionError traceback."""
    import numpy as np
    import safetensors.numpy

    from emotion2vec_plus.heads import train_head

    rng = np.random.default_rng(0)
    head = train_head(rng.normal(size=(40, 256)).astype(np.float32), ["a", "b"] * 20, embedding_model="x")
    good = head.save(tmp_path / "good.safetensors")
    with safetensors.safe_open(good, framework="numpy") as handle:
        metadata = dict(handle.metadata())
    deep = tmp_path / "deep.safetensors"
    deep.write_bytes(safetensors.numpy.save(dict(head.params),
                                            metadata={**metadata, "metrics": "[" * 100_000 + "]" * 100_000}))
    clip = str(speech_clips(1)[0])
    for command in (["predict", clip], ["batch", clip, "--out", str(tmp_path / "job"), "--no-progress"]):
        code = main([*command, "--model", str(small_checkpoint), "--head", str(deep)])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith(f"error: {deep}: metadata entry 'metrics' is nested"), err[-500:]
        assert "Traceback" not in err and err.count("\n") <= 2


def test_a_npy_claiming_a_trillion_elements_is_exit_code_2_with_the_reason(tmp_path, capsys):
    import numpy as np

    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }"
    header += " " * (118 - len(header)) + "\n"
    huge = tmp_path / "huge.npy"
    huge.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + bytes(16))
    np.save(tmp_path / "ok.npy", np.ones(BUNDLED_DIM, np.float32))
    code = main(["similarity", str(huge), str(tmp_path / "ok.npy")])
    err = capsys.readouterr().err
    assert code == 2 and "huge.npy: truncated" in err and "Traceback" not in err


def _joined_sentences(count: int = 3):
    """Real sentences of one speaker (every 9th RAVDESS clip: several emotions) with 1 s between them."""
    import numpy as np
    import soundfile as sf

    parts = []
    for path in speech_clips(9 * count)[::9]:
        parts += [sf.read(path, dtype="float32")[0], np.zeros(16000, np.float32)]
    return np.concatenate(parts)


def test_listen_reads_telephone_pcm_from_stdin_as_ffmpeg_would_pipe_it(tmp_path):
    """``ffmpeg ... -f s16le - | emotion2vec-plus listen --input - --sample-rate 8000 --jsonl``: one JSON
    event per line, the same events as the Python API on that audio."""
    import numpy as np
    import soxr

    from emotion2vec_plus import Emotion2VecPlus

    wav = _joined_sentences()
    pcm = np.round(soxr.resample(wav, 16000, 8000) * 32767).astype("<i2")
    exe = Path(sys.executable).with_name("emotion2vec-plus")
    done = subprocess.run([str(exe), "listen", "--input", "-", "--sample-rate", "8000", "--jsonl", "--compute-type", "float32"],
                          input=pcm.tobytes(), capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr.decode()
    events = [json.loads(line) for line in done.stdout.decode().splitlines()]
    with Emotion2VecPlus(compute_type="float32").stream(sample_rate=8000) as stream:
        expected = stream.push(pcm) + stream.close()
    assert [e["type"] for e in events] == [e.type for e in expected]
    finals = [e for e in events if e["type"] == "utterance"]
    assert len(finals) == 3 and all(f["emotion"] and f["final"] for f in finals)
    for got, want in zip(finals, [e for e in expected if e.type == "utterance"]):
        assert got["scores"] == pytest.approx(want.scores, abs=1e-4)


def test_listen_to_a_file_prints_a_line_per_hop_and_each_utterance(tmp_path, capsys):
    import soundfile as sf

    path = tmp_path / "three sentences.flac"
    sf.write(path, _joined_sentences(), 16000)
    code = main(["listen", "--file", str(path)])
    out, _ = capsys.readouterr()
    lines = out.strip().splitlines()
    assert code == 0
    assert sum("■ utterance" in line for line in lines) == 3
    ticks = [line for line in lines if "■" not in line]
    assert len(ticks) == int(sf.info(path).duration / 0.5) and any("silence" in t for t in ticks)
    assert any("%" in t and "silence" not in t for t in ticks)


def test_listen_explains_a_missing_microphone_or_a_wrong_option(capsys):
    code = main(["listen"])  # no microphone here: PortAudio missing or no input device
    _, err = capsys.readouterr()
    assert code == 2 and "error:" in err and ("microphone" in err or "sounddevice" in err)
    assert "--input -" in err or "pip install" in err
    assert main(["listen", "--input", "call.wav"]) == 2
    assert "--file" in capsys.readouterr().err
    assert main(["listen", "--realtime"]) == 2
