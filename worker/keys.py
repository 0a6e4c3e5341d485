"""Every Redis key the project writes, in one place; all of them start with STREAM_PREFIX.

    PREFIX:customers, :events, :errors      the streams agents read (XADD)
    PREFIX:errors:replayed:<entry id>       when an error entry was replayed (string,
                                            CUSTOMER_MEMORY_TTL, as the published-once marks)
    PREFIX:errors:replayed                  entry id -> when replayed, to count the marks
                                            (sorted set, pruned past CUSTOMER_MEMORY_TTL)
    PREFIX:<stream>:dead:<group>            a consumer group's dead letters (stream, never trimmed)
    PREFIX:streams:floor:<stream>           oldest entry a group still needs (string, cached 1 s)
    PREFIX:streams:dropped                  stream -> unread entries dropped past STREAM_HARD_MAXLEN
    PREFIX:seen:<delivery id>               dedupe mark of a delivery (string, DEDUPE_TTL)
    PREFIX:pending                          the ledger: delivery id -> accepted at (sorted set)
    PREFIX:pending:work                     the ledger: delivery id -> its Work and message id
    PREFIX:published:<stream>:<work id>     publish-once mark -> entry id (CUSTOMER_MEMORY_TTL)
    PREFIX:customer:<mode>:<idempotency key>  user -> customer memory (CUSTOMER_MEMORY_TTL)
    PREFIX:ratelimit:<key digest>           the shared, adaptive Stripe pace of one API key (hash)
    PREFIX:workers                          live workers: worker id -> last heartbeat (sorted set)
    PREFIX:worker:<worker id>               a worker's heartbeat and facts (string with a TTL)
    PREFIX:trail:<work id>                  what happened to a piece of work (list, TRAIL_TTL)
    PREFIX:find:<digest of a term>          term -> work ids it names (sorted set, TRAIL_TTL):
                                            webhook/event id, user id, customer id, email
    PREFIX:throughput:<unix minute>         '<what>:<unix second>' -> count (hash, 15 min)
    PREFIX:console:session:<digest of id>   a console session: its CSRF token and token
                                            fingerprint (string, 12 h; sign-out deletes it)
    PREFIX:console:failures:<client>        wrong console tokens from one address (counter,
                                            the throttle's window)
    PREFIX:catchup                          catch-up's cursor per account, when it last ran,
                                            events it recovered (hash; tasks/catchup.py)
    PREFIX:catchup:lease                    the worker running catch-up (string, PX lease)
    PREFIX:probe                            write probe: `/readyz`, and a worker waiting out
                                            a full Redis (string, 60 s)
    PREFIX:q:celery                         the Celery queue (a list, kombu's Redis transport)
    PREFIX:q:unacked                        kombu: delivery tag -> message a worker holds (hash)
    PREFIX:q:unacked_index                  kombu: delivery tag -> lease deadline (sorted set)
    PREFIX:q:unacked_mutex                  kombu: lock of its own restore
    PREFIX:q:fetched:<worker id>            taken by that worker, not yet unacked (list)
    PREFIX:q:given_back                     a dead worker's messages, taken before the queue,
                                            oldest first (list)
    PREFIX:q:poison                         messages no worker can decode, kept whole (list)

kombu writes the `q:` keys itself, under `global_keyprefix` (fetched, given_back and
poison are tasks/transport.py's); the names here are the ones kombu 5.x builds, checked by
tests/test_envelope_contract.py.
"""

from __future__ import annotations

from dataclasses import dataclass

# Agents name dead-letter streams too, from the helper the wheel installs for them.
from stripe_worker_agent.consumer import dead_letter

QUEUE = "celery"
CUSTOMERS = "customers"
EVENTS = "events"
ERRORS = "errors"
STREAMS = (CUSTOMERS, EVENTS, ERRORS)


@dataclass(frozen=True)
class Keys:
    """The key names under one STREAM_PREFIX."""

    prefix: str

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def stream(self, name: str) -> str:
        """`customers` -> `stripe:customers`; a full key passes through unchanged."""
        if name.startswith(self.prefix + ":"):
            return name
        return self._key(name)

    def dead_letter(self, stream: str, group: str) -> str:
        return dead_letter(self.stream(stream), group)

    def trim_floor(self, stream: str) -> str:
        return self._key("streams", "floor", stream)

    @property
    def dropped(self) -> str:
        return self._key("streams", "dropped")

    def replayed(self, entry_id: str) -> str:
        return self._key(ERRORS, "replayed", entry_id)

    @property
    def replayed_index(self) -> str:
        return self._key(ERRORS, "replayed")

    def seen(self, delivery_id: str) -> str:
        return self._key("seen", delivery_id)

    @property
    def ledger(self) -> str:
        return self._key("pending")

    @property
    def ledger_work(self) -> str:
        return self._key("pending", "work")

    def published(self, stream: str, work_id: str) -> str:
        return self._key("published", stream, work_id)

    def customer(self, livemode: bool, idempotency_key: str) -> str:
        return self._key("customer", "live" if livemode else "test", idempotency_key)

    def ratelimit(self, key_id: str) -> str:
        return self._key("ratelimit", key_id)

    @property
    def workers(self) -> str:
        return self._key("workers")

    def worker(self, worker_id: str) -> str:
        return self._key("worker", worker_id)

    def trail(self, work_id: str) -> str:
        return self._key("trail", work_id)

    def find(self, term_digest: str) -> str:
        return self._key("find", term_digest)

    def throughput(self, minute: int) -> str:
        return self._key("throughput", str(minute))

    def console_session(self, session_digest: str) -> str:
        return self._key("console", "session", session_digest)

    def console_failures(self, client: str) -> str:
        return self._key("console", "failures", client)

    @property
    def catchup(self) -> str:
        return self._key("catchup")

    @property
    def catchup_lease(self) -> str:
        return self._key("catchup", "lease")

    @property
    def probe(self) -> str:
        return self._key("probe")

    @property
    def kombu_prefix(self) -> str:
        """kombu's `global_keyprefix`: it puts every key of its own under this."""
        return self._key("q") + ":"

    @property
    def queue(self) -> str:
        return self.kombu_prefix + QUEUE

    @property
    def unacked(self) -> str:
        return self.kombu_prefix + "unacked"

    @property
    def unacked_index(self) -> str:
        return self.kombu_prefix + "unacked_index"

    def fetched(self, worker_id: str) -> str:
        return self.kombu_prefix + "fetched:" + worker_id

    @property
    def given_back(self) -> str:
        return self.kombu_prefix + "given_back"

    @property
    def poison(self) -> str:
        return self.kombu_prefix + "poison"
