"""The Celery app's configuration, made from Settings at start-up.

`create_celery` configures the broker and the worker's behaviour; the tasks register
themselves on it (tasks/__init__.py), so this module knows nothing of them.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.app.amqp import AMQP
from kombu import Connection

from stripe_worker_agent.redis_url import is_sentinel_url, kombu_url, tls_options
from worker.connections import sentinel_options
from worker.keys import QUEUE
from worker.settings import Settings


def broker_options(settings: Settings) -> dict[str, Any]:
    """kombu's Redis transport options; every key it writes goes under STREAM_PREFIX."""
    options: dict[str, Any] = {
        "global_keyprefix": settings.keys.kombu_prefix,
        # One list per queue: tasks/transport.py fetches from it atomically (BLMOVE).
        "priority_steps": [0],
        "visibility_timeout": settings.visibility_timeout,
        "unacked_restore_interval": min(10, max(1, settings.visibility_timeout // 10)),
        "unacked_restore_throttle": 1,
        "socket_connect_timeout": 2,
    }
    if is_sentinel_url(settings.redis_url):
        options.update(
            master_name=settings.redis_sentinel_master,
            sentinel_kwargs=sentinel_options(settings),
        )
    return options


def create_celery(settings: Settings) -> Celery:
    """A Celery app on the Redis at REDIS_URL, without tasks."""
    app = Celery(
        "stripe_worker",
        broker=kombu_url(settings.redis_url),
        set_as_current=False,
        # Connections that stay on tasks/transport.py when kombu fails over to another
        # sentinel of the URL's list.
        amqp="tasks.celery_app:BrokerAMQP",
    )
    app.conf.update(
        # kombu's Redis transport, fetching so that a dead worker's messages can be found
        # (through the sentinels to the current master, for a sentinel:// REDIS_URL).
        broker_transport="tasks.transport:"
        + ("SentinelTransport" if is_sentinel_url(settings.redis_url) else "Transport"),
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_default_queue=QUEUE,
        # A task is acked after it ran, and put back if its worker dies mid-way; the
        # idempotency key and publish-once mark make the second run harmless.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.task_time_limit,
        task_soft_time_limit=max(1, settings.task_time_limit - 10),
        broker_transport_options=broker_options(settings),
        # kombu adds TLS itself only for a transport named `rediss`; ours is named by its
        # module, so a rediss:// URL without this would be spoken to in plaintext. With a
        # sentinel:// URL, kombu's _connparams makes the master's connections
        # SentinelManagedSSLConnection with these (kombu/transport/redis.py); the sentinels
        # get theirs in sentinel_kwargs.
        broker_use_ssl=tls_options(settings.redis_url),
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=2,
        worker_hijack_root_logger=False,
        worker_concurrency=settings.pool_size,
        worker_pool=settings.worker_pool,
        # Celery 6's default: a task whose broker connection is lost is cancelled and
        # redelivered; the idempotency key and publish-once mark make that harmless.
        worker_cancel_long_running_tasks_on_connection_loss=True,
    )
    return app


class BrokerConnection(Connection):
    """kombu's Connection, keeping the transport it was made with when it fails over.

    A sentinel:// REDIS_URL is a `;`-separated list, which kombu takes as failover
    alternates: when a connection attempt fails (the master killed, not yet replaced) it
    switches to the next, and `Connection.switch` sets the transport to the URL's scheme
    (kombu/connection.py: "parse_url() sets transport to the raw URL scheme, overriding any
    transport given at construction time"). The worker then reconnected through kombu's own
    `sentinel` transport: BRPOP from the queue, never `given_back`, leases nobody renews
    (so tasks/recovery.py gave back what it held, into a list it never took from).
    """

    _initial_params: dict[str, Any]  # kombu's, set in Connection.__init__ (kombu_contract)

    def switch(self, conn_str: str) -> None:
        transport = self._initial_params.get("transport")
        super().switch(conn_str)
        if transport:  # the one given at construction (Celery's broker_transport)
            self.transport_cls = transport


class BrokerAMQP(AMQP):
    """Celery's AMQP helpers, making broker connections that keep their transport
    (BrokerConnection); given to the app as `Celery(amqp=...)`, Celery's documented hook."""

    Connection = BrokerConnection
