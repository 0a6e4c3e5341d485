"""Catch-up: the workers list Stripe's new events on their own (tasks/reconcile.py walks them).

`delivery_success=false` alone is not enough: an event answered 200 and then lost with a
failed-over Redis master counts as delivered at Stripe. So catch-up keeps a cursor of what
it has seen instead: every CATCHUP_INTERVAL, one worker (a lease in Redis) lists events
created since its cursor, less OVERLAP seconds (events of one second have no order a
cursor of seconds could split; the dedupe makes the re-listing free), up to GRACE seconds
ago (a delivery under way gets there first). The cursor lives in the same Redis as the
dedupe marks, so a failover that loses marks loses the cursor's advance past them too.
The first start begins at now; `reconcile --since` is how to backfill.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import redis
from celery import Celery
from celery.signals import worker_shutdown

from tasks import metrics
from tasks.reconcile import EventList, Reconciler, Walked
from tasks.stripe_gateway import StripeGateway
from worker.connections import lua_script, redis_client
from worker.errors import StripeWorkerError
from worker.settings import Settings
from worker.vault import STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET, Vault, livemode_of

log = logging.getLogger("stripe_worker.catchup")

OVERLAP = 10  # seconds before the cursor listed again each time
GRACE = 10  # seconds: an event younger than this is left to its delivery, for now


def cursor_field(account: str) -> str:
    return f"cursor:{account}" if account else "cursor"


class CatchUp:
    """The catch-up of one worker: a tick every CATCHUP_INTERVAL while it holds the lease."""

    def __init__(
        self, client: redis.Redis, settings: Settings, gateway: StripeGateway, holder: str
    ) -> None:
        self.client = client
        self.settings = settings
        self.keys = settings.keys
        self.gateway = gateway
        self.holder = holder
        self.lease_ms = int(max(2 * settings.catchup_interval, 30) * 1000)
        self._lease = lua_script(client, "tasks", "catchup_lease.lua")

    def hold(self) -> bool:
        """Take or renew the lease; False while another worker has it."""
        args: list[str | int] = [self.holder, "hold", self.lease_ms]
        return bool(self._lease(keys=[self.keys.catchup_lease], args=args))

    def release(self) -> None:
        self._lease(keys=[self.keys.catchup_lease], args=[self.holder, "release", 0])

    def tick(self) -> list[Walked]:
        """List what is new since each account's cursor and queue what was never queued;
        the first time, only set the cursors to now."""
        if not self.hold():
            return []
        walked = []
        livemode = self.gateway.livemode(STRIPE_SECRET_KEY)
        for account in ["", *self.settings.connected_accounts]:
            field = cursor_field(account)
            now = time.time()
            raw = self.client.hget(self.keys.catchup, field)
            if raw is None:  # the first start: from now on, no surprise backfill
                self.client.hsetnx(self.keys.catchup, field, int(now))
                continue
            cursor = float(raw)
            until = int(now - GRACE)

            def advance(created: int, field: str = field) -> None:
                self.hold()  # a long walk keeps its lease
                self._advance(field, created)

            events = EventList(self.gateway, self.settings.event_types, account)
            done = Reconciler(self.client, self.settings, livemode).run(
                events.walk(since=min(cursor, until) - OVERLAP, until=until), advance
            )
            self._advance(field, until)
            self.client.hset(self.keys.catchup, "ran_at", round(time.time(), 3))
            if done.queued:
                self.client.hincrby(self.keys.catchup, "recovered", done.queued)
                metrics.catchup_recovered(done.queued)
                log.warning(
                    "catch-up recovered %d event(s) never delivered%s (%s)",
                    done.queued,
                    f" of {account}" if account else "",
                    done.line(),
                )
            walked.append(done)
        return walked

    def _advance(self, field: str, created: int) -> None:
        """Move the cursor forward (never back) to `created`."""
        raw = self.client.hget(self.keys.catchup, field)
        if raw is None or float(raw) < created:
            self.client.hset(self.keys.catchup, field, created)


def catchup_off(settings: Settings, vault: Vault) -> str | None:
    """Why catch-up does not run here (None: it runs)."""
    if settings.catchup == "off":
        return "CATCHUP=off"
    for name in (STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET):
        if not vault.find(name):
            return f"no {name} in the vault"
    try:
        livemode_of(vault.stripe_key())
    except StripeWorkerError as exc:
        return exc.message
    return None


def catch_up_forever(catchup: CatchUp, stop: threading.Event) -> None:
    """A tick at once, then every CATCHUP_INTERVAL, until `stop`."""
    while not stop.is_set():
        try:
            catchup.tick()
        except StripeWorkerError as exc:  # Stripe refused or is away: the cursor waits
            log.warning("catch-up: %s: %s", exc.error_type, exc.message)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # Redis is away: the heartbeat says so, once for the outage (tasks/recovery.py,
            # Outage), and the next tick asks again.
            log.debug("catch-up: Redis does not answer (%s)", exc.__class__.__name__)
        except redis.RedisError as exc:
            log.warning("catch-up: Redis: %s", exc.__class__.__name__)
        except Exception:  # a bug of ours must not stop catch-up for good
            log.exception("catch-up tick failed")
        stop.wait(catchup.settings.catchup_interval)


def install_catchup(app: Celery, settings: Settings, holder: str) -> CatchUp | None:
    """Run catch-up on a thread of this worker when it is on; give up the lease at stop."""
    from tasks.runtime import runtime_of

    runtime = runtime_of(app)
    why = catchup_off(settings, runtime.vault)
    if why:
        log.info("catch-up off: %s", why)
        return None
    catchup = CatchUp(redis_client(settings), settings, runtime.gateway, holder)
    stop = threading.Event()
    threading.Thread(
        target=catch_up_forever, args=(catchup, stop), name="catchup", daemon=True
    ).start()
    log.info("catch-up on: Stripe's events listed every %g s", settings.catchup_interval)

    def on_shutdown(sender: object = None, **_: object) -> None:
        stop.set()
        with contextlib.suppress(redis.RedisError):  # else it lapses on its own
            catchup.release()

    worker_shutdown.connect(on_shutdown, weak=False)
    return catchup
