"""`WorkerState`: what the parts of one running worker tell each other, in one object.

Made with the worker's Runtime (tasks/runtime.py), one per Celery app, and handed to each
part at start: the transport's channels find it in the broker's transport options
(tasks/recovery.py puts it there), the heartbeat and the consumer reach it through the
app's runtime, the Stripe gateway is given its `hold_fewer`. No module global steers a
worker, so a test or `stripe-worker dev` can run several in one process.

- the consuming channels, whose leases the heartbeat renews;
- the offset of Redis's clock from this host's, as the heartbeat measured it (leases
  are scored on Redis's clock, so one host's clock cannot expire another's leases);
- how many messages fewer than Celery's prefetch to hold, as the Stripe pace allows, and
  how many of them may be signups before the fetch takes from past them;
- whether the consumer holds a broker connection, and since when, for the heartbeat;
- the messages whose ack their task's publish carried, for the channel's ack to skip.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from typing import Any

# Delivery tags acked by their publish and not yet by Celery, kept at most: Celery acks
# within moments, and a tag it never acks (its connection lost) must not stay for good.
# One dropped early only costs its ack's round trip again, which removes nothing.
ACKED_KEPT = 10_000


class WorkerState:
    """The shared state of one worker: channels, clock offset, holding, consumer link."""

    def __init__(self) -> None:
        self._channels: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()
        self.clock_offset = 0.0  # Redis time minus this host's time
        self.fewer = 0  # messages fewer than Celery's prefetch to hold
        self.front = 0  # signups held at most before fetching past them (0: no cap)
        self.consumer_connected = False
        self.consumer_since = time.time()
        # Set when the consumer connects or loses its connection: the heartbeat beats at
        # once instead of up to an interval later.
        self.consumer_changed = threading.Event()
        self._acked: OrderedDict[str, None] = OrderedDict()

    def redis_now(self) -> float:
        """This host's estimate of Redis's clock."""
        return time.time() + self.clock_offset

    def add_channel(self, channel: Any) -> None:
        with self._lock:
            self._channels.add(channel)

    def discard_channel(self, channel: Any) -> None:
        with self._lock:
            self._channels.discard(channel)

    def consuming_channels(self) -> list[Any]:
        with self._lock:
            return list(self._channels)

    def hold_fewer(self, count: int, front: int = 0) -> None:
        """Hold `count` fewer messages than Celery's prefetch allows (never fewer than one),
        and once `front` of them are signups (0: no such cap), fetch from the queue's far
        end (tasks/transport.py). Retries waiting a countdown still come on top, as Celery
        counts them."""
        self.fewer = max(0, count)
        self.front = max(0, front)

    def acked_by_publish(self, tag: str) -> None:
        """The publish of the task of delivery `tag` removed it from kombu's unacked hash
        and index (tasks/customers.py WorkTask._done_with)."""
        with self._lock:
            self._acked[tag] = None
            if len(self._acked) > ACKED_KEPT:
                self._acked.popitem(last=False)

    def take_acked(self, tag: str) -> bool:
        """Whether `tag`'s publish acked it (asked once, by the channel's ack)."""
        with self._lock:
            return self._acked.pop(tag, 0) is None

    def set_consumer_connected(self, connected: bool) -> None:
        if connected != self.consumer_connected:
            self.consumer_connected, self.consumer_since = connected, time.time()
            self.consumer_changed.set()

    def consumer_report(self) -> dict[str, Any]:
        """For the heartbeat: `consuming` and `consuming_since` (epoch seconds)."""
        return {
            "consuming": self.consumer_connected,
            "consuming_since": round(self.consumer_since, 3),
        }
