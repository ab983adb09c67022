"""Compact model v3 experiments: what makes the frozen-encoder model hold up on a corpus it never heard.

Same features and bottleneck as ``v2_frozen.py`` (Whisper-base hidden states 3..6, layer-normalised
per frame, averaged over the clip -> standardise -> Linear(2048 -> E) -> Linear(E -> 7)), measured
leave-one-corpus-out (train on three corpora, test on the fourth) and on held-out speakers of the
seen corpora (``--protocol folds``). The levers, each a flag:

    --norm global       standardise with the training set's mean and scale (v2.1)
    --norm corpus       standardise every corpus (and augmentation variant) with its own mean and
                        scale, in training and at test time: the test corpus's statistics come from
                        its own clips, unlabelled (what ``model.adapt(paths)`` does for a user)
    --test-norm train   with --norm corpus: test with the training corpora's average statistics
                        instead (what a user gets without adapting)
    --adversary W       a corpus classifier on the embedding behind a gradient reversal, weight W
    --mixup A           mixup of inputs and labels with Beta(A, A) weights, partners from other corpora
    --variants          augmentation variants of the v2_features.py cache (``trim``: cut to speech)
    --pool speech       average only the speech frames of each clip (as v2_frozen.py --pool speech)

Every run appends a record to ``--metrics-out`` and prints one line per split with the unweighted
accuracy (UA) over all the classes the test corpus has and over angry/happy/neutral/sad.

    python training/v3_loco.py --cache CACHE --pooled POOLED --protocol loco --norm corpus --tag corpus-norm
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from v2_frozen import load_features  # noqa: E402
from v2_train import LABELS, Cache, corpus_emotion_weights, protocol_splits, supervised_contrastive  # noqa: E402

FOUR = [LABELS.index(name) for name in ("angry", "happy", "neutral", "sad")]


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
    norm: str = "global"
    test_norm: str = "own"
    pool: str = "frames"
    adversary: float = 0.0
    mixup: float = 0.0


class Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: float) -> torch.Tensor:
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.weight * grad, None


class Bottleneck(nn.Module):
    def __init__(self, dim_in: int, embed_dim: int, dropout: float, corpora: int) -> None:
        super().__init__()
        self.project = nn.Linear(dim_in, embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(embed_dim, len(LABELS))
        self.corpus_head = nn.Sequential(nn.Linear(embed_dim, 128), nn.ReLU(), nn.Linear(128, corpora))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.project(self.dropout(x))
        return embedding, self.head(embedding)


def group_statistics(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(0), x.std(0) + 1e-6


def standardise(features: dict[str, np.ndarray], cache: Cache, indices: np.ndarray, recipe: Recipe,
                variants: list[str], training: bool, train_stats: list | None = None):
    """The standardised rows of ``indices`` for each variant, and (in training) the per-group
    statistics, whose average is the fallback for ``--test-norm train``."""
    out, stats = [], []
    for variant in variants:
        x = features[variant][indices].astype(np.float32)
        if recipe.norm == "global":
            out.append(x)
            continue
        groups = cache.corpus[indices] if recipe.norm == "corpus" else cache.speaker[indices]
        if not training and recipe.test_norm == "train":
            mean = np.mean([s[0] for s in train_stats], 0)
            scale = np.mean([s[1] for s in train_stats], 0)
            out.append((x - mean) / scale)
            continue
        z = np.empty_like(x)
        for name in np.unique(groups):
            rows = groups == name
            mean, scale = group_statistics(x[rows])
            z[rows] = (x[rows] - mean) / scale
            if training and variant == "clean":
                stats.append((mean, scale))
        out.append(z)
    return out, stats


def train(features: dict[str, np.ndarray], cache: Cache, indices: np.ndarray, recipe: Recipe):
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    variants = recipe.variants.split(",")
    parts, stats = standardise(features, cache, indices, recipe, variants, training=True)
    x = np.concatenate(parts)
    y = np.tile(cache.labels[indices], len(variants))
    w = np.tile(corpus_emotion_weights(cache.corpus[indices], cache.labels[indices]), len(variants))
    corpus_names = sorted(set(cache.corpus[indices]))
    c = np.tile(np.array([corpus_names.index(v) for v in cache.corpus[indices]]), len(variants))
    mean, scale = x.mean(0), x.std(0) + 1e-6
    xt = torch.from_numpy((x - mean) / scale).float()
    yt, wt, ct = torch.from_numpy(y), torch.from_numpy(w).float(), torch.from_numpy(c)
    model = Bottleneck(x.shape[1], recipe.embed_dim, recipe.dropout, len(corpus_names))
    optimiser = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, recipe.steps)
    for step in range(recipe.steps):
        model.train()
        rows = torch.from_numpy(rng.choice(len(xt), min(recipe.batch, len(xt)), replace=False))
        xb, yb, wb, cb = xt[rows], yt[rows], wt[rows], ct[rows]
        if recipe.mixup > 0:
            lam = torch.from_numpy(rng.beta(recipe.mixup, recipe.mixup, size=len(rows))).float()
            lam = torch.maximum(lam, 1 - lam)  # the first clip dominates: its label and corpus lead
            partner = torch.randperm(len(rows))
            xb = lam[:, None] * xb + (1 - lam[:, None]) * xb[partner]
            embedding, logits = model(xb)
            loss = (lam * F.cross_entropy(logits, yb, reduction="none") * wb
                    + (1 - lam) * F.cross_entropy(logits, yb[partner], reduction="none") * wb[partner]).mean()
        else:
            embedding, logits = model(xb)
            loss = (F.cross_entropy(logits, yb, reduction="none") * wb).mean()
        if recipe.supcon > 0 and recipe.mixup == 0:
            pick = slice(0, min(recipe.supcon_batch, len(rows)))
            loss = loss + recipe.supcon * supervised_contrastive(embedding[pick], yb[pick], recipe.temperature)
        if recipe.adversary > 0:
            ramp = min(1.0, step / (0.3 * recipe.steps))
            corpus_logits = model.corpus_head(Reverse.apply(embedding, recipe.adversary * ramp))
            loss = loss + F.cross_entropy(corpus_logits, cb)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
    return model.eval(), mean, scale, stats


@torch.inference_mode()
def probabilities(model: Bottleneck, mean: np.ndarray, scale: np.ndarray, x: np.ndarray) -> np.ndarray:
    return torch.softmax(model(torch.from_numpy((x - mean) / scale).float())[1], -1).numpy()


def unweighted_accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean([np.mean(predicted[truth == label] == label) for label in np.unique(truth)]))


def split_metrics(cache: Cache, test_idx: np.ndarray, probs: np.ndarray) -> dict:
    out = {}
    for corpus in sorted(set(cache.corpus[test_idx])):
        rows = cache.corpus[test_idx] == corpus
        truth, p = cache.labels[test_idx][rows], probs[rows]
        four = np.isin(truth, FOUR)
        four_pred = np.array(FOUR)[p[four][:, FOUR].argmax(1)]
        shares = np.bincount(p.argmax(1), minlength=len(LABELS)) / len(p)
        out[corpus] = {"ua": unweighted_accuracy(truth, p.argmax(1)), "ua4": unweighted_accuracy(truth[four], four_pred),
                       "n": int(rows.sum()), "largest_predicted_share": float(shares.max()),
                       "largest_predicted": LABELS[int(shares.argmax())]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--pooled", type=Path, required=True)
    parser.add_argument("--protocol", choices=["folds", "loco"], default="loco")
    parser.add_argument("--folds", default="0,1,2,3")
    parser.add_argument("--corpora", default="RAVDESS,CASIA,nEMO,EMOVO")
    parser.add_argument("--test-variants", default="clean",
                        help="the variants the test clips are scored in (the first is the headline; e.g. clean,trim,noise15)")
    parser.add_argument("--metrics-out", type=Path, default=None)
    parser.add_argument("--tag", default="")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--adapt-sizes", default="", help="also adapt on this many random test clips (5 draws each), e.g. 30,100")
    for name, field in Recipe.__dataclass_fields__.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(field.default), default=field.default)
    args = parser.parse_args()
    recipe = Recipe(**{name: getattr(args, name) for name in Recipe.__dataclass_fields__})
    torch.set_num_threads(args.threads)
    variants = recipe.variants.split(",")
    test_variants = args.test_variants.split(",")
    needed = sorted(set(variants) | set(test_variants))
    cache = Cache(args.cache, needed)
    features = load_features(args.cache, args.pooled, cache, needed, [int(v) for v in recipe.layers.split(",")],
                             recipe.pool)
    record = {"tag": args.tag, "protocol": args.protocol, "test_variants": test_variants, "recipe": asdict(recipe),
              "trainer": "v3_loco", "when": time.strftime("%Y-%m-%d %H:%M"), "splits": {}}
    started = time.perf_counter()
    for name, train_idx, test_idx in protocol_splits(cache, args.protocol, args.folds, args.corpora):
        model, mean, scale, stats = train(features, cache, train_idx, recipe)
        xs, _ = standardise(features, cache, test_idx, recipe, test_variants, training=False, train_stats=stats)
        scored = list(zip(test_variants, xs))
        if recipe.norm != "global" and recipe.test_norm == "own":  # also without adapting to the test corpus
            unadapted = replace(recipe, test_norm="train")
            xs, _ = standardise(features, cache, test_idx, unadapted, test_variants, training=False, train_stats=stats)
            scored += [(f"{variant}, not adapted", x) for variant, x in zip(test_variants, xs)]
        if recipe.norm == "global":  # also adapted: the test corpus's own mean and scale mapped onto the training set's
            scored += [(f"{variant}, adapted", (x - x.mean(0)) / (x.std(0) + 1e-6) * scale + mean)
                       for variant, x in zip(test_variants, xs)]
            if args.adapt_sizes:  # statistics from a random handful of the test corpus's clips, as a user has
                rng = np.random.default_rng(recipe.seed)
                x = xs[0]
                for size in map(int, args.adapt_sizes.split(",")):
                    draws = [rng.choice(len(x), min(size, len(x)), replace=False) for _ in range(5)]
                    for draw_index, rows in enumerate(draws):
                        scored.append((f"{test_variants[0]}, adapted on {size} clips (draw {draw_index})",
                                       (x - x[rows].mean(0)) / (x[rows].std(0) + 1e-6) * scale + mean))
        for variant, x in scored:
            part = split_metrics(cache, test_idx, probabilities(model, mean, scale, x))
            if variant == test_variants[0]:
                record["splits"][name] = part
            else:
                record.setdefault("conditions", {}).setdefault(variant, {})[name] = part
            print(f"[{args.tag}] {name} ({variant}): " + ", ".join(
                f"{c} UA {m['ua']:.3f} (4-class {m['ua4']:.3f}; most {m['largest_predicted']} {m['largest_predicted_share']:.2f})"
                for c, m in part.items()), flush=True)
    if args.protocol == "loco":
        uas = [m["ua"] for part in record["splits"].values() for m in part.values()]
        ua4 = [m["ua4"] for part in record["splits"].values() for m in part.values()]
        record["mean_ua"], record["min_ua"], record["mean_ua4"] = float(np.mean(uas)), float(np.min(uas)), float(np.mean(ua4))
        print(f"[{args.tag}] LOCO mean UA {record['mean_ua']:.3f}, min {record['min_ua']:.3f}, 4-class mean {record['mean_ua4']:.3f}"
              f" ({time.perf_counter() - started:.0f} s)", flush=True)
    if args.metrics_out is not None:
        with args.metrics_out.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
