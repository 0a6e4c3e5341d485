"""Verification alone: our Stripe signature check against the SDK's, on a 2 KB event.

.venv/bin/python bench/verify.py           # 20,000 events each
.venv/bin/python bench/verify.py --quick   # 5,000
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

if not __package__:  # run as a file: the project folder first, as `python -m bench.x` has it
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.harness import WHSEC, Section, run_scenario
from tests.support import sign_stripe


def measure(quick: bool) -> Section:
    import stripe

    from webhooks.verify import verify_stripe_signature

    n = 5_000 if quick else 20_000
    body = json.dumps(
        {
            "id": "evt_1",
            "object": "event",
            "type": "invoice.paid",
            "data": {"object": {"x": "y" * 1900}},
        }
    ).encode()
    header = sign_stripe(body, WHSEC)
    t0 = time.perf_counter()
    for _ in range(n):
        verify_stripe_signature(body, header, [WHSEC])
        json.loads(body)
    ours = (time.perf_counter() - t0) / n * 1e6
    t0 = time.perf_counter()
    for _ in range(n):
        stripe.Webhook.construct_event(body, header, WHSEC)
    sdk = (time.perf_counter() - t0) / n * 1e6
    section = Section("Verification alone (2 KB event)", "bench/verify.py")
    section.table(
        ("", "µs per event", "events/s"),
        [
            ("ours: HMAC + json.loads", f"{ours:.1f}", f"{1e6 / ours:,.0f}"),
            ("SDK `construct_event`", f"{sdk:.1f}", f"{1e6 / sdk:,.0f}"),
        ],
    )
    section.say(f"Ours costs {ours / sdk:.2f} of the SDK's ({n:,} events each).")
    return section


def main() -> int:
    return run_scenario(measure, __doc__)


if __name__ == "__main__":
    sys.exit(main())
