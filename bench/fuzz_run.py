"""Hostile input at the receiver: 10,000+ requests over HTTP to a real gunicorn.

    python bench/fuzz_run.py                  # 10,000 generated requests, then the set pieces
    python bench/fuzz_run.py --examples 500   # the size the test suite runs

The receiver is configured as a live endpoint (a live key and live webhook secrets).
Hypothesis generates headers and bodies (random, half-valid, validly signed garbage);
then hostile text validly signed at both routes (tests/support/hostile.py: lone
surrogates, controls, deep nesting, numbers beyond a double or an int64, NaN, in events
shaped like real ones; a tenth as many as the generated requests); then the set pieces:
oversized and chunked bodies, deep JSON, invalid UTF-8, huge headers, replayed
signatures, and events signed with a test secret or marked livemode=false, the valid
ones sent while 1,000 connections trickle their headers or bodies. It checks: no 5xx at
all, the queue holds exactly the events validly signed for this live endpoint and the
hostile signups the receiver accepted, and the server cut every slow connection; and it
prints the RSS of gunicorn's workers before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import redis
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
if not __package__:  # run as a file: the project folder first, as `python -m bench.x` has it
    sys.path[0] = str(ROOT)

from tests.support import WebProcess, clean_env, sign_standard, sign_stripe  # noqa: E402
from tests.support.hostile import encode as hostile_body  # noqa: E402
from tests.support.hostile import hostile_text, signup_events, stripe_events  # noqa: E402
from tests.support.signing import HEADER_NAMES, signature_like_values  # noqa: E402
from worker.settings import Settings  # noqa: E402

LIVE_KEY = "sk_live_fuzz" + "0" * 20
LIVE_WHSEC = "whsec_live_endpoint_fuzz_0001"
TEST_WHSEC = "whsec_test_endpoint_fuzz_0001"
SIGNUP_WHSEC = "whsec_" + "bGl2ZS1zaWdudXAtc2VjcmV0LWZ1enotMDAwMQ=="


@dataclass
class Report:
    requests: int = 0
    by_status: Counter = field(default_factory=Counter)
    server_errors: int = 0
    valid_events_sent: int = 0
    hostile_sent: int = 0  # validly signed hostile text, both routes
    hostile_signups_accepted: int = 0  # of those, signups the receiver queued
    tasks_queued: int = 0
    slow_connections: int = 0  # trickling headers or bodies while the valid events are sent
    slow_cut: int = 0  # of those, cut by the server at READ_TIMEOUT
    rss_kb_before: int = 0
    rss_kb_after: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            self.server_errors == 0
            and self.tasks_queued == self.valid_events_sent + self.hostile_signups_accepted
            and self.slow_cut == self.slow_connections
        )


class SlowClients:
    """`n` connections sending a request header, or a body declared 1 MiB, a byte at a time
    (every 0.5 s) in a thread, until the server cuts them or `limit` seconds pass."""

    def __init__(self, port: int, n: int, limit: float) -> None:
        import socket
        import threading

        self.socks = []
        for i in range(n):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            head = b"POST /webhooks/stripe HTTP/1.1\r\nHost: fuzz\r\n"
            if i % 2:
                head += b"Content-Length: 1048576\r\n\r\n{"
            sock.sendall(head)
            sock.setblocking(False)
            self.socks.append((sock, b" " if i % 2 else b"X"))
        self.cut: set[int] = set()
        self.thread = threading.Thread(target=self._trickle, args=(limit,), daemon=True)
        self.thread.start()

    def _trickle(self, limit: float) -> None:
        deadline = time.monotonic() + limit
        while len(self.cut) < len(self.socks) and time.monotonic() < deadline:
            for i, (sock, byte) in enumerate(self.socks):
                if i in self.cut:
                    continue
                try:
                    while sock.recv(65536):  # an answer (408), then the end
                        pass
                    self.cut.add(i)  # end of stream: the server closed it
                except BlockingIOError:
                    try:
                        sock.send(byte)
                    except OSError:
                        self.cut.add(i)
                except OSError:
                    self.cut.add(i)
            time.sleep(0.5)

    def wait(self) -> int:
        """How many the server cut."""
        self.thread.join()
        for sock, _ in self.socks:
            sock.close()
        return len(self.cut)


def rss_kb(master_pid: int) -> int:
    """Summed VmRSS of gunicorn's worker processes (the master's children)."""
    total = 0
    for child in Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split():
        for line in Path(f"/proc/{child}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def event(i: int, livemode: bool = True) -> bytes:
    return json.dumps(
        {
            "id": f"evt_fuzz_{i}",
            "object": "event",
            "type": "product.created",
            "livemode": livemode,
            "created": int(time.time()),
            "data": {"object": {"id": f"prod_{i}", "object": "product"}},
        }
    ).encode()


header_values = st.one_of(
    # requests refuses to send values with leading or trailing blanks
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=300).map(
        str.strip
    ),
    *signature_like_values(),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=40,
)
bodies = st.one_of(st.binary(max_size=4000), json_values.map(lambda v: json.dumps(v).encode()))


def _runs(examples: int) -> settings:
    """The same requests each run: derandomized, no example database."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )


