"""The console at /console/: live figures, the streams, failures to replay, any webhook's trail.

On while the vault has `console_token` (SECRETS_DIR/console_token or CONSOLE_TOKEN, at
least 16 characters), read at each request as every other secret: a new token file takes
effect without a restart. One static page (console.html, its script and styles as files,
so the Content-Security-Policy allows no inline code) on a small JSON API under
/console/api/. Without a valid token every route answers 401 and no data.

- Signing in: the page posts the token (typed, or from the URL's #token= fragment, which
  no browser sends to a server or a log) to /console/api/session. It is compared in
  constant time and never logged; the answer is a session cookie (HttpOnly,
  SameSite=Strict) holding a random session id. The session lives in Redis with its CSRF
  token and a fingerprint of the token it was made with: signing out deletes it, and a
  changed token ends every session made with the old one.
- Wrong tokens (sign-in or Bearer) are counted per client address: past FAILURES_ALLOWED
  in FAILURE_WINDOW seconds every attempt from it is answered 429 with Retry-After, the
  right token too, until the window ends.
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
from flask import Blueprint, Flask, Response, abort, request

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
FAILURES_ALLOWED = 5  # wrong tokens from one address per window, then 429
FAILURE_WINDOW = 60  # seconds
# No inline script or style, nothing from elsewhere, never framed (the page is its own
# clickjacking target otherwise); connect-src for the page's fetches of /console/api/.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SHOWN = ("component", "customerId", "customerEmail", "source", "source_id", "event_type",
         "error_type", "http_status", "error_message", "attempts", "livemode")  # fmt: skip
LATEST = 10


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _denied(
    message: str = "a valid console token is needed", status: int = 401, kind: str = "unauthorized"
) -> Response:
    return _json({"error": {"type": kind, "message": message}}, status)


def _shown(entry_id: str, fields: dict[str, str]) -> dict[str, str]:
    shown = {k: redact(fields[k]) for k in SHOWN if fields.get(k)}
    return {"id": entry_id, **shown}


def register_console(app: Flask, settings: Settings, vault: Vault, client: redis.Redis) -> None:
    """Add the console to `app`; it answers only while a console token is configured."""
    token = vault.find(CONSOLE_TOKEN)
    if token and len(token) < MIN_TOKEN:
        log.warning("console disabled: CONSOLE_TOKEN must be at least %d characters", MIN_TOKEN)
    app.register_blueprint(console_blueprint(settings, vault, client))


def _session_digest(session_id: str) -> str:
    """A session's Redis key holds a digest of its id: reading Redis gives no cookie."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def _fingerprint(token: str, session_id: str) -> str:
    """Which token a session was made with, keyed by the session (never the token itself)."""
    return hmac.new(token.encode(), session_id.encode(), hashlib.sha256).hexdigest()


def console_blueprint(settings: Settings, vault: Vault, client: redis.Redis) -> Blueprint:
    bp = Blueprint("console", __name__, url_prefix="/console")
    package = files("webhooks")
    static = {
        name: (package.joinpath(name).read_bytes(), mimetype)
        for name, mimetype in (
            ("console.html", "text/html"),
            ("console.js", "text/javascript"),
            ("console.css", "text/css"),
        )
    }
    enqueuer = Enqueuer(client, settings)
    trail = Trail(client, settings)
    keys = settings.keys

    def current_token() -> str:
        """The token now (its file rotates live); the console is off (404) without one."""
        token = vault.find(CONSOLE_TOKEN)
        if not token or len(token) < MIN_TOKEN:
            abort(404)
        return token

    def token_ok(given: str) -> bool:
        return hmac.compare_digest(given.encode(), current_token().encode())

    def session_key() -> str | None:
        raw = request.cookies.get(COOKIE)
        if not raw or len(raw) > 100:
            return None
        return keys.console_session(_session_digest(raw))

    def session() -> dict[str, Any] | None:
        key = session_key()
        raw = client.get(key) if key else None
        value = json.loads(raw) if raw else None
        if key is None or not isinstance(value, dict):
            return None
        made_with = _fingerprint(current_token(), request.cookies[COOKIE])
        if not hmac.compare_digest(str(value.get("token", "")), made_with):
            client.delete(key)  # made with a token since replaced
            return None
        return value

    def bearer() -> bool:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and checked(given.strip())

    def throttled() -> Response | None:
        """429 while this client has spent its wrong tokens for the window."""
        failures_key = keys.console_failures(request.remote_addr or "-")
        pipe = client.pipeline(transaction=False)
        pipe.get(failures_key)
        pipe.ttl(failures_key)
        failures, ttl = pipe.execute()
        if int(failures or 0) < FAILURES_ALLOWED:
            return None
        wait = max(1, int(ttl)) if ttl and int(ttl) > 0 else FAILURE_WINDOW
        response = _denied(
            f"too many wrong console tokens: try again in {wait} s", 429, "rate_limited"
        )
        response.headers["Retry-After"] = str(wait)
        return response

    def checked(given: str) -> bool:
        """`given` is the token; a wrong one counts against this client."""
        if token_ok(given):
            return True
        failures_key = keys.console_failures(request.remote_addr or "-")
        pipe = client.pipeline(transaction=False)
        pipe.incr(failures_key)
        pipe.expire(failures_key, FAILURE_WINDOW, nx=True)
        pipe.execute()
        return False

    @bp.before_request
    def guard() -> Response | None:
        current_token()
        if request.endpoint in ("console.page", "console.script", "console.styles"):
            return None
        if request.headers.get("Authorization") or request.endpoint == "console.sign_in":
            refused = throttled()
            if refused is not None:
                return refused
        if request.endpoint == "console.sign_in" or bearer():
            return None
        current = session()
        if current is None:
            return _denied()
        if request.method != "GET":
            given = request.headers.get("X-CSRF-Token", "")
            if not hmac.compare_digest(given.encode(), str(current.get("csrf", "")).encode()):
                return _denied("the X-CSRF-Token header does not match this session", 403)
        return None

    @bp.after_request
    def headers(response: Response) -> Response:
        # Nothing the console answers is kept by a browser or proxy (a shared machine's
        # back button shows no figures after sign-out), nor framed, nor sniffed.
        response.headers["Cache-Control"] = "no-store"
        response.headers["Content-Security-Policy"] = CSP
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    def served(name: str, status: int = 200) -> Response:
        body, mimetype = static[name]
        return Response(body, status=status, mimetype=mimetype)

    @bp.get("/")
    def page() -> Response:
        # The page holds no data; signed out, it is the sign-in form, answered 401.
        return served("console.html", 200 if session() is not None else 401)

    @bp.get("/console.js")
    def script() -> Response:
        return served("console.js")

    @bp.get("/console.css")
    def styles() -> Response:
        return served("console.css")

    @bp.post("/api/session")
    def sign_in() -> Response:
        body = request.get_json(silent=True) if request.is_json else None
        given = body.get("token") if isinstance(body, dict) else None
        if not isinstance(given, str) or not checked(given):
            return _denied("that is not the console token")
        csrf = secrets.token_urlsafe(24)
        session_id = secrets.token_urlsafe(32)
        made_with = _fingerprint(current_token(), session_id)
        stored = json.dumps({"csrf": csrf, "token": made_with})
        client.set(keys.console_session(_session_digest(session_id)), stored, ex=SESSION_SECONDS)
        response = _json({"csrf": csrf})
        response.set_cookie(
            COOKIE,
            session_id,
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
        key = session_key()
        if key:
            client.delete(key)  # the cookie is worth nothing from now on, wherever it is
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
