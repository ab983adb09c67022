"""``emotion2vec-plus export-onnx``: the full model (head and padding mask included) as an ONNX graph."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from ..defaults import ONNX_OPSET
from .options import MODEL_HELP, add_adapter_option, model_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("export-onnx", help="export the full model (head and padding mask included) to ONNX")
    parser.add_argument("--model", default=None, help=MODEL_HELP)
    parser.add_argument("--hub", choices=["hf", "ms"], default=None, help="hf = Hugging Face, ms = ModelScope")
    parser.add_argument("--cache-dir", default=None, help="model cache directory (default: $EMOTION2VEC_CACHE)")
    parser.add_argument("--threads", type=int, default=None, help="PyTorch CPU threads")
    add_adapter_option(parser)
    parser.add_argument("--out", default=None, help="the .onnx file to write (default: <model>[-int8].onnx); "
                                                   "a .json sidecar is written beside it")
    parser.add_argument("--int8", action="store_true", help="dynamic int8 quantisation of the transformer MatMuls")
    parser.add_argument("--opset", type=int, default=ONNX_OPSET, help=f"ONNX opset (default {ONNX_OPSET})")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..runtime.onnx_backend import export_onnx, require_onnxruntime, sidecar_path

    require_onnxruntime()
    started = time.perf_counter()
    m = model_from_args(args, device="cpu", compute_type="float32", backend="torch")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(m.model_name).name)
    out = Path(args.out or f"{name}{'-int8' if args.int8 else ''}.onnx")
    labels = [label.english for label in m.all_labels] if m.model.head is not None else []
    export_onnx(m.model, out, int8=args.int8, opset=args.opset,
                metadata={"model": m.model_name, "labels": labels,
                          "used_labels": [label.english for label in m.labels] if labels else []})
    info = json.loads(sidecar_path(out).read_text(encoding="utf-8"))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, opset {args.opset}, "
          f"{'int8' if args.int8 else 'float32'}, sha256 {info['sha256'][:12]}...) and {sidecar_path(out)} "
          f"in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return 0