def run_fuzz(
    examples: int = 10_000, say=print, slow: int = 1000, read_timeout: float | None = None
) -> Report:
    report = Report()
    started = time.monotonic()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    ours = Settings(redis_url=redis_url, stream_prefix=f"fuzz{os.getpid()}")
    env = clean_env(
        REDIS_URL=redis_url,
        STREAM_PREFIX=ours.stream_prefix,
        STRIPE_SECRET_KEY=LIVE_KEY,
        STRIPE_WEBHOOK_SECRET=LIVE_WHSEC,
        SIGNUP_WEBHOOK_SECRET=SIGNUP_WHSEC,
        PYTHONPATH=str(ROOT),
    )
    if read_timeout is not None:
        env["READ_TIMEOUT"] = str(read_timeout)
    logdir = Path(tempfile.mkdtemp(prefix="fuzz-"))
    web = WebProcess(env, logdir / "web.log", workers=2)
    url = web.url
    session = requests.Session()
    client = redis.Redis.from_url(redis_url)

    def send(route: str, body: bytes, headers: dict[str, str]) -> int:
        try:
            r = session.post(f"{url}/webhooks/{route}", data=body, headers=headers, timeout=30)
            status = r.status_code
        except requests.ConnectionError:
            status = 0  # gunicorn hung up on a request line or header it refuses
            session.close()
        report.requests += 1
        report.by_status[status] += 1
        report.server_errors += status >= 500
        return status

    def send_hostile(route: str, value: object, escaped: bool) -> None:
        body = hostile_body(value, escaped)
        if route == "stripe":  # livemode false on this live endpoint: refused, never queued
            send(route, body, {"Stripe-Signature": sign_stripe(body, LIVE_WHSEC)})
        else:
            msg_id = f"msg_hostile_{report.hostile_sent}"
            status = send(route, body, sign_standard(body, msg_id, SIGNUP_WHSEC))
            report.hostile_signups_accepted += status == 200
        report.hostile_sent += 1

    try:
        report.rss_kb_before = rss_kb(web.pid)

        @_runs(examples)
        @given(
            route=st.sampled_from(["stripe", "signup"]),
            headers=st.dictionaries(st.sampled_from(HEADER_NAMES), header_values, max_size=5),
            body=bodies,
            signed=st.sampled_from([None, LIVE_WHSEC, TEST_WHSEC]),
        )
        def fuzz(route, headers, body, signed):
            if signed and route == "stripe":  # validly signed garbage: must be a 4xx
                headers = dict(headers, **{"Stripe-Signature": sign_stripe(body, signed)})
            send(route, body, headers)

        fuzz()
        say(f"{report.requests} generated requests, {dict(report.by_status)}")

        @_runs(max(20, examples // 10))
        @given(
            route=st.sampled_from(["stripe", "signup"]),
            stripe_value=stripe_events,
            # a user id of the usual shape half the time, so some signups are accepted
            signup_value=signup_events(st.from_regex(r"\Au_[a-z0-9]{1,20}\Z") | hostile_text),
            escaped=st.booleans(),
        )
        def hostile(route, stripe_value, signup_value, escaped):
            send_hostile(route, stripe_value if route == "stripe" else signup_value, escaped)

        hostile()
        say(
            f"{report.hostile_sent} hostile bodies validly signed, "
            f"{report.hostile_signups_accepted} signups among them accepted"
        )
        # Set pieces.
        big = b"{" + b" " * (2 * 1024 * 1024) + b"}"
        send("stripe", big, {"Stripe-Signature": sign_stripe(big, LIVE_WHSEC)})
        deep = b"[" * 50_000 + b"]" * 50_000
        send("stripe", deep, {"Stripe-Signature": sign_stripe(deep, LIVE_WHSEC)})
        bad_utf8 = b'{"id": "evt_\xff\xfe", "type": "x", "livemode": true}'
        send("stripe", bad_utf8, {"Stripe-Signature": sign_stripe(bad_utf8, LIVE_WHSEC)})
        send("stripe", event(0), {"Stripe-Signature": "t=1," + "v1=" + "a" * 60_000})
        send("stripe", event(0), {"X-Huge": "x" * 200_000})
        # The valid events are sent while `slow` connections trickle (READ_TIMEOUT cuts them).
        slow_clients = SlowClients(web.port, slow, (read_timeout or 10) + 20)
        report.slow_connections = slow
        for i in range(1, 51):  # valid, then replayed as they are: queued once each
            body, header = event(i), sign_stripe(event(i), LIVE_WHSEC)
            for _ in range(3):
                assert send("stripe", body, {"Stripe-Signature": header}) == 200
            report.valid_events_sent += 1
            # A replayed signature on another body, and a stale one.
            send("stripe", event(i + 1000), {"Stripe-Signature": header})
            send(
                "stripe",
                body,
                {"Stripe-Signature": sign_stripe(body, LIVE_WHSEC, int(time.time()) - 3600)},
            )
            # Signed with the test endpoint's secret, and a test-mode event on live.
            send(
                "stripe",
                event(i + 2000),
                {"Stripe-Signature": sign_stripe(event(i + 2000), TEST_WHSEC)},
            )
            test_mode = event(i + 3000, livemode=False)
            assert (
                send("stripe", test_mode, {"Stripe-Signature": sign_stripe(test_mode, LIVE_WHSEC)})
                == 400
            )
        report.slow_cut = slow_clients.wait()
        report.tasks_queued = client.llen(ours.keys.queue)
        report.rss_kb_after = rss_kb(web.pid)
    finally:
        web.stop(30)
        keys = list(client.scan_iter(f"{ours.stream_prefix}:*"))
        if keys:
            client.delete(*keys)
        shutil.rmtree(logdir, ignore_errors=True)
    report.seconds = round(time.monotonic() - started, 1)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--slow", type=int, default=1000, help="slow connections (default 1000)")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    report = run_fuzz(args.examples, slow=args.slow)
    for name, value in asdict(report).items():
        print(f"{name:20} {dict(report.by_status) if name == 'by_status' else value}")
    print(
        "OK: no 5xx, nothing queued without a valid live signature, every slow client cut"
        if report.ok
        else "FAILED"
    )
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
