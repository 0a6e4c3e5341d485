"""The contract with Celery and kombu that the hand-built envelope and the transport rely on.

If an upgrade of celery or kombu changes what these tests pin, they fail here, loudly,
before a worker silently drops or loses messages (pyproject.toml pins the tested range).
The private kombu and Celery names the transport uses are checked by
tests/test_kombu_contract.py, against their list in tasks/kombu_contract.py.
"""

import base64
import json

import kombu.transport.redis as kombu_redis
from celery import Celery

from worker.envelope import open_envelope, task_message
from worker.keys import QUEUE, Keys
from worker.work import CREATE_CUSTOMER_TASK, Work

WORK = Work(
    CREATE_CUSTOMER_TASK,
    "signup:msg_1",
    "create:signup-u_1",
    "signup",
    "msg_1",
    spec={"component": "stripe.createCustomer", "trigger": "true", "Body": {}},
    idempotency_key="signup-u_1",
)


def celery_message(message_id: str):
    app = Celery("contract", broker="redis://", set_as_current=False)
    app.conf.task_serializer = "json"
    return app.amqp.as_task_v2(
        message_id,
        WORK.task,
        args=(),
        kwargs={"work": WORK.to_json()},
        argsrepr="()",
        kwargsrepr="summary",
    )


def test_headers_and_properties_are_celerys_protocol_2():
    ours = json.loads(task_message(WORK, "id-1", "summary"))
    theirs = celery_message("id-1")
    mine = dict(ours["headers"])
    for volatile in ("origin",):
        mine.pop(volatile)
        theirs.headers.pop(volatile)
    assert mine == theirs.headers
    for name, value in theirs.properties.items():
        assert ours["properties"][name] == value


def test_a_traceparent_is_a_custom_header_celery_keeps_on_retries():
    """The task reads it from `request.headers`, and a retry is sent with
    `as_execution_options()`'s headers (Task.signature_from_request)."""
    from celery.app.task import Context

    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    headers = json.loads(task_message(WORK, "id-1", "summary", traceparent))["headers"]
    context = Context(headers)
    assert context.headers == {"traceparent": traceparent}
    assert context.as_execution_options()["headers"] == {"traceparent": traceparent}
    assert "traceparent" not in json.loads(task_message(WORK, "id-1"))["headers"]


def test_body_is_celerys_three_items():
    ours = json.loads(task_message(WORK, "id-1"))
    theirs = celery_message("id-1")
    args, kwargs, embed = json.loads(base64.b64decode(ours["body"]))
    assert (tuple(args), kwargs, embed) == theirs.body
    assert open_envelope(task_message(WORK, "id-1"))[:2] == ("id-1", WORK.task)


def test_envelope_is_what_kombus_redis_transport_puts():
    """kombu's own publish of the same message, as `_put` LPUSHes it."""
    ours = json.loads(task_message(WORK, "id-1"))
    assert set(ours) == {"body", "content-encoding", "content-type", "headers", "properties"}
    assert ours["properties"]["delivery_info"] == {"exchange": "", "routing_key": QUEUE}
    assert ours["properties"]["body_encoding"] == "base64"


def test_kombu_key_names_are_the_ones_keys_documents():
    keys = Keys("stripe")
    channel = kombu_redis.Channel
    assert keys.kombu_prefix + channel.unacked_key == keys.unacked
    assert keys.kombu_prefix + channel.unacked_index_key == keys.unacked_index
    assert keys.queue == keys.kombu_prefix + QUEUE
