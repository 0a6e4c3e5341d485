"""kombu's Redis transport, made to lose nothing when a worker dies.

Stock kombu pops a message with BRPOP and records it as unacked afterwards, in another
round trip: a worker killed in between (or whose BRPOP reply is still in its socket)
loses the message. Here a worker fetches with BLMOVE, which moves the message
atomically into a list of its own (`PREFIX:q:fetched:<worker id>`), and recording it as
unacked removes it from that list in the same MULTI. So at every instant a taken message
is in the queue, in its worker's fetched list, or in kombu's unacked hash, and
tasks/recovery.py can give every one of them back when its worker's heartbeat lapses,
into `PREFIX:q:given_back`, which every worker takes from before the queue.

Lease scores in kombu's unacked index are on Redis's clock (the worker's clock plus an
offset its heartbeat measures), so that one host's clock cannot expire another's leases.

Signups are pushed to the end workers take from (worker/queue.py), the rest to the far
end. A worker that holds as many signups as Create Customer's pace can start soon (see
hold_fewer) takes from the far end instead: a signup waiting for its endpoint's slot
would otherwise hold a thread that another endpoint's work, with budget to spare, could
use, and every thread would wait on the one endpoint (docs.stripe.com/rate-limits: each
endpoint its own 25/s, under the global 100/s in live mode).

An envelope that is not JSON cannot be delivered: it is moved whole to `PREFIX:q:poison`
and the worker goes on.

With a sentinel:// REDIS_URL, SentinelTransport does the same through kombu's Sentinel
connection handling; a master demoted under a blocked BLMOVE counts as a lost connection,
so Celery reconnects to the master the sentinels name.

kombu has no API for this: every private kombu name used here is listed, with why, in
tasks/kombu_contract.py, and checked against the installed kombu by its test.
"""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable
from time import monotonic
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from tasks.worker_state import WorkerState
from worker.work import CREATE_CUSTOMER_TASK

log = logging.getLogger("stripe_worker.transport")


