"""A local Stripe API for customers and events, faithful where correctness depends on it.

Speaks Stripe's v1 wire format (form-encoded bodies with `metadata[...]`, Stripe's
error JSON, `Request-Id`/`Stripe-Version`/`Idempotency-Key` headers), keeps state
per key mode, honours `Idempotency-Key` as Stripe does (replay with
`Idempotent-Replayed: true`, 400 `idempotency_error` on other parameters, 409 while
the first request is in flight, keys kept 24 h), lists the events its calls make
(`GET /v1/events`, events.py), acts as a connected account under `Stripe-Account`, and
injects faults on request.

Admin routes (JSON), for tests and benchmarks:
  GET  /_emulator/stats    counters: customers created per mode, requests, faults,
                           rate_limited (429s of the limits, per mode), rate_limited_by
                           (global, endpoint, concurrency), most_active (the most
                           requests in flight at once, per mode)
  POST /_emulator/faults   {"status": 500|429|[500, 429], "count": N, "rate": p,
                            "should_retry": "true", "hang_count": N, "hang_seconds": s,
                            "latency_ms": ms, "rate_limit": "stripe"|req/s|
                            {"test": req/s, "live": req/s}, "concurrency": N}
                           ("stripe": 25 test, 100 live, 25/s per endpoint and 20 in
                           flight per mode, as docs.stripe.com/rate-limits describes;
                           each 429 says which in Stripe-Rate-Limited-Reason)
                           (fields omitted are left as they are)
  DELETE /_emulator/faults  clear every fault
  POST /_emulator/keys     {"revoke": [key, ...]} or {"allow": [key, ...]}
  POST /_emulator/events   {"type", "object", "mode"?, "account"?, "created"?}: an event of
                           something it does not model (events.py: its own calls make theirs)
  POST /_emulator/events/delivered  {"ids": [...]}: count their webhooks as delivered
  POST /_emulator/reset    forget every customer, key, fault and counter
"""

from worker.devtools.emulator.form import ApiError, decode_form
from worker.devtools.emulator.server import DEFAULT_PORT, EmulatorServer
from worker.devtools.emulator.state import IDEMPOTENCY_TTL, EmulatorState

__all__ = [
    "DEFAULT_PORT",
    "IDEMPOTENCY_TTL",
    "ApiError",
    "EmulatorServer",
    "EmulatorState",
    "decode_form",
]
