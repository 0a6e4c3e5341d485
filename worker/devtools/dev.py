"""`stripe-worker dev`: receiver, worker and (when needed) emulator in one process.

Each missing piece gets an embedded default, announced in one line: a Redis (fakeredis's
TCP server, with Lua) when none answers at REDIS_URL or none is set, the emulator with a
generated sk_test_ key when the vault has no Stripe key, generated webhook secrets when
none are configured. Everything runs in this one process (threads, and the Celery worker
on its threads pool), so Ctrl-C or SIGTERM stops it all and leaves nothing behind.

What the other commands need (receiver URL, Redis URL, emulator, generated secrets)
is written to a state file that only this user can read, removed on exit.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import sys
import threading
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from celery.exceptions import SecurityWarning

from worker.devtools.dev_state import read_state, state_path
from worker.devtools.local import embedded_redis, free_port, port_free, redis_answers
from worker.errors import SettingsError
from worker.redact import redact_url
from worker.settings import Settings
from worker.vault import (
    CONSOLE_TOKEN,
    SIGNUP_WEBHOOK_SECRET,
    STRIPE_SECRET_KEY,
    STRIPE_WEBHOOK_SECRET,
    Vault,
    key_mode,
)

if TYPE_CHECKING:
    from worker.devtools.emulator import EmulatorState


def _generated_whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


class DevStack:
    """The pieces `dev` starts, and how to stop them."""

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        fixed_port: bool = False,
        say: Any = print,
    ) -> None:
        self.environ = dict(os.environ if environ is None else environ)
        self.host = host
        self.port = port
        self.fixed_port = fixed_port  # asked for (--port, PORT): refused when taken
        self.say = say
        self._stops: list[Any] = []
        self.state: dict[str, Any] = {}
        self.console_token = ""
        self._emulated: EmulatorState | None = None  # the emulator dev started, if any

    def prepare(self) -> tuple[Settings, Vault]:
        """Fill in what is missing with embedded defaults, saying each in one line."""
        env = self.environ
        Settings.from_env(env)  # a bad setting (REDIS_URL without a scheme) is refused first
        if self.fixed_port and not port_free(self.host, self.port):  # before starting anything
            raise SettingsError(
                f"port {self.port} on {self.host} is taken by another process: stop it, "
                "or choose another --port (without --port or PORT, dev takes a free one)"
            )
        overrides: dict[str, Any] = {}
        url = env.get("REDIS_URL")
        if url and redis_answers(url):
            self.say(f"redis     {redact_url(url)} (REDIS_URL)")
        else:
            overrides["redis_url"] = self._embedded_redis()
            why = "no Redis answers at REDIS_URL" if url else "REDIS_URL is not set"
            self.say(f"redis     embedded fakeredis at {overrides['redis_url']} ({why})")
        settings = Settings.from_env(env, **overrides)
        vault = Vault(settings.secrets_dir, env)
        generated: dict[str, str] = {}
        if vault.find(STRIPE_SECRET_KEY) is None:
            key = "sk_test_dev" + secrets.token_hex(12)
            env[STRIPE_SECRET_KEY.upper()] = generated[STRIPE_SECRET_KEY] = key
            base = self._emulator(key)
            settings = settings.with_(stripe_api_base=base)
            self.say(
                f"stripe    emulator at {base} with a generated test key "
                "(no stripe_secret_key in the vault)"
            )
        else:
            mode = key_mode(vault.stripe_key())
            self.say(
                f"stripe    {settings.stripe_api_base} with the vault's stripe_secret_key "
                f"({mode} mode)"
            )
        for name in (STRIPE_WEBHOOK_SECRET, SIGNUP_WEBHOOK_SECRET):
            if vault.find(name) is None:
                env[name.upper()] = generated[name] = _generated_whsec()
        if vault.find(CONSOLE_TOKEN) is None:  # the console is on in dev, behind a token
            env[CONSOLE_TOKEN.upper()] = self.console_token = secrets.token_urlsafe(24)
        if generated:
            self.say(
                "secrets   generated for this run: "
                + ", ".join(f"{name.upper()}={value}" for name, value in generated.items())
            )
        if not port_free(self.host, self.port):
            taken, self.port = self.port, free_port()
            self.say(f"port      {taken} is taken: the receiver listens on {self.port}")
        receiver = f"http://{self.host}:{self.port}"
        vault = Vault(settings.secrets_dir, env)
        if self._emulated is not None:  # its events reach the receiver, as Stripe's would
            secret = (vault.get_list(STRIPE_WEBHOOK_SECRET) or [""])[-1]
            forwarder = self._emulated.forward_to(f"{receiver}/webhooks/stripe", secret)
            self._stops.append(forwarder.stop)
            self.say(
                f"events    the emulator delivers its events to {forwarder.url}, "
                "as `stripe listen --forward-to` does"
            )
        self.state = {
            "receiver": receiver,
            "redis_url": settings.redis_url,
            "stream_prefix": settings.stream_prefix,
            "secrets": generated,
            "stripe_api_base": settings.stripe_api_base,
        }
        return settings, vault

    def _embedded_redis(self) -> str:
        port = free_port()
        server = embedded_redis(port)
        self._stops.append(lambda: (server.shutdown(), server.server_close()))
        return f"redis://127.0.0.1:{port}/0"

    def _emulator(self, key: str) -> str:
        from worker.devtools.emulator import EmulatorServer, EmulatorState

        server = EmulatorServer("127.0.0.1", 0, EmulatorState(allowed_keys={key})).start()
        self._stops.append(server.stop)
        self._emulated = server.state
        return server.url

    def serve_receiver(self, settings: Settings, vault: Vault) -> None:
        from werkzeug.serving import make_server

        from webhooks import create_app

        handler = None if sys.stderr.isatty() else _plain_request_handler()
        server = make_server(
            self.host,
            self.port,
            create_app(settings, vault=vault),
            threaded=True,
            request_handler=handler,
        )
        threading.Thread(target=server.serve_forever, name="receiver", daemon=True).start()
        self._stops.append(server.shutdown)

    def write_state(self) -> None:
        path = state_path()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(dict(self.state, pid=os.getpid()), f)

        def remove() -> None:
            if read_state().get("pid") == os.getpid():  # not a newer dev's
                path.unlink(missing_ok=True)

        self._stops.append(remove)

    def stop(self) -> None:
        for stop in reversed(self._stops):
            try:
                stop()
            except Exception:  # noqa: S112 - stopping the rest matters more
                continue
        self._stops.clear()


def _plain_request_handler() -> type:
    """Werkzeug's request handler, its request lines without colour: werkzeug/serving.py
    styles them with ANSI codes whether or not stderr is a terminal, and behind a pipe or in
    a log file they are noise. `log` is where every line of the handler passes."""
    import re

    from werkzeug.serving import WSGIRequestHandler

    ansi = re.compile(r"\x1b\[[0-9;]*m")

    class PlainRequestHandler(WSGIRequestHandler):
        def log(self, type: str, message: str, *args: Any) -> None:
            super().log(type, "%s", ansi.sub("", message % args if args else message))

    return PlainRequestHandler


def run_dev(
    host: str = "127.0.0.1", port: int = 8000, concurrency: int = 4, *, fixed_port: bool = False
) -> int:
    """Start everything, print what to do next, run the worker until Ctrl-C or SIGTERM."""
    from tasks import worker_app
    from tasks.catchup import install_catchup
    from tasks.holding import hold_to_pace
    from tasks.recovery import install_recovery
    from tasks.runtime import runtime_of
    from worker import tracing
    from worker.logs import configure_logging

    configure_logging("INFO", "%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Celery's warning for root is about pickle; this app accepts JSON only (celery_app.py),
    # and a container's root user trying `dev` should not meet seven lines of alarm.
    warnings.filterwarnings("ignore", category=SecurityWarning)
    stack = DevStack(host=host, port=port, fixed_port=fixed_port)
    try:
        settings, vault = stack.prepare()
        # One process runs both: its spans are one service's (unless OTEL_SERVICE_NAME).
        tracing.setup(settings, "stripe-worker-dev")
        stack.serve_receiver(settings, vault)
        stack.write_state()
        receiver = stack.state["receiver"]
        print(
            f"receiver  {receiver}  (POST /webhooks/stripe, /webhooks/signup; "
            "GET /healthz /readyz /metrics)"
        )
        token = stack.console_token  # generated, so shown; the user's own never is
        print(
            f"console   {receiver}/console/" + (f"#token={token}" if token else " (CONSOLE_TOKEN)")
        )
        print(
            "ready. In another shell:\n"
            "  stripe-worker send signup --email jenny.rosen@example.com --name 'Jenny Rosen'\n"
            "  stripe-worker send stripe checkout.session.completed\n"
            "  stripe-worker tail customers       # or: events, errors\n"
            "Ctrl-C stops everything.",
            flush=True,
        )
        app = worker_app(settings, vault)
        rt = runtime_of(app)
        recovery = install_recovery(
            app,
            settings,
            {"pool": "threads", "concurrency": concurrency},
            report=hold_to_pace(rt.gateway, concurrency, rt.state.hold_fewer),
        )
        install_catchup(app, settings, recovery.worker_id)
        worker = _quiet_worker_class(app)(
            pool="threads",
            concurrency=concurrency,
            loglevel="INFO",
            without_gossip=True,
            without_mingle=True,
            without_heartbeat=True,
            hostname=f"stripe-worker-dev-{os.getpid()}@{socket.gethostname()}",
            quiet=True,
            redirect_stdouts=False,  # our own last line goes to the terminal, not a log
        )
        worker.start()
    except KeyboardInterrupt:  # Ctrl-C before the worker took over the signals
        pass
    finally:
        stack.stop()
    print("stopped; nothing left running", flush=True)
    return 0


def _quiet_worker_class(app: Any) -> Any:
    """Celery's worker, stopped by the first Ctrl-C or SIGTERM without Celery's banners.

    The first signal stops taking work and lets the running tasks finish (a warm
    shutdown); a second one stops them too. `run_dev` then says it stopped, in one line.
    """

    # app.Worker is made per app at run time: Any to mypy.
    class DevWorker(app.Worker):  # type: ignore[misc]
        def install_platform_tweaks(self, worker: Any) -> None:
            from celery import platforms
            from celery.worker import state

            def stop(*_args: Any) -> None:
                # celery-types declares both None; Celery's worker/state.py sets them to the
                # exit status (an int) to stop.
                if state.should_stop is None:
                    state.should_stop = 0  # type: ignore[assignment]
                else:
                    state.should_terminate = 0

            platforms.signals["SIGINT"] = stop
            platforms.signals["SIGTERM"] = stop

    return DevWorker
