"""Which files a batch job goes through: audio files, folders searched recursively, lists of paths."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..defaults import AUDIO_EXTENSIONS
from ..errors import BatchInputError

if TYPE_CHECKING:  # pragma: no cover
    pass


#: Extensions (lower-case) picked up when a directory is searched.
#: An input file with one of these extensions is a list of paths, not audio.
LIST_EXTENSIONS: frozenset[str] = frozenset({".txt", ".csv"})


@dataclass
class BatchPlan:
    """The audio files a batch job will go through (:func:`discover_inputs`)."""

    files: list[Path]
    roots: list[Path]

    @property
    def root(self) -> Path | None:
        """The common folder of all inputs (where the ``.npy`` mirror starts), if there is one."""
        if not self.roots:
            return None
        try:
            return Path(os.path.commonpath([str(r) for r in self.roots]))
        except ValueError:  # e.g. different drives on Windows
            return None


def find_audio_files(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """The audio files named by ``inputs``, as absolute paths.

    Each input is an audio file (taken whatever its extension), a directory (searched
    recursively for files with an extension in :data:`AUDIO_EXTENSIONS`, case-insensitively,
    in sorted order), or a ``.txt`` / ``.csv`` list of paths. A ``.txt`` list has one path per line
    (blank lines and ``#`` comments ignored); a ``.csv`` list uses its ``path`` column, or else its
    first column (a first row that names no existing file and has no audio extension is taken as a
    header). Relative paths in a list are resolved against the list's folder; listed directories are
    searched like directory inputs. Duplicates are dropped (the first occurrence is kept), otherwise
    the order of the inputs is kept.

    Raises:
        BatchInputError: an input or listed path does not exist, or a list cannot be read.
    """
    return discover_inputs(inputs).files


def discover_inputs(inputs: Sequence[str | os.PathLike]) -> BatchPlan:
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if not inputs:
        raise BatchInputError("no inputs given")
    files: list[Path] = []
    roots: list[Path] = []
    seen: set[str] = set()

    def add(path: Path) -> None:
        key = os.path.normcase(os.path.realpath(path))
        if key not in seen:
            seen.add(key)
            files.append(path)

    def add_dir(directory: Path) -> None:
        roots.append(directory)
        for path in _walk_audio(directory):
            add(path)

    for raw in inputs:
        path = absolute_path(Path(os.fspath(raw)).expanduser())
        if path.is_dir():
            add_dir(path)
        elif path.is_file():
            if path.suffix.lower() in LIST_EXTENSIONS:
                for entry in _read_list(path):
                    if entry.is_dir():
                        add_dir(entry)
                    else:
                        roots.append(entry.parent)
                        add(entry)
            else:
                roots.append(path.parent)
                add(path)
        else:
            raise BatchInputError(f"input not found: {os.fspath(raw)}")
    return BatchPlan(files, roots)


def absolute_path(path: Path) -> Path:
    return Path(os.path.abspath(path))


def _walk_audio(directory: Path) -> list[Path]:
    found: list[Path] = []
    for folder, dirs, names in os.walk(directory, onerror=None, followlinks=False):
        dirs.sort()
        for name in names:
            if os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS:
                path = Path(folder, name)
                if path.is_file():
                    found.append(path)
    return sorted(found)


def _read_list(list_path: Path) -> list[Path]:
    try:
        text = list_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BatchInputError(f"cannot read the list {list_path}: {exc}") from exc
    base = list_path.parent
    entries: list[tuple[int, str]] = []
    if list_path.suffix.lower() == ".csv":
        try:
            rows = [(n, row) for n, row in enumerate(csv.reader(text.splitlines()), 1) if any(c.strip() for c in row)]
        except csv.Error as exc:
            raise BatchInputError(f"cannot read the list {list_path}: {exc}") from exc
        column = 0
        if rows:
            header = [cell.strip().lower() for cell in rows[0][1]]
            if "path" in header:
                column = header.index("path")
                rows = rows[1:]
            elif not _looks_like_entry(rows[0][1][0].strip(), base):
                rows = rows[1:]
        for number, row in rows:
            if column >= len(row) or not row[column].strip():
                raise BatchInputError(f"{list_path}:{number}: no path in this row")
            entries.append((number, row[column].strip()))
    else:
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if line and not line.startswith("#"):
                entries.append((number, line))
    paths = []
    for number, entry in entries:
        path = absolute_path(base / Path(entry).expanduser())
        if not path.exists():
            raise BatchInputError(f"{list_path}:{number}: file not found: {entry}")
        paths.append(path)
    return paths


def _looks_like_entry(cell: str, base: Path) -> bool:
    return bool(cell) and (os.path.splitext(cell)[1].lower() in AUDIO_EXTENSIONS or (base / cell).exists())
