"""Every private or undocumented part of kombu, Celery and redis-py this project relies on.

kombu's Redis transport has no extension API: tasks/transport.py fetches with BLMOVE by
overriding the channel's BRPOP hooks and records a message as held through the QoS's
bookkeeping, and a few other modules lean on Celery's worker internals. Most of these names
are private, promised by no release note; the rest are methods of theirs that ours override,
whose signatures ours must keep matching. Each is listed here once, with where and why,
and tests/test_kombu_contract.py checks each one against the installed libraries: that it is
there and, for a callable, that its signature is the one written here. Moving the kombu or
Celery pin (pyproject.toml) means running that test against the new version first; see the
README, "Libraries, and why".

Sources read (kombu 5.7.0, celery 5.7.0, redis-py 8.1.0 as installed; github:celery/kombu
kombu/transport/redis.py and kombu/transport/virtual/base.py, github:redis/redis-py
redis/sentinel.py and redis/connection.py).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

# How a name is there:
# - "callable": an attribute of the owner (a class or module), called or overridden here;
#   `signature` is what `signature_of` gives for it.
# - "attribute": an attribute of the owner class or module, read or written.
# - "instance": set on each instance (in __init__), so absent from the class: the test looks
#   on a real instance, made through a real connection.
# - "assigned": set by the owner's __init__ on objects the test cannot cheaply make (Celery's
#   consumer): its source must assign it.
Kind = Literal["callable", "attribute", "instance", "assigned"]


@dataclass(frozen=True)
class Hook:
    owner: str  # "package.module:Class" or "package.module"
    name: str
    kind: Kind
    used_in: str
    why: str
    signature: str | None = None  # for "callable"
    # What must also hold of its value, beyond its presence (a list's members, say).
    holds: Callable[[Any], bool] | None = None


# One hook a paragraph: the table reads better so than one argument a line.
# fmt: off
KOMBU_CONTRACT: tuple[Hook, ...] = (
    # kombu's Redis channel: the fetch.
    Hook("kombu.transport.redis:Channel", "_brpop_start", "callable",
         "tasks/transport.py Channel._brpop_start (overridden)",
         "kombu's poller calls it to send the blocking fetch; ours sends BLMOVE into the "
         "worker's fetched list instead of BRPOP", "(self, timeout=None)"),
    Hook("kombu.transport.redis:Channel", "_brpop_read", "callable",
         "tasks/transport.py Channel._brpop_read (overridden)",
         "kombu's poller calls it when the fetch's reply is readable; ours reads BLMOVE's "
         "single item and quarantines what is not an envelope", "(self, **options)"),
    Hook("kombu.transport.redis:Channel", "_queue_cycle", "instance",
         "tasks/transport.py Channel._brpop_start/_brpop_read",
         "the round-robin of active queues kombu's own fetch consumes and rotates"),
    Hook("kombu.utils.scheduling:round_robin_cycle", "consume", "callable",
         "tasks/transport.py Channel._brpop_start", "which queue to fetch from next",
         "(self, n)"),
    Hook("kombu.utils.scheduling:round_robin_cycle", "rotate", "callable",
         "tasks/transport.py Channel._brpop_read", "the queue just served goes last",
         "(self, last_used)"),
    Hook("kombu.transport.redis:Channel", "_q_for_pri", "callable",
         "tasks/transport.py Channel._brpop_start",
         "the list name of a queue at priority 0 (priority_steps=[0]: one list per queue)",
         "(self, queue, pri)"),
    Hook("kombu.transport.redis:Channel", "_in_poll", "attribute",
         "tasks/transport.py Channel._brpop_start/_brpop_read/maybe_unread",
         "the connection a fetch is pending on: kombu's poller reads it to know a reply is "
         "due, and Channel.maybe_unread to know a moved message may be unread"),
    Hook("kombu.transport.redis:Channel", "_brpop_sent_at", "attribute",
         "tasks/transport.py Channel._brpop_start",
         "when the fetch was sent: kombu's poller times a stuck fetch from it"),
    Hook("kombu.transport.redis:Channel", "_flush_brpop_reauth", "callable",
         "tasks/transport.py Channel._brpop_read",
         "kombu sends a pending re-auth token once the fetch's connection is idle; our "
         "override of _brpop_read must call it as kombu's does", "(self)"),
    Hook("kombu.transport.redis:Channel", "__init__", "callable",
         "tasks/transport.py Channel.__init__ (overridden)",
         "extended to name the worker's fetched, given-back and poison lists",
         "(self, *args, **kwargs)"),
    Hook("kombu.transport.redis:Channel", "close", "callable",
         "tasks/transport.py Channel.close (overridden)",
         "a closed channel's leases are no longer renewed", "(self)"),
    Hook("kombu.transport.redis:Channel", "conn_or_acquire", "callable",
         "tasks/transport.py Channel._quarantine", "a client for the poison MULTI",
         "(self, client=None)"),
    Hook("kombu.transport.redis:Channel", "brpop_timeout", "instance",
         "tasks/transport.py Channel._brpop_start", "the fetch's default block"),
    Hook("kombu.transport.redis:Channel", "global_keyprefix", "attribute",
         "tasks/transport.py Channel.__init__, worker/keys.py",
         "every kombu key is under STREAM_PREFIX's q: (tasks/celery_app.py)"),
    Hook("kombu.transport.redis:Channel", "unacked_key", "attribute",
         "tasks/transport.py QoS.append, worker/keys.py",
         "kombu's unacked hash, written by our QoS.append and read by recovery",
         holds=lambda value: value == "unacked"),
    Hook("kombu.transport.redis:Channel", "unacked_index_key", "attribute",
         "tasks/transport.py QoS.append, worker/keys.py",
         "kombu's lease index (a sorted set by fetch time)",
         holds=lambda value: value == "unacked_index"),
    Hook("kombu.transport.redis:Channel", "from_transport_options", "attribute",
         "tasks/celery_app.py broker_options",
         "the transport options kombu copies onto the channel; ours must be among them",
         holds=lambda names: {"priority_steps", "global_keyprefix", "visibility_timeout",
                              "unacked_restore_interval", "unacked_restore_throttle",
                              "socket_connect_timeout"} <= set(names)),
    Hook("kombu.transport.redis:GlobalKeyPrefixMixin", "PREFIXED_SIMPLE_COMMANDS",
         "attribute", "tasks/transport.py Channel._quarantine, QoS.append",
         "kombu's client adds global_keyprefix to LPUSH and LLEN but not to LREM or "
         "LINDEX, so the poison and given-back lists are named bare and the fetched list "
         "in full (QoS.append's look for the next fetch among them)",
         holds=lambda commands: {"LPUSH", "LLEN"} <= set(commands)
         and not {"LREM", "LINDEX"} & set(commands)),
    Hook("kombu.transport.virtual.base:Transport", "_deliver", "callable",
         "tasks/transport.py Channel._brpop_read (connection._deliver)",
         "hands a fetched message to the consumer's callback, as kombu's fetch does",
         "(self, message, queue)"),
    # kombu's QoS: what a channel holds.
    Hook("kombu.transport.redis:QoS", "append", "callable",
         "tasks/transport.py QoS.append (overridden)",
         "records a delivered message as unacked; ours also takes it off the fetched list "
         "in the same MULTI", "(self, message, delivery_tag)"),
    Hook("kombu.transport.virtual.base:QoS", "append", "callable",
         "tasks/transport.py QoS.append (called directly)",
         "the in-memory bookkeeping only, skipping kombu's Redis QoS.append, whose writes "
         "ours replaces", "(self, message, delivery_tag)"),
    Hook("kombu.transport.virtual.base:QoS", "_delivered", "instance",
         "tasks/transport.py QoS.can_consume/restore_unacked/held_tags/front_full",
         "the messages a channel holds, for the prefetch limit, the lease renewal and the "
         "signups cap (their task header)"),
    Hook("kombu.transport.virtual.base:QoS", "_dirty", "instance",
         "tasks/transport.py QoS.can_consume/held_tags/front_full",
         "the held messages already acked but not yet flushed from _delivered"),
    Hook("kombu.transport.redis:QoS", "can_consume", "callable",
         "tasks/transport.py QoS.can_consume (overridden)",
         "holds fewer than the prefetch while Stripe is pacing (WorkerState.hold_fewer)", "(self)"),
    Hook("kombu.transport.redis:QoS", "ack", "callable", "tasks/transport.py QoS.ack",
         "a no-op once the connection is gone; only the bookkeeping once the task's "
         "publish acked it", "(self, delivery_tag)"),
    Hook("kombu.transport.virtual.base:QoS", "ack", "callable",
         "tasks/transport.py QoS.ack (called directly)",
         "the in-memory bookkeeping only, once the publish made kombu's Redis writes of "
         "the ack (ZREM and HDEL of the unacked index and hash)", "(self, delivery_tag)"),
    Hook("celery.app.task:Context", "properties", "attribute",
         "tasks/customers.py WorkTask._done_with",
         "the message's properties, kombu's delivery_tag among them (set from the message "
         "by celery/worker/request.py): the publish acks the message by it"),
    Hook("kombu.transport.redis:QoS", "reject", "callable", "tasks/transport.py QoS.reject",
         "a no-op once the connection is gone", "(self, delivery_tag, requeue=False)"),
    Hook("kombu.transport.redis:QoS", "restore_unacked", "callable",
         "tasks/transport.py QoS.restore_unacked",
         "after a lost connection the messages are left to crash recovery",
         "(self, client=None)"),
    Hook("kombu.transport.redis:QoS", "pipe_or_acquire", "callable",
         "tasks/transport.py QoS.append", "the pipeline of the unacked MULTI",
         "(self, pipe=None, client=None)"),
    Hook("kombu.transport.virtual.base:QoS", "prefetch_count", "attribute",
         "tasks/transport.py QoS.can_consume", "Celery's prefetch limit"),
    Hook("kombu.transport.virtual.base:Message", "_raw", "instance",
         "tasks/transport.py QoS.append, tasks/consumer.py on_task_received",
         "the envelope as fetched: stored in the unacked hash as kombu stores it, and put "
         "on the error stream whole when it is not valid work"),
    # Sentinel.
    Hook("kombu.transport.redis:SentinelChannel", "connection_class_ssl", "attribute",
         "tasks/transport.py SentinelChannel, tasks/celery_app.py (broker_use_ssl)",
         "with broker_use_ssl, kombu's _connparams makes the master's connections "
         "SentinelManagedSSLConnection: TLS to the master the sentinels name",
         holds=lambda cls: cls.__name__ == "SentinelManagedSSLConnection"),
    Hook("kombu.transport.redis:SentinelChannel", "_sentinel_managed_pool", "callable",
         "tasks/transport.py SentinelChannel (inherited)",
         "passes the transport option sentinel_kwargs to redis-py's Sentinel (the "
         "sentinels' password and TLS) and the URL's password to master_for",
         "(self, asynchronous=False)"),
    Hook("kombu.transport.redis:SentinelTransport", "default_port", "attribute",
         "tasks/transport.py SentinelTransport", "a sentinel:// part without a port",
         holds=lambda port: port == 26379),
    # kombu's Connection: a failover to the next sentinel:// part keeps our transport.
    Hook("kombu.connection:Connection", "switch", "callable",
         "tasks/celery_app.py BrokerConnection.switch (overridden)",
         "kombu switches to the next alternate URL on a failed connect, and sets the "
         "transport to its scheme; ours puts back the one it was made with",
         "(self, conn_str)"),
    Hook("kombu.connection:Connection", "_initial_params", "assigned",
         "tasks/celery_app.py BrokerConnection.switch",
         "the parameters the connection was made with: its transport (Celery's)"),
    Hook("kombu.connection:Connection", "transport_cls", "instance",
         "tasks/celery_app.py BrokerConnection.switch",
         "the transport (a name or class) the next connection is made with"),
    Hook("celery.app.amqp:AMQP", "Connection", "attribute",
         "tasks/celery_app.py BrokerAMQP", "the class the app makes broker connections of"),
    # redis-py, under kombu's channel and our Sentinel client.
    Hook("redis.client:Redis", "parse_response", "callable",
         "tasks/transport.py Channel._brpop_read", "reads the BLMOVE reply kombu's way",
         "(self, connection, command_name, **options)"),
    Hook("redis.connection:AbstractConnection", "_sock", "instance",
         "stripe_worker_agent/connection.py MasterConnection.send_packed_command",
         "a dropped connection reconnects through the sentinels, not to its old address"),
    Hook("redis.connection:AbstractConnection", "send_packed_command", "callable",
         "stripe_worker_agent/connection.py MasterConnection (overridden)", "see _sock",
         "(self, command, check_health=True)"),
    Hook("redis.sentinel:SentinelManagedConnection", "connect", "callable",
         "stripe_worker_agent/connection.py MasterConnection.send_packed_command",
         "the sentinel-aware connect", "(self)"),
    # Celery's worker.
    Hook("celery.worker.consumer.consumer:Consumer", "connect", "callable",
         "tasks/consumer.py WorkConsumer.connect", "the consumer is connected from here",
         "(self)"),
    Hook("celery.worker.consumer.consumer:Consumer", "on_connection_error_before_connected",
         "callable", "tasks/consumer.py WorkConsumer",
         "the consumer cannot connect: the heartbeat says so; a full Redis is waited out",
         "(self, exc)"),
    Hook("celery.worker.consumer.consumer:Consumer", "on_connection_error_after_connected",
         "callable", "tasks/consumer.py WorkConsumer", "the consumer lost its connection",
         "(self, exc)"),
    Hook("celery.worker.consumer.consumer:Consumer", "create_task_handler", "callable",
         "tasks/consumer.py WorkConsumer.create_task_handler",
         "every message is checked before its task's strategy sees it", "(self, promise=…)"),
    Hook("celery.worker.consumer.consumer:Consumer", "connection_errors", "assigned",
         "tasks/consumer.py WorkConsumer.__init__",
         "OutOfMemoryError added: a full Redis is a lost connection, not a crash"),
    Hook("celery.app.task:Task", "run", "callable", "tasks/customers.py WorkTask.run",
         "the task's body (Celery's documented way to write a class-based task)",
         "(self, *args, **kwargs)"),
    Hook("celery.app.task:Task", "retry", "callable", "tasks/customers.py WorkTask.retry",
         "a retry that cannot be queued puts the message back; it relies on Celery raising "
         "Reject(requeue=False) then, with .reason and .requeue",
         "(self, args=None, kwargs=None, exc=None, throw=True, eta=None, countdown=None, "
         "max_retries=None, **options)"),
    Hook("celery.exceptions:Reject", "__init__", "callable",
         "tasks/customers.py WorkTask.retry", "Reject(reason, requeue=True) as Celery builds it",
         "(self, reason=None, requeue=False)"),
    Hook("celery.exceptions:Reject", "requeue", "assigned", "tasks/customers.py WorkTask.retry",
         "a Reject that would drop the message is raised again with requeue=True"),
    Hook("celery.exceptions:Reject", "reason", "assigned", "tasks/customers.py WorkTask.retry",
         "kept when the Reject is raised again"),
    Hook("celery.worker.state", "total_count", "attribute", "tasks/recovery.py _activity",
         "tasks done, for the heartbeat"),
    Hook("celery.worker.state", "active_requests", "attribute", "tasks/recovery.py _activity",
         "tasks running, for the heartbeat"),
    Hook("celery.worker.state", "scheduled_requests", "attribute",
         "tasks/recovery.py _activity", "retries waiting their countdown, for the heartbeat"),
    Hook("celery.worker.state", "should_stop", "attribute", "worker/devtools/dev.py",
         "the dev worker's first signal stops it warm"),
    Hook("celery.worker.state", "should_terminate", "attribute", "worker/devtools/dev.py",
         "its second signal stops it cold"),
    Hook("celery.apps.worker:Worker", "install_platform_tweaks", "callable",
         "worker/devtools/dev.py DevWorker (overridden)",
         "the dev worker's own signal handling", "(self, worker)"),
    Hook("celery.bin.base:CLIContext", "__init__", "callable", "tasks/launch.py run_worker",
         "the context the celery group hands its worker command, made by us: the command "
         "runs without the group (which imports every other subcommand); "
         "app.worker_main would drop the worker's exit status",
         "(self, app, no_color, workdir, quiet=False)"),
    Hook("celery.bin.worker", "worker", "attribute", "tasks/launch.py run_worker",
         "the worker command, run by its click main() with that context as its obj",
         holds=lambda command: callable(getattr(command, "main", None))),
)
# fmt: on


def resolve(owner: str) -> Any:
    """The class or module `owner` names."""
    module, _, qualname = owner.partition(":")
    found: Any = importlib.import_module(module)
    for part in filter(None, qualname.split(".")):
        found = getattr(found, part)
    return found


def signature_of(function: Callable[..., Any]) -> str:
    """`function`'s parameters as written in KOMBU_CONTRACT: names, kinds and literal
    defaults, without annotations; a default that is not a literal is shown as `…` (its
    repr carries an address)."""
    shown = []
    star = False
    for parameter in inspect.signature(function).parameters.values():
        kind = parameter.kind
        if kind is parameter.KEYWORD_ONLY and not star:
            shown.append("*")
        star = star or kind in (parameter.KEYWORD_ONLY, parameter.VAR_POSITIONAL)
        text = parameter.name
        if kind is parameter.VAR_POSITIONAL:
            text = "*" + text
        elif kind is parameter.VAR_KEYWORD:
            text = "**" + text
        if parameter.default is not parameter.empty:
            default = parameter.default
            literal = default is None or isinstance(default, bool | int | float | str)
            text += "=" + (repr(default) if literal else "…")
        shown.append(text)
    return f"({', '.join(shown)})"
