"""``emotion2vec-plus webui``: the Gradio page (recognise, batch, compare, explore, live, history)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from ..defaults import LIVE_MAX_MINUTES, LIVE_SESSIONS, SERVER_MAX_DURATION_S, WEBUI_MAX_UPLOAD_MB, WEBUI_PORT
from ..apps.webui.text import LANGUAGES
from .options import add_model_options, model_kwargs


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "webui", help=f"start the WebUI (Gradio page, http://127.0.0.1:{WEBUI_PORT})",
        description="Start the WebUI: recognise, batch, compare, explore, live and history tabs on one page. "
                    "Listens on loopback by default; there is no public share link.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=WEBUI_PORT, help=f"port (default {WEBUI_PORT})")
    add_model_options(parser)
    parser.add_argument("--outputs", default="outputs", metavar="DIR",
                        help="where runs are saved and read back for History (default outputs)")
    parser.add_argument("--max-upload-mb", type=float, default=WEBUI_MAX_UPLOAD_MB,
                        help=f"largest upload per file in MB (default {WEBUI_MAX_UPLOAD_MB:g})")
    parser.add_argument("--max-duration", type=float, default=SERVER_MAX_DURATION_S,
                        help=f"refuse audio longer than this many seconds (default {SERVER_MAX_DURATION_S:g})")
    parser.add_argument("--live-sessions", type=int, default=LIVE_SESSIONS,
                        help=f"most browser sessions using the Live tab at once; more wait (default {LIVE_SESSIONS})")
    parser.add_argument("--live-max-minutes", type=float, default=LIVE_MAX_MINUTES,
                        help=f"most audio in one live session, in minutes (default {LIVE_MAX_MINUTES:g})")
    parser.add_argument("--lang", choices=list(LANGUAGES), default=None,
                        help="interface language (default: the browser's, else Chinese; ?lang=en in the address)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Load the model once (printing progress), print the address and serve the page until interrupted."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from ..apps.webui import EmotionWebUI, ModelProvider, WebUISettings, build_app, launch_kwargs

    if args.max_upload_mb <= 0 or args.max_duration <= 0 or args.live_max_minutes <= 0 or args.live_sessions < 1:
        raise ValueError("--max-upload-mb, --max-duration, --live-max-minutes and --live-sessions must be positive")
    settings = WebUISettings(outputs_root=Path(args.outputs), max_upload_mb=args.max_upload_mb,
                             max_duration_s=args.max_duration, language=args.lang,
                             live_max_s=60 * args.live_max_minutes, live_sessions=args.live_sessions)
    options = model_kwargs(args)
    provider = ModelProvider(options.pop("model_name"), **options)
    print(f"loading model {provider.default_name} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    loaded = provider.load_default()
    print(f"{loaded.describe()}; loaded in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    ui = EmotionWebUI(provider, settings)
    demo = build_app(ui)
    demo.queue(default_concurrency_limit=1)
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{args.port}"
    print(f"WebUI: {url}  (outputs in {ui.outputs_root}; Ctrl+C to stop)", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}: anyone who can reach it can use the page and read its outputs",
              file=sys.stderr, flush=True)
    demo.launch(server_name=args.host, server_port=args.port, quiet=True, **launch_kwargs(ui))
    return 0
