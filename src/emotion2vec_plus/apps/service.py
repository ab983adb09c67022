"""REST service: ``emotion2vec-plus serve`` — a FastAPI app, thin over :class:`Emotion2VecPlus`.

Endpoints (OpenAPI docs at ``/docs``):

- ``POST /v1/recognize`` — multipart ``file`` (+ form fields ``granularity`` = ``utterance`` |
  ``frame``, ``embedding`` = bool) → the documented ``result.json`` (:meth:`Result.to_dict`);
  ``embedding`` adds the utterance embedding (D numbers). Frame embeddings are never JSON
  numbers (a 60 s clip would be hundreds of MB of text): asking for them here is a 422.
- ``POST /v1/embed`` — multipart ``file`` (+ ``granularity``) → utterance: ``{"model",
  "embedding_dim", "embedding"}``; frame: the (T, D) float32 embeddings as a ``.npy`` file
  (``application/x-npy``, shape in ``X-Embedding-Shape``).
- ``POST /v1/similarity`` — multipart ``a`` and ``b``, each an audio file or a ``.npy``
  embedding (recognised by the ``\\x93NUMPY`` magic, loaded with the pickle-free loader)
  → ``{"similarity", "reading", ...}``.
- ``GET /v1/models`` — the loaded model and the known ones.
- ``GET /healthz`` — ``{"status": "ok", "model": ..., "queue": n, "batches": {...}}`` (n = requests
  waiting; ``batches``: requests served, model calls, the largest batch and the long recordings
  served since start).

Design:

- One model, loaded once. Uploads are decoded in the request handler on a small thread pool;
  decoded audio goes to a bounded queue. One background worker (an asyncio task) takes every
  queued request (at most ``max_batch``), waits up to ``batch_window_ms`` only while other
  requests are still being read or decoded (a lone request runs at once), and runs them as
  one :meth:`Emotion2VecPlus.predict_batch` call on a dedicated model thread; each request
  awaits its own future. A full queue answers **503** with ``Retry-After: 1`` at once.
  Recordings longer than ``long_input_s`` go to a second lane: one per call, only when no short
  request waits, at most ``max_long_requests`` admitted (more: **503**, ``Retry-After: 10``).
- Status codes (every error is JSON ``{"detail": message, "error": type}``, never a traceback):

  ====  =================================================================================
  401   ``/v1/*`` without ``Authorization: Bearer <key>`` when an API key is configured
        (argument ``api_key`` or env ``EMOTION2VEC_API_KEY``); ``/healthz``, ``/docs``,
        ``/openapi.json`` stay open so that probes and documentation work.
  413   upload larger than ``max_upload_mb`` (checked from ``Content-Length`` before reading
        and by counting bytes while reading; the body is never read beyond the limit).
  415   the upload is not audio in any format the decoder knows (``NotAudioError``; the content
        is sniffed — file name extension and content type are ignored).
  422   audio that is recognised but unusable (corrupt, empty, too short, NaN samples), longer
        than ``max_duration_s`` (``AudioTooLongError``), a refused/mis-shaped ``.npy``
        (``EmbeddingFileError``), a bad form field (FastAPI validation), or a response that
        would exceed ``max_response_mb`` (``ResponseTooLarge``; checked before it is built).
  503   the request queue is full (``Retry-After: 1``), or ``max_long_requests`` long recordings
        are already running or waiting (``Retry-After: 10``).
  ====  =================================================================================

  Error messages name the upload by its file name (reduced to a plain base name).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import io
import logging
import os
import re
import tempfile
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..defaults import API_KEY_ENV
from ..models.registry import all_models, bundled_model
from ..analytics import CALIBRATED_DIM, cosine_similarity, describe_similarity
from ..audio import Audio, load_audio
from ..runtime.compute import model_thread, release_freed_memory
from ..embeddings import NPY_MAGIC, load_embedding, utterance_embedding
from ..errors import AudioError, EmbeddingFileError, NotAudioError
from ..inference import Emotion2VecPlus
from .live import LiveLimits, LiveSessions, live_router
from ..errors import ServiceError, QueueFullError  # defined in errors.py; importable from here too

__all__ = ["API_KEY_ENV", "MicroBatcher", "BatchStats", "create_app"]

log = logging.getLogger("emotion2vec_plus.apps.service")

#: Environment variable holding the API key when ``create_app(api_key=None)``.
_READ_CHUNK = 1 << 20
#: How often a gathering batch re-checks whether requests are still on their way.
_ARRIVAL_POLL_S = 0.002
_MB = 1024 * 1024  # limits are in MiB, as most upload limits are
#: Room for multipart boundaries, part headers and small form fields on top of the file bytes.
_MULTIPART_OVERHEAD = 64 * 1024
_FILES_PER_ROUTE = {"/v1/similarity": 2}


#: Media type of the .npy files the service returns.
NPY_MEDIA_TYPE = "application/x-npy"
#: JSON bytes of one entry of "frames" besides its scores (start, end, emotion, confidence).
_JSON_BYTES_PER_FRAME = 96


def _error_response(status: int, detail: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "error": kind}, status_code=status, headers=headers)


def _audio_error_status(exc: AudioError) -> int:
    return 415 if isinstance(exc, NotAudioError) else 422


_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f]")


def sanitise_filename(name: str | None) -> str:
    """The upload's base name without directories or control characters (``upload`` if empty)."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = _UNSAFE_NAME.sub("", base).strip()
    if base in ("", ".", ".."):
        return "upload"
    return base[:200]


