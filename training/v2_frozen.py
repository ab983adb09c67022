"""Compact model v2, frozen-encoder variant: a learned emotion embedding over the released
Whisper-base encoder's hidden states, trained to convergence on pooled features.

``v2_train.py`` fine-tunes Whisper's top blocks; on held-out speakers that gave a better
embedding geometry than v1 but a worse classifier (fold 0: RAVDESS UA 0.685 vs v1's 0.773). The
encoder here stays as released, so what is learned is small and can be trained to convergence on
features pooled once per clip:

    hidden states 3..6 (the input of block 3, blocks 3-4, block 5 after ln_post), each
    layer-normalised per frame and averaged over the clip -> (N, 2048)
    -> standardise -> Linear(2048 -> E) = the emotion embedding -> Linear(E -> 7 emotions)

Everything after the per-frame layer norm is linear, so the same projection applied to each
frame gives the frame embeddings, and their mean is the utterance embedding (what the runtime
does with a compact v2 file whose ``first_tuned`` is 6, i.e. no tuned blocks).

``--layers`` picks other hidden states (0-2 come from the ``*_low_pooled.npy`` files that
``v2_features.py`` writes beside its cache); ``--joined FILE --joined-weight W`` adds the
joined-clip inputs of ``v2_joined.py`` (4-10 s, several sentences of one speaker and emotion) of
the training speakers, weighing W times one variant of the single clips.

Loss: class- and corpus-balanced cross-entropy on every augmentation variant of the training
clips, plus a supervised contrastive term on the L2-normalised embeddings, AdamW with weight
decay on random batches for a fixed number of steps (no early stopping on held-out speakers).
``--consistency W`` adds W times the symmetric KL divergence between a clip's predictions in two
variants (the second drawn from ``--consistency-variants``, default clean, trim, pad).

Usage:
    python training/v2_frozen.py --cache CACHE --pooled POOLED --protocol folds [--metrics-out runs.jsonl]
    python training/v2_frozen.py --cache CACHE --pooled POOLED --protocol loco
    python training/v2_frozen.py --cache CACHE --pooled POOLED --protocol final --calibration T --save FILE
    python training/v2_frozen.py --cache CACHE --pooled POOLED --protocol folds --evaluate-folds DIR [--metrics-out ...]

``--protocol final`` also writes ``FILE``'s training statistics beside it
(``<stem>_input_stats.safetensors``: the package's ``assets/compact_v2_input_stats.safetensors``,
which unlabelled adaptation starts from).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpora import save_fold_speakers  # noqa: E402
from v2_features import speech_frame_mask  # noqa: E402

from emotion2vec_plus.models.compact import POOLINGS  # noqa: E402
from v2_train import LABELS, Cache, TunedTop, append_record, balanced_weights, collate, corpus_emotion_weights, \
    corpus_metrics, pool_folds, protocol_splits, supervised_contrastive, write_model_record  # noqa: E402

LAYERS = [3, 4, 5, 6]
WIDTH = 512


@dataclass
class Recipe:
    embed_dim: int = 256
    steps: int = 600
    batch: int = 4096
    lr: float = 3e-3
    weight_decay: float = 1e-2
    supcon: float = 0.5
    temperature: float = 0.1
    supcon_batch: int = 2048
    dropout: float = 0.2
    seed: int = 0
    variants: str = "clean,speed0.9,speed1.1,noise15,reverb"
    layers: str = "3,4,5,6"
    joined_weight: float = 0.0
    pool: str = "frames"
    """``frames``: average every frame of a clip; ``speech``: only its speech frames
    (``emotion2vec_plus.vad.speech_pooling_mask``; needs a cache with ``VARIANT_speech.npy``)."""
    consistency: float = 0.0
    """Weight of a consistency term: the symmetric KL divergence between the predictions for a clip
    in one training variant and in another drawn from ``consistency_variants`` (0: off). Aimed at
    a model whose answer does not depend on how much pause surrounds the speech."""
    consistency_variants: str = "clean,trim,pad"


def layer_columns(layers: list[int]) -> np.ndarray:
    """Columns of the (N, 7 * 512) all-layer features that hold ``layers``."""
    return np.concatenate([np.arange(i * WIDTH, (i + 1) * WIDTH) for i in layers])


def recipe_layers(recipe: Recipe) -> list[int]:
    return [int(v) for v in recipe.layers.split(",")]


class Joined:
    """Joined-clip features from ``v2_joined.py`` (all 7 layers), used for the speakers a split trains on."""

    def __init__(self, path: Path, pool: str = "frames") -> None:
        data = np.load(path)
        if pool == "speech" and "speech_features" not in data:
            sys.exit(f"{path} has no speech-pooled features: make it again with the current v2_joined.py")
        self.features = data["speech_features" if pool == "speech" else "features"]
        self.speaker = np.array([f"{c}/{s}" for c, s in zip(data["corpus"], data["speaker"])])
        self.corpus = data["corpus"]
        self.labels = np.array([LABELS.index(l) for l in data["label"]])

    def training_part(self, speakers: set[str], columns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(features, labels, corpus- and emotion-balanced weights) of the inputs of ``speakers``."""
        rows = np.array([s in speakers for s in self.speaker])
        return self.features[rows][:, columns], self.labels[rows], corpus_emotion_weights(self.corpus[rows], self.labels[rows])


