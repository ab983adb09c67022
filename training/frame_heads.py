"""Frame-level heads over the frozen compact-model features (Whisper-base, 7 layers per frame).

Reads the per-frame cache made by ``frame_features.py`` (7 x 512 per step at 12.5 Hz; by default
averaged again in pairs here, ``--merge 2``: 6.25 Hz, 160 ms steps) and compares,
speaker-independently, heads that see the frames instead of their mean:

- ``mean-logreg``: reference — the shipped recipe (logistic regression on the standardised mean
  of the 7-layer frames, 3584-d), on the same cache;
- ``proj-mean``:   control — linear projection 3584 -> P (``--proj``, 128) per frame, plain mean,
  linear classifier (isolates what attention adds);
- ``proj-attn``:   (a) projection 3584 -> P, learned attention weights over frames, linear classifier;
- ``conv-attn``:   (b) projection, two residual 1-D conv layers (kernel 5 steps, 0.8 s at 6.25 Hz),
  attention;
- ``gru-attn``:    (b) projection, one bidirectional GRU layer, attention;
- ``mean-linear``: control — the shipped recipe's linear classifier on the mean of the 3584-d frames,
  trained with this script's recipe (separates the recipe from the pooling);
- ``attn-linear``: (a) without projection — attention weights over frames (scored by a small
  3584 -> 32 -> 1 net, initialised to uniform) pool the 3584-d frames, then the linear classifier;
  with uniform weights it is exactly the shipped head;
- ``mix-asp``:     (c) learned softmax weights over the 7 layers (512-d per frame), projection,
  attentive statistics pooling (weighted mean and std), linear classifier.

Training: AdamW, class-balanced cross-entropy, dropout on the input features and the pooled
vector, weight decay, early stopping on the mean of per-corpus UA over an inner validation split
made only of training speakers (one CASIA speaker and 4 RAVDESS actors of the training side,
rotated by seed), then the best epoch's weights predict the held-out fold; with ``--refit`` the
head is instead retrained on all training speakers for the best epoch count. Several seeds
(``--seeds``, default 0,1); the table gives mean +- sd over seeds. ``--collect`` turns the
``--json-out`` lines of several runs into one table (and the metrics JSON section).

Protocols: ``joint`` (4 folds, fold i = CASIA speaker i + 6 RAVDESS actors held out, trained on
both corpora), ``casia`` (CASIA only, leave one speaker out), ``ravdess`` (RAVDESS only, the same
actor folds). Usage (CPU, 1 thread, be nice):

    OMP_NUM_THREADS=1 nice -n 15 python training/frame_heads.py --frames /work/cache/frames/clean_pool4.npz \
        --heads mean-logreg,proj-mean,proj-attn,conv-attn,gru-attn,mix-asp --protocols joint --json-out runs.jsonl
    python training/frame_heads.py --collect runs.jsonl [--metrics-out docs/compact_metrics.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpora import Clip, joint_folds  # noqa: E402
from frame_features import pool_steps  # noqa: E402

from emotion2vec_plus.heads import classification_metrics, train_head  # noqa: E402

CLASSES = ["angry", "disgusted", "fearful", "happy", "neutral", "sad", "surprised"]
LAYERS, WIDTH = 7, 512


# --------------------------------------------------------------------------- data

class FrameData:
    """All clips' frames, standardised, as one padded float16 tensor (N, T, 7, 512) + lengths."""

    def __init__(self, path: Path, merge: int = 1) -> None:
        data = np.load(path)
        self.corpus, self.speaker, self.label = data["corpus"], data["speaker"], data["label"]
        self.paths = data["paths"]
        offsets = data["offsets"]
        frames = data["frames"]
        if merge > 1:  # coarser steps: means over groups of ``merge`` cached steps
            parts = [pool_steps(torch.from_numpy(frames[a:b]).float(), merge).half().numpy()
                     for a, b in zip(offsets[:-1], offsets[1:])]
            offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])])
            frames = np.concatenate(parts)
        self.lengths = np.diff(offsets)
        n, t_max = len(self.lengths), int(self.lengths.max())
        self.padded = torch.zeros(n, t_max, LAYERS, WIDTH, dtype=torch.float16)
        for i in range(n):
            self.padded[i, : self.lengths[i]] = torch.from_numpy(frames[offsets[i] : offsets[i + 1]])
        self.frames = frames  # (total, 7, 512) float16, for statistics
        self.offsets = offsets
        self.y = np.array([CLASSES.index(v) for v in self.label])
        # utterance means (step-weighted, so ~ the mean of the 50 Hz frames)
        self.means = np.stack([frames[offsets[i] : offsets[i + 1]].astype(np.float32).mean(0) for i in range(n)])

    def frame_stats(self, clips: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-dimension mean and std over the frames of ``clips`` (training side only)."""
        idx = np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in clips])
        sample = idx[:: max(1, len(idx) // 30000)]
        x = self.frames[sample].astype(np.float32)
        return torch.from_numpy(x.mean(0)), torch.from_numpy(x.std(0) + 1e-5)


# --------------------------------------------------------------------------- models

class AttentionPool(nn.Module):
    """Softmax-weighted mean over valid frames (optionally also the weighted std)."""

    def __init__(self, dim: int, hidden: int = 64, stats: bool = False) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        self.stats = stats

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.score(h).squeeze(-1).masked_fill(~mask, float("-inf"))
        w = torch.softmax(logits, dim=1)
        mean = (w.unsqueeze(-1) * h).sum(1)
        if not self.stats:
            return mean, w
        var = (w.unsqueeze(-1) * (h - mean.unsqueeze(1)) ** 2).sum(1)
        return torch.cat([mean, var.clamp_min(1e-6).sqrt()], dim=-1), w


class FrameHead(nn.Module):
    """Frames (B, T, 7, 512) standardised -> logits (B, C)."""

    def __init__(self, kind: str, proj: int = 256, dropout: float = 0.3, in_dropout: float = 0.2) -> None:
        super().__init__()
        self.kind = kind
        self.in_dropout = nn.Dropout(in_dropout)
        self.dropout = nn.Dropout(dropout)
        if kind == "mix-asp":
            self.layer_logits = nn.Parameter(torch.zeros(LAYERS))
            self.proj = nn.Linear(WIDTH, proj)
        elif kind in ("attn-linear", "mean-linear"):
            self.proj = nn.Identity()  # pool the 3584-d frames themselves, as the shipped head does
            proj = LAYERS * WIDTH
        else:
            self.proj = nn.Linear(LAYERS * WIDTH, proj)
        if kind == "conv-attn":
            self.convs = nn.ModuleList(nn.Conv1d(proj, proj, 5, padding=2) for _ in range(2))
            self.norms = nn.ModuleList(nn.LayerNorm(proj) for _ in range(2))
        if kind == "gru-attn":
            self.gru = nn.GRU(proj, proj // 2, batch_first=True, bidirectional=True)
        pooled = proj
        if kind == "attn-linear":
            self.pool = AttentionPool(proj, hidden=32)
            nn.init.zeros_(self.pool.score[2].weight)  # starts as plain mean pooling (= the shipped head)
        elif kind not in ("proj-mean", "mean-linear"):
            self.pool = AttentionPool(proj, stats=kind == "mix-asp")
            pooled = 2 * proj if kind == "mix-asp" else proj
        self.classifier = nn.Linear(pooled, len(CLASSES))

    def frames_to_hidden(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.in_dropout(x)
        if self.kind == "mix-asp":
            w = torch.softmax(self.layer_logits, 0)
            h = self.proj((x * w[:, None]).sum(-2))
        else:
            h = self.proj(x.flatten(-2))
        if self.kind == "conv-attn":
            m = mask.unsqueeze(-1).to(h.dtype)
            for conv, norm in zip(self.convs, self.norms):
                h = h * m
                h = norm(h + self.dropout(F.gelu(conv(h.transpose(1, 2)).transpose(1, 2))))
        elif self.kind == "gru-attn":
            lengths = mask.sum(1).cpu()
            packed = nn.utils.rnn.pack_padded_sequence(h, lengths, batch_first=True, enforce_sorted=False)
            out, _ = self.gru(packed)
            h, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=mask.shape[1])
        return h

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.frames_to_hidden(x, mask)
        if self.kind in ("proj-mean", "mean-linear"):
            m = mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1)
        else:
            pooled, _ = self.pool(h, mask)
        return self.classifier(self.dropout(pooled))


# --------------------------------------------------------------------------- training

def batches(idx: np.ndarray, lengths: np.ndarray, size: int, rng: np.random.Generator | None):
    """Batches of similar length (shuffled in chunks of 8 batches when rng is given)."""
    if rng is None:
        order = idx[np.argsort(lengths[idx], kind="stable")]
        return [order[i : i + size] for i in range(0, len(order), size)]
    order = rng.permutation(idx)
    chunk = size * 8
    out = []
    for s in range(0, len(order), chunk):
        part = order[s : s + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        out += [part[i : i + size] for i in range(0, len(part), size)]
    rng.shuffle(out)
    return out


def tensor_batch(data: FrameData, batch: np.ndarray, mean: torch.Tensor, scale: torch.Tensor):
    t = int(data.lengths[batch].max())
    x = (data.padded[batch, :t].float() - mean) / scale
    mask = torch.arange(t)[None, :] < torch.from_numpy(data.lengths[batch])[:, None]
    return x * mask[..., None, None], mask


@torch.no_grad()
def predict_logits(model: nn.Module, data: FrameData, idx: np.ndarray, mean, scale) -> np.ndarray:
    model.eval()
    out = np.zeros((len(data.y), len(CLASSES)), dtype=np.float32)
    for b in batches(idx, data.lengths, 64, None):
        x, mask = tensor_batch(data, b, mean, scale)
        out[b] = model(x, mask).numpy()
    return out[idx]


def corpus_ua(data: FrameData, idx: np.ndarray, pred: np.ndarray) -> float:
    """Mean over corpora present in idx of the per-corpus UA."""
    scores = []
    for c in np.unique(data.corpus[idx]):
        sel = data.corpus[idx] == c
        truth, guess = data.y[idx][sel], pred[sel]
        recalls = [np.mean(guess[truth == k] == k) for k in np.unique(truth)]
        scores.append(np.mean(recalls))
    return float(np.mean(scores))


def inner_split(data: FrameData, train: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Speaker-disjoint validation from the training side: 1 CASIA speaker + 4 RAVDESS actors."""
    rng = np.random.default_rng(1000 + seed)
    val_speakers = []
    for corpus, k in (("CASIA", 1), ("RAVDESS", 4)):
        speakers = sorted(set(data.speaker[train][data.corpus[train] == corpus]))
        if len(speakers) > k:  # a corpus with a single training speaker keeps it for training
            val_speakers += list(rng.choice(speakers, k, replace=False))
    val = train[np.isin(data.speaker[train], val_speakers)]
    return np.setdiff1d(train, val), val


def _new_head(data: FrameData, idx: np.ndarray, kind: str, args):
    """A fresh head, its optimiser, and class weights balancing the classes of ``idx``."""
    model = FrameHead(kind, proj=args.proj, dropout=args.dropout, in_dropout=args.in_dropout)
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    counts = np.bincount(data.y[idx], minlength=len(CLASSES)).astype(np.float32)
    weight = torch.from_numpy(np.where(counts > 0, counts.sum() / (len(CLASSES) * np.maximum(counts, 1)), 0.0)).float()
    return model, optimiser, weight


def _train_epoch(model: nn.Module, optimiser, weight: torch.Tensor, data: FrameData, idx: np.ndarray,
                 mean: torch.Tensor, scale: torch.Tensor, args, rng: np.random.Generator) -> None:
    model.train()
    y = torch.from_numpy(data.y)
    for b in batches(idx, data.lengths, args.batch, rng):
        x, mask = tensor_batch(data, b, mean, scale)
        loss = F.cross_entropy(model(x, mask), y[b], weight=weight, label_smoothing=args.label_smoothing)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()


def train_frame_head(data: FrameData, train: np.ndarray, kind: str, seed: int, args) -> tuple[nn.Module, dict]:
    fit, val = inner_split(data, train, seed)
    mean, scale = data.frame_stats(fit)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model, optimiser, weight = _new_head(data, fit, kind, args)
    best, best_state, best_epoch, bad = -1.0, None, 0, 0
    for epoch in range(1, args.epochs + 1):
        _train_epoch(model, optimiser, weight, data, fit, mean, scale, args, rng)
        score = corpus_ua(data, val, predict_logits(model, data, val, mean, scale).argmax(1))
        if score > best:
            best, best_epoch, bad = score, epoch, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
            if bad >= args.patience:
                break
    model.load_state_dict(best_state)
    model.mean, model.scale = mean, scale
    meta = {"val_ua": best, "best_epoch": best_epoch, "epochs_run": epoch}
    if args.refit:  # retrain on all training speakers (validation ones included) for the chosen epochs
        mean, scale = data.frame_stats(train)
        torch.manual_seed(seed)
        model, optimiser, weight = _new_head(data, train, kind, args)
        for _ in range(best_epoch):
            _train_epoch(model, optimiser, weight, data, train, mean, scale, args, rng)
        model.mean, model.scale = mean, scale
    return model, meta


def protocol_folds(data: FrameData, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(folds, mask of clips in the protocol)."""
    clips = [Clip(Path(p), c, s, l, 0.0) for p, c, s, l in zip(data.paths, data.corpus, data.speaker, data.label)]
    joint = np.array(joint_folds(clips))
    if name == "joint":
        return joint, np.ones(len(joint), dtype=bool)
    if name == "ravdess":
        return joint, data.corpus == "RAVDESS"
    if name == "casia":
        speakers = sorted(set(data.speaker[data.corpus == "CASIA"]))
        folds = np.array([speakers.index(s) if c == "CASIA" else -1 for s, c in zip(data.speaker, data.corpus)])
        return folds, data.corpus == "CASIA"
    raise ValueError(name)


def run(data: FrameData, protocol: str, kind: str, seed: int, args) -> tuple[np.ndarray, list[dict]]:
    """Out-of-fold predicted class indices for the protocol's clips (-1 elsewhere)."""
    folds, member = protocol_folds(data, protocol)
    pred = np.full(len(data.y), -1)
    info = []
    for fold in np.unique(folds[member]):
        train = np.where(member & (folds != fold))[0]
        test = np.where(member & (folds == fold))[0]
        if kind == "mean-logreg":
            x = data.means.reshape(len(data.y), -1)
            mu, sd = x[train].mean(0), x[train].std(0) + 1e-5
            head = train_head((x[train] - mu) / sd, [CLASSES[k] for k in data.y[train]], embedding_model="frame-heads",
                              kind="logreg", l2=1e-2, label_order=CLASSES)
            pred[test] = [CLASSES.index(v) for v in head.predict((x[test] - mu) / sd)]
            continue
        model, meta = train_frame_head(data, train, kind, seed, args)
        pred[test] = predict_logits(model, data, test, model.mean, model.scale).argmax(1)
        info.append(meta)
        print(f"  {kind} {protocol} seed {seed} fold {fold}: val UA {meta['val_ua']:.3f} at epoch {meta['best_epoch']}, "
              f"test acc {np.mean(pred[test] == data.y[test]):.3f}", file=sys.stderr, flush=True)
    return pred, info


def scores(data: FrameData, pred: np.ndarray, corpus: str) -> tuple[float, float]:
    sel = (data.corpus == corpus) & (pred >= 0)
    m = classification_metrics([CLASSES[k] for k in data.y[sel]], [CLASSES[k] for k in pred[sel]], CLASSES)
    return m.unweighted_accuracy, m.weighted_accuracy


def collect(jsonl: list[Path], metrics_out: Path | None) -> None:
    """Print one Markdown table from the --json-out lines of earlier runs and, with ``metrics_out``,
    store it as the "frame_level_heads_tried" section of docs/compact_metrics.json."""
    rows = [json.loads(line) for path in jsonl for line in path.read_text().splitlines() if line.strip()]
    print("| head | protocol | seeds | RAVDESS UA | RAVDESS WA | CASIA UA | CASIA WA |")
    print("|---|---|---|---|---|---|---|")
    summary = []
    for row in rows:
        config = {k: v for k, v in row["config"].items() if k not in ("collect", "metrics_out")}
        entry = {"head": row["head"], "protocol": row["protocol"], "seeds": row["seeds"], "config": config,
                 "best_epochs": row["best_epochs"]}
        cells = []
        for corpus in ("RAVDESS", "CASIA"):
            values = np.array(row["per_seed_ua_wa"][corpus]) if row["per_seed_ua_wa"][corpus] else None
            if values is None:
                cells += ["—", "—"]
                continue
            entry[corpus] = {"ua_mean": float(values[:, 0].mean()), "ua_sd": float(values[:, 0].std()),
                             "wa_mean": float(values[:, 1].mean()), "wa_sd": float(values[:, 1].std()),
                             "ua_per_seed": values[:, 0].tolist()}
            cells += [f"{values[:, j].mean():.3f} ± {values[:, j].std():.3f}" for j in (0, 1)]
        summary.append(entry)
        print(f"| {row['head']} | {row['protocol']} | {len(row['seeds'])} | {' | '.join(cells)} |")
    if metrics_out is not None:
        metrics = json.loads(metrics_out.read_text()) if metrics_out.is_file() else {}
        metrics["frame_level_heads_tried"] = {
            "script": "training/frame_heads.py (features: training/frame_features.py, 7 layers, 6.25 Hz steps)",
            "note": "joint/casia/ravdess protocols as in 'evaluation'; clean training data only; "
                    "mean +- sd over seeds (population sd); not shipped",
            "results": summary}
        metrics_out.write_text(json.dumps(metrics, indent=1))
        print(f"wrote the frame_level_heads_tried section of {metrics_out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=Path, default=Path("/work/cache/frames/clean_pool4.npz"))
    parser.add_argument("--heads", default="mean-logreg,proj-mean,proj-attn,conv-attn,mix-asp")
    parser.add_argument("--protocols", default="joint")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--merge", type=int, default=2, help="average groups of this many cached steps (2: 12.5 -> 6.25 Hz)")
    parser.add_argument("--proj", type=int, default=128)
    parser.add_argument("--dropout", type=float, default=0.3)
    parser.add_argument("--in-dropout", type=float, default=0.2)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=5e-2)
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--refit", action="store_true", help="after early stopping, retrain on all training speakers "
                        "for the best epoch count")
    parser.add_argument("--tag", default="", help="label for the table rows (e.g. the configuration)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json-out", type=Path, default=None, help="append one JSON line per (head, protocol)")
    parser.add_argument("--collect", type=Path, nargs="+", default=None,
                        help="no training: print the table of earlier --json-out files")
    parser.add_argument("--metrics-out", type=Path, default=None,
                        help="with --collect: also write it into this metrics JSON (docs/compact_metrics.json)")
    args = parser.parse_args()
    if args.collect:
        collect(args.collect, args.metrics_out)
        return
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    data = FrameData(args.frames, args.merge)
    print(f"loaded {len(data.y)} clips, {int(data.lengths.sum())} steps in {time.perf_counter() - started:.0f} s; "
          f"merge={args.merge} proj={args.proj} dropout={args.dropout}/{args.in_dropout} lr={args.lr} wd={args.weight_decay} "
          f"epochs<={args.epochs} patience={args.patience}", flush=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    print("| head | protocol | RAVDESS UA | RAVDESS WA | CASIA UA | CASIA WA | best epochs | s |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    for kind in args.heads.split(","):
        for protocol in args.protocols.split(","):
            t0 = time.perf_counter()
            per_seed = {"RAVDESS": [], "CASIA": []}
            epochs = []
            for seed in seeds if kind != "mean-logreg" else seeds[:1]:
                pred, info = run(data, protocol, kind, seed, args)
                epochs += [m["best_epoch"] for m in info]
                for corpus in per_seed:
                    if ((data.corpus == corpus) & (pred >= 0)).any():
                        per_seed[corpus].append(scores(data, pred, corpus))
            cells = []
            for corpus in ("RAVDESS", "CASIA"):
                values = np.array(per_seed[corpus]) if per_seed[corpus] else None
                if values is None:
                    cells += ["—", "—"]
                else:
                    cells += [f"{values[:, j].mean():.3f} ± {values[:, j].std():.3f}" for j in (0, 1)]
            took = time.perf_counter() - t0
            print(f"| {kind}{args.tag} | {protocol} | {' | '.join(cells)} | {','.join(map(str, epochs)) or '—'} | {took:.0f} |",
                  flush=True)
            if args.json_out:
                used_seeds = seeds if kind != "mean-logreg" else seeds[:1]
                config = {k: v for k, v in vars(args).items() if k not in ("frames", "json_out", "collect", "metrics_out")}
                record = {"head": kind + args.tag, "protocol": protocol, "seeds": used_seeds, "per_seed_ua_wa": per_seed,
                          "best_epochs": epochs, "seconds": took, "config": config}
                with args.json_out.open("a") as handle:
                    handle.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
