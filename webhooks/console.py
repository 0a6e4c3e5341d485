"""The console at /console/: live figures, the streams, failures to replay, any webhook's trail.

Enabled only when the vault has `console_token` (CONSOLE_TOKEN, at least 16 characters).
One static page (console.html) on a small JSON API under /console/api/. Without a valid
token every route answers 401 and no data.

- Signing in: the page posts the token (typed, or from the URL's #token= fragment, which
  no browser sends to a server or a log) to /console/api/session. It is compared in
  constant time and never logged; the answer is a session cookie (HttpOnly,
  SameSite=Strict, signed with a key derived from the token, so changing the token ends
  every session) that carries a random CSRF token.
- Actions are POSTs with a JSON body and the CSRF token in the X-CSRF-Token header: a
  cross-site page can neither read that token nor send either without the browser's
  preflight, which this never grants. Scripts may send `Authorization: Bearer <token>`
  instead of a session.
- No secret appears: entries are shown as a few named fields, their text redacted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from importlib.resources import files
from typing import Any

import redis
from flask import Blueprint, Flask, Response, request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from worker.dlq import list_failures, replay
from worker.errors import StripeWorkerError
from worker.keys import CUSTOMERS, EVENTS
from worker.queue import Enqueuer
from worker.redact import redact
from worker.settings import Settings
from worker.status import snapshot
from worker.streams import decode_entries
from worker.trail import Trail, throughput
from worker.vault import CONSOLE_TOKEN, Vault

log = logging.getLogger("stripe_worker.console")

MIN_TOKEN = 16
COOKIE = "stripe_worker_console"
SESSION_SECONDS = 12 * 3600
SHOWN = ("component", "customerId", "customerEmail", "source", "source_id", "event_type",
         "error_type", "http_status", "error_message", "attempts", "livemode")  # fmt: skip
LATEST = 10


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _denied(message: str = "a valid console token is needed", status: int = 401) -> Response:
    return _json({"error": {"type": "unauthorized", "message": message}}, status)


def _shown(entry_id: str, fields: dict[str, str]) -> dict[str, str]:
    shown = {k: redact(fields[k]) for k in SHOWN if fields.get(k)}
    return {"id": entry_id, **shown}


def register_console(app: Flask, settings: Settings, vault: Vault, client: redis.Redis) -> None:
    """Add the console to `app` when CONSOLE_TOKEN is set."""
    token = vault.find(CONSOLE_TOKEN)
    if not token:
        return
    if len(token) < MIN_TOKEN:
        log.warning("console disabled: CONSOLE_TOKEN must be at least %d characters", MIN_TOKEN)
        return
    app.register_blueprint(console_blueprint(settings, token, client))


def console_blueprint(settings: Settings, token: str, client: redis.Redis) -> Blueprint:
    bp = Blueprint("console", __name__, url_prefix="/console")
    key = hmac.new(token.encode(), b"stripe-worker console session", hashlib.sha256).digest()
    signer = URLSafeTimedSerializer(key, salt="console-session")
    html = files("webhooks").joinpath("console.html").read_bytes()
    enqueuer = Enqueuer(client, settings)
    trail = Trail(client, settings)

    def token_ok(given: str) -> bool:
        return hmac.compare_digest(given.encode(), token.encode())

    def session() -> dict[str, Any] | None:
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            value = signer.loads(raw, max_age=SESSION_SECONDS)
        except BadSignature:
            return None
        return value if isinstance(value, dict) else None

    def bearer() -> bool:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and token_ok(given.strip())

    @bp.before_request
    def guard() -> Response | None:
        if request.endpoint in ("console.page", "console.sign_in"):
            return None
        if bearer():
            return None
        current = session()
        if current is None:
            return _denied()
        if request.method != "GET":
            given = request.headers.get("X-CSRF-Token", "")
            if not hmac.compare_digest(given.encode(), str(current.get("csrf", "")).encode()):
                return _denied("the X-CSRF-Token header does not match this session", 403)
        return None

    @bp.get("/")
    def page() -> Response:
        # The page holds no data; signed out, it is the sign-in form, answered 401.
        status = 200 if (session() is not None or bearer()) else 401
        response = Response(html, status=status, mimetype="text/html")
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        return response

    @bp.post("/api/session")
    def sign_in() -> Response:
        body = request.get_json(silent=True) if request.is_json else None
        given = body.get("token") if isinstance(body, dict) else None
        if not isinstance(given, str) or not token_ok(given):
            return _denied("that is not the console token")
        csrf = secrets.token_urlsafe(24)
        response = _json({"csrf": csrf})
        response.set_cookie(
            COOKIE,
            signer.dumps({"csrf": csrf}),
            max_age=SESSION_SECONDS,
            path="/console/",
            httponly=True,
            samesite="Strict",
            secure=request.is_secure,
        )
        return response

    @bp.get("/api/session")
    def current_session() -> Response:
        return _json({"csrf": (session() or {}).get("csrf")})

    @bp.delete("/api/session")
    def sign_out() -> Response:
        response = _json({"signed_out": True})
        response.delete_cookie(COOKIE, path="/console/")
        return response

    @bp.get("/api/overview")
    def overview() -> Response:
        keys = settings.keys
        streams = {}
        for name in (CUSTOMERS, EVENTS):
            raw = client.xrevrange(keys.stream(name), count=LATEST)
            streams[name] = [_shown(i, f) for i, f in decode_entries(raw)]
        failures = list_failures(client, settings, count=LATEST * 2)
        return _json(
            {
                "status": snapshot(client, settings).to_json(),
                "throughput": throughput(client, settings, seconds=300),
                "streams": streams,
                "errors": [
                    dict(_shown(f.entry_id, f.fields), replayed=bool(f.replayed))
                    for f in reversed(failures)
                ],
            }
        )

    @bp.get("/api/trace")
    def trace() -> Response:
        term = request.args.get("q", "").strip()[:300]
        found = trail.find(term) if term else []
        return _json(
            {"q": term, "found": [{"work_id": f.work_id, "trail": f.lines} for f in found]}
        )

    @bp.post("/api/replay")
    def replay_failures() -> Response:
        body = request.get_json(silent=True) if request.is_json else None
        if not isinstance(body, dict):
            return _json({"error": {"type": "invalid_json", "message": "send {ids} or {all}"}}, 400)
        if body.get("all") is True:
            ids = [f.entry_id for f in list_failures(client, settings, 1000) if not f.replayed]
        else:
            ids = [i for i in body.get("ids") or [] if isinstance(i, str)][:1000]
        results = {}
        for entry_id in ids:
            try:
                queued = replay(client, settings, enqueuer, entry_id)
                results[entry_id] = "queued again" if queued else "already replayed"
            except StripeWorkerError as exc:
                results[entry_id] = exc.message
        return _json({"results": results})

    @bp.errorhandler(redis.RedisError)
    def redis_away(exc: redis.RedisError) -> Response:
        return _json({"error": {"type": "unavailable", "message": "Redis does not answer"}}, 503)

    return bp
