"""`/readyz`: 503 with the reason when no route has its secrets, or Redis does not answer."""

from __future__ import annotations

from tests.support import TEST_KEY
from webhooks import create_app
from worker.vault import Vault


def readyz(settings, env: dict[str, str]):
    return create_app(settings, vault=Vault(None, env)).test_client().get("/readyz")


def test_no_secrets_is_not_ready_and_names_no_secret(settings):
    answer = readyz(settings, {"STRIPE_SECRET_KEY": TEST_KEY})
    assert answer.status_code == 503
    message = answer.json["error"]["message"]
    assert "secrets are not set" in message
    assert "webhook_secret" not in message.lower()  # the log says which; a stranger not


def test_one_route_ready_is_ready_naming_the_other_route(settings):
    answer = readyz(settings, {"SIGNUP_WEBHOOK_SECRET": "whsec_" + "QUJD" * 8})
    assert answer.status_code == 200
    assert answer.json == {"ready": True, "unconfigured": ["stripe"]}


def test_redis_not_answering_is_not_ready(settings, webhook_env):
    from worker.devtools.local import free_port

    down = settings.with_(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    answer = readyz(down, webhook_env)
    assert answer.status_code == 503 and "does not answer" in answer.json["error"]["message"]
