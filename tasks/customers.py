"""The Celery tasks: run a component, retry what is temporary, publish each result once.

Every task ends its piece of work in exactly one stream entry: its result on
`stripe:customers` (or `stripe:events`), or its failure on `stripe:errors` once it is
permanent or its retries are spent. Each task takes one argument, `work`: a `Work`
(worker/work.py) as JSON.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import redis
from celery import Celery, Task
from celery.exceptions import Reject, SoftTimeLimitExceeded

from tasks import metrics
from tasks.components import run_component
from tasks.create_once import ALREADY_EXISTS, already_exists_id, create_once
from tasks.entries import connected_account, customer_id_named_by, result_entry
from tasks.runtime import Runtime
from worker.errors import (
    ConnectionFailed,
    InternalError,
    RateLimited,
    StripeWorkerError,
    is_retryable,
)
from worker.keys import CUSTOMERS, ERRORS, EVENTS
from worker.spec import CREATE_CUSTOMER, GET_CUSTOMER, ComponentSpec
from worker.work import (
    CREATE_CUSTOMER_TASK,
    GET_CUSTOMER_TASK,
    HANDLE_STRIPE_EVENT_TASK,
    Work,
)

log = logging.getLogger("stripe_worker.tasks")


def backoff(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with equal jitter: half fixed, half random, capped."""
    delay = min(cap, base * 2 ** (attempt - 1))
    return delay / 2 + (rng or random).uniform(0, delay / 2)


class WorkTask(Task):
    """Runs one piece of work; the retry policy and the publishing live here, once."""

    abstract = True
    typing = False
    max_retries = None  # attempts are counted against RETRY_MAX_ATTEMPTS in `perform`

    def run(self, work: dict[str, Any], held: int = 0) -> dict[str, Any]:
        return self.perform(Work.from_json(work), held)

    def retry(self, *args: Any, **kwargs: Any) -> Any:
        """Celery's retry, but a retry that cannot be queued (Redis in a failover) puts the
        message back instead of dropping it, as Celery would (the ledger would find it only
        after VISIBILITY_TIMEOUT); if Redis cannot take it back either, its lease lapses
        and tasks/recovery.py gives it back."""
        try:
            return super().retry(*args, **kwargs)
        except Reject as rejected:
            if rejected.requeue:
                raise
            raise Reject(rejected.reason, requeue=True) from None

    def perform(self, work: Work, held: int = 0) -> dict[str, Any]:
        rt: Runtime = self.app.runtime  # type: ignore[attr-defined]
        attempts = self.request.retries + 1 - held  # held: retries that were back-pressure
        try:
            stream, entry = self.do(rt, work, attempts)
        except SoftTimeLimitExceeded:
            error: StripeWorkerError = ConnectionFailed("the task ran past its time limit")
        except StripeWorkerError as exc:
            error = exc
        except redis.RedisError as exc:
            # Our own Redis (memory or streams) is down: the work is not done; try again.
            metrics.task_done(self.name, "retried")
            raise self.retry(countdown=self._delay(rt, attempts), exc=exc) from None
        except Exception as exc:  # a bug of ours: end on the error stream, never vanish
            log.exception("unexpected error in %s %s", self.name, work.source_id)
            error = InternalError(f"{exc.__class__.__name__}: {exc}")
        else:
            return self._publish(rt, work, stream, self.publish_id(work, entry), entry)
        if isinstance(error, RateLimited):  # back-pressure: wait on the queue, attempts kept
            wait = error.retry_after or self._delay(rt, held + 1)
            raise self.retry(kwargs=dict(work=work.to_json(), held=held + 1), countdown=wait)
        if is_retryable(error) and attempts < rt.settings.retry_max_attempts:
            log.info("retrying %s %s (%d): %s", self.name, work.source_id, attempts, error.message)
            retry = self.retry(countdown=self._delay(rt, attempts), exc=error, throw=False)
            metrics.task_done(self.name, "retried")  # once the retry is safely queued
            rt.trail.record_error(work, "retried", attempts, error)
            raise retry from None
        return self._publish_error(rt, work, error, attempts)

    def do(self, rt: Runtime, work: Work, attempts: int) -> tuple[str, dict[str, Any]]:
        """The work itself: (stream, entry), or a StripeWorkerError."""
        raise NotImplementedError

    def publish_id(self, work: Work, entry: dict[str, Any]) -> str:
        return work.work_id

    def _delay(self, rt: Runtime, attempts: int) -> float:
        return backoff(attempts, rt.settings.retry_base_delay, rt.settings.retry_max_delay)

    def _publish(
        self, rt: Runtime, work: Work, stream: str, work_id: str, entry: dict[str, Any]
    ) -> dict:
        try:
            published = rt.publisher.publish(stream, work_id, entry, work.delivery_id)
        except redis.RedisError as exc:
            metrics.task_done(self.name, "retried")
            raise self.retry(countdown=self._delay(rt, self.request.retries + 1), exc=exc) from None
        outcome = "failed" if stream == ERRORS else "published"
        metrics.task_done(self.name, outcome)
        rt.trail.record_end(work, outcome, stream, published.entry_id, published.new, entry)
        return {
            "stream": stream,
            "entry_id": published.entry_id,
            "new": published.new,
            "customerId": entry.get("customerId"),
        }

    def _publish_error(
        self, rt: Runtime, work: Work, error: StripeWorkerError, attempts: int
    ) -> dict[str, Any]:
        spec = work.spec or {}
        entry = {
            "component": spec.get("component", GET_CUSTOMER),
            "customerId": spec.get("customer_id") or customer_id_named_by(work.event or {}) or "",
            "customerEmail": "",
            "Response": {},
            "Headers": {},
            "source": work.source,
            "source_id": work.source_id,
            "idempotency_key": work.idempotency_key,
            "livemode": _livemode(rt, work),
            "attempts": attempts,
            "error_type": error.error_type,
            "http_status": error.http_status,
            "error_message": error.message,
            "request_id": error.request_id,
            # What `stripe-worker dlq replay` queues again.
            "task": work.task,
            "task_kwargs": {"work": work.to_json()},
        }
        if work.event is not None:
            entry["event_type"] = work.event.get("type")
            entry["event"] = work.event
        log.warning(
            "failed for good: %s %s: %s %s",
            self.name,
            work.source_id,
            error.error_type,
            error.message,
        )
        return self._publish(rt, work, ERRORS, work.failure_id, entry)


