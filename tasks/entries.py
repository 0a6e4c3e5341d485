"""Stream entries: one frozen type per kind, built here, serialised by `entry_fields`.

| type               | stream    | what it says                                         |
|--------------------|-----------|------------------------------------------------------|
| `CustomerEntry`    | customers | a Create or Get Customer's result                    |
| `EventEntry`       | events    | a verified Stripe event, enriched with its customer  |
| `FailureEntry`     | errors    | work that failed for good: what `dlq replay` queues  |
| `QuarantinedEntry` | errors    | a queue message that was no work we could run, whole |

The shipped JSON Schemas (worker/schemas/*.json) describe the same fields under their wire
names (`customerId`, `Response`, ...); tests/entry_schemas.py checks every entry a test
leaves against them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from worker.errors import InvalidMessage, StripeWorkerError
from worker.keys import CUSTOMERS, ERRORS, EVENTS
from worker.work import Work

PROMISED = ("customerId", "customerEmail", "Response", "Headers")  # the components' outputs


def _wire(name: str) -> dict[str, str]:
    return {"wire": name}


def _optional() -> Any:
    """A field left out of the entry when None (not written as '')."""
    return field(default=None, metadata={"optional": "1"})


def event_object(event: Mapping[str, Any]) -> Mapping[str, Any]:
    """The object an event is about (`data.object`); {} when a validly signed event carries
    something else there (a list, a string: the receiver checks the envelope, not this)."""
    data = event.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    return obj if isinstance(obj, Mapping) else {}


def customer_id_named_by(event: Mapping[str, Any]) -> str | None:
    """The customer an event names: the object itself, or its `customer` field."""
    obj = event_object(event)
    if obj.get("object") == "customer":
        found: Any = obj.get("id")
    else:
        found = obj.get("customer")
        if isinstance(found, Mapping):  # expanded
            found = found.get("id")
    return found if isinstance(found, str) and found else None


def connected_account(event: Mapping[str, Any]) -> str:
    """The connected account a Connect event came from (its `account`), else ""."""
    account = event.get("account")
    return account if isinstance(account, str) else ""


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What every entry about a piece of work says: the outputs under their promised
    names, and where the work came from."""

    component: str
    customer_id: str | None = field(metadata=_wire("customerId"))
    customer_email: str | None = field(metadata=_wire("customerEmail"))
    response: Mapping[str, Any] = field(metadata=_wire("Response"))
    headers: Mapping[str, Any] = field(metadata=_wire("Headers"))
    source: str
    source_id: str
    idempotency_key: str
    livemode: bool | None
    attempts: int


def _outputs(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """An Outcome's output fields, and any extra outputs the component asked for."""
    response = outputs.get("Response") or {}
    extra = {k: v for k, v in outputs.items() if k not in PROMISED}
    return {
        "customer_id": outputs.get("customerId"),
        "customer_email": outputs.get("customerEmail", response.get("email") if response else None),
        "response": response,
        "headers": outputs.get("Headers") or {},
        "outputs": extra or None,
    }


def _origin(work: Work, attempts: int) -> dict[str, Any]:
    return {
        "source": work.source,
        "source_id": work.source_id,
        "idempotency_key": work.idempotency_key,
        "attempts": attempts,
    }


@dataclass(frozen=True, kw_only=True)
class CustomerEntry(Outcome):
    stream: ClassVar[str] = CUSTOMERS

    outputs: Mapping[str, Any] | None = _optional()
    already_exists: bool | None = _optional()  # a second signup of the user, other details
    requested_email: str | None = _optional()

    @classmethod
    def of(
        cls,
        component: str,
        outputs: Mapping[str, Any],
        work: Work,
        livemode: bool | None,
        attempts: int,
        asked: Mapping[str, Any] | None = None,
    ) -> CustomerEntry:
        """A component's result; `asked`: the details of a signup whose customer existed."""
        exists: dict[str, Any] = {}
        if asked is not None:
            exists = {"already_exists": True, "requested_email": asked.get("email")}
        return cls(
            component=component,
            livemode=livemode,
            **_outputs(outputs),
            **_origin(work, attempts),
            **exists,
        )


@dataclass(frozen=True, kw_only=True)
class EventEntry(Outcome):
    stream: ClassVar[str] = EVENTS

    outputs: Mapping[str, Any] | None = _optional()
    event_type: str | None
    event: Mapping[str, Any]
    account: str | None = _optional()  # a Connect event's connected account

    @classmethod
    def of(
        cls, component: str, outputs: Mapping[str, Any], work: Work, attempts: int
    ) -> EventEntry:
        """An event, with what a Get Customer of its customer found (component '' if none)."""
        event = work.event or {}
        return cls(
            component=component,
            livemode=event.get("livemode"),
            event_type=event.get("type"),
            event=event,
            account=connected_account(event) or None,
            **_outputs(outputs),
            **_origin(work, attempts),
        )


@dataclass(frozen=True, kw_only=True)
class FailureEntry(Outcome):
    stream: ClassVar[str] = ERRORS

    error_type: str
    http_status: int | None
    error_message: str
    request_id: str | None
    task: str  # what `stripe-worker dlq replay` queues again, with task_kwargs
    task_kwargs: Mapping[str, Any]
    event_type: str | None = _optional()
    event: Mapping[str, Any] | None = _optional()
    account: str | None = _optional()  # a Connect event's connected account

    @classmethod
    def of(
        cls, work: Work, error: StripeWorkerError, attempts: int, component: str,
        livemode: bool | None,
    ) -> FailureEntry:  # fmt: skip
        spec = work.spec or {}
        event = work.event
        return cls(
            component=component,
            customer_id=spec.get("customer_id") or customer_id_named_by(event or {}) or "",
            customer_email="",
            response={},
            headers={},
            livemode=livemode,
            error_type=error.error_type,
            http_status=error.http_status,
            error_message=error.message,
            request_id=error.request_id,
            task=work.task,
            task_kwargs={"work": work.to_json()},
            event_type=None if event is None else event.get("type"),
            event=event,
            account=connected_account(event or {}) or None,
            **_origin(work, attempts),
        )


@dataclass(frozen=True, kw_only=True)
class QuarantinedEntry:
    """A message set aside whole (tasks/quarantine.py): `message` is it as kombu read it."""

    stream: ClassVar[str] = ERRORS

    component: str = ""
    customer_id: str = field(default="", metadata=_wire("customerId"))
    source: str = "queue"
    source_id: str
    error_type: str = InvalidMessage.error_type
    http_status: str = ""
    error_message: str
    request_id: str = ""
    task: str
    task_kwargs: str = ""
    message: str


Entry = CustomerEntry | EventEntry | FailureEntry | QuarantinedEntry


def entry_fields(entry: Entry) -> dict[str, Any]:
    """The entry's fields under their wire names, in order; the Publisher writes them."""
    out: dict[str, Any] = {}
    for f in fields(entry):
        value = getattr(entry, f.name)
        if value is None and f.metadata.get("optional"):
            continue
        out[f.metadata.get("wire", f.name)] = value
    return out
