"""Events Stripe has and the receiver never got, listed and queued: `stripe-worker reconcile`.

Stripe keeps every event 30 days and lists them at `GET /v1/events`, newest first, with
`created[gt|gte|lt|lte]`, `types[]` (up to 20), `delivery_success`, and the cursors
`starting_after` / `ending_before` (docs.stripe.com/api/events/list). Its guide "Process
undelivered webhook events" (docs.stripe.com/webhooks/process-undelivered-events) says
what to do after an outage: list from `ending_before` the event before it, whose pages
come in created order, and process what was not processed yet, deduplicating against the
automatic retries that still arrive. Here each listed event is queued through the very
step a delivery takes (worker/queue.py, dedupe on `stripe:<event id>`): a later delivery
is a duplicate, an earlier one makes it a no-op, and a second run queues nothing. Beyond
DEDUPE_TTL, the publish-once marks (CUSTOMER_MEMORY_TTL) say an event was processed.

dj-stripe's `djstripe_process_events` lists every available event (newest first) and
processes each idempotently; this walks in created order, as the guide does, so events of
one object are processed in the order they happened.

A Connect endpoint's events carry `account`; listing a connected account's own events takes
`Stripe-Account` (docs.stripe.com/connect/authentication): CATCHUP_ACCOUNTS names them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import redis

from tasks.stripe_gateway import StripeGateway
from worker.keys import ERRORS, EVENTS
from worker.queue import Enqueuer
from worker.settings import Settings
from worker.vault import STRIPE_SECRET_KEY
from worker.work import Work

RETENTION = 30 * 24 * 3600  # Stripe lists events of the last 30 days
PAGE = 100  # Stripe's largest page
BUFFER_MAX = 10_000  # events held to reverse a window that has no older event to start from
RECONCILED = "reconciled"  # the trail's step for work queued from the list


@dataclass(frozen=True)
class Walked:
    """What one walk did: events listed, queued (never seen before) and skipped (queued
    or processed before), and the newest `created` it saw."""

    listed: int = 0
    queued: int = 0
    skipped: int = 0
    newest: int | None = None

    def line(self) -> str:
        return f"listed {self.listed}, queued {self.queued}, skipped {self.skipped}"


class EventList:
    """Stripe's events of one account (the key's own, or a connected account's), each page
    one paced call (`events.list`) through the gateway."""

    def __init__(self, gateway: StripeGateway, types: list[str], account: str = "") -> None:
        self.gateway = gateway
        self.account = account
        self.filters: dict[str, Any] = {"types": list(types)} if types else {}
        self.calls = 0

    def page(self, params: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
        options: Any = {"stripe_account": self.account} if self.account else {}
        self.calls += 1
        listed = self.gateway.call(
            STRIPE_SECRET_KEY,
            # The SDK types params as its EventListParams TypedDict; ours are Stripe's
            # documented parameters, built from settings and the cursor.
            lambda client: client.v1.events.list(
                params={**self.filters, **params},  # type: ignore[arg-type]
                options=options,
            ),
            endpoint="events.list",
            account=self.account,
        )
        assert listed.last_response is not None
        body: Any = listed.last_response.data  # the JSON as Stripe sent it, as a webhook carries it
        return list(body.get("data") or []), bool(body.get("has_more"))

    def walk(
        self, since: float | None = None, until: float | None = None, after: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Events created in [since, until) (or after the event `after`), oldest first."""
        created: dict[str, int] = {}
        if since is not None:
            created["gte"] = int(since)
        if until is not None:
            created["lt"] = int(until)
        window = {"created": created} if created else {}
        anchor = after
        if anchor is None and since is not None:
            # The newest event before the window: the walk goes on from it, oldest first.
            before, _more = self.page({"limit": 1, "created": {"lt": int(since)}})
            anchor = before[0]["id"] if before else None
        if anchor is None:  # nothing older within the 30 days: find the window's oldest
            oldest = yield from self._newest_first(window)
            if oldest is None:
                return
            anchor = oldest["id"]
        while True:
            data, _more = self.page({**window, "limit": PAGE, "ending_before": anchor})
            if not data:  # as the SDK's auto-pagination ends (stripe-python _list_object.py)
                return
            yield from reversed(data)
            anchor = data[0]["id"]

    def _newest_first(
        self, window: dict[str, Any]
    ) -> Generator[dict[str, Any], None, dict[str, Any] | None]:
        """Walk `window` newest first: up to BUFFER_MAX events are yielded oldest first
        and None returned; a larger window yields only its oldest event, and returns it for
        the walk to go on from."""
        held: list[dict[str, Any]] = []
        last: dict[str, Any] | None = None
        overflow = False
        params: dict[str, Any] = {**window, "limit": PAGE}
        while True:
            data, more = self.page(params)
            if data:
                last = data[-1]
                overflow = overflow or len(held) + len(data) > BUFFER_MAX
                held = [] if overflow else held + data
            if not data or not more:
                break
            params["starting_after"] = data[-1]["id"]
        if not overflow:
            yield from reversed(held)
            return None
        assert last is not None  # an overflow means events were listed
        yield last
        return last


class Reconciler:
    """Queues listed events as the receiver queues a delivered one (worker/queue.py), the
    trail's first line saying `reconciled`."""

    def __init__(self, client: redis.Redis, settings: Settings, livemode: bool) -> None:
        self.client = client
        self.keys = settings.keys
        self.livemode = livemode
        self.enqueuer = Enqueuer(client, settings)

    def processed(self, work: Work) -> bool:
        """Published or failed for good before: its dedupe mark may have expired since."""
        pipe = self.client.pipeline(transaction=False)
        pipe.exists(self.keys.published(EVENTS, work.work_id))
        pipe.exists(self.keys.published(ERRORS, work.failure_id))
        return any(pipe.execute())

    def queue(self, event: dict[str, Any]) -> bool:
        """True when queued now; False when it was queued or processed before."""
        work = Work.for_event(event)
        if self.processed(work):
            return False
        return self.enqueuer.enqueue_once(
            work, summary=f"{event['id']} reconciled", origin=RECONCILED
        )

    def run(
        self, events: Iterable[dict[str, Any]], progress: Callable[[int], None] | None = None
    ) -> Walked:
        """Queue what `events` holds that was never queued; `progress(created)` after every
        page's worth of events (all events older than `created` are done)."""
        listed = queued = 0
        newest: int | None = None
        for event in events:
            # What the receiver refuses it never queues (an id and a type; the key's mode).
            if not isinstance(event.get("id"), str) or not isinstance(event.get("type"), str):
                continue
            if event.get("livemode") is not self.livemode:
                continue
            listed += 1
            queued += self.queue(event)
            newest = max(newest or 0, int(event.get("created") or 0))
            if progress and listed % PAGE == 0:
                progress(newest)
        return Walked(listed, queued, listed - queued, newest)


def reconcile(
    client: redis.Redis,
    settings: Settings,
    gateway: StripeGateway,
    *,
    since: float | None = None,
    after: str | None = None,
    account: str = "",
) -> Walked:
    """`stripe-worker reconcile`: every event since `since` (a unix time) or after the
    event `after`, or all of Stripe's 30 days, queued when never queued before."""
    if since is None and after is None:
        since = time.time() - RETENTION
    events = EventList(gateway, settings.event_types, account)
    reconciler = Reconciler(client, settings, gateway.livemode(STRIPE_SECRET_KEY))
    return reconciler.run(events.walk(since=since, after=after))
