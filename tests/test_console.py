"""The console's guard and API, through Flask's test client (the browser test drives the page)."""

import json
import logging
import re

import pytest

from webhooks import create_app
from worker.vault import Vault

from .support import SIGNUP_WEBHOOK_SECRET, STRIPE_WEBHOOK_SECRET, TEST_KEY, sign_standard

TOKEN = "console-token-for-tests-0123456789"


@pytest.fixture
def console(settings, webhook_env):
    webhook_env["CONSOLE_TOKEN"] = TOKEN
    return create_app(settings, vault=Vault(None, webhook_env)).test_client()


def sign_in(console) -> str:
    answer = console.post("/console/api/session", json={"token": TOKEN})
    assert answer.status_code == 200
    return answer.get_json()["csrf"]


def add_failure(settings, vault) -> str:
    """A real failure on the error stream: a Get Customer of no customer, run in-process."""
    from tasks import worker_app
    from worker.spec import ComponentSpec
    from worker.work import GET_CUSTOMER_TASK, Work

    spec = ComponentSpec.parse({"component": "stripe.getStripeCustomer", "customer_id": "cus_0"})
    work = Work.for_component(spec, "cli", "no-such-customer")
    task = worker_app(settings, vault).tasks[GET_CUSTOMER_TASK]
    return task.apply(kwargs={"work": work.to_json()}).result["entry_id"]


def test_no_console_without_a_token(client):
    assert client.get("/console/").status_code == 404
    assert client.get("/console/api/overview").status_code == 404


def test_a_short_token_leaves_it_off(settings, webhook_env):
    webhook_env["CONSOLE_TOKEN"] = "short"
    app = create_app(settings, vault=Vault(None, webhook_env)).test_client()
    assert app.get("/console/").status_code == 404


def test_without_a_valid_token_401_and_no_data(console, settings, vault):
    add_failure(settings, vault)
    page = console.get("/console/")
    assert page.status_code == 401 and b"no-such-customer" not in page.data
    for path in ("overview", "trace?q=x", "session"):
        answer = console.get(f"/console/api/{path}")
        assert answer.status_code == 401, path
        assert answer.get_json()["error"]["type"] == "unauthorized"
    assert console.post("/console/api/replay", json={"all": True}).status_code == 401
    wrong = console.post("/console/api/session", json={"token": TOKEN[:-1] + "x"})
    assert wrong.status_code == 401 and "Set-Cookie" not in wrong.headers
    console.set_cookie("stripe_worker_console", "forged", path="/console/")
    assert console.get("/console/api/overview").status_code == 401
    bearer = {"Authorization": "Bearer nope"}
    assert console.get("/console/api/overview", headers=bearer).status_code == 401


def test_a_session_is_a_strict_cookie_and_the_page_loads(console):
    answer = console.post("/console/api/session", json={"token": TOKEN})
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console/" in cookie
    assert TOKEN not in cookie
    assert console.get("/console/").status_code == 200
    overview = console.get("/console/api/overview").get_json()
    assert set(overview) == {"status", "throughput", "streams", "errors"}
    assert len(overview["throughput"]["accepted"]) == 300


def test_only_a_json_post_signs_in(console):
    """A cross-site form can post, but not JSON without a preflight this never grants."""
    form = console.post("/console/api/session", data={"token": TOKEN})
    assert form.status_code == 401
    plain = console.post(
        "/console/api/session", data=json.dumps({"token": TOKEN}), content_type="text/plain"
    )
    assert plain.status_code == 401


def test_actions_need_the_sessions_csrf_token(console, redis_client, settings, vault):
    entry_id = add_failure(settings, vault)
    csrf = sign_in(console)
    assert console.post("/console/api/replay", json={"ids": [entry_id]}).status_code == 403
    other = {"X-CSRF-Token": "x" * len(csrf)}
    assert (
        console.post("/console/api/replay", json={"ids": [entry_id]}, headers=other).status_code
        == 403
    )
    assert redis_client.zcard(settings.keys.replayed_index) == 0
    ok = console.post("/console/api/replay", json={"all": True}, headers={"X-CSRF-Token": csrf})
    assert ok.get_json() == {"results": {entry_id: "queued again"}}
    again = console.post(
        "/console/api/replay", json={"ids": [entry_id]}, headers={"X-CSRF-Token": csrf}
    )
    assert again.get_json() == {"results": {entry_id: "already replayed"}}
    errors = console.get("/console/api/overview").get_json()["errors"]
    assert [(e["id"], e["replayed"]) for e in errors] == [(entry_id, True)]


def test_scripts_use_a_bearer_token(console, settings, vault):
    entry_id = add_failure(settings, vault)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert console.get("/console/api/overview", headers=bearer).status_code == 200
    answer = console.post("/console/api/replay", json={"ids": [entry_id]}, headers=bearer)
    assert answer.get_json() == {"results": {entry_id: "queued again"}}


