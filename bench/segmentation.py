"""Do a recording's segments follow its utterances? Joined clips of several emotions, held-out speakers.

For every held-out speaker, that speaker's clips are shuffled and joined, ``--clips-per-file`` at a
time (consecutive clips of different emotions where the speaker has them), with a pause of
0.3–2 s between them filled with that speaker's room tone (the quiet frames of the non-speech
edges of their own clips, as the same room between sentences would sound). Each file is run
through ``predict`` as a user would, and each clip is given the label of the segment that covers
most of it. Reported per corpus: files, clips, segments (and their ratio to clips: the aim is
within ±20 %), the share of clips that got a segment of their own (one segment covering most of
that clip and of no other), and the unweighted accuracy (UA) of the clips read from the segments
against the same clips scored alone ("single clips"), all classes and the usual 4 (angry, happy,
neutral, sad: the argmax among those four classes' scores). The aim: segment UA within 0.03 of
the single clips. Two subsets say where a gap comes from: the clips with a segment of their own
(the rest share one with a neighbour across a pause shorter than ``min_pause_s``) and the clips
split over several segments (a pause of at least ``min_pause_s`` inside the clip; such a clip is
read from its longest part).

With ``--live-windows 1.5,3,5`` each file is also streamed through the live mode
(``model.stream_file``) once per provisional window length: the finals are read as the segments
are (they are the offline segments, scored the same), and every provisional ``emotion`` event is
compared with the clip that covers most of its window (UA over those events, all classes).

Held-out speakers: with ``--fold-models DIR`` (written by ``training/v2_frozen.py --save-folds``)
each fold's model runs on the speakers it never saw; with ``--model NAME`` one model runs on
every speaker (fair only for a model not trained on these corpora). Usage:

    python bench/segmentation.py --fold-models FOLDS [--corpora RAVDESS,CASIA] [--speakers-per-corpus 4]
    python bench/segmentation.py --model compact --corpora RAVDESS --min-pause 0.4

Prints one Markdown table (a row per corpus) and writes ``--json-out`` when given.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "training"))
from corpora import ALL_CORPORA, Clip, fold_models, read_all  # noqa: E402
from room_tone import crossfaded, room_tone  # noqa: E402

FOUR = ["angry", "happy", "neutral", "sad"]
SR = 16000


@dataclass
class JoinedFile:
    samples: np.ndarray
    clips: list[Clip]
    spans: list[tuple[int, int]]  # each clip's [start, end) in the file, in samples


def interleaved(clips: list[Clip], rng: np.random.Generator) -> list[Clip]:
    """The clips in random order, consecutive ones of different emotions where possible."""
    by_label: dict[str, list[Clip]] = defaultdict(list)
    for clip in rng.permutation(np.array(clips, dtype=object)):
        by_label[clip.label].append(clip)
    out: list[Clip] = []
    while any(by_label.values()):
        previous = out[-1].label if out else None
        choices = [label for label, left in by_label.items() if left and label != previous] or \
                  [label for label, left in by_label.items() if left]
        weights = np.array([len(by_label[label]) for label in choices], dtype=float)
        label = choices[int(rng.choice(len(choices), p=weights / weights.sum()))]
        out.append(by_label[label].pop())
    return out


def joined_files(clips: list[Clip], per_file: int, pause_range: tuple[float, float],
                 rng: np.random.Generator) -> list[JoinedFile]:
    """One speaker's clips joined ``per_file`` at a time with random pauses of room tone between them."""
    import soundfile as sf

    ordered = interleaved(clips, rng)
    audio = {clip.path: sf.read(clip.path, dtype="float32")[0] for clip in ordered}
    tone = room_tone(list(audio.values()))
    # the tone looped once, long enough for a pause starting anywhere in its first copy (each
    # crossfade shortens the loop by 5 ms, so the copies are counted with that)
    longest = int(pause_range[1] * SR) + 1
    copies = 2
    while copies * len(tone) - (copies - 1) * (SR // 200) < len(tone) + longest:
        copies += 1
    looped = crossfaded([tone] * copies)
    files = []
    for first in range(0, len(ordered) - per_file + 1, per_file):
        group = ordered[first : first + per_file]
        parts, spans, position = [], [], 0
        for index, clip in enumerate(group):
            if index:
                pause = int(rng.uniform(*pause_range) * SR)
                offset = int(rng.integers(0, len(tone)))
                parts.append(looped[offset : offset + pause])
                assert len(parts[-1]) == pause  # the clips' spans below count on it
                position += pause
            parts.append(audio[clip.path])
            spans.append((position, position + len(audio[clip.path])))
            position += len(audio[clip.path])
        files.append(JoinedFile(np.concatenate(parts), group, spans))
    return files


#: Clips joined per file, and the shortest and longest pause between them (seconds).
CLIPS_PER_FILE = 6
PAUSE_RANGE = (0.3, 2.0)


def held_out_files(clips: list[Clip], corpus: str, held_out: set[tuple[str, str]] | None, rng: np.random.Generator, *,
                   speakers_per_corpus: int = 0, clips_per_speaker: int = 0, per_file: int = CLIPS_PER_FILE,
                   pause_range: tuple[float, float] = PAUSE_RANGE) -> Iterator[list[JoinedFile]]:
    """Each held-out speaker's joined files of ``corpus`` in turn (every speaker of it when
    ``held_out`` is None; at most ``speakers_per_corpus`` speakers and ``clips_per_speaker`` clips
    each, 0: all)."""
    speakers = sorted({c.speaker for c in clips if c.corpus == corpus
                       and (held_out is None or (c.corpus, c.speaker) in held_out)})
    if speakers_per_corpus:
        speakers = speakers[:speakers_per_corpus]
    for speaker in speakers:
        own = [c for c in clips if c.corpus == corpus and c.speaker == speaker]
        if clips_per_speaker and len(own) > clips_per_speaker:
            own = list(rng.choice(np.array(own, dtype=object), clips_per_speaker, replace=False))
        yield joined_files(own, per_file, pause_range, rng)


def live_labels(model, joined: JoinedFile, window_s: float) -> dict[str, list]:
    """The file streamed live: each clip read from the finals as from the segments, and each
    provisional emotion event with the label of the clip covering most of its window."""
    from types import SimpleNamespace

    events = list(model.stream_file(joined.samples, window_s=window_s))
    finals = [e for e in events if e.type == "utterance"]
    as_result = SimpleNamespace(segments=finals or None, duration_s=len(joined.samples) / SR, scores={})
    chosen, _, _ = read_segments(as_result, joined.spans)
    out: dict[str, list] = {"final_truth": [c.label for c in joined.clips],
                            "final_pred": [None if s is None else max(s, key=s.get) for s in chosen],
                            "provisional_truth": [], "provisional_pred": []}
    for event in events:
        if event.type != "emotion":
            continue
        cover = [max(0.0, min(event.end_s, e / SR) - max(event.start_s, s / SR)) for s, e in joined.spans]
        best = int(np.argmax(cover))
        if cover[best] > 0:
            out["provisional_truth"].append(joined.clips[best].label)
            out["provisional_pred"].append(event.emotion)
    return out


def four_class(scores: dict[str, float]) -> str:
    return max(FOUR, key=lambda c: scores.get(c, 0.0))


def ua(truth: list[str], predicted: list[str]) -> float:
    present = sorted(set(truth))
    return float(np.mean([np.mean([p == t for p, t in zip(predicted, truth) if t == label]) for label in present]))


def read_segments(result, spans: list[tuple[int, int]]) -> tuple[list[dict | None], list[bool], list[int]]:
    """For each clip: the scores of the segment covering most of it (None when none touches it),
    whether that segment is its own (it covers no other clip more), and how many segments cover
    more than 0.25 s of it (more than one: the clip was split at a pause inside it)."""
    segments = result.segments or [None]
    bounds = [(0.0, result.duration_s) if s is None else (s.start_s, s.end_s) for s in segments]
    overlap = np.array([[max(0.0, min(b, e / SR) - max(a, s / SR)) for a, b in bounds] for s, e in spans])
    chosen, own = [], []
    pieces = [int((overlap[clip] > 0.25).sum()) for clip in range(len(spans))]
    for clip in range(len(spans)):
        best = int(np.argmax(overlap[clip]))
        if overlap[clip, best] <= 0:
            chosen.append(None)
            own.append(False)
            continue
        segment = segments[best]
        chosen.append(result.scores if segment is None else segment.scores)
        own.append(int(np.argmax(overlap[:, best])) == clip and int((overlap[:, best] > 0.25).sum()) == 1)
    return chosen, own, pieces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fold-models", type=Path, default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--folds", default=None, help="with --fold-models: only these folds (e.g. 0,1)")
    parser.add_argument("--corpora", default=",".join(ALL_CORPORA))
    parser.add_argument("--clips-per-file", type=int, default=CLIPS_PER_FILE)
    parser.add_argument("--pause", default=",".join(f"{v:g}" for v in PAUSE_RANGE),
                        help="shortest,longest pause between clips in seconds")
    parser.add_argument("--speakers-per-corpus", type=int, default=0,
                        help="at most this many held-out speakers per corpus and fold (0: all)")
    parser.add_argument("--clips-per-speaker", type=int, default=0, help="at most this many clips per speaker (0: all)")
    parser.add_argument("--min-pause", default=None,
                        help="the model's min_pause_s (default: its own); several, comma-separated (e.g. 0.3,0.4,0.5), "
                             "segment the same files once per value and print a table for each")
    parser.add_argument("--context", type=float, default=None, help="the model's segment_context_s (default: its own)")
    parser.add_argument("--merge-pause", type=float, default=None,
                        help="the model's merge_pause_s (default: its own; 0: alike neighbours are never merged)")
    parser.add_argument("--window", type=float, default=None, help="the model's window_s (default: its own)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compute-type", default="float32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--live-windows", default="", help="also stream each file live with these provisional "
                                                            "window lengths in seconds (e.g. 1.5,3,5)")
    parser.add_argument("--score-utterances", action="store_true",
                        help="score every input by its utterances (Emotion2VecPlus(score_whole=False)), single clips "
                             "too; the clips scored whole are reported beside them")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()
    live_windows = [float(v) for v in args.live_windows.split(",") if v]
    if (args.fold_models is None) == (args.model is None):
        parser.error("give exactly one of --fold-models and --model")

    from emotion2vec_plus import Emotion2VecPlus

    corpora = args.corpora.split(",")
    pause_range = tuple(float(v) for v in args.pause.split(","))
    clips = read_all(corpora=tuple(corpora))
    runs: list[tuple[str, set[tuple[str, str]] | None]] = (
        fold_models(args.fold_models, args.folds) if args.fold_models is not None else [(args.model, None)])
    min_pauses: list[float | None] = [float(v) for v in args.min_pause.split(",")] if args.min_pause else [None]
    if live_windows and len(min_pauses) > 1:
        parser.error("--live-windows takes one --min-pause value")
    # one set of rows per min_pause_s: the same joined files and single clips, segmented once per value
    rows_by_pause: dict[float | None, dict[str, dict[str, list]]] = {
        value: defaultdict(lambda: defaultdict(list)) for value in min_pauses}
    started = time.perf_counter()
    options = {"num_threads": args.threads, "compute_type": args.compute_type, "window_s": args.window}
    for model_name, held_out in runs:
        model = Emotion2VecPlus(model_name, **options, **({"score_whole": False} if args.score_utterances else {}))
        whole_model = Emotion2VecPlus(model_name, **options, score_whole=True) if args.score_utterances else model
        if args.context is not None:
            model.segment_context_s = args.context
        if args.merge_pause is not None:
            model.merge_pause_s = args.merge_pause
        own_min_pause = model.min_pause_s
        rng = np.random.default_rng(args.seed)
        for corpus in corpora:
            for files in held_out_files(clips, corpus, held_out, rng, speakers_per_corpus=args.speakers_per_corpus,
                                        clips_per_speaker=args.clips_per_speaker, per_file=args.clips_per_file,
                                        pause_range=pause_range):
                singles = model.predict_batch([str(c.path) for f in files for c in f.clips])
                wholes = singles if whole_model is model else \
                    whole_model.predict_batch([str(c.path) for f in files for c in f.clips])
                for value, rows in rows_by_pause.items():
                    model.min_pause_s = own_min_pause if value is None else value
                    add_rows(rows, model, files, singles, wholes, live_windows)
        print(f"{model_name}: done ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)

    for value, rows in rows_by_pause.items():
        model.min_pause_s = own_min_pause if value is None else value
        summary = report(rows, model, pause_range, args.clips_per_file, live_windows)
        if args.json_out is not None:
            out = args.json_out if len(min_pauses) == 1 else \
                args.json_out.with_name(f"{args.json_out.stem}_min_pause{model.min_pause_s:g}{args.json_out.suffix}")
            out.write_text(json.dumps({"args": vars(args) | {"fold_models": str(args.fold_models),
                                                             "json_out": str(out),
                                                             "min_pause": model.min_pause_s,
                                                             "merge_pause": model.merge_pause_s,
                                                             "merge_similarity": model.merge_similarity},
                                       "corpora": summary}, indent=2))


def add_rows(rows: dict[str, dict[str, list]], model, files: list[JoinedFile], singles: list, wholes: list,
             live_windows: list[float]) -> None:
    """Segment each joined file with ``model`` as it is set now and add each clip's labels to ``rows``."""
    single_iter, whole_iter = iter(singles), iter(wholes)
    for joined in files:
        corpus = joined.clips[0].corpus
        result = model.predict(joined.samples)
        chosen, is_own, pieces = read_segments(result, joined.spans)
        for window in live_windows:
            live = live_labels(model, joined, window)
            rows[corpus][f"live{window:g}_truth"] += live["provisional_truth"]
            rows[corpus][f"live{window:g}_pred"] += live["provisional_pred"]
            rows[corpus]["final_truth"] += live["final_truth"] if window == live_windows[0] else []
            rows[corpus]["final_pred"] += live["final_pred"] if window == live_windows[0] else []
        rows[corpus]["files"].append(1)
        rows[corpus]["segments"].append(len(result.segments or [None]))
        for clip, scores, clip_own, clip_pieces in zip(joined.clips, chosen, is_own, pieces):
            single = next(single_iter)
            rows[corpus]["whole"].append(next(whole_iter).emotion)
            rows[corpus]["truth"].append(clip.label)
            rows[corpus]["single"].append(single.emotion)
            rows[corpus]["single4"].append(four_class(single.scores))
            rows[corpus]["segment"].append(None if scores is None else max(scores, key=scores.get))
            rows[corpus]["segment4"].append(None if scores is None else four_class(scores))
            rows[corpus]["own"].append(clip_own)
            rows[corpus]["split"].append(clip_pieces > 1)


def report(rows: dict[str, dict[str, list]], model, pause_range: tuple[float, ...], clips_per_file: int,
           live_windows: list[float]) -> dict:
    """Print the Markdown table(s) of ``rows`` and return the per-corpus summary."""
    merging = (f"alike neighbours (cosine >= {model.merge_similarity:g}) merged across pauses under {model.merge_pause_s:g} s"
               if model.merge_pause_s > 0 else "no merging")
    print(f"\nmin_pause_s {model.min_pause_s:g}, {merging}, segment context {model.segment_context_s:g} s, pauses "
          f"{pause_range[0]:g}-{pause_range[1]:g} s, {clips_per_file} clips per file, inputs within the window "
          f"scored {'whole' if model.score_whole else 'by their utterances'}\n")
    print("| corpus | files | clips | segments | segments / clips | clips with a segment of their own | "
          "UA single clips | UA from segments | Δ | UA4 single | UA4 from segments | Δ4 | "
          "clips with their own segment: UA single / from segments | UA single clips scored whole | "
          "clips split over several segments: share, UA single / from segments | "
          "clips neither split nor sharing a segment: UA single / from segments |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    summary = {}
    for corpus, data in rows.items():
        truth = data["truth"]
        four = [i for i, t in enumerate(truth) if t in FOUR]
        entry = {
            "files": len(data["files"]), "clips": len(truth), "segments": int(sum(data["segments"])),
            "own_share": float(np.mean(data["own"])),
            "ua_single": ua(truth, data["single"]), "ua_segments": ua(truth, data["segment"]),
            "ua4_single": ua([truth[i] for i in four], [data["single4"][i] for i in four]) if four else None,
            "ua4_segments": ua([truth[i] for i in four], [data["segment4"][i] for i in four]) if four else None,
        }
        entry["ua_single_whole"] = ua(truth, data["whole"])
        own = [i for i, flag in enumerate(data["own"]) if flag]
        split = [i for i, flag in enumerate(data["split"]) if flag]
        alone = [i for i in own if not data["split"][i]]  # one segment, its own: what the model alone decides
        entry["split_share"] = len(split) / len(truth)
        for name, subset in (("own", own), ("split", split), ("alone", alone)):
            for kind, key in (("single", "single"), ("segments", "segment")):
                entry[f"ua_{kind}_{name}"] = ua([truth[i] for i in subset], [data[key][i] for i in subset]) if subset else None
        summary[corpus] = entry
        ratio = entry["segments"] / entry["clips"]
        d4 = "—" if entry["ua4_single"] is None else f"{entry['ua4_segments'] - entry['ua4_single']:+.3f}"
        u4 = "—" if entry["ua4_single"] is None else f"{entry['ua4_single']:.3f}"
        s4 = "—" if entry["ua4_segments"] is None else f"{entry['ua4_segments']:.3f}"
        print(f"| {corpus} | {entry['files']} | {entry['clips']} | {entry['segments']} | {ratio:.2f} | "
              f"{entry['own_share']:.3f} | {entry['ua_single']:.3f} | {entry['ua_segments']:.3f} | "
              f"{entry['ua_segments'] - entry['ua_single']:+.3f} | {u4} | {s4} | {d4} | "
              + ("—" if not own else f"{entry['ua_single_own']:.3f} / {entry['ua_segments_own']:.3f}")
              + f" | {entry['ua_single_whole']:.3f} | {entry['split_share']:.3f}"
              + ("" if not split else f", {entry['ua_single_split']:.3f} / {entry['ua_segments_split']:.3f}") + " | "
              + ("—" if not alone else f"{entry['ua_single_alone']:.3f} / {entry['ua_segments_alone']:.3f}") + " |")
    if live_windows:
        print("\nLive mode on the same files: finals (read as the segments) and provisional events by window length\n")
        print("| corpus | UA single clips | UA from finals | " + " | ".join(
            f"provisional UA, {w:g} s window (events)" for w in live_windows) + " |")
        print("|---|---|---|" + "---|" * len(live_windows))
        for corpus, data in rows.items():
            cells = [f"{ua(data[f'live{w:g}_truth'], data[f'live{w:g}_pred']):.3f} ({len(data[f'live{w:g}_truth'])})"
                     for w in live_windows]
            summary[corpus]["ua_finals"] = ua(data["final_truth"], data["final_pred"])
            summary[corpus]["ua_provisional"] = {f"{w:g}": ua(data[f"live{w:g}_truth"], data[f"live{w:g}_pred"])
                                                 for w in live_windows}
            print(f"| {corpus} | {summary[corpus]['ua_single']:.3f} | {summary[corpus]['ua_finals']:.3f} | "
                  + " | ".join(cells) + " |")
    return summary


if __name__ == "__main__":
    main()
