"""The receiver: verifies webhooks, queues their work exactly once, answers fast.

`create_app(settings)` builds it; `stripe-worker web` serves it (webhooks/server.py).
Answers are the README's ("The receiver's answers"): 200 `{"received": true, "id",
"duplicate"}` once the work is safely queued, 4xx `{"error": {"type", "message"}}` for what
a client got wrong, 503 when the work could not be queued (nothing is marked, so the
sender's retry goes through).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

import redis
from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from webhooks.console import register_console
from webhooks.limits import BufferedBody, error_body
from webhooks.metrics import Metrics
from webhooks.readiness import readiness
from webhooks.signup import signup_component
from webhooks.strict_json import may_hold_surrogates, parse, refuse_surrogates
from webhooks.verify import verify_standard_signature, verify_stripe_signature
from worker import tracing
from worker.connections import redis_client
from worker.errors import QueueUnavailable, SecretMissing, StripeWorkerError, WebhookRejected
from worker.logs import info_line_writer
from worker.queue import Enqueuer
from worker.settings import Settings
from worker.vault import SIGNUP_WEBHOOK_SECRET, STRIPE_WEBHOOK_SECRET, Vault, check_livemode
from worker.work import Work

log = logging.getLogger("stripe_worker.web")


def _error(error_type: str, message: str, status: int) -> Response:
    return Response(error_body(error_type, message), status=status, mimetype="application/json")


def _ok(body: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _http_error(exc: HTTPException) -> Response:
    """404, 405, 413 ... in the same JSON shape as every other error."""
    name = (exc.name or "error").lower().replace(" ", "_")
    response = _error(name, exc.description or name, exc.code or 400)
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


def _length(environ: dict[str, Any]) -> int:
    """The body's length (BufferedBody set it); 0 for none, or one the server refused."""
    try:
        return int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


class EnvironHeaders:
    """A request's headers read straight from the WSGI environ, by their HTTP names."""

    def __init__(self, environ: dict[str, Any]) -> None:
        self.environ = environ

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.environ.get("HTTP_" + name.upper().replace("-", "_"), default)


_TRACEPARENT_KEY = "HTTP_" + tracing.TRACEPARENT.upper()  # its WSGI environ key
_STATUS_LINES = {s.value: f"{s.value} {s.phrase}" for s in HTTPStatus}  # made once

# A handler takes the raw body and the headers, and returns (delivery id, queued now).
Handler = Callable[[bytes, EnvironHeaders], tuple[str, bool]]
# A WSGI application, as PEP 3333 has it (the app BufferedBody and this front wrap).
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class WebhookRoutes:
    """WSGI: a POST to a webhook route is answered here, everything else by Flask.

    The webhook routes are the receiver's hot path, and Flask's request and app contexts,
    URL matching and Response objects cost about as much as verifying and queueing the
    event (profiled under gunicorn's gevent worker with wrk: bench/receiver_profile.py). The
    body arrives buffered (BufferedBody is in front), the answer is built as bytes. Other
    methods on these paths (405, OPTIONS) go to Flask, whose routes name them.
    """

    def __init__(
        self, app: WsgiApp, routes: dict[str, tuple[str, Handler]], metrics: Metrics
    ) -> None:
        self.app = app
        self.routes = routes
        self.metrics = metrics
        self._counted: dict[tuple[str, str], Any] = {}  # label children, looked up once
        self._timed = {route: metrics.latency.labels(route) for route, _h in routes.values()}
        self._log_line = info_line_writer(log)  # after the server's configure_logging

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        found = self.routes.get(environ.get("PATH_INFO", ""))
        if found is None or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        route, handle = found
        try:
            status, body = self.answer(route, handle, environ)
        except Exception:  # our bug: the trace goes to the log, not the sender
            log.exception("unexpected error")
            status = 500
            body = error_body("internal_error", "the receiver failed; the sender should retry")
        start_response(
            _STATUS_LINES[status],
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]

    def answer(self, route: str, handle: Handler, environ: dict[str, Any]) -> tuple[int, bytes]:
        """(status, body) of one delivery, in a span of its own when tracing is on."""
        if not tracing.enabled():
            return self._answer(route, handle, environ)[:2]
        # The delivery's trace starts here, or continues a sender's traceparent (a signup
        # source that traces; Stripe sends none). A malformed one starts a new trace.
        with tracing.span(
            f"POST /webhooks/{route}",
            "server",
            parent=environ.get(_TRACEPARENT_KEY),
            attributes={"http.request.method": "POST", "http.route": f"/webhooks/{route}"},
        ) as span:
            status, body, outcome, event_id = self._answer(route, handle, environ)
            tracing.annotate(
                span,
                **{
                    "http.response.status_code": status,
                    "stripe_worker.outcome": outcome,
                    "stripe_worker.source_id": event_id,
                    # The HTTP conventions: a server's 5xx is its error, a 4xx the sender's.
                    "error.type": str(status) if status >= 500 else None,
                },
            )
            return status, body

    def _answer(
        self, route: str, handle: Handler, environ: dict[str, Any]
    ) -> tuple[int, bytes, str, str | None]:
        started = time.perf_counter()
        event_id = None
        id_json = "null"
        status = 200
        try:
            length = _length(environ)
            payload = environ["wsgi.input"].read(length) if length else b""
            event_id, queued = handle(payload, EnvironHeaders(environ))
            outcome = "accepted" if queued else "duplicate"
            id_json = json.dumps(event_id)
            body = b'{"received": true, "id": %s, "duplicate": %s}' % (
                id_json.encode(),
                b"false" if queued else b"true",
            )
        except QueueUnavailable as exc:
            outcome, status, body = "unavailable", 503, error_body(exc.error_type, exc.message)
        except SecretMissing as exc:  # our configuration, not the sender's fault: retry later
            outcome, status = "unavailable", 503
            # The log says which file or variable to set; a stranger learns neither.
            log.warning("%s: %s", environ.get("PATH_INFO", ""), exc.message)
            body = error_body("not_configured", "this route is not configured yet")
        except StripeWorkerError as exc:
            outcome, status = f"rejected_{exc.error_type}", exc.answer_status
            body = error_body(exc.error_type, exc.message)
        elapsed = time.perf_counter() - started
        counter = self._counted.get((route, outcome))
        if counter is None:
            counter = self._counted[route, outcome] = self.metrics.requests.labels(route, outcome)
        counter.inc()
        self._timed[route].observe(elapsed)
        # One JSON line per request, made without json.dumps of a dict (the only field
        # from the sender, the id, is escaped as JSON).
        self._log_line(
            f'{{"at": {time.time():.3f}, "route": "{route}", "outcome": "{outcome}", '
            f'"status": {status}, "id": {id_json}, "ms": {elapsed * 1000:.2f}}}'
        )
        return status, body, outcome, event_id