@torch.inference_mode()
def pooled_features(cache: Cache, variant: str, speech: np.ndarray | None = None,
                    batch_frames: int = 12000) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, len(LAYERS) * 512) per-frame layer-normalised hidden states averaged over each clip,
    and (given the per-frame speech probabilities ``speech``, as cached) over its speech frames."""
    encoder = TunedTop(cache.first_tuned, 8, 0.0)  # its blocks are the released ones (never trained here)
    encoder.eval()
    counts = cache.counts[variant]
    order = np.argsort(-counts)  # longest first: each batch's first clip sets its padded length
    out = np.zeros((len(counts), len(LAYERS) * WIDTH), np.float32)
    speech_out = np.zeros_like(out) if speech is not None else None
    offsets = cache.offsets[variant]
    position = 0
    while position < len(order):
        size = max(1, batch_frames // max(int(counts[order[position]]), 1))
        batch = list(order[position : position + size])
        position += len(batch)
        x, lengths = collate(cache, batch, [variant] * len(batch))
        valid = torch.arange(x.shape[1])[None, :] < lengths[:, None]
        mask, keep = valid[:, None, None, :], valid[..., None].float()
        x = x * keep
        states = [x]
        for i, block in enumerate(encoder.blocks):
            x = block(x, mask) * keep
            states.append(encoder.ln_post(x) if i == len(encoder.blocks) - 1 else x)
        normed = [F.layer_norm(s, (WIDTH,)) for s in states]
        out[batch] = torch.cat([(n * keep).sum(1) / lengths[:, None] for n in normed], dim=-1).numpy()
        if speech is not None:
            pool = torch.zeros_like(keep)
            for row, i in enumerate(batch):
                n = int(lengths[row])
                pool[row, :n, 0] = torch.from_numpy(speech_frame_mask(speech[offsets[i] : offsets[i] + n]).astype(np.float32))
            speech_out[batch] = torch.cat([(n * pool).sum(1) / pool.sum(1) for n in normed], dim=-1).numpy()
    return out, speech_out


def load_features(cache_root: Path, pooled_root: Path, cache: Cache, variants: list[str],
                  layers: list[int], pool: str = "frames") -> dict[str, np.ndarray]:
    """Per variant, the (N, len(layers) * 512) pooled features of ``layers``: states LAYERS[0]..6 from
    ``pooled_root`` (pooled once from the cache and kept there), lower ones from the
    ``VARIANT_low_pooled.npy`` files ``v2_features.py`` writes beside its cache."""
    features = {}
    for variant in variants:
        target = pooled_root / (f"{variant}_speech.npy" if pool == "speech" else f"{variant}.npy")
        if not target.exists():
            started = time.perf_counter()
            speech_file = cache_root / f"{variant}_speech.npy"
            if pool == "speech" and not speech_file.exists():
                sys.exit(f"{speech_file} is missing: speech pooling needs a cache made by the current v2_features.py")
            speech = np.load(speech_file, mmap_mode="r") if speech_file.exists() else None
            every, speech_only = pooled_features(cache, variant, speech)
            np.save(pooled_root / f"{variant}.npy", every)
            if speech_only is not None:
                np.save(pooled_root / f"{variant}_speech.npy", speech_only)
            print(f"pooled {variant} in {time.perf_counter() - started:.0f} s", flush=True)
        pooled = np.load(target)  # states LAYERS[0]..6
        if min(layers) < LAYERS[0]:
            low = cache_root / f"{variant}_low_pooled.npy"  # states 0..LAYERS[0]-1, written by v2_features.py
            if not low.exists():
                sys.exit(f"{low} is missing: layers below {LAYERS[0]} need a cache made by the current v2_features.py")
            features[variant] = np.concatenate([np.load(low), pooled], axis=1)[:, layer_columns(layers)]
        else:
            features[variant] = pooled[:, layer_columns([i - LAYERS[0] for i in layers])]
    return features


class Bottleneck(nn.Module):
    def __init__(self, dim_in: int, embed_dim: int, dropout: float) -> None:
        super().__init__()
        self.project = nn.Linear(dim_in, embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(embed_dim, len(LABELS))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.project(self.dropout(x))
        return embedding, self.head(embedding)


def train(features: dict[str, np.ndarray], cache: Cache, indices: np.ndarray, recipe: Recipe,
          joined: Joined | None = None) -> tuple[Bottleneck, np.ndarray, np.ndarray]:
    """The trained bottleneck and the standardisation (mean, scale) of its input."""
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    variants = recipe.variants.split(",")
    x = np.concatenate([features[v][indices] for v in variants])
    y = np.tile(cache.labels[indices], len(variants))
    w = np.tile(balanced_weights(cache, indices)[indices], len(variants))
    if joined is not None and recipe.joined_weight > 0:
        jx, jy, jw = joined.training_part(set(cache.speaker[indices]), layer_columns(recipe_layers(recipe)))
        # the joined inputs weigh joined_weight times one variant of the clips
        x, y = np.concatenate([x, jx]), np.concatenate([y, jy])
        w = np.concatenate([w, jw * recipe.joined_weight * len(indices) / len(jy)])
    mean, scale = x.mean(0), x.std(0) + 1e-6
    xt = torch.from_numpy((x - mean) / scale).float()
    yt, wt = torch.from_numpy(y), torch.from_numpy(w).float()
    model = Bottleneck(x.shape[1], recipe.embed_dim, recipe.dropout)
    optimiser = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, recipe.steps)
    clips = len(indices)  # x holds variant k of clip i at row k * clips + i, then any joined inputs
    partner_variants = None
    if recipe.consistency > 0:
        partners = recipe.consistency_variants.split(",")
        unknown = [v for v in partners if v not in variants]
        if unknown:
            raise ValueError(f"--consistency-variants {','.join(unknown)}: not among the training variants "
                             f"(--variants {recipe.variants})")
        partner_variants = np.array([variants.index(v) for v in partners])
    for step in range(recipe.steps):
        model.train()
        rows = torch.from_numpy(rng.choice(len(xt), min(recipe.batch, len(xt)), replace=False))
        embedding, logits = model(xt[rows])
        loss = (F.cross_entropy(logits, yt[rows], reduction="none") * wt[rows]).mean()
        if recipe.supcon > 0:
            pick = slice(0, min(recipe.supcon_batch, len(rows)))
            loss = loss + recipe.supcon * supervised_contrastive(embedding[pick], yt[rows][pick], recipe.temperature)
        if recipe.consistency > 0:
            own = rows[rows < len(variants) * clips][: recipe.supcon_batch]
            partner = torch.from_numpy(rng.choice(partner_variants, len(own))) * clips + own % clips
            mine, theirs = (F.log_softmax(model(xt[r])[1], -1) for r in (own, partner))
            loss = loss + recipe.consistency * 0.5 * (
                F.kl_div(theirs, mine, log_target=True, reduction="batchmean")
                + F.kl_div(mine, theirs, log_target=True, reduction="batchmean"))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 100 == 0 or step == recipe.steps - 1:
            print(f"  step {step}: loss {float(loss.detach()):.3f}", flush=True)
    return model.eval(), mean, scale


def apply_saved(path: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, probabilities) of pooled features ``x`` under a model file written by
    :func:`export` (the standardisation folded into its projection; temperature 1 for fold models)."""
    from safetensors.numpy import load_file

    tensors = load_file(str(path))
    embedding = x @ tensors["project.linear.weight"].T + tensors["project.linear.bias"]
    logits = ((embedding - tensors["head.mean"]) / tensors["head.scale"]) @ tensors["head.weight"].T + tensors["head.bias"]
    logits = logits - logits.max(1, keepdims=True)
    probs = np.exp(logits)
    return embedding, probs / probs.sum(1, keepdims=True)


