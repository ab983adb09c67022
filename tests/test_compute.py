"""compute.py: the process-wide allocator setting the torch backend applies."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import resource, sys, torch
from emotion2vec_plus.compute import tune_c_allocator
if sys.argv[1] == "tune":
    print("applied", tune_c_allocator(), tune_c_allocator())
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
before = faults()
for _ in range(20):  # like a span of the conv extractor: a few 16 MB temporaries alive at once
    blocks = [torch.empty(4_000_000).fill_(1.0) for _ in range(3)]
    del blocks
print("faults", faults() - before)
"""


def _probe(mode: str, **env) -> dict[str, str]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, **env}).stdout
    return {line.split()[0]: line.split(None, 1)[1] for line in out.splitlines()}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_tuned_allocator_reuses_freed_blocks_instead_of_faulting_in_new_pages():
    default = _probe("default")
    tuned = _probe("tune")
    assert tuned["applied"] == "True True"  # applied once, then reported as applied
    pages = 3 * 16_000_000 // 4096  # one round's blocks
    # Untuned glibc hands the freed blocks back to the kernel and faults them in again every
    # round (~20 x 11700 page faults); tuned, the first round's pages serve the other 19.
    assert int(default["faults"]) >= 10 * pages
    assert int(tuned["faults"]) <= 2 * pages


def test_allocator_tuning_can_be_turned_off():
    off = _probe("tune", EMOTION2VEC_TUNE_MALLOC="0")
    assert off["applied"] == "False False"
