"""Parity with FunASR, the reference implementation: same checkpoint, same numbers.

FunASR builds its own ``Emotion2vec`` with random weights, saves it as a FunASR model
directory (config.yaml, model.pt nested under "model", tokens.txt, plus its pre-training
decoder weights), and both implementations run it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from checkpoints import CONFIG_768, CONFIG_1024, TOKENS, build_funasr_checkpoint
from conftest import speech_of_length

funasr = pytest.importorskip("funasr")

TOLERANCE = 1e-4
DURATIONS = (0.5, 3.0, 17.0)


@pytest.fixture(scope="module", params=[CONFIG_768, CONFIG_1024], ids=["768d", "1024d"])
def pair(request, tmp_path_factory):
    """(our model, FunASR AutoModel) over one checkpoint directory."""
    from funasr import AutoModel

    from emotion2vec_plus import Emotion2VecPlus

    size = request.param
    directory = build_funasr_checkpoint(tmp_path_factory.mktemp(f"funasr{size['embed_dim']}"), seed=11, **size)
    ours = Emotion2VecPlus(directory)
    reference = AutoModel(model=str(directory), disable_update=True, disable_pbar=True, log_level="ERROR",
                          ncpu=torch.get_num_threads(), device="cpu")
    return ours, reference


@pytest.fixture(scope="module")
def clips() -> dict[float, np.ndarray]:
    return {seconds: speech_of_length(seconds, offset=i * 7) for i, seconds in enumerate(DURATIONS)}


def _funasr(reference, wav: np.ndarray, granularity: str) -> dict:
    return reference.generate(wav, granularity=granularity, extract_embedding=True)[0]


@pytest.mark.parametrize("seconds", DURATIONS)
def test_frame_features_embedding_and_scores_match_funasr(pair, clips, seconds):
    ours, reference = pair
    wav = clips[seconds]
    ref_frames = _funasr(reference, wav, "frame")
    ref_utt = _funasr(reference, wav, "utterance")

    frames = ours.extract_embedding(wav, granularity="frame")
    expected_frames = (len(wav) - 400) // 320 + 1
    assert frames.shape == ref_frames["feats"].shape == (expected_frames, ours.embed_dim)
    assert np.abs(frames - ref_frames["feats"]).max() <= TOLERANCE

    result = ours.predict(wav, extract_embedding=True)
    assert result.embedding.shape == ref_utt["feats"].shape == (ours.embed_dim,)
    assert np.abs(result.embedding - ref_utt["feats"]).max() <= TOLERANCE

    assert ref_utt["labels"] == TOKENS
    ours_scores = np.array(list(result.scores.values()))
    assert np.abs(ours_scores - np.array(ref_utt["scores"])).max() <= TOLERANCE
    assert list(result.scores) == [t.split("/")[-1] if t != "<unk>" else "unknown" for t in TOKENS]
    assert result.emotion == list(result.scores)[int(np.argmax(ref_utt["scores"]))]


def test_padded_batch_matches_funasr_one_by_one(pair, clips):
    """All three lengths in one padded batch give FunASR's per-clip numbers."""
    ours, reference = pair
    wavs = [clips[s] for s in DURATIONS]
    results = ours.predict_batch(wavs, extract_embedding=True, batch_size=3)
    for wav, result in zip(wavs, results):
        ref = _funasr(reference, wav, "utterance")
        assert np.abs(result.embedding - ref["feats"]).max() <= TOLERANCE
        assert np.abs(np.array(list(result.scores.values())) - np.array(ref["scores"])).max() <= TOLERANCE


def test_classify_embedding_of_saved_funasr_features(pair, clips):
    """classify_embedding on FunASR's own embedding reproduces FunASR's scores."""
    ours, reference = pair
    ref = _funasr(reference, clips[3.0], "utterance")
    scores = ours.classify_embedding(ref["feats"])
    assert abs(sum(scores.values()) - 1.0) < 1e-5
    assert np.abs(np.array(list(scores.values())) - np.array(ref["scores"])).max() <= TOLERANCE


