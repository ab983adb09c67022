"""Shared fixtures: real speech (../shared/datasets, else the clips in tests/data/speech) and
random-weight FunASR-format checkpoints."""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

# The library's default compute type is "auto" (bfloat16 or int8 on most CPUs); the suite's numeric
# assertions are about float32, so every model built here or in a subprocess without an explicit
# compute type runs float32. Tests of the auto default remove this (tests/test_compute.py).
os.environ["EMOTION2VEC_COMPUTE_TYPE"] = "float32"

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
#: The emotional speech corpora; ``EMOTION2VEC_TEST_DATASETS`` points elsewhere (a missing path runs
#: the suite as a fresh clone without them does).
DATASETS = Path(os.environ.get("EMOTION2VEC_TEST_DATASETS") or REPO_ROOT.parent / "shared" / "datasets")

#: Real speech shipped with the tests (public domain and permissive licences, see its README.md),
#: shortest first: what tests that need real speech but no emotion labels use without the corpora.
SPEECH_DIR = TESTS_DIR / "data" / "speech"
SHIPPED_SPEECH = sorted(SPEECH_DIR.glob("*.flac"), key=lambda p: (sf.info(p).frames, p.name))

#: Embedding size of the bundled compact model (what every default-model test expects).
BUNDLED_DIM = __import__("emotion2vec_plus.models.compact", fromlist=["read_compact"]).read_compact().embed_dim
sys.path.insert(0, str(TESTS_DIR))

from checkpoints import CONFIG_768, CONFIG_1024, build_checkpoint  # noqa: E402


def speech_clips(n: int, dataset: str = "RAVDESS", *, labelled: bool = False) -> list[Path]:
    """The first ``n`` clips of a shared corpus (16 kHz FLAC).

    Without the corpus, tests that need real speech but not its emotion labels (``labelled`` False)
    get the shipped clips (:data:`SHIPPED_SPEECH`, Mandarin first for CASIA) when there are ``n``
    of them; otherwise the test is skipped.
    """
    manifest = DATASETS / dataset / "manifest.csv"
    if not manifest.is_file():
        if not labelled and n <= len(SHIPPED_SPEECH):
            mandarin_first = dataset == "CASIA"
            return sorted(SHIPPED_SPEECH, key=lambda p: mandarin_first != p.name.startswith("zh_"))[:n]
        pytest.skip(f"real speech corpus not found at {manifest}")
    with manifest.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [DATASETS / dataset / row["path"] for row in rows[:n]]


def speech_of_length(seconds: float, offset: int = 0) -> np.ndarray:
    """Real speech of exactly ``seconds`` (RAVDESS clips, else the shipped clips, joined end to end), float32 16 kHz."""
    clips = speech_clips(40) if (DATASETS / "RAVDESS" / "manifest.csv").is_file() else SHIPPED_SPEECH
    need = int(round(seconds * 16000))
    parts, have, index = [], 0, offset
    while have < need:
        audio, rate = sf.read(clips[index % len(clips)], dtype="float32")
        assert rate == 16000
        parts.append(audio)
        have += len(audio)
        index += 1
    return np.concatenate(parts)[:need]


def closely_joined(paths: list[Path], pause_s: float = 0.4, margin_s: float = 0.05) -> np.ndarray:
    """Real sentences cut to their speech (``margin_s`` kept on each side) and joined with
    ``pause_s`` of silence, float32 16 kHz: utterances a short pause apart, as a person reading on
    would leave them (the pauses short enough for alike neighbours to merge)."""
    from emotion2vec_plus.vad import speech_regions

    margin, parts = int(margin_s * 16000), []
    for path in paths:
        audio = sf.read(path, dtype="float32")[0]
        regions = speech_regions(audio)
        parts += [audio[max(0, regions[0].start - margin) : regions[-1].end + margin],
                  np.zeros(int(pause_s * 16000), np.float32)]
    return np.concatenate(parts)


def speech_with_pauses(names: tuple[str, ...] = ("en_cmu_arctic_slt_a0009", "en_librivox_sense_sensibility_0870",
                                                  "en_cmu_arctic_awb_a0007"),
                       pause_s: float = 1.5) -> np.ndarray:
    """Real utterances of the shipped speech (several speakers), each followed by ``pause_s`` of
    silence, float32 16 kHz: what a person speaking into a microphone, with pauses, sends."""
    silence = np.zeros(int(round(pause_s * 16000)), np.float32)
    parts = [silence[: len(silence) // 2]]
    for name in names:
        audio, rate = sf.read(SPEECH_DIR / f"{name}.flac", dtype="float32")
        assert rate == 16000
        parts += [audio, silence]
    return np.concatenate(parts)


@pytest.fixture(scope="session")
def checkpoint_768(tmp_path_factory) -> Path:
    """A 768-d emotion2vec checkpoint directory with random weights (no FunASR needed)."""
    return build_checkpoint(tmp_path_factory.mktemp("ck768"), seed=3, **CONFIG_768)


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory) -> Path:
    """A small (256-d, 2+2 blocks) checkpoint for fast API tests."""
    return build_checkpoint(tmp_path_factory.mktemp("ck_small"), seed=5, embed_dim=256, num_heads=4,
                            depth=2, prenet_depth=2, conv_pos_groups=4)


@pytest.fixture(scope="session")
def small_model(small_checkpoint):
    from emotion2vec_plus import Emotion2VecPlus

    return Emotion2VecPlus(small_checkpoint, window_s=30.0)


@pytest.fixture(scope="session")
def bundled():
    """The bundled default model (compact), loaded once."""
    from emotion2vec_plus import Emotion2VecPlus

    return Emotion2VecPlus()


@pytest.fixture(scope="session")
def speech_pooling_file(tmp_path_factory) -> Path:
    """The bundled compact model's weights in a file that says ``pooling: speech`` (a model trained to
    average only its speech frames reads so): what the runtime does with such a file."""
    return _bundled_weights_pooling(tmp_path_factory, "speech")


@pytest.fixture(scope="session")
def frame_pooling_file(tmp_path_factory) -> Path:
    """The bundled compact model's weights in a file that says ``pooling: frames`` (every frame
    averaged, as v3 and the models before it did)."""
    return _bundled_weights_pooling(tmp_path_factory, "frames")


def speech_frames(samples: np.ndarray, n_frames: int, hop_samples: int) -> np.ndarray:
    """Which of ``n_frames`` frames of 16 kHz ``samples`` a speech-pooling model averages (a bool mask),
    from the VAD run on the samples, as the package decides it."""
    from emotion2vec_plus.vad import SpeechTrack, speech_pooling_mask, speech_probabilities

    return speech_pooling_mask(SpeechTrack(speech_probabilities(samples)), n_frames, hop_samples)


def _bundled_weights_pooling(tmp_path_factory, pooling: str) -> Path:
    from emotion2vec_plus.models.compact import read_compact, save_compact

    spec = read_compact()
    metadata = {k: v for k, v in spec.metadata.items()
                if k not in ("format", "format_version", "first_tuned", "projection_layers", "head")}
    return save_compact(tmp_path_factory.mktemp("pooling") / f"{pooling}_pooling.safetensors", spec.first_tuned,
                        spec.encoder, spec.projection_layers, spec.projection, spec.head,
                        {**metadata, "pooling": pooling})


__all__ = ["CONFIG_768", "CONFIG_1024", "SHIPPED_SPEECH", "SPEECH_DIR", "speech_clips", "speech_frames", "speech_of_length",
           "speech_with_pauses"]
