"""`stripe-worker web` against clients that are slow, oversized or malformed, over real
sockets: legitimate webhooks go through, the others get a JSON answer or are cut."""

from __future__ import annotations

import contextlib
import json
import os
import socket

import pytest
import requests

from tests.support import queued, sign_stripe, stripe_event, wait_for


def connect(web) -> socket.socket:
    return socket.create_connection(("127.0.0.1", web.port), timeout=30)


def answer_of(sock: socket.socket) -> tuple[int, dict]:
    """Status and JSON body of the one answer on `sock` (it is closed after)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def trickle_until_cut(socks: list[socket.socket], byte: bytes) -> list[bytes]:
    """Send `byte` on each connection every 0.2 s until the server has closed them all;
    what each received."""
    got = {s: b"" for s in socks}
    done: set[socket.socket] = set()

    def all_cut() -> bool:
        for s in set(socks) - done:
            with contextlib.suppress(OSError):
                s.sendall(byte)
            s.settimeout(0.2 / len(socks))
            try:
                while data := s.recv(65536):
                    got[s] += data
                done.add(s)  # end of stream: cut
            except TimeoutError:
                pass
            except OSError:
                done.add(s)
        return len(done) == len(socks)

    wait_for(all_cut, timeout=30, interval=0.2)
    return [got[s] for s in socks]


def signed_post(web, event_id: str) -> requests.Response:
    body = stripe_event(event_id)
    return requests.post(
        f"{web.url}/webhooks/stripe",
        data=body,
        headers={"Stripe-Signature": sign_stripe(body), "Content-Type": "application/json"},
        timeout=10,
    )


@pytest.mark.slow
def test_slow_senders_do_not_starve_legit_webhooks_and_are_cut(start_web, redis_client, settings):
    web = start_web(READ_TIMEOUT="2")
    header_tricklers = [connect(web) for _ in range(60)]
    body_tricklers = [connect(web) for _ in range(60)]
    for s in header_tricklers:
        s.sendall(b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\n")
    for s in body_tricklers:
        s.sendall(b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n{")
    # Under gthread (2 x 4) these 120 connections held every thread: nothing was answered.
    answers = [signed_post(web, f"evt_busy_{i}").status_code for i in range(20)]
    assert answers == [200] * 20
    assert len(queued(redis_client, settings)) == 20
    # Both kinds keep trickling: the server cuts them at READ_TIMEOUT all the same.
    assert set(trickle_until_cut(header_tricklers, b"X")) == {b""}
    for answer in trickle_until_cut(body_tricklers, b" "):
        assert answer.startswith(b"HTTP/1.1 408 ") and b'"request_timeout"' in answer
    for s in header_tricklers + body_tricklers:
        s.close()


@pytest.mark.slow
def test_chunked_body_over_the_limit_is_413(start_web, redis_client, settings):
    web = start_web(MAX_BODY_BYTES="2000")
    body = stripe_event("evt_chunked") + b" " * 3000
    signature = sign_stripe(body[:2000])  # the signature covers the first 2,000 bytes
    sock = connect(web)
    head = (
        "POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        f"Content-Type: application/json\r\nStripe-Signature: {signature}\r\n\r\n"
    )
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 500]), body[i : i + 500])
        for i in range(0, len(body), 500)
    )
    sock.sendall(head.encode() + chunks + b"0\r\n\r\n")
    status, answer = answer_of(sock)
    assert status == 413 and answer["error"]["type"] == "request_entity_too_large"
    assert queued(redis_client, settings) == []
    small = stripe_event("evt_chunked_ok")
    sock = connect(web)
    head = head.replace(signature, sign_stripe(small))
    sock.sendall(head.encode() + b"%x\r\n%s\r\n0\r\n\r\n" % (len(small), small))
    sock.shutdown(socket.SHUT_WR)
    status, answer = answer_of(sock)
    assert status == 200 and answer["id"] == "evt_chunked_ok"


@pytest.mark.parametrize(
    ("request_bytes", "status", "error_type"),
    [
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
        (
            b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(120)) + b"\r\n",
            431,
            "request_header_fields_too_large",
        ),
        (b"NOT A REQUEST\r\n\r\n", 400, "bad_request"),
    ],
)
@pytest.mark.slow
def test_the_servers_own_refusals_are_json(start_web, request_bytes, status, error_type):
    web = start_web()
    sock = connect(web)
    sock.sendall(request_bytes)
    got, body = answer_of(sock)
    assert (got, body["error"]["type"]) == (status, error_type)
    assert body["error"]["message"]


@pytest.mark.slow
def test_no_control_socket_and_no_folder_left(start_web, tmp_path):
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    env = {"HOME": str(home), "TMPDIR": str(tmp), "XDG_RUNTIME_DIR": str(home)}
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    web = start_web(**env)
    assert signed_post(web, "evt_ctl").status_code == 200
    assert list(tmp.glob("stripe-worker-prom-*"))  # in use while it runs
    web.stop()
    assert web.proc.returncode == 0, web.log()
    assert list(home.rglob("*.ctl")) == []
    assert list(tmp.glob("stripe-worker-prom-*")) == []
