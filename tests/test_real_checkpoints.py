"""Opt-in: the released emotion2vec(+) files themselves against FunASR (needs the downloads).

CI cannot reach Hugging Face or ModelScope, so these tests run only where
``EMOTION2VEC_REAL_CHECKPOINTS`` names a directory holding downloaded model directories (or
one model directory), e.g. ``~/models`` with ``emotion2vec_plus_large/`` (config.yaml,
model.pt, tokens.txt, configuration.json) inside::

    EMOTION2VEC_REAL_CHECKPOINTS=~/models python -m pytest -m real_checkpoints

The same comparison prints a table with ``python bench/verify_real_checkpoint.py DIR``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT

ENV = "EMOTION2VEC_REAL_CHECKPOINTS"
TOLERANCE = 1e-4


def _model_dirs() -> list[Path]:
    root = os.environ.get(ENV, "").strip()
    if not root:
        return []
    root_path = Path(root).expanduser()
    if (root_path / "config.yaml").is_file():
        return [root_path]
    return sorted(p for p in root_path.iterdir() if (p / "config.yaml").is_file()) if root_path.is_dir() else []


pytestmark = [
    pytest.mark.real_checkpoints,
    pytest.mark.skipif(not os.environ.get(ENV), reason=f"set {ENV} to a directory of downloaded emotion2vec checkpoints"),
]


@pytest.mark.parametrize("model_dir", _model_dirs() or [None], ids=lambda p: p.name if p else "none-found")
def test_released_checkpoint_matches_funasr_on_the_samples(model_dir):
    if model_dir is None:
        pytest.fail(f"{ENV}={os.environ.get(ENV)!r} holds no directory with a config.yaml")
    pytest.importorskip("funasr")
    sys.path.insert(0, str(REPO_ROOT / "bench"))
    from verify_real_checkpoint import SAMPLES, compare

    rows, how = compare(model_dir, SAMPLES)
    print(how)
    assert len(rows) == len(SAMPLES)
    for row in rows:
        assert row.frames > 0
        assert row.frames_delta <= TOLERANCE and row.embedding_delta <= TOLERANCE, row
        if row.scores_delta is not None:
            assert row.scores_delta <= TOLERANCE, row
