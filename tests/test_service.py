"""REST service (``emotion2vec_plus.apps.service``) with the bundled compact model and real speech."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from conftest import BUNDLED_DIM, speech_clips, speech_of_length  # noqa: E402
from emotion2vec_plus import Emotion2VecPlus  # noqa: E402
from emotion2vec_plus.apps.service import API_KEY_ENV, create_app, sanitise_filename  # noqa: E402


@pytest.fixture(scope="module")
def model() -> Emotion2VecPlus:
    return Emotion2VecPlus()


@pytest.fixture(scope="module")
def clips():
    return speech_clips(8)


@pytest.fixture(scope="module")
def client(model):
    with TestClient(create_app(model, api_key="")) as c:  # "" = no key, whatever the environment says
        yield c


@pytest.fixture(scope="module")
def references(model, clips):
    """``model.predict`` of each clip, computed before any server thread touches the model."""
    return [model.predict(str(path)) for path in clips]


def upload(path, field="file"):
    return {field: (path.name, path.read_bytes(), "application/octet-stream")}


def npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def assert_same_scores(got: dict, expected, atol=1e-4):
    assert got["emotion"] == expected.emotion
    assert got["scores"].keys() == expected.scores.keys()
    for label, value in expected.scores.items():
        assert got["scores"][label] == pytest.approx(value, abs=atol), label


# --------------------------------------------------------------------------- endpoints
def test_recognize_matches_predict(client, clips, references):
    r = client.post("/v1/recognize", files=upload(clips[0]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert_same_scores(body, references[0])
    assert body["confidence"] == pytest.approx(references[0].confidence, abs=1e-4)
    assert body["source"] == clips[0].name
    assert body["status"] == "ok" and body["granularity"] == "utterance"
    assert body["embedding"] is None and body["embedding_shape"] is None and body["frames"] is None
    assert body["duration_s"] == pytest.approx(references[0].duration_s, abs=1e-3)


def test_recognize_frame_granularity(client, model, clips):
    expected = model.predict(str(clips[1]), granularity="frame")
    r = client.post("/v1/recognize", files=upload(clips[1]), data={"granularity": "frame"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["granularity"] == "frame"
    assert len(body["frames"]) == len(expected.frames) > 10
    assert body["frames"][5]["emotion"] == expected.frames[5].emotion
    np.testing.assert_allclose(body["frames"][5]["scores"], expected.frames[5].scores, atol=1e-4)
    assert body["embedding"] is None


def test_recognize_invalid_granularity_is_422(client, clips):
    r = client.post("/v1/recognize", files=upload(clips[0]), data={"granularity": "word"})
    assert r.status_code == 422
    assert "granularity" in r.json()["detail"]


def test_recognize_embedding_flag(client, model, clips):
    expected = model.extract_embedding(str(clips[2]))
    r = client.post("/v1/recognize", files=upload(clips[2]), data={"embedding": "true"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["embedding_shape"] == [model.embed_dim]
    np.testing.assert_allclose(np.array(body["embedding"]), expected, atol=1e-4)
    frame = client.post("/v1/recognize", files=upload(clips[2]), data={"embedding": "true", "granularity": "frame"})
    assert frame.status_code == 422 and "/v1/embed" in frame.json()["detail"]  # never (T, D) JSON numbers


def test_frame_embeddings_come_as_a_npy_file(client, model, clips):
    expected = model.extract_embedding(str(clips[2]), granularity="frame")
    r = client.post("/v1/embed", files=upload(clips[2]), data={"granularity": "frame"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-npy"
    assert r.headers["x-embedding-shape"] == f"{expected.shape[0]},{expected.shape[1]}"
    frames = np.load(io.BytesIO(r.content), allow_pickle=False)
    assert frames.dtype == np.float32 and frames.shape == expected.shape
    np.testing.assert_allclose(frames, expected, atol=1e-4)


def test_frame_embeddings_of_a_non_latin1_file_name_are_served(client, clips):
    """``声音.wav`` used to be a 500 after the model ran: the header was built from the raw name."""
    import urllib.parse

    r = client.post("/v1/embed", files={"file": ("声音.wav", clips[2].read_bytes(), "audio/flac")},
                    data={"granularity": "frame"})
    assert r.status_code == 200, r.text
    assert np.load(io.BytesIO(r.content), allow_pickle=False).ndim == 2
    header = r.headers["content-disposition"]
    header.encode("ascii")  # travels as plain ASCII
    fallback, encoded = header.split('filename="', 1)[1].split("\"; filename*=UTF-8''")
    assert urllib.parse.unquote(encoded) == "声音.frames.npy"  # RFC 5987, what browsers use
    assert fallback == "__.frames.npy"  # for clients that only read filename=


def test_attachment_names_keep_quotes_and_backslashes_out_of_the_fallback():
    from emotion2vec_plus.apps.service import attachment_disposition

    header = attachment_disposition('a "b"\\c\u00e9.npy')
    assert header.startswith('attachment; filename="a _b__c_.npy"; filename*=UTF-8\'\'')
    assert header.endswith("a%20%22b%22%5Cc%C3%A9.npy")


def test_responses_past_the_limit_are_refused_before_they_are_built(model, clips):
    with TestClient(create_app(model, api_key="", max_response_mb=0.01)) as c:
        r = c.post("/v1/embed", files=upload(clips[2]), data={"granularity": "frame"})
        assert r.status_code == 422 and r.json()["error"] == "ResponseTooLarge" and "limit is 0.01 MB" in r.json()["detail"]
        r = c.post("/v1/recognize", files=upload(clips[2]), data={"granularity": "frame"})
        assert r.status_code == 422 and r.json()["error"] == "ResponseTooLarge"
        assert c.post("/v1/recognize", files=upload(clips[2])).status_code == 200  # the utterance result is small


def test_embed(client, model, clips):
    expected = model.extract_embedding(str(clips[3]))
    r = client.post("/v1/embed", files=upload(clips[3]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"model", "embedding_dim", "embedding"}
    assert body["model"] == "compact" and body["embedding_dim"] == model.embed_dim == BUNDLED_DIM
    np.testing.assert_allclose(np.array(body["embedding"]), expected, atol=1e-4)


def test_similarity_audio_and_npy_agree(client, model, clips):
    r = client.post("/v1/similarity", files={**upload(clips[0], "a"), **upload(clips[4], "b")})
    assert r.status_code == 200, r.text
    audio_value = r.json()["similarity"]
    assert -1.0 <= audio_value <= 1.0 and isinstance(r.json()["reading"], str)

    ea, eb = model.extract_embedding(str(clips[0])), model.extract_embedding(str(clips[4]))
    # Named .bin on purpose: .npy uploads are recognised by the magic number, not the extension.
    r = client.post("/v1/similarity", files={"a": ("a.bin", npy_bytes(ea)), "b": ("b.bin", npy_bytes(eb))})
    assert r.status_code == 200, r.text
    assert r.json()["similarity"] == pytest.approx(audio_value, abs=1e-5)
    assert r.json()["reading"] == describe(audio_value)

    mixed = client.post("/v1/similarity", files={"a": ("a.npy", npy_bytes(ea)), **upload(clips[4], "b")})
    assert mixed.status_code == 200, mixed.text
    assert mixed.json()["similarity"] == pytest.approx(audio_value, abs=1e-5)


def describe(value):
    from emotion2vec_plus.analytics import describe_similarity

    return describe_similarity(value)


_UNPICKLED = []


def _mark_unpickled():
    _UNPICKLED.append(True)
    return 0


class _Payload:
    def __reduce__(self):
        return (_mark_unpickled, ())


def test_similarity_refuses_pickle_npy(client, model):
    buffer = io.BytesIO()
    np.save(buffer, np.array([_Payload()], dtype=object), allow_pickle=True)
    payload = buffer.getvalue()
    assert payload.startswith(b"\x93NUMPY")
    good = npy_bytes(np.ones(model.embed_dim, dtype=np.float32))
    r = client.post("/v1/similarity", files={"a": ("evil.npy", payload), "b": ("good.npy", good)})
    assert r.status_code == 422, r.text
    assert "evil.npy" in r.json()["detail"] and "pickle" in r.json()["detail"]
    assert "/tmp" not in r.json()["detail"]  # the server's temporary path is not leaked
    assert _UNPICKLED == []


def test_similarity_dimension_mismatch_is_422(client, clips):
    r = client.post("/v1/similarity", files={"a": ("small.npy", npy_bytes(np.ones(16, np.float32))),
                                             **upload(clips[0], "b")})
    assert r.status_code == 422
    assert "small.npy" in r.json()["detail"]


def test_models_and_healthz(client):
    r = client.get("/v1/models")
    assert r.status_code == 200
    body = r.json()
    assert body["loaded"]["name"] == "compact" and body["loaded"]["embed_dim"] == BUNDLED_DIM
    assert "happy" in body["loaded"]["labels"]
    names = [m["name"] for m in body["available"]]
    assert names[0] == "compact" and "large" in names
    health = client.get("/healthz")
    assert health.status_code == 200
    body = health.json()
    assert {key: body[key] for key in ("status", "model", "queue")} == {"status": "ok", "model": "compact", "queue": 0}
    assert set(body["batches"]) == {"requests", "model_calls", "largest_batch", "long_requests"}
    assert client.get("/docs").status_code == 200
    assert "/v1/recognize" in client.get("/openapi.json").json()["paths"]


# --------------------------------------------------------------------------- limits and bad input
def wav_bytes(samples) -> bytes:
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, samples, 16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def test_upload_too_large_is_413(model):
    data = wav_bytes(speech_of_length(4.0))  # 128 kB of real speech
    limit_mb = 0.05
    assert len(data) > 2 * limit_mb * 1024 * 1024
    with TestClient(create_app(model, max_upload_mb=limit_mb, api_key="")) as c:
        r = c.post("/v1/recognize", files={"file": ("big.wav", data)})  # Content-Length known: refused unread
        assert r.status_code == 413
        assert "0.05 MB" in r.json()["detail"]

        boundary = "xyzzy"
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.flac\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode()

        def chunked():  # no Content-Length: the server counts bytes as they arrive
            yield head
            for start in range(0, len(data), 8192):
                yield data[start:start + 8192]
            yield f"\r\n--{boundary}--\r\n".encode()

        r = c.post("/v1/recognize", content=chunked(),
                   headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert r.status_code == 413
        assert r.json()["detail"].startswith("upload too large")  # from the byte counter, not the handler

        # Each similarity file has the limit on its own (the request may hold two).
        small = npy_bytes(np.ones(16, np.float32))
        r = c.post("/v1/similarity", files={"a": ("a.npy", small), "b": ("b.flac", data[: int(0.07 * 1024 * 1024)])})
        assert r.status_code == 413
        assert r.json()["detail"].startswith("b.flac")


@pytest.fixture()
def live_server(model):
    """A real uvicorn server on a loopback port (refusals must reach clients over real sockets)."""
    import socket

    import uvicorn

    servers = []

    from emotion2vec_plus.apps.http_timeouts import uvicorn_config

    def start(timeouts=None, **options) -> str:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        # The configuration `serve` runs (its h11 protocol with the connection timeouts).
        server = uvicorn.Server(uvicorn_config(create_app(model, **options), host="127.0.0.1", port=port,
                                               timeouts=timeouts, log_level="warning"))
        threading.Thread(target=server.run, daemon=True).start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        servers.append(server)
        return f"http://127.0.0.1:{port}"

    yield start
    for server in servers:
        server.should_exit = True


def _urllib_post(url: str, body: bytes, headers: dict) -> tuple[int, dict]:
    """POST the way Python clients do (urllib, requests): the whole body first, then read."""
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_refusals_reach_clients_that_send_the_whole_body_first(live_server):
    boundary = "xyzzy"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + bytes(6 * 1024 * 1024) + \
        f"\r\n--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    url = live_server(max_upload_mb=2, api_key="") + "/v1/recognize"
    for _ in range(5):  # a reset connection (the failure) shows up in most attempts, not in every one
        status, payload = _urllib_post(url, body, headers)
        assert status == 413 and payload["error"] == "PayloadTooLarge"
    url = live_server(max_upload_mb=8, api_key="secret") + "/v1/recognize"
    for _ in range(5):
        status, payload = _urllib_post(url, body, headers)
        assert status == 401 and payload["error"] == "Unauthorized"


def _closed_by_server(sock, patience_s: float) -> bytes:
    """Everything the server sends until it closes the connection (fails if it is still open after
    ``patience_s``: the timeouts under test are a fraction of that)."""
    import socket

    sock.settimeout(patience_s)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except socket.timeout:
        pytest.fail(f"the server kept a half-sent request's connection open for {patience_s} s; got {received!r}")
    return received


def test_a_client_that_sends_half_a_request_is_disconnected(live_server, clips):
    """uvicorn alone waits for the rest of a request forever; the timeouts close such connections."""
    import socket
    import urllib.parse

    from emotion2vec_plus.apps.http_timeouts import HttpTimeouts

    timeouts = HttpTimeouts(header_s=1.0, body_s=1.0, request_s=3.0, idle_s=1.0)
    address = urllib.parse.urlsplit(live_server(timeouts=timeouts, api_key=""))
    target = (address.hostname, address.port)
    patience = 20.0
    boundary = "b0undary"
    audio = clips[0].read_bytes()
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.flac\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + audio + f"\r\n--{boundary}--\r\n".encode()
    headers = (f"POST /v1/recognize HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={boundary}"
               f"\r\nContent-Length: {len(body)}\r\n\r\n").encode()

    with socket.create_connection(target) as sock:  # connects, sends nothing
        assert _closed_by_server(sock, patience).startswith(b"HTTP/1.1 408")
    with socket.create_connection(target) as sock:  # half of the headers
        sock.sendall(headers[:30])
        assert _closed_by_server(sock, patience).startswith(b"HTTP/1.1 408")
    with socket.create_connection(target) as sock:  # all headers, half the body
        sock.sendall(headers + body[: len(body) // 2])
        assert _closed_by_server(sock, patience).startswith(b"HTTP/1.1 408")
    with socket.create_connection(target) as sock:  # a body dribbled in under body_s per piece
        sock.sendall(headers)
        sock.settimeout(patience)
        with pytest.raises(OSError):  # reset or broken pipe once request_s has passed
            for start in range(0, len(body), 100):
                sock.sendall(body[start:start + 100])
                time.sleep(0.5)
            pytest.fail("the server took a dribbled body for longer than request_s")
    with socket.create_connection(target) as sock:  # one whole request, then half of the next one
        sock.sendall(headers + body)
        sock.settimeout(patience)
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200"), first[:200]
        sock.sendall(headers[:30])
        assert b"HTTP/1.1 408" in _closed_by_server(sock, patience)

    # A whole request sent in pieces with short pauses is served.
    with socket.create_connection(target) as sock:
        for piece in (headers[:20], headers[20:], body[:1000], body[1000:]):
            sock.sendall(piece)
            time.sleep(0.2)
        sock.settimeout(patience)
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def test_docs_page_is_served_without_internet(client):
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.text
    assert "cdn" not in html.lower() and "http://" not in html and "https://" not in html  # every asset is local
    for asset in ("/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css"):
        assert asset in html
        served = client.get(asset)
        assert served.status_code == 200 and len(served.content) > 100_000
    assert client.get("/openapi.json").json()["paths"]["/v1/recognize"]


def test_too_long_audio_is_422(model, clips):
    with TestClient(create_app(model, max_duration_s=1.0, api_key="")) as c:
        r = c.post("/v1/recognize", files=upload(clips[0]))
        assert r.status_code == 422
        body = r.json()
        assert body["error"] == "AudioTooLongError"
        assert clips[0].name in body["detail"]


def test_non_audio_is_415_naming_the_upload(client):
    r = client.post("/v1/recognize", files={"file": ("notes.wav", b"just some text, not audio\n" * 40, "audio/wav")})
    assert r.status_code == 415
    assert r.json()["error"] == "NotAudioError"
    assert r.json()["detail"].startswith("notes.wav")
    r = client.post("/v1/embed", files={"file": ("../../etc/passwd.mp3", b"\x89PNG\r\n\x1a\n" + bytes(500))})
    assert r.status_code == 415
    assert r.json()["detail"].startswith("passwd.mp3:")


@pytest.mark.parametrize("payload", [b"", b"RIFF\x24\x00\x00\x00WAVEfmt ", b"fLaC" + bytes(10)])
def test_bad_audio_is_4xx_json(client, payload):
    r = client.post("/v1/recognize", files={"file": ("bad.wav", payload)})
    assert 400 <= r.status_code < 500, r.text
    assert "bad.wav" in r.json()["detail"]


def test_sanitise_filename():
    assert sanitise_filename("../../a/b\\c.wav") == "c.wav"
    assert sanitise_filename("ev\x00il\n.wav") == "evil.wav"
    assert sanitise_filename(None) == sanitise_filename("..") == "upload"


# --------------------------------------------------------------------------- API key
def test_api_key(model, clips, monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, "s3cret-key")
    with TestClient(create_app(model)) as c:  # api_key=None: taken from the environment
        r = c.get("/v1/models")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert c.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/v1/models", headers={"Authorization": "Basic s3cret-key"}).status_code == 401
        # Refused before the body is read or decoded.
        assert c.post("/v1/recognize", files=upload(clips[0])).status_code == 401
        ok = c.post("/v1/recognize", files=upload(clips[0]), headers={"Authorization": "Bearer s3cret-key"})
        assert ok.status_code == 200 and ok.json()["status"] == "ok"
        assert c.get("/healthz").status_code == 200
        assert c.get("/docs").status_code == 200
    with TestClient(create_app(model, api_key="arg-key")) as c:  # the argument wins
        assert c.get("/v1/models", headers={"Authorization": "Bearer s3cret-key"}).status_code == 401
        assert c.get("/v1/models", headers={"Authorization": "Bearer arg-key"}).status_code == 200


# --------------------------------------------------------------------------- micro-batching
def _post_concurrently(c, files_list, **kwargs):
    responses = [None] * len(files_list)

    def post(i):
        responses[i] = c.post("/v1/recognize", files=files_list[i], **kwargs)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(files_list))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return responses


def test_micro_batching_batches_concurrent_requests(model, clips, references):
    app = create_app(model, batch_window_ms=50, max_batch=16, api_key="")
    with TestClient(app) as c:
        responses = _post_concurrently(c, [upload(path) for path in clips])
    stats = app.state.batcher.stats
    assert stats.requests == len(clips) == 8
    assert stats.model_calls < len(clips), stats
    assert stats.largest_batch >= 2, stats
    for response, path, expected in zip(responses, clips, references):
        assert response.status_code == 200, response.text
        assert response.json()["source"] == path.name
        assert_same_scores(response.json(), expected)


class GatedModel:
    """The real model whose ``predict_batch`` waits for ``release`` (to fill the queue)."""

    def __init__(self, model):
        self._model = model
        self.entered = threading.Event()
        self.release = threading.Event()

    def predict_batch(self, *args, **kwargs):
        self.entered.set()
        assert self.release.wait(30)
        return self._model.predict_batch(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._model, name)


def test_queue_full_is_503_with_retry_after(model, clips, references):
    gated = GatedModel(model)
    app = create_app(gated, queue_size=1, batch_window_ms=0, max_batch=1, api_key="")
    with TestClient(app) as c:
        results = {}

        def post(key, path):
            results[key] = c.post("/v1/recognize", files=upload(path))

        first = threading.Thread(target=post, args=("first", clips[0]))
        first.start()
        assert gated.entered.wait(10)  # the model thread holds the first request
        second = threading.Thread(target=post, args=("second", clips[1]))
        second.start()
        deadline = time.monotonic() + 10
        while c.get("/healthz").json()["queue"] < 1:  # the second waits in the (full) queue
            assert time.monotonic() < deadline
            time.sleep(0.01)
        try:
            busy = c.post("/v1/recognize", files=upload(clips[2]))
            assert busy.status_code == 503
            assert busy.headers["retry-after"] == "1"
            assert "queue is full" in busy.json()["detail"]
            busy_sim = c.post("/v1/similarity", files={**upload(clips[2], "a"), **upload(clips[3], "b")})
            assert busy_sim.status_code == 503
        finally:
            gated.release.set()
            first.join(30)
            second.join(30)
    assert results["first"].status_code == 200 and results["second"].status_code == 200
    assert_same_scores(results["first"].json(), references[0])
    assert_same_scores(results["second"].json(), references[1])
    assert app.state.batcher.stats.model_calls == 2


class RecordingModel:
    """The real model; records the input durations of every call and holds the first call until
    ``release`` is set (so that requests pile up behind it)."""

    def __init__(self, model):
        self._model = model
        self.calls: list[list[int]] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def predict_batch(self, inputs, *args, **kwargs):
        self.calls.append([round(audio.duration_s) for audio in inputs])
        if len(self.calls) == 1:
            self.entered.set()
            assert self.release.wait(60)
        return self._model.predict_batch(inputs, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._model, name)


def test_a_short_request_runs_before_long_ones_that_wait(model, clips):
    """Head-of-line blocking: a 3 s clip used to wait for every long recording ahead of it (79 s
    behind four 599 s requests). Now it runs as soon as the one long call in progress ends, long
    recordings run one per call, and only ``max_long_requests`` are admitted at once."""
    recorder = RecordingModel(model)
    app = create_app(recorder, batch_window_ms=0, long_input_s=20, max_long_requests=3, api_key="")
    long_upload = {"file": ("long.wav", wav_bytes(speech_of_length(40.0)), "audio/wav")}
    short_clip = clips[0]
    expected_short = model.predict(str(short_clip))
    results: dict[str, object] = {}
    with TestClient(app) as c:
        def post(key, files):
            results[key] = c.post("/v1/recognize", files=files)

        def wait_for_queue(n):
            deadline = time.monotonic() + 30
            while c.get("/healthz").json()["queue"] < n:
                assert time.monotonic() < deadline, f"queue never reached {n}"
                time.sleep(0.01)

        threads = [threading.Thread(target=post, args=("long1", long_upload))]
        threads[0].start()
        assert recorder.entered.wait(30)  # the first long recording holds the model
        for key in ("long2", "long3"):
            threads.append(threading.Thread(target=post, args=(key, long_upload)))
            threads[-1].start()
        wait_for_queue(2)
        try:
            refused = c.post("/v1/recognize", files=long_upload)  # a fourth long one: over the limit
            assert refused.status_code == 503 and refused.json()["error"] == "LongRequestsBusy"
            assert refused.headers["retry-after"] == "10"
            threads.append(threading.Thread(target=post, args=("short", upload(short_clip))))
            threads[-1].start()
            wait_for_queue(3)
        finally:
            recorder.release.set()
            for thread in threads:
                thread.join(60)
    assert {key: response.status_code for key, response in results.items()} == {
        "long1": 200, "long2": 200, "long3": 200, "short": 200}
    short_seconds = round(expected_short.duration_s)
    assert recorder.calls == [[40], [short_seconds], [40], [40]]  # the short clip jumped the long queue
    assert_same_scores(results["short"].json(), expected_short)
    assert app.state.batcher.stats.long_requests == 3


def test_long_audio_through_service(model):
    """A clip longer than one 30 s window gets its speech segments, as with ``model.predict``."""
    data = wav_bytes(speech_of_length(32.0))
    with TestClient(create_app(model, api_key="")) as c:
        r = c.post("/v1/recognize", files={"file": ("long.wav", data)})
    assert r.status_code == 200, r.text
    expected = model.predict(data)
    assert len(r.json()["segments"]) == len(expected.segments) >= 1
    assert_same_scores(r.json(), expected)


def test_serve_parser_defaults_and_options():
    from emotion2vec_plus.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["serve"])
    assert (args.host, args.port, args.model, args.max_upload_mb, args.max_duration) == ("127.0.0.1", 8000, None, 25, 600)
    assert (args.batch_window_ms, args.max_batch, args.queue_size) == (10, 16, 64)
    assert (args.header_timeout, args.body_timeout, args.request_timeout, args.keep_alive_timeout) == (15, 30, 300, 5)
    assert (args.long_input_s, args.max_long_requests) == (30, 2)
    args = parser.parse_args(["serve", "--host", "0.0.0.0", "--port", "9000", "--model", "compact",
                              "--max-upload-mb", "5", "--max-duration", "60", "--batch-window-ms", "20",
                              "--max-batch", "4"])
    assert (args.host, args.port, args.max_upload_mb, args.max_duration, args.batch_window_ms, args.max_batch) == (
        "0.0.0.0", 9000, 5.0, 60.0, 20.0, 4)


def test_a_custom_head_serves_its_own_classes(model, clips, tmp_path):
    from emotion2vec_plus.heads import train_head

    embeddings = np.stack([r.embedding for r in model.predict_batch(clips, extract_embedding=True)])
    names = ["calm" if i % 2 else "tense" for i in range(len(clips))]
    path = train_head(embeddings, names, embedding_model=model.model_name).save(tmp_path / "tension.safetensors")
    with TestClient(create_app(Emotion2VecPlus(head=path))) as custom:
        response = custom.post("/v1/recognize", files=upload(clips[0]))
    assert response.status_code == 200
    body = response.json()
    assert set(body["scores"]) == {"calm", "tense"} and body["emotion"] in ("calm", "tense")


def test_healthz_answers_head_for_probes(client):
    response = client.head("/healthz")
    assert response.status_code == 200 and response.content == b""
    assert client.get("/healthz").json()["status"] == "ok"