def attachment_disposition(filename: str) -> str:
    """A ``Content-Disposition: attachment`` value for any file name (RFC 6266).

    HTTP headers are Latin-1, so the name travels as RFC 5987 ``filename*=UTF-8''...`` (percent-
    encoded UTF-8) with a plain-ASCII ``filename="..."`` fallback for clients that ignore it.
    """
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{urllib.parse.quote(filename, safe='')}"


# --------------------------------------------------------------------------- micro-batching
@dataclass
class BatchStats:
    """Counters of the batch worker (read them in tests or a metrics endpoint)."""

    requests: int = 0
    model_calls: int = 0
    largest_batch: int = 0
    long_requests: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "model_calls": self.model_calls, "largest_batch": self.largest_batch,
                "long_requests": self.long_requests}


@dataclass
class _Job:
    audio: Audio
    granularity: str
    future: asyncio.Future
    segments: bool = True


class MicroBatcher:
    """Runs decoded inputs on the model in two lanes, so a short clip never queues behind long recordings.

    Short inputs (at most ``long_input_s`` seconds) are gathered for up to ``gather_s`` seconds
    (at most ``max_batch``) and run in one call; inputs longer than that (which the model cuts
    into pieces itself, and which take seconds to minutes) run one per call. Whenever the model
    is free, waiting short inputs go first, so a short request waits at most for the one long
    call in progress, not for every long request ahead of it. At most ``max_long`` long inputs
    are admitted at once (running or waiting); another one is a 503 with ``Retry-After``, which
    bounds the memory long inputs and their (frame-level) results hold. After each long call the
    C allocator gives freed memory back to the system
    (:func:`~emotion2vec_plus.runtime.compute.release_freed_memory`).

    ``predict_batch`` runs on the process's model thread (:func:`~emotion2vec_plus.runtime.compute.model_thread`),
    so the model is never used from two threads at once and the event loop stays free. Embeddings are always computed (they are a
    by-product of the forward pass) and dropped afterwards for requests that did not ask.
    """

    def __init__(self, model: Emotion2VecPlus, *, max_batch: int = 16, gather_s: float = 0.01,
                 queue_size: int = 64, long_input_s: float = 30.0, max_long: int = 2) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        if max_long < 1:
            raise ValueError(f"max_long must be at least 1, got {max_long}")
        if not long_input_s > 0:
            raise ValueError(f"long_input_s must be positive, got {long_input_s}")
        self.model = model
        self.max_batch = max_batch
        self.gather_s = max(0.0, gather_s)
        self.queue_size = queue_size
        self.long_input_s = long_input_s
        self.max_long = max_long
        self.stats = BatchStats()
        self._short: asyncio.Queue[_Job] | None = None
        self._long: collections.deque[_Job] = collections.deque()
        self._waiting: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._arriving = 0
        self._last_batch = 0
        self._long_admitted = 0

    # The worker starts lazily in the running loop (so the app also works without lifespan events).
    def _ensure_started(self) -> asyncio.Queue[_Job]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            self._loop = loop
            self._short = asyncio.Queue(self.queue_size)
            self._long = collections.deque()
            self._waiting = asyncio.Event()
            self._task = loop.create_task(self._run(self._short, self._long, self._waiting),
                                          name="emotion2vec-batcher")
        assert self._short is not None
        return self._short

    @property
    def pending(self) -> int:
        """Requests waiting in either lane (not counting the call being computed)."""
        return (self._short.qsize() if self._short is not None else 0) + len(self._long)

    def full(self) -> bool:
        return self._short is not None and self._short.full()

    def check_capacity(self) -> None:
        """Raise :class:`QueueFullError` now, before an upload is decoded for nothing."""
        if self.full():
            raise QueueFullError(self.queue_size)

    def is_long(self, audio: Audio) -> bool:
        """Whether ``audio`` goes to the long lane."""
        return audio.duration_s > self.long_input_s

    async def submit(self, audio: Audio, granularity: str = "utterance", segments: bool = True):
        """Queue one decoded input and wait for its :class:`Result` (embedding included);
        ``segments=False`` when the answer needs no segments (they cost a pass per utterance)."""
        short = self._ensure_started()
        assert self._waiting is not None
        job = _Job(audio, granularity, asyncio.get_running_loop().create_future(), segments)
        if not self.is_long(audio):
            try:
                short.put_nowait(job)
            except asyncio.QueueFull:
                raise QueueFullError(self.queue_size) from None
            self._waiting.set()
            return await job.future
        if self._long_admitted >= self.max_long:
            raise ServiceError(503, f"server busy: {self._long_admitted} recordings longer than "
                                    f"{self.long_input_s:g} s are already running or waiting (the limit); retry "
                                    "later", "LongRequestsBusy", {"Retry-After": "10"})
        self._long_admitted += 1
        try:
            self._long.append(job)
            self._waiting.set()
            return await job.future
        finally:
            self._long_admitted -= 1

    @contextlib.contextmanager
    def arriving(self) -> Iterator[None]:
        """Mark a request as on its way (being read or decoded) so that a batch waits for it."""
        self._arriving += 1
        try:
            yield
        finally:
            self._arriving -= 1

    async def _run(self, short: asyncio.Queue[_Job], long: collections.deque[_Job], waiting: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if short.empty() and not long:
                waiting.clear()
                await waiting.wait()
                continue
            if short.empty():  # the model is free and no short input waits: one long input
                job = long.popleft()
                if not job.future.done():
                    self.stats.long_requests += 1
                    await self._run_group(loop, job.granularity, job.segments, [job])
                    await loop.run_in_executor(model_thread(), release_freed_memory)
                continue
            batch = [short.get_nowait()]
            deadline = loop.time() + self.gather_s
            # Take what is queued; wait (up to the window) only under load — other requests still
            # being read or decoded, or the previous batch held several — so that a lone request
            # runs at once instead of idling for the window.
            busy = self._last_batch > 1
            while len(batch) < self.max_batch:
                try:
                    batch.append(short.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - loop.time()
                if remaining <= 0 or not (busy or self._arriving):
                    break
                try:
                    batch.append(await asyncio.wait_for(short.get(), min(remaining, _ARRIVAL_POLL_S)))
                except asyncio.TimeoutError:
                    continue
            self._last_batch = len(batch)
            jobs = [job for job in batch if not job.future.done()]  # cancelled: client went away
            groups: dict[tuple[str, bool], list[_Job]] = {}
            for job in jobs:
                groups.setdefault((job.granularity, job.segments), []).append(job)
            for (granularity, segments), group in groups.items():
                await self._run_group(loop, granularity, segments, group)

    async def _run_group(self, loop: asyncio.AbstractEventLoop, granularity: str, segments: bool,
                         group: list[_Job]) -> None:
        self.stats.model_calls += 1
        self.stats.requests += len(group)
        self.stats.largest_batch = max(self.stats.largest_batch, len(group))
        try:
            results = await loop.run_in_executor(
                model_thread(), lambda: self.model.predict_batch(
                    [job.audio for job in group], granularity=granularity, extract_embedding=True,
                    batch_size=len(group), errors="collect", segments=segments))  # one forward pass (memory still bounded by max_batch_seconds)
        except asyncio.CancelledError:
            for job in group:
                if not job.future.done():
                    job.future.cancel()
            raise
        except Exception as exc:  # a model failure fails this batch, not the worker
            log.exception("model call failed for a batch of %d", len(group))
            for job in group:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        for job, result in zip(group, results):
            if not job.future.done():
                job.future.set_result(result)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        waiting = list(self._long)
        self._long.clear()
        if self._short is not None:
            while not self._short.empty():
                waiting.append(self._short.get_nowait())
        for job in waiting:
            if not job.future.done():
                job.future.cancel()


# --------------------------------------------------------------------------- ASGI guard
class _BodyTooLarge(Exception):
    pass


class _GuardMiddleware:
    """API key and upload size, enforced before any of the body is read.

    A pure ASGI middleware, because FastAPI parses a multipart body before the endpoint or its
    dependencies run: an unauthenticated or oversized upload must be refused without parsing it.
    """

    def __init__(self, app, *, api_key: str | None, max_upload_mb: float) -> None:
        self.app = app
        self.api_key = api_key.encode() if api_key else None
        self.max_upload_mb = max_upload_mb
        self.max_upload_bytes = int(max_upload_mb * _MB)

    def _authorised(self, scope) -> bool:
        if self.api_key is None:
            return True
        header = b""
        for key, value in scope.get("headers", []):
            if key == b"authorization":
                header = value
                break
        scheme, _, token = header.partition(b" ")
        # compare_digest on both the scheme-correct and -incorrect paths keeps timing uniform.
        return hmac.compare_digest(token.strip(), self.api_key) and scheme.lower() == b"bearer"

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        limit = self.max_upload_bytes * _FILES_PER_ROUTE.get(scope["path"].rstrip("/"), 1) + _MULTIPART_OVERHEAD
        if not self._authorised(scope):
            response = _error_response(401, "missing or invalid API key: send 'Authorization: Bearer <key>'",
                                       "Unauthorized", {"WWW-Authenticate": "Bearer"})
            await _discard_body(receive, limit)
            await response(scope, receive, send)
            return
        message = f"upload too large: the limit is {self.max_upload_mb:g} MB per file"
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    if declared <= _DRAIN_FACTOR * limit:
                        await _discard_body(receive, declared)
                    await _error_response(413, message, "PayloadTooLarge")(scope, receive, send)
                    return
        received = 0
        exceeded = False
        body_complete = False
        started = False

        async def limited_receive():
            nonlocal received, exceeded, body_complete
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                body_complete = not msg.get("more_body", False)
                if received > limit:
                    exceeded = True
                    raise _BodyTooLarge()
            return msg

        async def guarded_send(msg):
            nonlocal started
            if exceeded:
                return  # the 413 below replaces whatever the app tries to answer
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            if not body_complete:
                await _discard_body(receive, (_DRAIN_FACTOR - 1) * limit)
            await _error_response(413, message, "PayloadTooLarge")(scope, receive, send)


#: A refused upload up to this many times the limit is read to its end and dropped before the
#: answer. Closing a connection with unread data makes the kernel reset it, and clients that send
#: the whole body before reading (Python's urllib and requests) then see "connection reset"
#: instead of the 413. Larger bodies are cut off (curl and browsers still read the answer).
_DRAIN_FACTOR = 4
_DRAIN_SECONDS = 30.0


async def _discard_body(receive, budget: int) -> None:
    """Read and drop what is left of the request body: at most ``budget`` bytes, for at most
    :data:`_DRAIN_SECONDS`, never keeping any of it."""

    async def drain() -> None:
        seen = 0
        while seen <= budget:
            msg = await receive()
            if msg["type"] != "http.request":
                return
            seen += len(msg.get("body", b""))
            if not msg.get("more_body", False):
                return

    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(drain(), _DRAIN_SECONDS)


# --------------------------------------------------------------------------- the app
DOCS_ASSETS = "/docs-assets"


def _add_offline_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI 5 from the copy the ``swagger-ui-py`` package ships (Apache 2.0), served
    by this app, so the page works without internet (FastAPI's default fetches it from a CDN)."""
    from importlib import resources

    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    assets = resources.files("swagger_ui") / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(assets)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> Response:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(openapi_url=root + app.openapi_url, title=f"{app.title} - API",
                                   swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon-32x32.png")


@dataclass
class _Service:
    """What every endpoint works with: the model, its batcher, the decoding threads and the limits
    (``app.state.service``; endpoints get it through :func:`_service`)."""

    model: Emotion2VecPlus
    batcher: MicroBatcher
    decoder: ThreadPoolExecutor
    max_upload_mb: float
    max_duration_s: float
    max_response_mb: float

    async def read_upload(self, upload: UploadFile) -> tuple[str, bytes]:
        """The upload's sanitised name and bytes, read in chunks and refused past the limit."""
        name = sanitise_filename(upload.filename)
        chunks, size = [], 0
        while chunk := await upload.read(_READ_CHUNK):
            size += len(chunk)
            if size > self.max_upload_mb * _MB:
                raise ServiceError(413, f"{name}: upload too large: the limit is {self.max_upload_mb:g} MB per file",
                                   "PayloadTooLarge")
            chunks.append(chunk)
        return name, b"".join(chunks)

    async def decode(self, name: str, data: bytes) -> Audio:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.decoder,
                                          lambda: load_audio(data, name=name, max_duration_s=self.max_duration_s))

    def check_response_size(self, name: str, what: str, size: int) -> None:
        if size > self.max_response_mb * _MB:
            raise ServiceError(422, f"{name}: the {what} would be {size / _MB:.1f} MB; the limit is "
                                    f"{self.max_response_mb:g} MB per response (a shorter file, or serve "
                                    "--max-response-mb)", "ResponseTooLarge")

    async def recognise(self, upload: UploadFile, granularity: str, frame_response: tuple[str, int] | None = None,
                        segments: bool = True):
        """Decode and run one upload. ``frame_response`` (what, bytes per frame) refuses a
        frame-level answer that would pass the response limit as soon as the duration is known,
        before any inference. ``segments``: as :meth:`MicroBatcher.submit`."""
        self.batcher.check_capacity()
        with self.batcher.arriving():
            name, data = await self.read_upload(upload)
            started = time.perf_counter()
            audio = await self.decode(name, data)
        if frame_response is not None:
            what, per_frame = frame_response
            self.check_response_size(name, what, (int(audio.duration_s * self.model.frame_rate) + 1) * per_frame)
        result = await self.batcher.submit(audio, granularity, segments)
        result.processing_time_s = time.perf_counter() - started
        return result

    async def load_vector(self, upload: UploadFile) -> tuple[str, np.ndarray | Audio]:
        """An uploaded ``.npy`` embedding (recognised by content) or the decoded audio."""
        name, data = await self.read_upload(upload)
        if data[: len(NPY_MAGIC)] == NPY_MAGIC:
            return name, await asyncio.get_running_loop().run_in_executor(self.decoder, _load_npy_bytes, data, name)
        return name, await self.decode(name, data)


def _service(request: Request) -> _Service:
    return request.app.state.service


def _add_error_handlers(app: FastAPI) -> None:
    """Every error as JSON ``{"detail", "error"}`` with the status of the module docstring's table."""

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError):
        return _error_response(exc.status, exc.detail, exc.kind, exc.headers)

    @app.exception_handler(AudioError)
    async def _audio_error(request: Request, exc: AudioError):
        return _error_response(_audio_error_status(exc), str(exc), type(exc).__name__)

    @app.exception_handler(EmbeddingFileError)
    async def _embedding_error(request: Request, exc: EmbeddingFileError):
        return _error_response(422, str(exc), type(exc).__name__)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return _error_response(exc.status_code, str(exc.detail), "HTTPError", getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
        return _error_response(422, f"invalid request: {problems}", "ValidationError")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s", request.url.path)
        return _error_response(500, "internal server error (see the server log)", "InternalError")


v1 = APIRouter(prefix="/v1", tags=["v1"])


@v1.post("/recognize", summary="Recognise the emotion of one audio file")
async def recognize(
    file: UploadFile = File(..., description="audio: wav, flac, mp3, m4a, ogg, webm, ... (sniffed)"),
    granularity: Literal["utterance", "frame"] = Form("utterance"),
    embedding: bool = Form(False, description="include the utterance embedding (D,) as JSON numbers; "
                                              "frame embeddings come from POST /v1/embed as a .npy file"),
    service: _Service = Depends(_service),
) -> dict[str, Any]:
    if embedding and granularity == "frame":
        raise ServiceError(422, "frame embeddings ((T, D) floats) are not sent as JSON numbers: POST /v1/embed "
                                "with granularity=frame returns them as a .npy file", "ValidationError")
    json_per_frame = _JSON_BYTES_PER_FRAME + 12 * len(service.model.labels)
    result = await service.recognise(file, granularity,
                                     ("frame-by-frame result", json_per_frame) if granularity == "frame" else None)
    if result.frames is not None:
        service.check_response_size(sanitise_filename(file.filename), "frame-by-frame result",
                                    len(result.frames) * json_per_frame)
    if not embedding:
        result.embedding = None
    return result.to_dict(include_embedding=embedding)


@v1.post("/embed", summary="Emotion embedding of one audio file (utterance: JSON; frame: .npy)",
         responses={200: {"content": {"application/json": {}, NPY_MEDIA_TYPE: {}},
                          "description": "utterance: JSON {model, embedding_dim, embedding}; frame: a float32 "
                                         ".npy file of shape (T, D), with X-Embedding-Shape"}})
async def embed(file: UploadFile = File(...), granularity: Literal["utterance", "frame"] = Form("utterance"),
                service: _Service = Depends(_service)) -> Any:
    model = service.model
    result = await service.recognise(file, granularity,
                                     ("frame embedding file", 4 * model.embed_dim) if granularity == "frame" else None,
                                     segments=False)
    if granularity == "utterance":
        return {"model": model.model_name, "embedding_dim": int(result.embedding.shape[-1]),
                "embedding": result.embedding.astype(float).tolist()}
    name = sanitise_filename(file.filename)
    frames = np.ascontiguousarray(result.embedding, dtype=np.float32)
    service.check_response_size(name, "frame embedding file", frames.nbytes + 128)
    buffer = io.BytesIO()
    np.save(buffer, frames, allow_pickle=False)
    stem = Path(name).stem or "audio"
    return Response(buffer.getvalue(), media_type=NPY_MEDIA_TYPE, headers={
        "Content-Disposition": attachment_disposition(f"{stem}.frames.npy"),
        "X-Embedding-Shape": ",".join(str(n) for n in frames.shape), "X-Model": model.model_name})


@v1.post("/similarity", summary="Cosine similarity of two clips or .npy embeddings")
async def similarity(
    a: UploadFile = File(..., description="audio file or .npy embedding"),
    b: UploadFile = File(..., description="audio file or .npy embedding"),
    service: _Service = Depends(_service),
) -> dict[str, Any]:
    # Not analytics.compare_inputs: audio here goes through the micro-batcher with other requests.
    model = service.model
    loaded = [await service.load_vector(a), await service.load_vector(b)]
    audio_items = [i for i, (_, v) in enumerate(loaded) if isinstance(v, Audio)]
    vectors: list[np.ndarray | None] = [v if isinstance(v, np.ndarray) else None for _, v in loaded]
    for i, (name, v) in enumerate(loaded):
        if vectors[i] is not None and audio_items and vectors[i].shape[-1] != model.embed_dim:
            raise ServiceError(422, f"{name}: embedding is {vectors[i].shape[-1]}-d but model "
                                    f"{model.model_name} gives {model.embed_dim}-d embeddings", "EmbeddingFileError")
    if audio_items:
        service.batcher.check_capacity()
        results = await asyncio.gather(*(service.batcher.submit(loaded[i][1], "utterance", segments=False) for i in audio_items))
        for i, result in zip(audio_items, results):
            vectors[i] = result.embedding
    try:
        value = cosine_similarity(vectors[0], vectors[1])
    except ValueError as exc:
        raise ServiceError(422, f"{loaded[0][0]} vs {loaded[1][0]}: {exc}", "EmbeddingFileError") from None
    dim = int(vectors[0].shape[-1])
    return {"similarity": value, "reading": describe_similarity(value),
            "reading_calibrated": dim == CALIBRATED_DIM, "embedding_dim": dim,
            "a": loaded[0][0], "b": loaded[1][0]}


@v1.get("/models", summary="The loaded model and the known ones")
def models(service: _Service = Depends(_service)) -> dict[str, Any]:
    return {"loaded": _loaded_model_info(service.model), "available": _known_models()}


health = APIRouter(tags=["health"])


@health.get("/healthz", summary="Liveness and queue length (no API key needed; HEAD too)")
@health.head("/healthz", include_in_schema=False)
async def healthz(request: Request, service: _Service = Depends(_service)) -> dict[str, Any]:
    return {"status": "ok", "model": service.model.model_name, "queue": service.batcher.pending,
            "batches": service.batcher.stats.to_dict(), "live_sessions": request.app.state.live.active}


def create_app(
    model: Emotion2VecPlus,
    *,
    max_upload_mb: float = 25,
    max_duration_s: float = 600,
    max_response_mb: float = 64,
    max_batch: int = 16,
    batch_window_ms: float = 10,
    queue_size: int = 64,
    api_key: str | None = None,
    decode_threads: int = 2,
    long_input_s: float = 30.0,
    max_long_requests: int = 2,
    live_limits: LiveLimits | None = None,
) -> FastAPI:
    """A FastAPI app serving ``model`` (see the module docstring for endpoints and status codes).

    Inputs longer than ``long_input_s`` run one per model call in their own lane, after any
    waiting short ones, at most ``max_long_requests`` of them admitted at once (:class:`MicroBatcher`).

    ``api_key=None`` reads ``EMOTION2VEC_API_KEY``; an empty key means no authentication.
    The batcher is ``app.state.batcher`` (its ``stats`` count model calls and batch sizes); the
    live sessions of ``/v1/stream`` (:mod:`~emotion2vec_plus.apps.live`) are ``app.state.live``.
    """
    if api_key is None:
        api_key = os.environ.get(API_KEY_ENV) or None
    if max_upload_mb <= 0 or max_response_mb <= 0:
        raise ValueError(f"max_upload_mb and max_response_mb must be positive, got {max_upload_mb}, {max_response_mb}")
    if not max_duration_s > 0:
        raise ValueError(f"max_duration_s must be positive, got {max_duration_s}")
    batcher = MicroBatcher(model, max_batch=max_batch, gather_s=batch_window_ms / 1000, queue_size=queue_size,
                           long_input_s=long_input_s, max_long=max_long_requests)
    decoder = ThreadPoolExecutor(max(1, decode_threads), thread_name_prefix="emotion2vec-decode")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher._ensure_started()
        try:
            yield
        finally:
            await batcher.close()
            decoder.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="emotion2vec-plus",
        version=_version(),
        description="Speech emotion recognition and emotion embeddings. Uploads are decoded by content "
                    "(the extension is ignored). With an API key configured, /v1/* needs "
                    "`Authorization: Bearer <key>`; /healthz and /docs are open.",
        lifespan=lifespan,
        docs_url=None,  # replaced by _add_offline_docs: FastAPI's own page loads Swagger UI from a CDN
        redoc_url=None,
    )
    _add_offline_docs(app)
    app.state.service = _Service(model, batcher, decoder, max_upload_mb, max_duration_s, max_response_mb)
    app.state.batcher = batcher
    app.add_middleware(_GuardMiddleware, api_key=api_key, max_upload_mb=max_upload_mb)
    _add_error_handlers(app)
    # The bearer scheme only documents the key in /docs; _GuardMiddleware checks it.
    bearer = HTTPBearer(auto_error=False, description="Only when the server has an API key.")
    app.include_router(v1, dependencies=[Depends(bearer)] if api_key else [])
    app.include_router(health)
    app.state.live = LiveSessions(model, live_limits or LiveLimits(), api_key)
    app.include_router(live_router(app.state.live))
    return app


def _load_npy_bytes(data: bytes, name: str) -> np.ndarray:
    """Load an uploaded ``.npy`` with :func:`load_embedding` (no pickle); messages name the upload."""
    with tempfile.TemporaryDirectory(prefix="emotion2vec-npy-") as tmp:
        path = Path(tmp) / "upload.npy"
        path.write_bytes(data)
        try:
            array = load_embedding(path, mmap=False)
        except EmbeddingFileError as exc:
            raise EmbeddingFileError(str(exc).replace(str(path), name)) from None
    return utterance_embedding(array)


def _version() -> str:
    from .. import __version__

    return __version__


def _loaded_model_info(model: Emotion2VecPlus) -> dict[str, Any]:
    return {
        "name": model.model_name,
        "embed_dim": model.embed_dim,
        "has_head": bool(getattr(model, "has_head", True)),
        "labels": [label.english for label in model.labels],
        "device": str(getattr(model, "device", "cpu")),
    }


def _known_models() -> list[dict[str, Any]]:
    """Every model by name (:func:`~emotion2vec_plus.models.registry.all_models`); the loaded one is in ``loaded``."""
    try:
        entries = all_models()
    except Exception as exc:  # a broken cache must not break the listing of the loaded model
        log.warning("could not list cached models: %s", exc)
        entries = [bundled_model()]
    return [{**entry.to_dict(), "bundled": entry.repo is None} for entry in entries]