def create_app(
    settings: Settings | None = None,
    *,
    vault: Vault | None = None,
    client: redis.Redis | None = None,
) -> Flask:
    """The receiver for `settings` (default: from the environment)."""
    settings = settings or Settings.from_env()
    # Here, in each gunicorn worker after its fork and gevent's patching (the app is loaded
    # by the worker: no preload), never in gunicorn's master (worker/tracing.py).
    tracing.setup(settings, "stripe-worker-web")
    vault = vault or Vault.from_settings(settings)
    client = client or redis_client(settings, socket_timeout=2)
    enqueuer = Enqueuer(client, settings)
    metrics = Metrics()

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["stripe_worker"] = {
        "settings": settings,
        "enqueuer": enqueuer,
        "metrics": metrics,
    }

    def stripe_event(payload: bytes, headers: EnvironHeaders) -> tuple[str, bool]:
        secrets = vault.get_list(STRIPE_WEBHOOK_SECRET)
        verify_stripe_signature(
            payload,
            headers.get("Stripe-Signature"),
            secrets,
            tolerance=settings.webhook_tolerance,
        )
        event = parse(payload)
        if (
            not isinstance(event, dict)
            or not isinstance(event.get("id"), str)
            or not 0 < len(event["id"]) <= 255
            or not isinstance(event.get("type"), str)
            or not 0 < len(event["type"]) <= 255  # an entry's event_type is never empty
        ):
            raise WebhookRejected("invalid_payload", "a Stripe event needs an id and a type")
        if may_hold_surrogates(payload):  # republished whole: every field must be UTF-8
            refuse_surrogates(event)
        check_livemode(vault.stripe_key(), event.get("livemode"))
        return event["id"], enqueuer.enqueue_once(Work.for_event(event))

    def signup(payload: bytes, headers: EnvironHeaders) -> tuple[str, bool]:
        secrets = vault.get_list(SIGNUP_WEBHOOK_SECRET)
        msg_id = verify_standard_signature(
            payload, headers, secrets, tolerance=settings.webhook_tolerance
        )
        found = signup_component(parse(payload))
        if found is None:  # verified, but not a signup: nothing to do
            return msg_id, True
        user_id, spec = found
        work = Work.for_component(spec, "signup", msg_id)
        return msg_id, enqueuer.enqueue_once(work, summary=f"{msg_id} user {user_id}")

    routes: dict[str, tuple[str, Handler]] = {
        "/webhooks/stripe": ("stripe", stripe_event),
        "/webhooks/signup": ("signup", signup),
    }
    front = WebhookRoutes(app.wsgi_app, routes, metrics)

    def through_front() -> Response:
        # Reached only when a request gets here without the front (it answers every
        # POST to these paths); Flask names the routes, for its 405 and OPTIONS answers.
        route, handle = routes[request.path]
        status, body = front.answer(route, handle, request.environ)
        return Response(body, status=status, mimetype="application/json")

    for path in routes:
        app.add_url_rule(path, path, through_front, methods=["POST"])

    @app.get("/healthz")
    def healthz() -> Response:
        return _ok({"ok": True})

    @app.get("/readyz")
    def readyz() -> Response:
        ready, reason, missing = readiness(client, settings, vault)
        if not ready:
            return _error("unavailable", reason, 503)
        # Ready with one route's secrets; the route that cannot verify yet is named.
        return _ok({"ready": True, "unconfigured": missing} if missing else {"ready": True})

    @app.get("/metrics")
    def metrics_view() -> Response:
        return Response(metrics.exposition(), mimetype=CONTENT_TYPE_LATEST)

    register_console(app, settings, vault, client)  # only when CONSOLE_TOKEN is set
    app.register_error_handler(HTTPException, _http_error)
    # Bodies are read whole, within MAX_BODY_BYTES and READ_TIMEOUT, before a view runs.
    # Flask's documented way to wrap its app in WSGI middleware; mypy sees a method.
    app.wsgi_app = BufferedBody(  # type: ignore[method-assign]
        front, settings.max_body_bytes, settings.read_timeout
    )

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unexpected error")  # our bug: the trace goes to the log, not the sender
        return _error("internal_error", "the receiver failed; the sender should retry", 500)

    return app
