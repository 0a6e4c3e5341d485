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
from collections.abc import Callable
from typing import Any

import redis
from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from webhooks.console import register_console
from webhooks.limits import BufferedBody
from webhooks.metrics import Metrics
from webhooks.readiness import readiness
from webhooks.signup import signup_component
from webhooks.strict_json import parse, refuse_surrogates
from webhooks.verify import verify_standard_signature, verify_stripe_signature
from worker import tracing
from worker.connections import redis_client
from worker.errors import QueueUnavailable, SecretMissing, StripeWorkerError, WebhookRejected
from worker.queue import Enqueuer
from worker.settings import Settings
from worker.vault import SIGNUP_WEBHOOK_SECRET, STRIPE_WEBHOOK_SECRET, Vault, check_livemode
from worker.work import Work

log = logging.getLogger("stripe_worker.web")


def _error(error_type: str, message: str, status: int) -> Response:
    body = json.dumps({"error": {"type": error_type, "message": message}})
    return Response(body, status=status, mimetype="application/json")


def _ok(body: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _http_error(exc: HTTPException) -> Response:
    """404, 405, 413 ... in the same JSON shape as every other error."""
    name = (exc.name or "error").lower().replace(" ", "_")
    response = _error(name, exc.description or name, exc.code or 400)
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


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

    def answer(route: str, handle: Callable[[], tuple[str, bool]]) -> Response:
        # The delivery's trace starts here, or continues a sender's traceparent (a signup
        # source that traces; Stripe sends none). A malformed one starts a new trace.
        with tracing.span(
            f"POST /webhooks/{route}",
            "server",
            parent=request.headers.get(tracing.TRACEPARENT),
            attributes={"http.request.method": "POST", "http.route": f"/webhooks/{route}"},
        ) as span:
            response, outcome, event_id = respond(route, handle)
            tracing.annotate(
                span,
                **{
                    "http.response.status_code": response.status_code,
                    "stripe_worker.outcome": outcome,
                    "stripe_worker.source_id": event_id,
                    # The HTTP conventions: a server's 5xx is its error, a 4xx the sender's.
                    "error.type": str(response.status_code)
                    if response.status_code >= 500
                    else None,
                },
            )
            return response

    def respond(
        route: str, handle: Callable[[], tuple[str, bool]]
    ) -> tuple[Response, str, str | None]:
        started = time.perf_counter()
        event_id = None
        try:
            event_id, queued = handle()
            outcome = "accepted" if queued else "duplicate"
            response = _ok({"received": True, "id": event_id, "duplicate": not queued})
        except QueueUnavailable as exc:
            outcome, response = "unavailable", _error(exc.error_type, exc.message, 503)
        except SecretMissing as exc:  # our configuration, not the sender's fault: retry later
            outcome = "unavailable"
            response = _error("not_configured", exc.message, 503)
        except StripeWorkerError as exc:
            outcome = f"rejected_{exc.error_type}"
            response = _error(exc.error_type, exc.message, exc.answer_status)
        except HTTPException as exc:  # 413 from reading a body over the limit
            outcome = f"rejected_{exc.code}"
            response = _http_error(exc)
        elapsed = time.perf_counter() - started
        metrics.requests.labels(route, outcome).inc()
        metrics.latency.labels(route).observe(elapsed)
        log.info(
            json.dumps(
                {
                    "at": round(time.time(), 3),
                    "route": route,
                    "outcome": outcome,
                    "status": response.status_code,
                    "id": event_id,
                    "ms": round(elapsed * 1000, 2),
                }
            )
        )
        return response, outcome, event_id

    @app.post("/webhooks/stripe")
    def stripe_webhook() -> Response:
        def handle() -> tuple[str, bool]:
            payload = request.get_data(cache=False)
            secrets = vault.get_list(STRIPE_WEBHOOK_SECRET)
            verify_stripe_signature(
                payload,
                request.headers.get("Stripe-Signature"),
                secrets,
                tolerance=settings.webhook_tolerance,
            )
            event = parse(payload)
            if (
                not isinstance(event, dict)
                or not isinstance(event.get("id"), str)
                or not 0 < len(event["id"]) <= 255
                or not isinstance(event.get("type"), str)
            ):
                raise WebhookRejected("invalid_payload", "a Stripe event needs an id and a type")
            refuse_surrogates(event)  # republished whole: every field must be UTF-8
            check_livemode(vault.stripe_key(), event.get("livemode"))
            return event["id"], enqueuer.enqueue_once(Work.for_event(event))

        return answer("stripe", handle)

    @app.post("/webhooks/signup")
    def signup_webhook() -> Response:
        def handle() -> tuple[str, bool]:
            payload = request.get_data(cache=False)
            secrets = vault.get_list(SIGNUP_WEBHOOK_SECRET)
            headers = {k.lower(): v for k, v in request.headers.items()}
            msg_id = verify_standard_signature(
                payload, headers, secrets, tolerance=settings.webhook_tolerance
            )
            found = signup_component(parse(payload))
            if found is None:  # verified, but not a signup: nothing to do
                return msg_id, True
            user_id, spec = found
            work = Work.for_component(spec, "signup", msg_id)
            return msg_id, enqueuer.enqueue_once(work, summary=f"{msg_id} user {user_id}")

        return answer("signup", handle)

    @app.get("/healthz")
    def healthz() -> Response:
        return _ok({"ok": True})

    @app.get("/readyz")
    def readyz() -> Response:
        ready, reason, missing = readiness(client, settings, vault)
        if not ready:
            return _error("unavailable", reason, 503)
        # Ready with one route's secrets; the other route's missing ones are named.
        return _ok({"ready": True, "missing": missing} if missing else {"ready": True})

    @app.get("/metrics")
    def metrics_view() -> Response:
        return Response(metrics.exposition(), mimetype=CONTENT_TYPE_LATEST)

    register_console(app, settings, vault, client)  # only when CONSOLE_TOKEN is set
    app.register_error_handler(HTTPException, _http_error)
    # Bodies are read whole, within MAX_BODY_BYTES and READ_TIMEOUT, before a view runs.
    # Flask's documented way to wrap its app in WSGI middleware; mypy sees a method.
    app.wsgi_app = BufferedBody(  # type: ignore[method-assign]
        app.wsgi_app, settings.max_body_bytes, settings.read_timeout
    )

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unexpected error")  # our bug: the trace goes to the log, not the sender
        return _error("internal_error", "the receiver failed; the sender should retry", 500)

    return app
