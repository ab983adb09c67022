"""Atomic file writes: readers see the old file or the complete new one, never a partial one."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_write(path: str | os.PathLike, *, durable: bool = False, temp_name: str | None = None) -> Iterator[BinaryIO]:
    """Write through a temporary file beside ``path`` that replaces it in one step on success
    (``os.replace``) and is removed on any error. Creates the parent folder. ``durable`` also
    flushes the data to disk (``fsync``) before the rename, so a power loss or a killed process
    leaves the old file or the whole new one (batch jobs resume from what they wrote).
    ``temp_name`` names the temporary file (default: a unique hidden ``.NAME.*.partial``); batch
    jobs use ``NAME.tmp-PID`` so a later run can find and delete what a killed one left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if temp_name is None:
        handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    else:
        partial = str(path.parent / temp_name)
        handle = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream
            if durable:
                stream.flush()
                os.fsync(stream.fileno())
        move_into_place(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def move_into_place(partial: str | os.PathLike, path: str | os.PathLike) -> None:
    """Give a finished temporary file the usual mode (mkstemp makes 0600) and rename it to ``path``
    in one step."""
    os.chmod(partial, 0o666 & ~umask())
    os.replace(partial, path)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def umask() -> int:
    """The process's umask: from /proc (no change to process state), else by setting and restoring it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
