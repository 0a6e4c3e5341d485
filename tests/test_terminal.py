"""What `tail`, `trace`, `dlq list` and `status` print of a sender's text: one line per
entry, no control character reaching the terminal (ESC sequences, CR/LF, C1, bidi)."""

import json

import pytest

from worker.terminal import printable

from .support import fresh_env, run_in_process, sign_standard, worker_env

FORGED = "customer.updated\x1b[2J\x1b[31mFORGED\n12:00:00  forged line\u202etxt.exe"

# The entries here are hand-made (these commands show any fields); `settings` deletes them.
pytestmark = [pytest.mark.handmade_entries, pytest.mark.usefixtures("settings")]


def raw_controls(text: str) -> set[str]:
    """The characters of `text` a terminal would act on, bar the newlines ending lines."""
    return {c for c in text.replace("\n", "") if printable(c) != c}


def test_printable_escapes_each_kind() -> None:
    assert printable("a\x1b[2Jb\r\nc\x9b\u202ed\ud800\te") == (
        "a\\x1b[2Jb\\r\\nc\\x9b\\u202ed\\ud800\\te"
    )
    assert printable("Jenny Rosen, 東京, ü") == "Jenny Rosen, 東京, ü"


@pytest.mark.parametrize("stream", ["events", "errors"])
def test_tail_prints_a_forged_event_type_as_one_escaped_line(
    tmp_path, redis_url, prefix, redis_client, stream
) -> None:
    redis_client.xadd(
        f"{prefix}:{stream}",
        {
            "component": "publish.event",
            "source": "stripe",
            "source_id": "evt_1",
            "event_type": FORGED,
            "error_type": "invalid_request_error" if stream == "errors" else "",
            "error_message": FORGED if stream == "errors" else "",
        },
    )
    env = fresh_env(tmp_path, REDIS_URL=redis_url, STREAM_PREFIX=prefix)
    done = run_in_process("tail", stream, "--count", "1", env=env)
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    assert raw_controls(done.stdout) == set()
    assert "customer.updated\\x1b[2J\\x1b[31mFORGED\\n12:00:00  forged line\\u202e" in line


def test_dlq_list_prints_a_forged_message_as_one_escaped_line(
    tmp_path, redis_url, prefix, redis_client
) -> None:
    redis_client.xadd(
        f"{prefix}:errors",
        {
            "component": "stripe.createCustomer",
            "error_type": "invalid_request_error",
            "source": "signup",
            "source_id": "msg\x1b]0;owned\x07",
            "error_message": FORGED,
        },
    )
    env = fresh_env(tmp_path, REDIS_URL=redis_url, STREAM_PREFIX=prefix)
    done = run_in_process("dlq", "list", env=env)
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    assert raw_controls(done.stdout) == set()
    assert "msg\\x1b]0;owned\\x07" in line


def test_trace_and_status_escape_what_senders_and_agents_named(
    client, redis_client, settings
) -> None:
    # A real signup through the receiver: its webhook id (the sender's) is on the trail.
    body = json.dumps({"type": "user.created", "data": {"user_id": "u_t1", "email": "t@x.io"}})
    msg_id = "msg\x1b[2J\x1b[31m\x9b"
    answer = client.post("/webhooks/signup", data=body, headers=sign_standard(body, msg_id))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    # A consumer group is named by an agent; status lists it beside its stream.
    redis_client.xadd(f"{settings.stream_prefix}:events", {"event_type": "x"})
    redis_client.xgroup_create(f"{settings.stream_prefix}:events", "agent\x1b[31m")
    env = worker_env(settings, {})

    done = run_in_process("trace", "u_t1", env=env)
    assert done.returncode == 0
    out = done.stdout
    assert raw_controls(out) == set()
    assert "delivery=signup:msg\\x1b[2J\\x1b[31m\\x9b" in out
    assert len(out.splitlines()) == 2  # the work id and its one step, `received`

    out = run_in_process("status", env=env).stdout
    assert raw_controls(out) == set() and "agent\\x1b[31m lag" in out