@torch.inference_mode()
def apply(model: Bottleneck, mean: np.ndarray, scale: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    embedding, logits = model(torch.from_numpy((x - mean) / scale).float())
    return embedding.numpy(), torch.softmax(logits, -1).numpy()


def export(model: Bottleneck, mean: np.ndarray, scale: np.ndarray, path: Path, recipe: Recipe, temperature: float,
           description: str) -> Path:
    """A compact model file (format v2, no tuned blocks): per-frame layer norms without affine
    change, the standardisation folded into the projection's linear map, the head divided by the
    calibration temperature."""
    from emotion2vec_plus.models.compact import save_compact
    from emotion2vec_plus.heads import EmotionHead
    from emotion2vec_plus.models.whisper import ASSET_INFO_NAME, _asset_info

    weight = model.project.weight.detach().numpy() / scale[None, :]
    bias = model.project.bias.detach().numpy() - weight @ mean
    layers = recipe_layers(recipe)
    projection = {f"project.norms.{i}.weight": np.ones(WIDTH, np.float32) for i in range(len(layers))}
    projection.update({f"project.norms.{i}.bias": np.zeros(WIDTH, np.float32) for i in range(len(layers))})
    projection["project.linear.weight"] = weight.astype(np.float32)
    projection["project.linear.bias"] = bias.astype(np.float32)
    dim = recipe.embed_dim
    head = EmotionHead(LABELS, "logreg", dim, "compact",
                       {"mean": np.zeros(dim, np.float32), "scale": np.ones(dim, np.float32),
                        "weight": model.head.weight.detach().numpy() / temperature,
                        "bias": model.head.bias.detach().numpy() / temperature},
                       training={"recipe": asdict(recipe), "temperature": temperature, "trainer": "training/v2_frozen.py",
                                 "licence": "non-commercial research use only: trained on RAVDESS and nEMO "
                                            "(CC BY-NC-SA 4.0), CASIA and EMOVO (research use only)"})
    return save_compact(path, 6, {}, layers, projection, head,
                        {"description": description, "encoder_sha256": _asset_info()["sha256"],
                         "encoder_file": ASSET_INFO_NAME, "pooling": recipe.pool})


def save_training_statistics(model_file: Path, mean: np.ndarray, scale: np.ndarray, recipe: Recipe, num_clips: int,
                             joined: Joined | None) -> Path:
    """``<model>_input_stats.safetensors`` beside the model file: the standardisation of the
    training inputs as an adapter file (what ``emotion2vec_plus.adaptation`` shifts a user's
    statistics from; applying it to the model changes nothing)."""
    import hashlib
    from emotion2vec_plus.adaptation import Adapter

    variants = recipe.variants.split(",")
    num_joined = int(len(joined.labels)) if joined is not None and recipe.joined_weight > 0 else 0
    source = (f"training statistics of {model_file.name}: mean and std (+1e-6) of the pooled projection inputs of "
              f"every training example of training/v2_frozen.py --protocol final: {len(variants)} variants of "
              f"{num_clips} clips + {num_joined} joined inputs")
    adapter = Adapter(input_mean=mean.astype(np.float32), input_scale=scale.astype(np.float32),
                      num_utterances=len(variants) * num_clips + num_joined,
                      model_sha256=hashlib.sha256(model_file.read_bytes()).hexdigest(), source=source,
                      num_files=num_clips)
    return adapter.save(model_file.with_name(model_file.stem + "_input_stats.safetensors"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, required=True, help="the v2_features.py cache (block 3's input)")
    parser.add_argument("--pooled", type=Path, required=True, help="where the pooled features are kept (made once)")
    parser.add_argument("--protocol", choices=["folds", "loco", "final"], default="folds")
    parser.add_argument("--folds", default="0,1,2,3")
    parser.add_argument("--corpora", default="RAVDESS,CASIA,nEMO,EMOVO")
    parser.add_argument("--metrics-out", type=Path, default=None)
    parser.add_argument("--tag", default="")
    parser.add_argument("--save-folds", type=Path, default=None)
    parser.add_argument("--evaluate-folds", type=Path, default=None,
                        help="with --protocol folds: score the fold models a --save-folds run wrote to this folder "
                             "instead of training them (one complete record from models of runs split over time)")
    parser.add_argument("--save", type=Path, default=None)
    parser.add_argument("--evaluate-variants", default="clean",
                        help="held-out clips scored in these variants too (the first is the reported one: clean)")
    parser.add_argument("--calibration", type=float, default=1.0)
    parser.add_argument("--joined", type=Path, default=None, help="joined-clip features from v2_joined.py")
    for name, field in Recipe.__dataclass_fields__.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(field.default), default=field.default)
    args = parser.parse_args()
    recipe = Recipe(**{name: getattr(args, name) for name in Recipe.__dataclass_fields__})
    torch.set_num_threads(2)
    variants = recipe.variants.split(",")
    evaluated = args.evaluate_variants.split(",")
    if evaluated[0] != "clean":
        sys.exit("--evaluate-variants must start with clean (the reported figures)")
    needed = sorted(set(variants) | set(evaluated))
    cache = Cache(args.cache, needed)
    if cache.first_tuned != LAYERS[0]:
        sys.exit(f"the cache holds block {cache.first_tuned}'s input; this script needs block {LAYERS[0]}'s")
    args.pooled.mkdir(parents=True, exist_ok=True)
    if recipe.pool not in POOLINGS:
        sys.exit(f"--pool must be one of {POOLINGS}, got {recipe.pool!r}")
    features = load_features(args.cache, args.pooled, cache, needed, recipe_layers(recipe), recipe.pool)
    joined = Joined(args.joined, recipe.pool) if args.joined is not None else None
    everything = np.arange(len(cache.clips))
    record = {"tag": args.tag, "protocol": args.protocol, "recipe": asdict(recipe), "trainer": "v2_frozen",
              "when": time.strftime("%Y-%m-%d %H:%M")}

    if args.protocol == "final":
        model, mean, scale = train(features, cache, everything, recipe, joined)
        export(model, mean, scale, args.save, recipe, args.calibration,
               f"compact v2 {args.tag}: Whisper-base (as released), learned emotion embedding and head, trained on "
               "RAVDESS, CASIA, nEMO and EMOVO")
        write_model_record(args.save, recipe, args.calibration, "training/v2_frozen.py --protocol final")
        stats = save_training_statistics(args.save, mean, scale, recipe, len(everything), joined)
        print(f"wrote {args.save} and {stats}")
        return

    splits = protocol_splits(cache, args.protocol, args.folds, args.corpora)
    tested, all_probs, all_emb = [], [], []
    for name, train_idx, test_idx in splits:
        started = time.perf_counter()
        if args.evaluate_folds is not None:
            saved = args.evaluate_folds / f"{name.replace(' ', '_')}.safetensors"
            held_out = set(map(tuple, json.loads(saved.with_suffix(".json").read_text())["test_speakers"]))
            if held_out != {(cache.clips[i].corpus, cache.clips[i].speaker) for i in test_idx}:
                sys.exit(f"{saved}: its held-out speakers are not {name}'s")
            emb, probs = apply_saved(saved, features["clean"][test_idx])
            reference = apply_saved(saved, features["clean"][train_idx])[0], cache.labels[train_idx]
        else:
            model, mean, scale = train(features, cache, train_idx, recipe, joined)
            emb, probs = apply(model, mean, scale, features["clean"][test_idx])
            reference = apply(model, mean, scale, features["clean"][train_idx])[0], cache.labels[train_idx]
        part = corpus_metrics(cache, test_idx, probs, emb, reference)
        print(f"{name}: " + ", ".join(f"{c} UA {m['ua']:.3f}" for c, m in part.items() if "ua" in m)
              + f" ({time.perf_counter() - started:.0f} s)", flush=True)
        for variant in evaluated[1:]:  # the same held-out clips with other edges or channels
            x = features[variant][test_idx]
            other = apply_saved(saved, x)[1] if args.evaluate_folds is not None else apply(model, mean, scale, x)[1]
            agree = float(np.mean(other.argmax(1) == probs.argmax(1)))
            other_part = corpus_metrics(cache, test_idx, other, None, None)
            record.setdefault("variants", {}).setdefault(variant, {})[name] = {
                c: {"ua": m["ua"], "same_label_as_clean": float(np.mean(
                    other[cache.corpus[test_idx] == c].argmax(1) == probs[cache.corpus[test_idx] == c].argmax(1)))}
                for c, m in other_part.items()}
            print(f"  {variant}: " + ", ".join(f"{c} UA {m['ua']:.3f}" for c, m in other_part.items() if "ua" in m)
                  + f"; same label as clean {agree:.3f}", flush=True)
        print("  embedding: " + ", ".join(f"{c} kNN {m['embedding']['knn10_ua']:.3f} s-d {m['embedding']['same_minus_different']:.3f}"
                                          for c, m in part.items()), flush=True)
        record.setdefault("splits", {})[name] = part
        tested.append(test_idx)
        all_probs.append(probs)
        all_emb.append(emb)
        if args.save_folds is not None and args.evaluate_folds is None:
            args.save_folds.mkdir(parents=True, exist_ok=True)
            stem = args.save_folds / name.replace(" ", "_")
            export(model, mean, scale, stem.with_suffix(".safetensors"), recipe, 1.0, f"{name} of {args.tag}")
            save_fold_speakers(stem, cache.clips, test_idx)
    if args.protocol == "folds":
        pool_folds(record, cache, tested, all_probs, all_emb)
    append_record(args.metrics_out, record)


if __name__ == "__main__":
    main()
