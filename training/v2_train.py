"""Train and evaluate the compact model v2: Whisper-base with its top blocks fine-tuned, a learned
emotion embedding, and a linear emotion head over it.

The frozen part of the encoder comes from the cache made by ``v2_features.py`` (the input of the
first tuned block for every clip and augmentation variant). The network trained here:

    cached frames (B, T, 512) -> Whisper blocks [first_tuned..5] -> ln_post
      -> per-frame embedding: LayerNorm + Linear(512 -> E)          (the frame embeddings, E-d)
      -> utterance embedding: mean over the clip's frames           (what `embedding.npy` holds)
      -> linear head -> 7 emotions (angry disgusted fearful happy neutral sad surprised)

Loss: class- and corpus-balanced cross-entropy plus a supervised contrastive term on the
L2-normalised utterance embeddings (same emotion close, across speakers and corpora). Each
epoch draws one augmentation variant per clip.

Protocols (speaker-independent; numbers go to the JSON given by --metrics-out):
  * ``folds``: 4 folds over all corpora, each fold holding out about a quarter of every corpus's
    speakers (corpora.speaker_folds); per-corpus UA/WA and confusion from the out-of-fold
    predictions; cross-speaker 10-NN emotion UA and same-minus-different cosine of the embeddings.
  * ``loco``: leave one corpus out (train on the other three, test on it).
  * ``final``: train on everything and write the model parts to --save.

Usage:
    python training/v2_train.py --cache CACHE --protocol folds --folds 0 --epochs 6   # quick look
    python training/v2_train.py --cache CACHE --protocol folds --metrics-out runs.json --save-folds DIR
    python training/v2_train.py --cache CACHE --protocol final --save v2_parts.pt
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpora import Clip, save_fold_speakers, speaker_folds  # noqa: E402

from emotion2vec_plus.heads import classification_metrics  # noqa: E402
from emotion2vec_plus.models.whisper import load_whisper_encoder  # noqa: E402

LABELS = ["angry", "disgusted", "fearful", "happy", "neutral", "sad", "surprised"]


@dataclass
class Recipe:
    first_tuned: int = 3
    embed_dim: int = 256
    epochs: int = 8
    batch_frames: int = 6000
    lr_blocks: float = 5e-5
    lr_head: float = 1e-3
    weight_decay: float = 0.05
    supcon: float = 0.5
    temperature: float = 0.1
    dropout: float = 0.1
    seed: int = 0
    variants: str = "clean,speed0.9,speed1.1,noise15,reverb"
    bf16: bool = True
    multi_layer: bool = True  # project the concatenation of the cached input and every tuned block's output


class Cache:
    """Cached inputs of the first tuned block: one memory-mapped (frames, 512) array per variant."""

    def __init__(self, root: Path, variants: list[str]) -> None:
        meta = json.loads((root / "clips.json").read_text())
        self.clips = [Clip(Path(p), c, s, l, 0.0) for p, c, s, l in
                      zip(meta["paths"], meta["corpus"], meta["speaker"], meta["label"])]
        self.first_tuned = meta["first_tuned"]
        self.variants = variants
        self.frames = {v: np.load(root / f"{v}.npy", mmap_mode="r") for v in variants}
        index = {v: np.load(root / f"{v}_index.npz") for v in variants}
        self.offsets = {v: index[v]["offsets"] for v in variants}
        self.counts = {v: index[v]["counts"] for v in variants}
        self.labels = np.array([LABELS.index(c.label) for c in self.clips])
        self.corpus = np.array([c.corpus for c in self.clips])
        self.speaker = np.array([f"{c.corpus}/{c.speaker}" for c in self.clips])

    def get(self, variant: str, i: int) -> np.ndarray:
        start = self.offsets[variant][i]
        return self.frames[variant][start : start + self.counts[variant][i]]


class TunedTop(nn.Module):
    """Whisper blocks [first_tuned..] + ln_post (initialised from the released encoder) and the
    embedding projection and emotion head."""

    def __init__(self, first_tuned: int, embed_dim: int, dropout: float, multi_layer: bool = True) -> None:
        super().__init__()
        encoder = load_whisper_encoder()
        self.blocks = copy.deepcopy(encoder.blocks[first_tuned:])
        self.ln_post = copy.deepcopy(encoder.ln_post)
        #: Whisper hidden-state indices the projection reads (the runtime model reads the same).
        self.layers = list(range(first_tuned, 7)) if multi_layer else [6]
        self.project = nn.ModuleDict({"norms": nn.ModuleList(nn.LayerNorm(512) for _ in self.layers),
                                      "linear": nn.Linear(512 * len(self.layers), embed_dim)})
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(embed_dim, len(LABELS))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(frame embeddings (B, T, E), utterance embeddings (B, E)) for padded cached frames."""
        valid = torch.arange(x.shape[1])[None, :] < lengths[:, None]
        mask = valid[:, None, None, :]
        keep = valid[..., None].to(x.dtype)
        x = x * keep
        states = [x]
        for i, block in enumerate(self.blocks):
            x = block(x, mask) * keep
            states.append(self.ln_post(x) if i == len(self.blocks) - 1 else x)
        first = 7 - len(states)
        picked = torch.cat([norm(states[layer - first]) for norm, layer in zip(self.project["norms"], self.layers)], dim=-1)
        frames = self.project["linear"](self.dropout(picked)) * keep
        utterance = frames.sum(1) / lengths[:, None].to(frames.dtype)
        return frames, utterance


