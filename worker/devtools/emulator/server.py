"""The emulator's HTTP server: Stripe's v1 customer routes and the admin routes."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from worker.devtools.emulator.faults import Faults
from worker.devtools.emulator.form import ApiError, decode_form, new_id, unknown_parameter
from worker.devtools.emulator.ratelimit import endpoint_of
from worker.devtools.emulator.state import EmulatorState, Stored

DEFAULT_PORT = 12111
DEFAULT_API_VERSION = "2020-08-27"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the SDK reuses its connections
    # Headers and body go out in two writes; with Nagle on, keep-alive clients wait ~40 ms
    # for the delayed ACK on every request.
    disable_nagle_algorithm = True
    server: EmulatorServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: requests are counted
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        state = self.server.state
        request_id = new_id("req_")
        headers = {
            "Request-Id": request_id,
            "Stripe-Version": self.headers.get("Stripe-Version") or DEFAULT_API_VERSION,
        }
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        if len(raw) < length:  # the client died mid-request: like Stripe, do nothing
            self.close_connection = True
            return
        url = urlsplit(self.path)
        entered = ""  # the key mode counted in flight
        try:
            if url.path.startswith("/_emulator/"):
                status, body = self._admin(method, url.path, raw)
                return self._send(status, body, headers)
            idem_key = self.headers.get("Idempotency-Key")
            if idem_key:
                headers["Idempotency-Key"] = idem_key
            with state.lock:
                state.stats["requests"] += 1
            mode = state.authenticate(self.headers.get("Authorization"))
            state.enter_call(mode)  # Stripe's concurrency limiter: in flight until answered
            entered = mode
            account = connected_account(self.headers.get("Stripe-Account"))
            if account:
                headers["Stripe-Account"] = account
            fault, delay = state.fault_for_request(mode, endpoint_of(method, url.path), account)
            if fault is not None:
                if delay:
                    self._sleep(delay)
                raise fault
            try:
                params = decode_form(
                    parse_qsl(
                        raw.decode("utf-8") if method != "GET" else url.query,
                        keep_blank_values=True,
                    )
                )
            except UnicodeDecodeError:
                raise ApiError(
                    400, "invalid_request_error", "Request body is not valid UTF-8"
                ) from None
            if not idem_key or method == "GET":
                if delay:
                    self._sleep(delay)
                status, body = self._route(mode, method, url.path, params, account)
                return self._send(status, body, headers)
            fingerprint = json.dumps([method, url.path, params], sort_keys=True)
            slot = (mode if not account else f"{mode}:{account}", url.path.split("/")[1], idem_key)
            stored = state.idempotent_begin(slot, fingerprint)
            if stored is not None:
                headers["Idempotent-Replayed"] = "true"
                headers["Original-Request"] = stored.request_id
                return self._send(stored.status, stored.body, headers)
            record = None
            try:
                if delay:
                    self._sleep(delay)
                try:
                    status, body = self._route(mode, method, url.path, params, account)
                except ApiError as exc:
                    # Stripe saves the result of any request that began executing.
                    status, body = exc.status, {"error": exc.body}
                encoded = json.dumps(body).encode()
                record = Stored(fingerprint, status, encoded, request_id, time.time())
            finally:
                state.idempotent_end(slot, record)
            self._send(status, encoded, headers)
        except ApiError as exc:
            headers.update(exc.headers)
            self._send(exc.status, {"error": exc.body}, headers)
        finally:
            if entered:
                state.leave_call(entered)

    def _sleep(self, delay: float) -> None:
        generation = self.server.state.generation
        time.sleep(delay)
        if self.server.state.generation != generation:
            raise ApiError(500, "api_error", "the emulator was reset during this request")

    def _route(
        self, mode: str, method: str, path: str, params: dict[str, Any], account: str = ""
    ) -> tuple[int, Any]:
        state = self.server.state
        parts = path.rstrip("/").split("/")
        if parts[:3] == ["", "v1", "customers"]:
            if len(parts) == 3:
                if method == "POST":
                    return 200, state.create_customer(mode, params, account)
                if method == "GET":
                    return 200, state.list_customers(mode, params, account)
            elif len(parts) == 4 and parts[3]:
                if method == "GET":
                    _no_params_but_expand(params)
                    return 200, state.get_customer(mode, parts[3], account)
                if method == "POST":
                    return 200, state.update_customer(mode, parts[3], params, account)
                if method == "DELETE":
                    return 200, state.delete_customer(mode, parts[3], account)
        if parts[:3] == ["", "v1", "events"] and method == "GET":
            if len(parts) == 3:
                return 200, state.list_events(mode, params, account)
            if len(parts) == 4 and parts[3]:
                _no_params_but_expand(params)
                return 200, state.get_event(mode, parts[3], account)
        raise ApiError(
            404,
            "invalid_request_error",
            f"Unrecognized request URL ({method}: {path}). Please see "
            "https://stripe.com/docs or we can help at https://support.stripe.com/.",
        )

    def _admin(self, method: str, path: str, raw: bytes) -> tuple[int, Any]:
        state = self.server.state
        try:
            spec = json.loads(raw or b"{}")
        except ValueError:
            raise ApiError(400, "invalid_request_error", "admin routes take JSON") from None
        if not isinstance(spec, dict):
            raise ApiError(400, "invalid_request_error", "admin routes take a JSON object")
        if path == "/_emulator/stats" and method == "GET":
            with state.lock:
                stats = json.loads(json.dumps(state.stats))
                stats["customers"] = {
                    m: sum(1 for c in cs.values() if not c.get("deleted"))
                    for m, cs in state.customers.items()
                }
            return 200, stats
        if path == "/_emulator/faults" and method == "POST":
            try:
                state.set_faults(spec)
            except (TypeError, ValueError) as exc:
                raise ApiError(400, "invalid_request_error", f"bad fault: {exc}") from None
            return 200, {"ok": True}
        if path == "/_emulator/faults" and method == "DELETE":
            with state.lock:
                state.faults = Faults()
            return 200, {"ok": True}
        if path == "/_emulator/keys" and method == "POST":
            state.manage_keys(spec)
            return 200, {"ok": True}
        if path == "/_emulator/events" and method == "POST":
            return 200, self._admin_event(spec)
        if path == "/_emulator/events/delivered" and method == "POST":
            ids = spec.get("ids")
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise ApiError(400, "invalid_request_error", 'send {"ids": [event id, ...]}')
            with state.lock:
                return 200, {"marked": state.events.mark_delivered(set(ids))}
        if path == "/_emulator/reset" and method == "POST":
            with state.lock:
                state.reset()
            return 200, {"ok": True}
        raise ApiError(404, "invalid_request_error", f"no admin route {method} {path}")

    def _admin_event(self, spec: dict[str, Any]) -> dict[str, Any]:
        """An event as Stripe would make it for something the emulator does not model (a
        checkout session, an invoice): {"type", "object", "mode"?, "account"?, "created"?}."""
        state = self.server.state
        event_type, obj = spec.get("type"), spec.get("object")
        mode, account = spec.get("mode", "test"), spec.get("account") or ""
        if (
            not isinstance(event_type, str)
            or not isinstance(obj, dict)
            or mode
            not in (
                "test",
                "live",
            )
        ):
            raise ApiError(400, "invalid_request_error", 'send {"type", "object", "mode"}')
        created = spec.get("created")
        if created is not None and not isinstance(created, int):
            raise ApiError(400, "invalid_request_error", "created is a unix time")
        with state.lock:
            return state.events.record(
                mode, connected_account(account), event_type, obj, created=created
            )

    def _send(self, status: int, body: Any, headers: dict[str, str]) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


def connected_account(header: str | None) -> str:
    """The `Stripe-Account` a request acts as ("" for the platform itself); Stripe takes an
    account id, `acct_...` (docs.stripe.com/connect/authentication)."""
    account = (header or "").strip()
    if account and not (account.startswith("acct_") and account[5:].isalnum()):
        raise ApiError(
            400,
            "invalid_request_error",
            f"The provided Stripe-Account header is not a valid account id: '{account[:40]}'",
        )
    return account


def _no_params_but_expand(params: dict[str, Any]) -> None:
    params.pop("expand", None)
    if params:
        raise unknown_parameter(sorted(params)[0])


class EmulatorServer(ThreadingHTTPServer):
    """The emulator on a real socket, a thread per connection."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(
        self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, state: EmulatorState | None = None
    ):
        self.state = state or EmulatorState()
        super().__init__((host, port), _Handler)
        self._thread: threading.Thread | None = None

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return  # the client gave up (timed out, or was killed): nothing to report
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> EmulatorServer:
        """Serve from a background thread; returns self."""
        self._thread = threading.Thread(
            target=self.serve_forever, name="stripe-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
