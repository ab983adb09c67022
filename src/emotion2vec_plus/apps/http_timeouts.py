"""Timeouts on the REST service's connections, so a client that sends half a request cannot keep
its connection (and the server's memory for it) forever.

uvicorn bounds only the idle time between two requests on a kept-alive connection; a client that
connects and sends nothing, half of the request headers, or a body that stops short, is waited
for without end. :class:`HttpTimeouts` adds a deadline for the request headers, a longest pause
within the body and a deadline for the whole request to arrive; when one passes, the server
answers ``408 Request Timeout`` (if it has not answered yet) and closes the connection. Once a
request has fully arrived nothing here limits how long it runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("emotion2vec_plus.apps.http_timeouts")

_REQUEST_TIMEOUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\ncontent-length: 16\r\n"
                    b"connection: close\r\n\r\nrequest timeout\n")


@dataclass(frozen=True)
class HttpTimeouts:
    """Seconds a client has to send each part of a request (``serve --header-timeout`` ...)."""

    header_s: float = 15.0
    """From the connection (or the first byte of a later request on it) to the end of the headers."""
    body_s: float = 30.0
    """The longest pause between two pieces of a request body."""
    request_s: float = 300.0
    """From the first byte to the end of the body (a body dribbled in just under ``body_s`` per byte)."""
    idle_s: float = 5.0
    """Keep-alive: how long a connection may sit idle between requests (uvicorn's ``timeout_keep_alive``)."""

    def __post_init__(self) -> None:
        for name in ("header_s", "body_s", "request_s", "idle_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with :class:`HttpTimeouts` on receiving each request."""

    timeouts: HttpTimeouts = HttpTimeouts()

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        self._receive_timer = None
        super().connection_made(transport)
        self._request_started = self.loop.time()
        self._arm(self.timeouts.header_s, "headers")

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._disarm()  # the WebSocket protocol takes the connection over
        super().handle_websocket_upgrade(event)

    def _follow_request(self) -> None:
        """Arm the deadline that fits where the current request is: its headers, its body, or none."""
        state = self.conn.their_state
        now = self.loop.time()
        if state is h11.IDLE:
            if self._receive_timer is None:  # the first bytes of a new request on a kept-alive connection
                self._request_started = now
                self._arm(self.timeouts.header_s, "headers")
        elif state is h11.SEND_BODY:
            left = self._request_started + self.timeouts.request_s - now
            self._arm(min(self.timeouts.body_s, left), "body" if self.timeouts.body_s <= left else "request")
        else:  # the whole request is in (or the connection is ending): the app's time is its own
            self._disarm()

    def _arm(self, delay: float, phase: str) -> None:
        self._disarm()
        self._receive_timer = self.loop.call_later(max(delay, 0.0), self._expired, phase)

    def _disarm(self) -> None:
        timer, self._receive_timer = getattr(self, "_receive_timer", None), None
        if timer is not None:
            timer.cancel()

    def _expired(self, phase: str) -> None:
        self._receive_timer = None
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            return
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            return
        if self.flow.read_paused:  # the server is the slow side (the app is not reading yet): wait on
            self._arm(self.timeouts.body_s, phase)
            return
        limit = {"headers": self.timeouts.header_s, "body": self.timeouts.body_s,
                 "request": self.timeouts.request_s}[phase]
        what = {"headers": "request headers not complete", "body": "no request body data",
                "request": "request not complete"}[phase]
        client = "%s:%d" % self.client if self.client else "a client"
        log.info("closing the connection of %s: %s within %g s", client, what, limit)
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):  # nothing of an answer sent yet
            self.transport.write(_REQUEST_TIMEOUT)
        self.transport.close()


def timed_protocol(timeouts: HttpTimeouts) -> type[TimedH11Protocol]:
    """A :class:`TimedH11Protocol` class with these timeouts (uvicorn makes one instance per connection)."""
    return type("TimedH11Protocol", (TimedH11Protocol,), {"timeouts": timeouts})


def uvicorn_config(app: Any, *, host: str, port: int, timeouts: HttpTimeouts | None = None, **options: Any):
    """The ``uvicorn.Config`` ``emotion2vec-plus serve`` runs ``app`` with: h11 with ``timeouts``."""
    import uvicorn

    timeouts = timeouts or HttpTimeouts()
    return uvicorn.Config(app, host=host, port=port, http=timed_protocol(timeouts),
                          timeout_keep_alive=timeouts.idle_s, **options)