VARIANT = dict(embed_dim=256, num_heads=8, depth=2, prenet_depth=2, conv_pos_groups=8,
               extractor_mode="default", learned_alibi_scale_per_layer=True, conv_pos_pre_ln=True,
               conv_pos_width=64, num_alibi_heads=6)
UNUSED_TOKENS = ["生气/angry", "unuse_1", "开心/happy", "中立/neutral", "unuse_2", "难过/sad", "<unk>"]


def test_architecture_variants_and_unused_labels_match_funasr(tmp_path, clips):
    """Group-norm extractor, per-layer ALiBi scales, pre-LN positional conv with an even kernel,
    fewer ALiBi heads than heads, and ``unuse`` classes masked out: all as FunASR computes them."""
    from funasr import AutoModel

    from emotion2vec_plus import Emotion2VecPlus

    directory = build_funasr_checkpoint(tmp_path / "variant", seed=5, tokens=UNUSED_TOKENS, nest="state_dict", **VARIANT)
    ours = Emotion2VecPlus(directory)
    reference = AutoModel(model=str(directory), disable_update=True, disable_pbar=True, log_level="ERROR",
                          ncpu=torch.get_num_threads(), device="cpu")
    assert ours.model.config.conv_pos_kernel % 2 == 0
    results = ours.predict_batch([clips[0.5], clips[3.0]], extract_embedding=True)
    for wav, result in zip([clips[0.5], clips[3.0]], results):
        ref = _funasr(reference, wav, "utterance")
        assert ref["labels"] == [t for t in UNUSED_TOKENS if not t.startswith("unuse")]
        assert list(result.scores) == ["angry", "happy", "neutral", "sad", "unknown"]
        assert np.abs(result.embedding - ref["feats"]).max() <= TOLERANCE
        assert np.abs(np.array(list(result.scores.values())) - np.array(ref["scores"])).max() <= TOLERANCE
        assert abs(sum(result.scores.values()) - 1) < 1e-5


def test_released_layout_and_fairseq_training_checkpoint_match_funasr(tmp_path, clips):
    """plus_large as the hubs publish it: ``d2v_model.``-prefixed names nested under ``model`` and
    config.yaml's ``scope_map``, loaded by FunASR; and the same weights inside a fairseq-style
    training checkpoint with Python objects (which FunASR's ``torch.load`` refuses), loaded by us
    without running anything from it."""
    import shutil

    from funasr import AutoModel

    from checkpoints import fairseq_checkpoint
    from emotion2vec_plus import Emotion2VecPlus

    released = build_funasr_checkpoint(tmp_path / "released", seed=13, layout="released", **CONFIG_1024)
    reference = AutoModel(model=str(released), disable_update=True, disable_pbar=True, log_level="ERROR",
                          ncpu=torch.get_num_threads(), device="cpu")
    training = tmp_path / "training"
    shutil.copytree(released, training)
    trap = tmp_path / "code-ran"
    weights = torch.load(released / "model.pt")["model"]
    torch.save(fairseq_checkpoint(weights, trap=trap), training / "model.pt")

    wav = clips[3.0]
    ref_frames = _funasr(reference, wav, "frame")["feats"]
    ref = _funasr(reference, wav, "utterance")
    # Had FunASR not mapped the names it would keep its own random initialisation (it only logs
    # missing keys), which cannot match the weights we load.
    for directory in (released, training):
        ours = Emotion2VecPlus(directory)
        frames = ours.extract_embedding(wav, granularity="frame")
        result = ours.predict(wav, extract_embedding=True)
        assert np.abs(frames - ref_frames).max() <= TOLERANCE
        assert np.abs(result.embedding - ref["feats"]).max() <= TOLERANCE
        assert np.abs(np.array(list(result.scores.values())) - np.array(ref["scores"])).max() <= TOLERANCE
    assert not trap.exists()
