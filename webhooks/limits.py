"""What a client may send: the whole body is read, within size and time, before Flask runs.

`BufferedBody` wraps the receiver's WSGI app. It refuses a body over MAX_BODY_BYTES with 413
whatever its framing (a Content-Length over the limit before reading a byte, a chunked body
as soon as it passes the limit), and answers 408 to a client that has not sent its whole
body READ_TIMEOUT seconds after its headers, so a client trickling a byte a second
is cut at the deadline under `stripe-worker web` (gevent). The app then reads a buffered
body.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import socket
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication

CHUNK = 64 * 1024
_SOCKET_KEYS = ("gunicorn.socket", "werkzeug.socket")


def error_body(error_type: str, message: str) -> bytes:
    """The receiver's JSON error shape, `{"error": {"type", "message"}}`."""
    return json.dumps({"error": {"type": error_type, "message": message}}).encode()


def _deadline(seconds: float) -> AbstractContextManager[object]:
    """TimeoutError when the block runs past `seconds`: a server's read returns only when
    its chunk is full, so a trickling client is cut by a timer, not between reads. Under
    gevent (`stripe-worker web`) that timer is gevent's; other servers (`dev`'s) go
    without."""
    if _gevent_patched():
        import gevent

        return gevent.Timeout(seconds, TimeoutError(f"no body within {seconds:g}s"))
    return contextlib.nullcontext()


@functools.cache
def _gevent_patched() -> bool:
    """Whether gevent patched the socket module: asked once, at a process's first body (a
    gunicorn gevent worker patches before it loads the app, and never unpatches)."""
    from gevent import monkey

    return bool(monkey.is_module_patched("socket"))


class BufferedBody:
    """WSGI middleware: the body is read whole, within MAX_BODY_BYTES and READ_TIMEOUT."""

    def __init__(self, app: WSGIApplication, max_body_bytes: int, read_timeout: float) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.read_timeout = read_timeout

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        try:
            declared = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0  # the server refuses a malformed length before we run
        if not chunked and declared == 0:
            return self.app(environ, start_response)
        if declared > self.max_body_bytes:
            return self._refuse(environ, start_response, 413)
        try:
            body = self._read(environ, declared if not chunked else None)
        except TimeoutError:
            return self._refuse(environ, start_response, 408)
        if body is None:
            return self._refuse(environ, start_response, 413)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        environ["wsgi.input_terminated"] = True
        return self.app(environ, start_response)

    def _read(self, environ: dict[str, Any], length: int | None) -> bytes | None:
        """The body, None when it passes the limit; TimeoutError past the deadline."""
        stream = environ["wsgi.input"]
        # A declared length is read exactly (a server may hand over the raw socket, where
        # one byte more waits for the next request); a chunked body up to one byte past
        # the limit, to know it is over.
        limit = self.max_body_bytes + 1 if length is None else length
        parts: list[bytes] = []
        size = 0
        with _deadline(self.read_timeout):
            while size < limit:
                try:
                    part = stream.read(min(CHUNK, limit - size))
                except OSError as exc:  # a peer gone mid-body
                    raise TimeoutError(str(exc)) from None
                if not part:
                    break
                parts.append(part)
                size += len(part)
        if length is None and size > self.max_body_bytes:
            return None
        return b"".join(parts)

    def _refuse(
        self, environ: dict[str, Any], start_response: StartResponse, status: int
    ) -> Iterable[bytes]:
        if status == 413:
            error = ("request_entity_too_large", f"the body is over {self.max_body_bytes} bytes")
            line = "413 Request Entity Too Large"
        else:
            error = ("request_timeout", f"the body did not arrive within {self.read_timeout:g}s")
            line = "408 Request Timeout"
        body = error_body(*error)
        # What is left of the body is not read: stop reading the socket, so the server
        # closes the connection after this answer instead of draining the rest.
        sock = next((environ[k] for k in _SOCKET_KEYS if k in environ), None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RD)
        start_response(
            line,
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]
