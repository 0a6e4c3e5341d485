"""The Celery tasks: run a component, retry what is temporary, publish each result once.

Every task ends its piece of work in exactly one stream entry: its result on
`stripe:customers` (or `stripe:events`), or its failure on `stripe:errors` once it is
permanent or its retries are spent. Each task takes one argument, `work`: a `Work`
(worker/work.py) as JSON.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis
from celery import Celery, Task
from celery.exceptions import Reject, SoftTimeLimitExceeded

from tasks import metrics
from tasks.components import run_component
from tasks.create_once import ALREADY_EXISTS, already_exists_id, create_once
from tasks.entries import (
    CustomerEntry,
    Entry,
    EventEntry,
    FailureEntry,
    connected_account,
    customer_id_named_by,
    entry_fields,
    event_object,
)
from tasks.publish import DoneWith
from tasks.retry_policy import Decision, RetryPolicy, decide
from tasks.runtime import Runtime, runtime_of
from worker import tracing
from worker.errors import ConnectionFailed, InternalError, StripeWorkerError
from worker.keys import ERRORS
from worker.spec import CREATE_CUSTOMER, GET_CUSTOMER, ComponentSpec
from worker.work import (
    CREATE_CUSTOMER_TASK,
    GET_CUSTOMER_TASK,
    HANDLE_STRIPE_EVENT_TASK,
    Work,
)

log = logging.getLogger("stripe_worker.tasks")


if TYPE_CHECKING:  # celery-types' generic Task: (work, held) -> result
    _Task = Task[[dict[str, Any], int], dict[str, Any]]
else:  # subscripting Task at run time needs Celery 5.7 (celery#10038); the pin allows 5.5
    _Task = Task


class WorkTask(_Task):
    """Runs one piece of work; carrying out the retry decision and publishing live here, once."""

    abstract = True
    typing = False
    max_retries = None  # attempts are counted against RETRY_MAX_ATTEMPTS by the policy

    def run(self, work: dict[str, Any], held: int = 0) -> dict[str, Any]:
        # The delivery's trace goes on from the enqueue's span: its traceparent is a custom
        # header of the message (worker/envelope.py), which Celery keeps on every retry.
        request = self.request
        attributes = {
            "messaging.operation.type": "process",
            "messaging.message.id": request.id,
            "stripe_worker.attempt": request.retries + 1,
        }
        with tracing.span(
            f"run {self.name}",
            "consumer",
            parent=(request.headers or {}).get(tracing.TRACEPARENT),
            attributes=attributes,
        ) as span:
            parsed = Work.from_json(work)
            tracing.annotate(
                span,
                **{
                    "stripe_worker.work_id": parsed.work_id,
                    "stripe_worker.delivery_id": parsed.delivery_id,
                },
            )
            # A Stripe call's place among the calls in flight goes back with the publish.
            with runtime_of(self.app).gateway.keeping_places():
                return self.perform(parsed, held)

    def retry(self, *args: Any, **kwargs: Any) -> Any:
        """Celery's retry, but a retry that cannot be queued (Redis in a failover) puts the
        message back instead of dropping it, as Celery would (the ledger would find it only
        after VISIBILITY_TIMEOUT); if Redis cannot take it back either, its lease lapses
        and tasks/recovery.py gives it back."""
        try:
            return super().retry(*args, **kwargs)
        except Reject as rejected:
            # Celery's Reject keeps both (celery/exceptions.py); celery-types leaves them out.
            if rejected.requeue:  # type: ignore[attr-defined]
                raise
            raise Reject(rejected.reason, requeue=True) from None  # type: ignore[attr-defined]

    def perform(self, work: Work, held: int = 0) -> dict[str, Any]:
        rt = runtime_of(self.app)
        attempts = self.request.retries + 1 - held  # held: retries that were back-pressure
        try:
            done = self.do(rt, work, attempts)
        except SoftTimeLimitExceeded:
            failure: BaseException = ConnectionFailed("the task ran past its time limit")
        except (StripeWorkerError, redis.RedisError) as exc:
            failure = exc
        except Exception as exc:  # a bug of ours: end on the error stream, never vanish
            log.exception("unexpected error in %s %s", self.name, work.source_id)
            failure = InternalError(f"{exc.__class__.__name__}: {exc}")
        else:
            return self._publish(rt, work, done.entry, attempts, held, done.remember)
        decision = decide(failure, attempts, held, RetryPolicy.from_settings(rt.settings))
        if decision.action == "fail":
            log.warning(
                "failed for good: %s %s: %s %s",
                self.name,
                work.source_id,
                decision.error.error_type,
                decision.error.message,
            )
            failed = FailureEntry.of(
                work, decision.error, attempts, self.component_of(work), _livemode(rt, work)
            )
            return self._publish(rt, work, failed, attempts, held)
        raise self._carry_out(rt, work, decision, attempts)

    def _carry_out(self, rt: Runtime, work: Work, decision: Decision, attempts: int) -> Any:
        """The one place a task is retried: a retry or a hold, counted and on the trail once
        the new message is safely queued."""
        log.info(
            "%s %s %s (%d): %s",
            "holding" if decision.action == "hold" else "retrying",
            self.name,
            work.source_id,
            attempts,
            decision.error.message,
        )
        retry = self.retry(
            kwargs={"work": work.to_json(), "held": decision.holds},
            countdown=decision.countdown,
            exc=decision.error,
            throw=False,
        )
        step = "held" if decision.action == "hold" else "retried"
        metrics.task_done(self.name, step)
        rt.trail.record_error(work, step, attempts, decision.error)
        return retry

    def do(self, rt: Runtime, work: Work, attempts: int) -> Done:
        """The work itself, or a StripeWorkerError."""
        raise NotImplementedError

    def component_of(self, work: Work) -> str:
        """The component a failure's entry names."""
        return str((work.spec or {}).get("component") or GET_CUSTOMER)

    def publish_id(self, work: Work, entry: Entry) -> str:
        return work.failure_id if isinstance(entry, FailureEntry) else work.work_id

    def _publish(
        self,
        rt: Runtime,
        work: Work,
        entry: Entry,
        attempts: int,
        held: int,
        remember: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        wire = entry_fields(entry)
        outcome = "failed" if entry.stream == ERRORS else "published"
        done_with, tag = self._done_with(rt)
        try:
            # The memory, the entry, the trail's line, the ack and the Stripe call's place
            # in flight in one round trip.
            published = rt.publisher.publish(
                entry.stream,
                self.publish_id(work, entry),
                wire,
                work.delivery_id,
                remember=remember,
                trail=rt.trail.end_line(work, outcome, entry.stream, wire),
                done_with=done_with,
            )
        except redis.RedisError as exc:
            decision = decide(exc, attempts, held, RetryPolicy.from_settings(rt.settings))
            raise self._carry_out(rt, work, decision, attempts) from None
        rt.gateway.place_freed()
        if tag:
            rt.state.acked_by_publish(tag)
        metrics.task_done(self.name, outcome)
        return {
            "stream": entry.stream,
            "entry_id": published.entry_id,
            "new": published.new,
            "customerId": entry.customer_id,
        }

    def _done_with(self, rt: Runtime) -> tuple[DoneWith, str]:
        """What the publish lets go of in its own round trip, and the delivery tag it acks.

        The ack: with acks_late Celery acks a message once its task has returned, in a
        round trip of the consumer's (kombu's QoS.ack: ZREM and HDEL of its unacked index
        and hash); the publish does the same removals, so QoS.ack (tasks/transport.py)
        then only does kombu's bookkeeping. A worker that dies between the two leaves
        nothing to give back: the work is published. The tag is kombu's, among the
        message's properties (Celery's Context.properties, set from the message by
        celery/worker/request.py); a task run some other way has none, and is acked as
        before."""
        keys = rt.settings.keys
        tag = (self.request.properties or {}).get("delivery_tag") or ""
        if not isinstance(tag, str):
            tag = ""
        done_with = DoneWith()
        if tag:
            done_with = DoneWith(((keys.unacked_index, tag),), ((keys.unacked, tag),))
        place = rt.gateway.place_to_free()
        if place:
            done_with += DoneWith((place,))
        return done_with, tag


@dataclass(frozen=True)
class Done:
    """What a piece of work came to: its entry, and for a new customer the user ->
    customer memory (key, customer id) that the entry's publishing step writes with it."""

    entry: Entry
    remember: tuple[str, str] | None = None


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

    def do(self, rt: Runtime, work: Work, attempts: int) -> Done:
        spec, livemode = _component(rt, work)
        outputs, remember = create_once(rt, spec, work.idempotency_key, livemode)
        asked = outputs.pop(ALREADY_EXISTS, None)
        entry = CustomerEntry.of(CREATE_CUSTOMER, outputs, work, livemode, attempts, asked)
        return Done(entry, remember)

    def publish_id(self, work: Work, entry: Entry) -> str:
        if isinstance(entry, CustomerEntry) and entry.already_exists:
            return already_exists_id(work)
        return super().publish_id(work, entry)


class GetCustomer(WorkTask):
    name = GET_CUSTOMER_TASK

    def do(self, rt: Runtime, work: Work, attempts: int) -> Done:
        spec, livemode = _component(rt, work)
        outputs = run_component(spec, rt.gateway)
        return Done(CustomerEntry.of(GET_CUSTOMER, outputs, work, livemode, attempts))


class HandleStripeEvent(WorkTask):
    """Publishes a verified event, enriched by a Get Customer when the event names a
    customer that still exists."""

    name = HANDLE_STRIPE_EVENT_TASK

    def do(self, rt: Runtime, work: Work, attempts: int) -> Done:
        event = work.event or {}
        obj = event_object(event)
        customer_id = customer_id_named_by(event)
        if customer_id and not (obj.get("object") == "customer" and obj.get("deleted")):
            spec = ComponentSpec.parse({"component": GET_CUSTOMER, "customer_id": customer_id})
            # A Connect event's customer lives in the connected account it came from.
            found = run_component(spec, rt.gateway, account=connected_account(event))
            return Done(EventEntry.of(GET_CUSTOMER, found, work, attempts))
        # nothing to look up: a deleted customer, or an event about no customer
        email = obj.get("email") if obj.get("object") == "customer" else None
        outputs = {"customerId": customer_id, "customerEmail": email}
        return Done(EventEntry.of("", outputs, work, attempts))


def register(app: Celery) -> None:
    """Register the tasks on `app` under their stable names."""
    for task_class in (CreateCustomer, GetCustomer, HandleStripeEvent):
        app.register_task(task_class())