def _livemode(rt: Runtime, work: Work) -> bool | None:
    if work.event is not None:
        return work.event.get("livemode")
    try:
        return rt.gateway.livemode(ComponentSpec.parse(work.spec).api_secret)
    except StripeWorkerError:
        return None


def _component(rt: Runtime, work: Work) -> tuple[ComponentSpec, bool]:
    spec = ComponentSpec.parse(work.spec)
    return spec, rt.gateway.livemode(spec.api_secret)


class CreateCustomer(WorkTask):
    name = CREATE_CUSTOMER_TASK

    def do(self, rt: Runtime, work: Work, attempts: int) -> tuple[str, dict[str, Any]]:
        spec, livemode = _component(rt, work)
        outputs = create_once(rt, spec, work.idempotency_key, livemode)
        asked = outputs.pop(ALREADY_EXISTS, None)
        entry = result_entry(
            CREATE_CUSTOMER,
            outputs,
            source=work.source,
            source_id=work.source_id,
            idempotency_key=work.idempotency_key,
            livemode=livemode,
            attempts=attempts,
        )
        if asked is not None:  # a second signup of the user, with other details
            entry.update(already_exists=True, requested_email=asked.get("email"))
        return CUSTOMERS, entry

    def publish_id(self, work: Work, entry: dict[str, Any]) -> str:
        return already_exists_id(work) if entry.get("already_exists") else work.work_id


class GetCustomer(WorkTask):
    name = GET_CUSTOMER_TASK

    def do(self, rt: Runtime, work: Work, attempts: int) -> tuple[str, dict[str, Any]]:
        spec, livemode = _component(rt, work)
        outputs = run_component(spec, rt.gateway)
        return CUSTOMERS, result_entry(
            GET_CUSTOMER,
            outputs,
            source=work.source,
            source_id=work.source_id,
            idempotency_key="",
            livemode=livemode,
            attempts=attempts,
        )


class HandleStripeEvent(WorkTask):
    """Publishes a verified event, enriched by a Get Customer when the event names a
    customer that still exists."""

    name = HANDLE_STRIPE_EVENT_TASK

    def do(self, rt: Runtime, work: Work, attempts: int) -> tuple[str, dict[str, Any]]:
        event = work.event or {}
        obj = (event.get("data") or {}).get("object") or {}
        customer_id = customer_id_named_by(event)
        if customer_id and not (obj.get("object") == "customer" and obj.get("deleted")):
            spec = ComponentSpec.parse({"component": GET_CUSTOMER, "customer_id": customer_id})
            # A Connect event's customer lives in the connected account it came from.
            outputs = run_component(spec, rt.gateway, account=connected_account(event))
            component = GET_CUSTOMER
        else:  # nothing to look up: a deleted customer, or an event about no customer
            is_customer = obj.get("object") == "customer"
            outputs = {
                "customerId": customer_id,
                "customerEmail": obj.get("email") if is_customer else None,
            }
            component = ""
        entry = result_entry(
            component,
            outputs,
            source=work.source,
            source_id=work.source_id,
            idempotency_key="",
            livemode=event.get("livemode"),
            attempts=attempts,
        )
        entry["event_type"] = event.get("type")
        entry["event"] = event
        return EVENTS, entry


def register(app: Celery) -> None:
    """Register the tasks on `app` under their stable names."""
    for task_class in (CreateCustomer, GetCustomer, HandleStripeEvent):
        app.register_task(task_class())
