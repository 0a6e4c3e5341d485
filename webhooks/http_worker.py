"""The gunicorn worker of `stripe-worker web`: gevent, a read timeout, JSON errors.

The receiver faces the internet, so a client that sends its request slowly must not hold
what legitimate senders need. gevent gives every connection a greenlet of its own (a few
KB), so a thousand slow connections wait beside the fast ones instead of in front of them;
and a connection has READ_TIMEOUT seconds to send its request line and headers (gunicorn
applies this worker's `timeout_ctx` to that read, and to the wait for a keep-alive
request), then READ_TIMEOUT seconds more for its body (webhooks/limits.py).

The errors gunicorn itself answers (a malformed request line 400, a line over its limit
414, headers over theirs 431, ...) come out in the receiver's JSON error shape.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol, cast

import gevent
from gunicorn.http import errors as http_errors
from gunicorn.workers.ggevent import GeventWorker

from webhooks.limits import error_body

# gunicorn's own refusals, by its exception class: (status, reason, error type).
_REFUSALS: tuple[tuple[type[Exception], int, str, str], ...] = (
    (http_errors.LimitRequestLine, 414, "URI Too Long", "uri_too_long"),
    (
        http_errors.LimitRequestHeaders,
        431,
        "Request Header Fields Too Large",
        "request_header_fields_too_large",
    ),
    (http_errors.UnsupportedTransferCoding, 501, "Not Implemented", "not_implemented"),
    (http_errors.ExpectationFailed, 417, "Expectation Failed", "expectation_failed"),
    (http_errors.ForbiddenProxyRequest, 403, "Forbidden", "forbidden"),
    (http_errors.ConfigurationProblem, 500, "Internal Server Error", "internal_error"),
    (http_errors.ParseException, 400, "Bad Request", "bad_request"),
)


# gunicorn 27's: types-gunicorn 26.2 predates them (gunicorn/http/errors.py has both).
_RESPONSE_HEADER_ERRORS = (
    http_errors.InvalidResponseHeader,  # type: ignore[attr-defined]
    http_errors.InvalidResponseHeaderName,  # type: ignore[attr-defined]
)


class _ReceiverApp(Protocol):
    read_timeout: float  # webhooks/server.py's Server sets it


def refusal(exc: BaseException) -> tuple[int, str, str, str]:
    """(status, reason, error type, message) of the answer to an error gunicorn caught."""
    for cls, status, reason, error_type in _REFUSALS:
        if isinstance(exc, cls) and not isinstance(exc, _RESPONSE_HEADER_ERRORS):
            return status, reason, error_type, str(exc)[:200] or reason
    return 500, "Internal Server Error", "internal_error", "the receiver failed; retry later"


class ReceiverWorker(GeventWorker):
    """gunicorn's gevent worker with the receiver's read timeout and error shape, that
    stops without waiting on idle keep-alive connections."""

    def init_process(self) -> None:
        # The greenlets of connections waiting for a request's head (the first, or the next
        # on a keep-alive connection): what a graceful stop need not wait for.
        self._waiting: set[gevent.Greenlet[Any, Any]] = set()
        super().init_process()

    # types-gunicorn says None; gunicorn enters it around the read of each request's head
    # (gunicorn/workers/base_async.py), its own GeventWorker.timeout_ctx returns a Timeout.
    @contextmanager
    def timeout_ctx(self) -> Iterator[None]:  # type: ignore[override]
        # gunicorn's graceful stop (SIGTERM) waits up to graceful_timeout for every
        # connection, and an idle keep-alive one would hold it READ_TIMEOUT seconds: so
        # after the stop begins no connection waits for another request, and those waiting
        # are closed (handle_exit). NoMoreData is gunicorn's "the client went away": the
        # connection closes without an answer or an error logged.
        if not self.alive:
            raise http_errors.NoMoreData()
        me = cast("gevent.Greenlet[Any, Any]", gevent.getcurrent())
        self._waiting.add(me)
        try:
            # Silent: at the deadline gunicorn stops reading and closes the connection.
            # (False is gevent's documented "suppress it" value; types-gevent lacks it.)
            read_timeout = cast(_ReceiverApp, self.app).read_timeout
            with gevent.Timeout(read_timeout, False):  # type: ignore[arg-type]
                yield
        finally:
            self._waiting.discard(me)

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        # Out of the signal handler, as GeventWorker.handle_quit does (gunicorn #1126).
        gevent.spawn(self._close_waiting)

    def _close_waiting(self) -> None:
        for greenlet in list(self._waiting):
            greenlet.kill(http_errors.NoMoreData(), block=False)

    def handle_error(self, req: Any, client: socket.socket, addr: Any, exc: BaseException) -> None:
        status, reason, error_type, message = refusal(exc)
        if status >= 500:
            self.log.exception("Error handling request")
        else:
            self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], exc)
        body = error_body(error_type, message)
        head = (
            f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        try:
            client.sendall(head.encode("latin-1") + body)
        except OSError:
            self.log.debug("Failed to send error message.")