def test_no_secret_on_any_answer_and_the_token_never_logged(console, settings, vault, caplog):
    caplog.set_level(logging.DEBUG)
    add_failure(settings, vault)
    body = json.dumps({"type": "user.created", "data": {"user_id": "u1", "email": "a@example.com"}})
    console.post("/webhooks/signup", data=body, headers=sign_standard(body, "msg_c1"))
    console.post("/console/api/session", json={"token": "wrong-" + TOKEN})
    sign_in(console)
    answers = b"".join(
        console.get(path).data
        for path in (
            "/console/",
            "/console/api/overview",
            "/console/api/trace?q=a@example.com",
            "/console/api/session",
        )
    )
    assert b"msg_c1" in answers  # the trail is there...
    for secret in (TEST_KEY, TOKEN, STRIPE_WEBHOOK_SECRET, SIGNUP_WEBHOOK_SECRET):
        assert secret.encode() not in answers  # ...and no secret
        assert secret not in caplog.text


@pytest.mark.slow
def test_dev_prints_the_console_url_and_serves_it_on_embedded_redis(tmp_path):
    """`stripe-worker dev` on a fresh machine: a generated token, the console on fakeredis."""
    import re
    import signal

    import requests

    from worker.devtools.local import free_port

    from .support import fresh_env, start_dev, wait_for

    proc, text = start_dev(fresh_env(tmp_path), tmp_path, free_port())
    try:
        base, token = re.search(r"console   (\S+)/console/#token=(\S+)", text()).groups()
        assert requests.get(f"{base}/console/", timeout=5).status_code == 401
        bearer = {"Authorization": f"Bearer {token}"}

        def live() -> dict:
            answer = requests.get(f"{base}/console/api/overview", headers=bearer, timeout=5)
            return answer.json() if answer.json()["status"]["live_workers"] == 1 else {}

        assert wait_for(live)["status"]["problems"] == []
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_sign_out_ends_the_session_on_the_server(console, settings, webhook_env):
    csrf = sign_in(console)
    cookie = console.get_cookie("stripe_worker_console", path="/console/").value
    signed_out = console.delete("/console/api/session", headers={"X-CSRF-Token": csrf})
    assert signed_out.status_code == 200
    # The cookie kept (a copy, another tab, a stolen one) is worth nothing now.
    other = create_app(settings, vault=Vault(None, webhook_env)).test_client()
    other.set_cookie("stripe_worker_console", cookie, path="/console/")
    assert other.get("/console/api/overview").status_code == 401


def test_a_new_token_file_takes_effect_live_and_ends_the_old_sessions(
    settings, webhook_env, tmp_path
):
    (tmp_path / "console_token").write_text(TOKEN + "\n")
    app = create_app(settings, vault=Vault(tmp_path, webhook_env))
    console = app.test_client()
    sign_in(console)
    assert console.get("/console/api/overview").status_code == 200
    new = "rotated-console-token-0123456789"
    (tmp_path / "console_token").write_text(new + "\n")  # no restart
    assert console.get("/console/api/overview").status_code == 401  # the old session
    old_bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert app.test_client().get("/console/api/overview", headers=old_bearer).status_code == 401
    fresh = app.test_client()
    assert fresh.post("/console/api/session", json={"token": new}).status_code == 200
    assert fresh.get("/console/api/overview").status_code == 200
    (tmp_path / "console_token").unlink()  # and with no token at all, no console
    assert fresh.get("/console/api/overview").status_code == 404


def test_no_inline_code_a_policy_that_says_so_and_nothing_cached(console):
    page = console.get("/console/")
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    html = page.get_data(as_text=True)
    assert "<script>" not in html and "<style>" not in html and " style=" not in html
    assert re.search(r"<script src=\"/console/console.js\"></script>", html)
    assert re.search(r"\son[a-z]+=", html) is None  # no inline event handlers
    for asset, kind in (("console.js", "text/javascript"), ("console.css", "text/css")):
        answer = console.get(f"/console/{asset}")
        assert answer.status_code == 200 and answer.mimetype == kind
    sign_in(console)
    for path in ("overview", "trace?q=x", "session"):
        assert console.get(f"/console/api/{path}").headers["Cache-Control"] == "no-store"
    assert console.get("/console/api/nope").status_code == 404


def test_wrong_tokens_are_throttled_per_client(console):
    for _ in range(5):
        answer = console.post("/console/api/session", json={"token": "guess-0123456789abcdef"})
        assert answer.status_code == 401
    throttled = console.post("/console/api/session", json={"token": TOKEN})  # even the right one
    assert throttled.status_code == 429
    assert throttled.get_json()["error"]["type"] == "rate_limited"
    assert 1 <= int(throttled.headers["Retry-After"]) <= 60
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert console.get("/console/api/overview", headers=bearer).status_code == 429
    # Another address is not held back by this one's guesses.
    elsewhere = {"REMOTE_ADDR": "192.0.2.7"}
    answer = console.post("/console/api/session", json={"token": TOKEN}, environ_base=elsewhere)
    assert answer.status_code == 200
