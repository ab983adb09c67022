"""``emotion2vec-plus models``: every model by name, its size and whether it is here."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help="list known models, their sizes and whether they are cached")
    parser.add_argument("--hub", choices=["hf", "ms"], default=None)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..models.registry import all_models

    entries = all_models(hub=args.hub, cache_dir=args.cache_dir)
    if args.json:
        print(json.dumps([entry.to_dict() for entry in entries], ensure_ascii=False, indent=2))
        return 0
    print(f"{'name':28} {'dim':>5} {'head':>5} {'size':>8}  {'cached':7} location")
    for entry in entries:
        name = f"{entry.name} (default)" if entry.note == "default" else entry.name
        cached = "bundled" if entry.repo is None else "yes" if entry.cached else "no"
        where = entry.path or entry.url or ""
        if entry.note and entry.note != "default":
            where += f" ({entry.note})"
        print(f"{name:28} {entry.embed_dim:>5} {'yes' if entry.has_head else 'no':>5} {entry.size_mb:>5} MB  "
              f"{cached:7} {where}")
    return 0
