"""``emotion2vec-plus serve``: the REST API (FastAPI + uvicorn) around one loaded model."""

from __future__ import annotations

import argparse
import os
import sys
import time

from ..defaults import API_KEY_ENV, LIVE_MAX_MINUTES, LIVE_SESSIONS, SERVE_MAX_UPLOAD_MB, SERVE_PORT, SERVER_MAX_DURATION_S
from .options import add_length_options, add_model_options, model_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "serve", help="run the REST API (FastAPI; docs at /docs)",
        description="Serve the model over HTTP: POST /v1/recognize, /v1/embed, /v1/similarity; "
                    "GET /v1/models, /healthz; live emotion over the /v1/stream WebSocket (docs/streaming.md). Set {API_KEY_ENV} to require 'Authorization: Bearer <key>' "
                    "on /v1/*.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=SERVE_PORT, help=f"port (default {SERVE_PORT})")
    parser.add_argument("--head", default=None,
                        help="a custom head file made by train-head (replaces the model's classes)")
    add_model_options(parser)
    add_length_options(parser, SERVER_MAX_DURATION_S)
    parser.add_argument("--max-upload-mb", type=float, default=SERVE_MAX_UPLOAD_MB,
                        help=f"largest upload per file in MB (default {SERVE_MAX_UPLOAD_MB:g})")
    parser.add_argument("--max-response-mb", type=float, default=64,
                        help="largest response body in MB: frame-by-frame JSON or a frame embedding .npy (default 64)")
    parser.add_argument("--batch-window-ms", type=float, default=10,
                        help="longest wait for requests still being received before a model call (default 10 ms)")
    parser.add_argument("--max-batch", type=int, default=16, help="most requests per model call (default 16)")
    parser.add_argument("--queue-size", type=int, default=64,
                        help="requests allowed to wait; beyond that 503 (default 64)")
    parser.add_argument("--live-sessions", type=int, default=LIVE_SESSIONS,
                        help=f"most concurrent live sessions on /v1/stream (WebSocket); more are refused (default {LIVE_SESSIONS})")
    parser.add_argument("--live-max-load", type=float, default=0.9, metavar="SHARE",
                        help="refuse a new live session while the running ones would keep the model busy more than "
                             "this share of the time if all spoke at once, as measured (default 0.9)")
    parser.add_argument("--live-max-minutes", type=float, default=LIVE_MAX_MINUTES,
                        help=f"most audio in one live session, in minutes (default {LIVE_MAX_MINUTES:g})")
    parser.add_argument("--live-idle-timeout", type=float, default=30,
                        help="a live session with no message for this many seconds is closed (default 30)")
    parser.add_argument("--long-input-s", type=float, default=30.0, metavar="SECONDS",
                        help="recordings longer than this run one per model call, after waiting short ones "
                             "(default 30)")
    parser.add_argument("--max-long-requests", type=int, default=2,
                        help="long recordings running or waiting at once; beyond that 503 (default 2)")
    parser.add_argument("--header-timeout", type=float, default=15.0, metavar="SECONDS",
                        help="a request's headers must arrive within this (default 15); then 408 and the "
                             "connection is closed")
    parser.add_argument("--body-timeout", type=float, default=30.0, metavar="SECONDS",
                        help="longest pause within a request body (default 30)")
    parser.add_argument("--request-timeout", type=float, default=300.0, metavar="SECONDS",
                        help="a whole request (headers and body) must arrive within this (default 300)")
    parser.add_argument("--keep-alive-timeout", type=float, default=5.0, metavar="SECONDS",
                        help="how long an idle connection is kept open between requests (default 5)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Load the model once, print the address, and run uvicorn until interrupted."""
    import uvicorn

    from ..apps.http_timeouts import HttpTimeouts, uvicorn_config
    from ..apps.live import LiveLimits
    from ..apps.service import create_app
    from ..runtime.compute import on_model_thread

    timeouts = HttpTimeouts(header_s=args.header_timeout, body_s=args.body_timeout, request_s=args.request_timeout,
                            idle_s=args.keep_alive_timeout)  # checked before the model loads
    started = time.perf_counter()
    # Loaded on the thread that will run it: one OpenMP team in the process (see compute.model_thread).
    model = on_model_thread(model_from_args, args)
    app = create_app(model, max_upload_mb=args.max_upload_mb, max_duration_s=args.max_duration,
                     max_response_mb=args.max_response_mb, max_batch=args.max_batch,
                     batch_window_ms=args.batch_window_ms, queue_size=args.queue_size,
                     long_input_s=args.long_input_s, max_long_requests=args.max_long_requests,
                     live_limits=LiveLimits(max_sessions=args.live_sessions, max_load=args.live_max_load,
                                            max_session_s=60 * args.live_max_minutes,
                                            idle_timeout_s=args.live_idle_timeout))
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"{model.describe()}; loaded in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    print(f"serving on http://{host}:{args.port}  (API docs: http://{host}:{args.port}/docs)", file=sys.stderr)
    if not os.environ.get(API_KEY_ENV) and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host} without an API key; set {API_KEY_ENV} to require one",
              file=sys.stderr)
    sys.stderr.flush()
    uvicorn.Server(uvicorn_config(app, host=args.host, port=args.port, timeouts=timeouts,
                                  log_level=args.log_level)).run()
    return 0
