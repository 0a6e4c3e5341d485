"""`/readyz`: can this receiver accept a webhook now? Secrets configured, Redis writable.

A load balancer takes a receiver out while it answers 503, so "ready" means what a
webhook needs: the secrets of at least one route, and a Redis that accepts a write (a
PING is answered by a Redis that is full and refuses every write, maxmemory with
noeviction, while every webhook would get 503).
"""

from __future__ import annotations

import logging
import time

import redis

from worker.redis_problems import tls_problem
from worker.settings import Settings
from worker.vault import SIGNUP_WEBHOOK_SECRET, STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET, Vault

# What each route needs: Stripe events are checked against the key's mode.
ROUTE_SECRETS = {
    "stripe": (STRIPE_WEBHOOK_SECRET, STRIPE_SECRET_KEY),
    "signup": (SIGNUP_WEBHOOK_SECRET,),
}


def missing_by_route(vault: Vault) -> dict[str, list[str]]:
    """route -> the names of the secrets it needs and does not have."""
    return {
        route: [name for name in names if vault.find(name) is None]
        for route, names in ROUTE_SECRETS.items()
    }


def warn_unconfigured(vault: Vault, log: logging.Logger) -> None:
    """One warning per route that cannot verify a webhook, saying where its secrets go."""
    for route, names in missing_by_route(vault).items():
        if names:
            where = "; ".join(
                (f"{vault.secrets_dir / name} or " if vault.secrets_dir else "") + name.upper()
                for name in names
            )
            log.warning("/webhooks/%s answers 503 until its secrets are set: %s", route, where)


def readiness(client: redis.Redis, settings: Settings, vault: Vault) -> tuple[bool, str, list[str]]:
    """(ready, the reason when not, the routes whose secrets are missing).

    The answer is for anyone who asks: it names routes, never a secret, its file or its
    variable (the log at start and `stripe-worker check` do)."""
    by_route = missing_by_route(vault)
    missing = sorted(route for route, names in by_route.items() if names)
    if all(by_route.values()):
        unset = "no route can verify a webhook: its secrets are not set (the log says which)"
        return False, unset, missing
    try:
        client.set(settings.keys.probe, int(time.time()), ex=60)
    except redis.ResponseError as exc:  # answered but refused: full, read-only, ...
        return False, f"Redis refuses writes: {str(exc).split('.')[0][:120]}", missing
    except redis.RedisError as exc:
        why = tls_problem(exc, settings.redis_url)
        return False, why or f"Redis does not answer ({exc.__class__.__name__})", missing
    return True, "", missing