class QoS(kombu_redis.QoS):
    """Records a delivered message as unacked and takes it off the fetched list, at once."""

    # Narrower than kombu-stubs say: the channel is ours (Channel.QoS below), and kombu's
    # QoS.__init__ sets both collections (None only as class defaults).
    channel: Channel
    _delivered: OrderedDict[str, Any]
    _dirty: set[str]

    def append(self, message: Any, delivery_tag: str) -> None:
        channel = self.channel
        raw = channel.fetched_raw.pop(delivery_tag, None)
        delivery = message.delivery_info
        with self.pipe_or_acquire() as pipe:
            pipe.zadd(self.unacked_index_key, {delivery_tag: channel.worker_state.redis_now()})
            pipe.hset(
                self.unacked_key,
                delivery_tag,
                dumps([message._raw, delivery["exchange"], delivery["routing_key"]]),
            )
            if raw is not None:
                pipe.lrem(channel.fetched_key, 1, raw)
            # The next fetch's look (Channel._brpop_start), in this round trip: nothing
            # but that fetch changes the fetched list before it is sent. kombu's client
            # prefixes LLEN's key, not LINDEX's.
            pipe.llen(channel.given_back_name)
            pipe.lindex(channel.fetched_key, 0)
            *_, given_back, left_end = pipe.execute()
        channel.looked = (int(given_back), left_end)
        virtual.QoS.append(self, message, delivery_tag)

    def can_consume(self) -> bool:
        prefetch = self.prefetch_count
        if not prefetch:
            return True
        held = len(self._delivered) - len(self._dirty)
        return held < max(1, prefetch - self.channel.worker_state.fewer)

    def ack(self, delivery_tag: str) -> None:
        if self._gone():
            return
        if self.channel.worker_state.take_acked(delivery_tag):
            # Its task's publish removed it from the unacked hash and index already, in
            # the publish's round trip (tasks/customers.py WorkTask._done_with): what is
            # left is kombu's bookkeeping in memory, as kombu's ack does after its own.
            virtual.QoS.ack(self, delivery_tag)
            return
        super().ack(delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        self.channel.worker_state.take_acked(delivery_tag)
        if not self._gone():
            super().reject(delivery_tag, requeue)

    def _gone(self) -> bool:
        """The channel was closed after a lost connection (kombu would fail on it, and the
        worker with it): a task that ends now leaves its message to crash recovery, which
        gives it back once its lease lapses; the idempotency key and the publish-once
        mark make its second run harmless."""
        connection = self.channel.connection
        return connection is None or connection.client is None

    def restore_unacked(self, client: Any = None) -> Any:
        """kombu gives back what a closing channel held. After a lost connection (a failover)
        its transport may have let go of its settings (kombu then fails, and the worker with
        it) and Redis may not answer: then the messages stay in the unacked hash, and their
        leases, which nobody renews any more, lapse and tasks/recovery.py gives them back."""
        if not self._gone():
            try:
                return super().restore_unacked(client)
            except self.channel.connection_errors:
                pass
        log.warning("left %d held message(s) to crash recovery", len(self._delivered))
        self._delivered.clear()
        return None

    def front_full(self) -> bool:
        """This channel holds its cap of signups (hold_fewer's `front`)."""
        cap = self.channel.worker_state.front
        if not cap:
            return False
        for _ in range(5):
            try:
                held = [m for tag, m in list(self._delivered.items()) if tag not in self._dirty]
            except RuntimeError:  # changed while copied by the consumer thread: again
                continue
            signups = sum(1 for m in held if _task_of(m) == CREATE_CUSTOMER_TASK)
            return signups >= cap
        return False

    def held_tags(self) -> list[str]:
        """Delivery tags this channel holds (reserved, waiting an ETA, or running)."""
        for _ in range(5):
            try:
                return [tag for tag in list(self._delivered) if tag not in self._dirty]
            except RuntimeError:  # changed while copied by the consumer thread: again
                continue
        return []


def _task_of(message: Any) -> object:
    headers = getattr(message, "headers", None)
    return headers.get("task") if isinstance(headers, dict) else None


_OwnQoS = QoS  # for Channel's annotation, where `QoS` names its class attribute


class Channel(kombu_redis.Channel):
    """Fetches with BLMOVE into this worker's own list instead of BRPOP."""

    QoS = QoS

    # kombu's own members this channel uses (kombu/transport/redis.py), which kombu-stubs
    # leave out; kombu's Channel.__init__ sets connection_errors from the transport's.
    connection_errors: tuple[type[BaseException], ...]
    qos: _OwnQoS  # kombu's property makes it of the QoS class above
    _queue_cycle: Any  # kombu.utils.scheduling.cycle_by_name over the active queues
    _q_for_pri: Callable[[str, int], str]
    _flush_brpop_reauth: Callable[[], None]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # kombu-stubs type both Optional; a channel is made on a connection, whose options
        # kombu defaults to {}.
        client = self.connection.client
        options = (client.transport_options if client is not None else None) or {}
        self.worker_id: str = options.get("worker_id") or uuid.uuid4().hex
        # The worker's state (tasks/worker_state.py), put in the options at start by
        # tasks/recovery.py; a channel made outside a worker gets one of its own.
        self.worker_state: WorkerState = options.get("worker_state") or WorkerState()
        self.fetched_key = f"{self.global_keyprefix}fetched:{self.worker_id}"
        self.given_back_key = f"{self.global_keyprefix}given_back"
        self.poison_key = f"{self.global_keyprefix}poison"
        # Commands through kombu's client get the prefix added for LPUSH, not for LREM.
        self._poison_name = "poison"
        self.given_back_name = "given_back"  # as kombu's client prefixes it (LLEN)
        self.fetched_raw: dict[str, bytes] = {}
        self.fetched_before: bytes | None = None  # the fetched list's left end, before a fetch
        # What the last QoS.append saw for the next fetch, (given back, left end), or
        # None: that fetch looks itself. tasks/recovery.py voids it before it takes a
        # stranded message off the list.
        self.looked: tuple[int, bytes | None] | None = None
        self._fetch_queue: str | None = None

    def _brpop_start(self, timeout: float | None = None) -> None:
        if timeout is None:
            timeout = self.brpop_timeout
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        self.worker_state.add_channel(self)
        self._fetch_queue = queues[0]
        connection = self.client.connection
        # A dead worker's messages first, oldest first: they have waited already. One
        # round trip to look (and to note what this fetch will move in front of), or
        # none when the last message's QoS.append looked; if another worker takes the
        # last meanwhile, LMOVE answers nothing at once and the next fetch goes to the
        # queue.
        looked, self.looked = self.looked, None
        if looked is None:
            connection.send_command("LLEN", self.given_back_key)
            connection.send_command("LINDEX", self.fetched_key, 0)
            looked = (int(connection.read_response()), connection.read_response())
        given_back, self.fetched_before = looked
        command: list[str | float]
        if given_back:
            command = ["LMOVE", self.given_back_key, self.fetched_key, "RIGHT", "LEFT"]
        else:
            source = self.global_keyprefix + self._q_for_pri(queues[0], 0)
            end = "LEFT" if self.qos.front_full() else "RIGHT"  # the far end: past signups
            command = ["BLMOVE", source, self.fetched_key, end, "LEFT", timeout or 0]
        self._in_poll = connection
        self._brpop_sent_at = monotonic()
        connection.send_command(*command)

    def _brpop_read(self, **options: Any) -> bool:
        try:
            try:
                item = self.client.parse_response(self.client.connection, "BLMOVE", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            except ResponseError as exc:
                if not str(exc).startswith("UNBLOCKED"):
                    raise
                # Our master became a replica under the blocked BLMOVE (a failover): a lost
                # connection, so Celery reconnects, to the master the sentinels name now.
                self.client.connection.disconnect()
                raise RedisConnectionError(str(exc)) from None
            if item is None:
                raise virtual.Empty()
            queue = self._fetch_queue or ""
            self._queue_cycle.rotate(queue)
            try:
                payload = loads(bytes_to_str(item))
                tag = payload["properties"]["delivery_tag"]
            except (ValueError, KeyError, TypeError):
                self._quarantine(item)
                raise virtual.Empty() from None
            self.fetched_raw[tag] = item
            self.connection._deliver(payload, queue)
            return True
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()

    def maybe_unread(self, raw: bytes, position: int) -> bool:
        """`raw`, at `position` in the fetched list, may be what a pending fetch moved: its
        reply waits unread in the socket while the worker has no room, maybe for seconds,
        and is delivered once room comes back. A fetch moves to the left end, and only
        what was not there before it was sent can be its."""
        return bool(self._in_poll) and position == 0 and raw != self.fetched_before

    def close(self) -> None:
        # Its leases are no longer renewed: see QoS.restore_unacked.
        self.worker_state.discard_channel(self)
        super().close()

    def _quarantine(self, item: bytes) -> None:
        log.error(
            "quarantined a message that is not a kombu envelope (%d bytes) in %s",
            len(item),
            self.poison_key,
        )
        with self.conn_or_acquire() as client:
            pipe = client.pipeline()
            pipe.lpush(self._poison_name, item)
            pipe.lrem(self.fetched_key, 1, item)
            pipe.execute()


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelChannel(Channel, kombu_redis.SentinelChannel):
    """Our fetch, on a connection pool that asks the sentinels for the current master.

    kombu's SentinelChannel brings the pool (redis-py's SentinelConnectionPool: a demoted
    master's ReadOnlyError becomes a ConnectionError, and a new connection goes to the master
    the sentinels name); a broken connection makes Celery reconnect, so the worker follows a
    failover on its own.
    """


class SentinelTransport(Transport):
    """Chosen for a sentinel:// REDIS_URL (tasks/celery_app.py)."""

    Channel = SentinelChannel
    default_port = kombu_redis.SentinelTransport.default_port