def supervised_contrastive(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Khosla et al.'s SupCon loss over the batch (positives: other clips of the same emotion)."""
    z = F.normalize(embeddings.float(), dim=-1)
    similarity = z @ z.T / temperature
    eye = torch.eye(len(z), dtype=torch.bool)
    similarity = similarity.masked_fill(eye, float("-inf"))
    positives = (labels[:, None] == labels[None, :]) & ~eye
    log_prob = similarity - torch.logsumexp(similarity, dim=1, keepdim=True)
    counts = positives.sum(1)
    has = counts > 0
    loss = -(log_prob.masked_fill(~positives, 0).sum(1)[has] / counts[has])
    return loss.mean() if has.any() else embeddings.sum() * 0


def corpus_emotion_weights(corpus: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Loss weights (mean 1) of examples with these corpora and labels: every corpus weighs the
    same, and within it every emotion."""
    weights = np.zeros(len(labels))
    for name in np.unique(corpus):
        present = np.unique(labels[corpus == name])
        for label in present:
            members = (corpus == name) & (labels == label)
            weights[members] = 1.0 / (members.sum() * len(present))
    return weights * len(labels) / weights.sum()


def balanced_weights(cache: Cache, indices: np.ndarray) -> np.ndarray:
    """Per-clip loss weights over all of ``cache`` (0 outside ``indices``): every corpus weighs the
    same, and within it every emotion."""
    weights = np.zeros(len(cache.clips))
    weights[indices] = corpus_emotion_weights(cache.corpus[indices], cache.labels[indices])
    return weights


def batches(cache: Cache, indices: np.ndarray, batch_frames: int, rng: np.random.Generator):
    """Random batches of clips of similar length, at most ``batch_frames`` padded frames each."""
    lengths = cache.counts[cache.variants[0]][indices]
    order = indices[np.argsort(lengths + rng.uniform(0, 40, len(indices)))]
    out, current, longest = [], [], 0
    for i in order:
        n = int(cache.counts[cache.variants[0]][i] * 1.12) + 1  # speed 0.9 makes clips longer
        if current and max(longest, n) * (len(current) + 1) > batch_frames:
            out.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, n)
    if current:
        out.append(current)
    rng.shuffle(out)
    return out


def collate(cache: Cache, batch: list[int], variants: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    arrays = [cache.get(v, i) for v, i in zip(variants, batch)]
    lengths = torch.tensor([len(a) for a in arrays])
    x = torch.zeros(len(arrays), int(lengths.max()), 512)
    for row, a in enumerate(arrays):
        x[row, : len(a)] = torch.from_numpy(np.asarray(a, dtype=np.float32))
    return x, lengths


def train(cache: Cache, indices: np.ndarray, recipe: Recipe, log_prefix: str = "") -> TunedTop:
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    model = TunedTop(cache.first_tuned, recipe.embed_dim, recipe.dropout, recipe.multi_layer)
    weights = torch.from_numpy(balanced_weights(cache, indices)).float()
    groups = [{"params": [p for n, p in model.named_parameters() if n.startswith(("blocks", "ln_post"))], "lr": recipe.lr_blocks},
              {"params": [p for n, p in model.named_parameters() if n.startswith(("project", "head"))], "lr": recipe.lr_head}]
    optimiser = torch.optim.AdamW(groups, weight_decay=recipe.weight_decay)
    plan = [batches(cache, indices, recipe.batch_frames, rng) for _ in range(recipe.epochs)]
    total = sum(len(p) for p in plan)
    step = 0
    labels_all = torch.from_numpy(cache.labels)
    for epoch, epoch_batches in enumerate(plan):
        model.train()
        started, loss_sum, seen = time.perf_counter(), 0.0, 0
        for batch in epoch_batches:
            scale = min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * step / total))
            for group, base in zip(optimiser.param_groups, (recipe.lr_blocks, recipe.lr_head)):
                group["lr"] = base * scale
            chosen = [cache.variants[k] for k in rng.integers(0, len(cache.variants), len(batch))]
            x, lengths = collate(cache, batch, chosen)
            y = labels_all[batch]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=recipe.bf16):
                _, utterance = model(x, lengths)
            utterance = utterance.float()
            logits = model.head(utterance)
            ce = (F.cross_entropy(logits, y, reduction="none") * weights[batch]).mean()
            loss = ce + recipe.supcon * supervised_contrastive(utterance, y, recipe.temperature)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            step += 1
            loss_sum += float(loss) * len(batch)
            seen += len(batch)
        print(f"{log_prefix}epoch {epoch + 1}/{recipe.epochs}: loss {loss_sum / seen:.3f}, "
              f"{len(epoch_batches)} batches in {time.perf_counter() - started:.0f} s", flush=True)
    return model.eval()


@torch.inference_mode()
def embed(model: TunedTop, cache: Cache, indices: np.ndarray, variant: str = "clean") -> tuple[np.ndarray, np.ndarray]:
    """(utterance embeddings (N, E), class probabilities (N, 7)) of clean clips."""
    order = indices[np.argsort(cache.counts[variant][indices])]
    embeddings, probs = {}, {}
    for start in range(0, len(order), 32):
        batch = list(order[start : start + 32])
        x, lengths = collate(cache, batch, [variant] * len(batch))
        _, utterance = model(x, lengths)
        p = torch.softmax(model.head(utterance), -1)
        for row, i in enumerate(batch):
            embeddings[i], probs[i] = utterance[row].numpy(), p[row].numpy()
    return np.stack([embeddings[i] for i in indices]), np.stack([probs[i] for i in indices])


def embedding_metrics(test: np.ndarray, test_labels: np.ndarray, reference: np.ndarray, reference_labels: np.ndarray,
                      k: int = 10) -> dict:
    """How well held-out clips' embeddings carry emotion: k-NN emotion UA with neighbours from the
    training clips (other speakers by construction), and the mean cosine of each held-out clip to
    training clips of the same emotion minus that to other emotions."""
    z = test / np.linalg.norm(test, axis=1, keepdims=True)
    r = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    cos = z @ r.T
    neighbours = np.argpartition(-cos, k, axis=1)[:, :k]
    votes = reference_labels[neighbours]
    predicted = np.array([np.bincount(v, minlength=len(LABELS)).argmax() for v in votes])
    recalls = [float(np.mean(predicted[test_labels == c] == c)) for c in np.unique(test_labels)]
    same = test_labels[:, None] == reference_labels[None, :]
    return {"knn10_ua": float(np.mean(recalls)), "same_cos": float(cos[same].mean()),
            "different_cos": float(cos[~same].mean()),
            "same_minus_different": float(cos[same].mean() - cos[~same].mean())}


def corpus_metrics(cache: Cache, indices: np.ndarray, probs: np.ndarray, embeddings: np.ndarray,
                   reference: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """Per held-out corpus: UA/WA/confusion, and (with the training clips' embeddings and labels
    as ``reference``) the embedding measures."""
    out = {}
    for corpus in sorted(set(cache.corpus[indices])):
        mask = cache.corpus[indices] == corpus
        truth = [LABELS[v] for v in cache.labels[indices][mask]]
        predicted = [LABELS[v] for v in probs[mask].argmax(1)]
        present = [l for l in LABELS if l in set(truth)]
        metrics = classification_metrics(truth, predicted, sorted(set(truth) | set(predicted), key=LABELS.index)).to_dict()
        metrics["ua"] = float(np.mean([np.mean([p == l for p, t in zip(predicted, truth) if t == l]) for l in present]))
        if reference is not None:
            metrics["embedding"] = embedding_metrics(embeddings[mask], cache.labels[indices][mask], *reference)
        out[corpus] = metrics
    if reference is not None:
        out["all"] = {"embedding": embedding_metrics(embeddings, cache.labels[indices], *reference)}
    return out


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature (0.3-10) that minimises the negative log-likelihood of out-of-fold predictions."""
    logp = np.log(np.clip(probs, 1e-12, None))
    def nll(t: float) -> float:
        z = logp / t
        z = z - z.max(1, keepdims=True)
        return float(-(z[np.arange(len(labels)), labels] - np.log(np.exp(z).sum(1))).mean())
    grid = np.exp(np.linspace(np.log(0.3), np.log(10), 300))
    return float(min(grid, key=nll))


def export_compact(model: TunedTop, path: Path, recipe: Recipe, *, temperature: float = 1.0,
                   metrics: dict | None = None, description: str = "") -> Path:
    """Write ``model`` as a compact model file (the format the package loads)."""
    from emotion2vec_plus.models.compact import save_compact
    from emotion2vec_plus.heads import EmotionHead
    from emotion2vec_plus.models.whisper import ASSET_INFO_NAME, _asset_info

    encoder = {f"blocks.{recipe.first_tuned + i}.{name}": value.detach().numpy()
               for i, block in enumerate(model.blocks) for name, value in block.state_dict().items()}
    encoder.update({f"ln_post.{name}": value.detach().numpy() for name, value in model.ln_post.state_dict().items()})
    projection = {f"project.{name}": value.detach().numpy() for name, value in model.project.state_dict().items()}
    assert set(projection) == {f"project.norms.{i}.{k}" for i in range(len(model.layers)) for k in ("weight", "bias")} | {
        "project.linear.weight", "project.linear.bias"}
    weight = model.head.weight.detach().numpy() / temperature
    bias = model.head.bias.detach().numpy() / temperature
    dim = recipe.embed_dim
    head = EmotionHead(LABELS, "logreg", dim, "compact",
                       {"mean": np.zeros(dim, np.float32), "scale": np.ones(dim, np.float32), "weight": weight, "bias": bias},
                       metrics=metrics, training={"recipe": asdict(recipe), "temperature": temperature,
                                                  "licence": "non-commercial research use only: trained on RAVDESS and nEMO "
                                                             "(CC BY-NC-SA 4.0), CASIA and EMOVO (research use only)"})
    return save_compact(path, recipe.first_tuned, encoder, model.layers, projection, head,
                        {"description": description, "encoder_sha256": _asset_info()["sha256"],
                         "encoder_file": ASSET_INFO_NAME})


def protocol_splits(cache: Cache, protocol: str, folds: str, corpora: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, training indices, test indices) of the ``folds`` or ``loco`` protocol."""
    everything = np.arange(len(cache.clips))
    if protocol == "folds":
        fold_of = np.array(speaker_folds(cache.clips, 4))
        return [(f"fold{f}", everything[fold_of != f], everything[fold_of == f]) for f in map(int, folds.split(","))]
    return [(f"without {c}", everything[cache.corpus != c], everything[cache.corpus == c]) for c in corpora.split(",")]


def pool_folds(record: dict, cache: Cache, tested: list, probs: list, embeddings: list) -> None:
    """Out-of-fold metrics over all folds and the calibration temperature, into ``record`` and printed."""
    test_idx = np.concatenate(tested)
    record["pooled"] = corpus_metrics(cache, test_idx, np.concatenate(probs), np.concatenate(embeddings))
    record["temperature"] = fit_temperature(np.concatenate(probs), cache.labels[test_idx])
    print(f"calibration: logits / {record['temperature']:.2f} minimise the out-of-fold NLL")
    print("pooled out-of-fold: " + ", ".join(f"{c} UA {m['ua']:.3f}" for c, m in record["pooled"].items() if "ua" in m))


def append_record(path: Path | None, record: dict) -> None:
    if path is not None:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def write_model_record(model_file: Path, recipe, calibration: float, built_by: str) -> None:
    """``model_file``'s sidecar JSON (what the package ships beside it): sha256, size, recipe, licence."""
    import hashlib

    data = model_file.read_bytes()
    model_file.with_suffix(".json").write_text(json.dumps({
        "file": model_file.name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
        "built_by": built_by, "recipe": asdict(recipe), "calibration": calibration,
        "licence": "non-commercial research use (trained on RAVDESS and nEMO, CC BY-NC-SA 4.0; CASIA and EMOVO, "
                   "research use only)"}, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--protocol", choices=["folds", "loco", "final"], default="folds")
    parser.add_argument("--folds", default="0,1,2,3", help="which of the 4 folds (folds protocol)")
    parser.add_argument("--corpora", default="RAVDESS,CASIA,nEMO,EMOVO", help="held-out corpora (loco protocol)")
    parser.add_argument("--metrics-out", type=Path, default=None)
    parser.add_argument("--tag", default="")
    parser.add_argument("--save-folds", type=Path, default=None, help="keep each fold's model here (length benchmark)")
    parser.add_argument("--save", type=Path, default=None, help="final protocol: the compact model file to write")
    parser.add_argument("--calibration", type=float, default=1.0,
                        help="final protocol: divide the head's logits by this temperature (fitted by the folds protocol)")
    for name, field in Recipe.__dataclass_fields__.items():
        kind = type(field.default)
        if kind is bool:
            parser.add_argument(f"--{name.replace('_', '-')}", type=lambda v: v.lower() in ("1", "true", "yes"), default=field.default)
        else:
            parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=field.default)
    args = parser.parse_args()
    recipe = Recipe(**{name: getattr(args, name) for name in Recipe.__dataclass_fields__})
    torch.set_num_threads(2)
    cache = Cache(args.cache, recipe.variants.split(","))
    if cache.first_tuned != recipe.first_tuned:
        sys.exit(f"the cache holds block {cache.first_tuned}'s input, the recipe tunes from block {recipe.first_tuned}")
    everything = np.arange(len(cache.clips))
    record = {"tag": args.tag, "protocol": args.protocol, "recipe": asdict(recipe), "when": time.strftime("%Y-%m-%d %H:%M")}

    if args.protocol == "final":
        model = train(cache, everything, recipe, "final ")
        export_compact(model, args.save, recipe, temperature=args.calibration,
                       description=f"compact v2 {args.tag}: Whisper-base, blocks {recipe.first_tuned}-5 fine-tuned on "
                                   "RAVDESS, CASIA, nEMO and EMOVO")
        write_model_record(args.save, recipe, args.calibration, "training/v2_train.py --protocol final")
        print(f"wrote {args.save} and {args.save.with_suffix('.json').name}")
        return

    splits = protocol_splits(cache, args.protocol, args.folds, args.corpora)
    tested, all_probs, all_emb = [], [], []
    for name, train_idx, test_idx in splits:
        started = time.perf_counter()
        model = train(cache, train_idx, recipe, f"{name} ")
        emb, probs = embed(model, cache, test_idx)
        reference = embed(model, cache, train_idx)[0], cache.labels[train_idx]
        part = corpus_metrics(cache, test_idx, probs, emb, reference)
        print(f"{name}: " + ", ".join(f"{c} UA {m['ua']:.3f}" for c, m in part.items() if "ua" in m)
              + f" ({time.perf_counter() - started:.0f} s)", flush=True)
        print("  embedding: " + ", ".join(f"{c} kNN {m['embedding']['knn10_ua']:.3f} s-d {m['embedding']['same_minus_different']:.3f}"
                                          for c, m in part.items()), flush=True)
        record.setdefault("splits", {})[name] = {c: {"ua": m.get("ua"), "embedding": m["embedding"]} for c, m in part.items()}
        tested.append(test_idx)
        all_probs.append(probs)
        all_emb.append(emb)
        if args.save_folds is not None:  # for bench/long_audio.py: the model and the speakers it never saw
            args.save_folds.mkdir(parents=True, exist_ok=True)
            stem = args.save_folds / name.replace(" ", "_")
            export_compact(model, stem.with_suffix(".safetensors"), recipe, description=f"{name} of {args.tag}")
            save_fold_speakers(stem, cache.clips, test_idx)
    if args.protocol == "folds":
        pool_folds(record, cache, tested, all_probs, all_emb)
    append_record(args.metrics_out, record)


if __name__ == "__main__":
    main()
