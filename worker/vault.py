"""The vault: secrets are named, resolved at use, and never shown.

A name such as `stripe_secret_key` resolves from the file `SECRETS_DIR/stripe_secret_key`
(the Docker and Kubernetes secrets convention), then from `STRIPE_SECRET_KEY`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from worker.errors import ModeMismatch, SecretMissing, SpecError
from worker.redact import remember_secret

# Names of secrets, not secrets.
STRIPE_SECRET_KEY = "stripe_secret_key"  # noqa: S105
STRIPE_WEBHOOK_SECRET = "stripe_webhook_secret"  # noqa: S105
SIGNUP_WEBHOOK_SECRET = "signup_webhook_secret"  # noqa: S105
CONSOLE_TOKEN = "console_token"  # noqa: S105

# Names come from users' JSON, so they must never be able to walk out of SECRETS_DIR.
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_MODES = {"sk_test_": "test", "rk_test_": "test", "sk_live_": "live", "rk_live_": "live"}


def key_mode(key: str) -> str:
    """'test' or 'live', from the key's prefix."""
    for prefix, mode in _MODES.items():
        if key.startswith(prefix):
            return mode
    raise SpecError("the Stripe key does not start with sk_test_, rk_test_, sk_live_ or rk_live_")


def livemode_of(key: str) -> bool:
    return key_mode(key) == "live"


def check_livemode(key: str, livemode: object) -> None:
    """Refuse an event whose `livemode` disagrees with the key's mode: test and live never mix."""
    expected = livemode_of(key)
    if livemode is not expected:
        raise ModeMismatch(
            f"event livemode is {livemode!r} but the configured key is a "
            f"{key_mode(key)} key; test and live never mix"
        )


class Vault:
    """Resolves secret names; holds no value longer than the caller does."""

    def __init__(self, secrets_dir: Path | None = None, environ: Mapping[str, str] | None = None):
        self.secrets_dir = secrets_dir
        self.environ = os.environ if environ is None else environ

    @classmethod
    def from_settings(cls, settings: object, environ: Mapping[str, str] | None = None) -> Vault:
        return cls(getattr(settings, "secrets_dir", None), environ)

    def find(self, name: str) -> str | None:
        """The secret's value, or None when it is not configured."""
        if not _NAME.match(name):
            raise SpecError(
                f"secret name {name!r} is not valid: use lower case letters, digits and _"
            )
        value: str | None = None
        if self.secrets_dir is not None:
            path = self.secrets_dir / name
            if path.is_file():
                value = path.read_text(encoding="utf-8").strip()
        if not value:
            value = (self.environ.get(name.upper()) or "").strip() or None
        if value:
            remember_secret(value)
        return value

    def get(self, name: str) -> str:
        """The secret's value; SecretMissing names the secret and where it was looked for."""
        value = self.find(name)
        if value is None:
            where = f"{self.secrets_dir}/{name} or " if self.secrets_dir else ""
            raise SecretMissing(
                f"secret {name!r} is not configured: set {where}the environment variable "
                f"{name.upper()}"
            )
        return value

    def get_list(self, name: str) -> list[str]:
        """A comma-separated secret (several webhook secrets during a rotation)."""
        return [part.strip() for part in self.get(name).split(",") if part.strip()]

    def stripe_key(self, name: str = STRIPE_SECRET_KEY) -> str:
        key = self.get(name)
        key_mode(key)  # a key of unknown shape is refused before it is sent anywhere
        return key
