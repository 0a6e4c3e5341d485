"""Stream entries: one frozen type per kind, serialised by one function, as the schemas say."""

import dataclasses

import pytest

from tasks.entries import (
    CustomerEntry,
    EventEntry,
    FailureEntry,
    QuarantinedEntry,
    entry_fields,
)
from tasks.publish import as_field
from worker.errors import StripeUnavailable
from worker.schema import SCHEMA_VERSION
from worker.spec import CREATE_CUSTOMER, GET_CUSTOMER, ComponentSpec
from worker.work import Work

from .entry_schemas import entry_problems

SIGNUP = Work.for_component(
    ComponentSpec.parse(
        {"component": CREATE_CUSTOMER, "trigger": 1, "Body": {"email": "a@example.com"}}
    ),
    "signup",
    "msg_1",
)
EVENT = Work.for_event(
    {
        "id": "evt_1",
        "type": "customer.updated",
        "livemode": False,
        "data": {"object": {"object": "customer", "id": "cus_1", "email": "a@example.com"}},
    }
)
OUTPUTS = {
    "customerId": "cus_1",
    "customerEmail": "a@example.com",
    "Response": {"id": "cus_1", "email": "a@example.com"},
    "Headers": {"Request-Id": "req_1"},
    "id": "cus_1",  # an extra output the component asked for
}
ERROR = StripeUnavailable("Stripe answered 500", http_status=500, request_id="req_2")

CASES = [
    ("customers", CustomerEntry.of(CREATE_CUSTOMER, OUTPUTS, SIGNUP, False, 1)),
    ("customers", CustomerEntry.of(CREATE_CUSTOMER, OUTPUTS, SIGNUP, False, 2, {"email": "b@x"})),
    ("customers", CustomerEntry.of(GET_CUSTOMER, {"customerId": "cus_1"}, SIGNUP, None, 1)),
    ("events", EventEntry.of(GET_CUSTOMER, OUTPUTS, EVENT, 1)),
    ("events", EventEntry.of("", {"customerId": None, "customerEmail": None}, EVENT, 1)),
    ("errors", FailureEntry.of(SIGNUP, ERROR, 5, CREATE_CUSTOMER, False)),
    ("errors", FailureEntry.of(EVENT, ERROR, 5, GET_CUSTOMER, False)),
    ("errors", QuarantinedEntry(source_id="m1", error_message="bad", task="", message="{}")),
]


@pytest.mark.parametrize(("stream", "entry"), CASES)
def test_each_entry_is_what_its_streams_schema_says(stream, entry):
    assert entry.stream == stream
    wire = {"schema_version": SCHEMA_VERSION, "work_id": "w1"}
    wire |= {name: as_field(value) for name, value in entry_fields(entry).items()}
    assert entry_problems(stream, wire) == []


@pytest.mark.parametrize(("stream", "entry"), CASES)
def test_entries_are_never_changed_after_they_are_built(stream, entry):
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.customer_id = "cus_other"


def test_wire_names_order_and_left_out_fields():
    plain = entry_fields(CASES[0][1])
    assert list(plain)[:5] == ["component", "customerId", "customerEmail", "Response", "Headers"]
    assert plain["outputs"] == {"id": "cus_1"}
    assert "already_exists" not in plain and "requested_email" not in plain
    second = entry_fields(CASES[1][1])
    assert (second["already_exists"], second["requested_email"]) == (True, "b@x")
    failure = entry_fields(CASES[6][1])
    assert failure["task_kwargs"] == {"work": EVENT.to_json()}
    assert (failure["customerId"], failure["event_type"]) == ("cus_1", "customer.updated")
    assert "event" not in entry_fields(CASES[5][1])  # a signup's failure carries no event
