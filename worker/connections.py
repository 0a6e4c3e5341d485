"""Redis clients made from Settings at start-up, and the Lua scripts they run."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import redis
from redis.commands.core import Script

from worker.settings import Settings


def redis_client(settings: Settings, **options: Any) -> redis.Redis:
    options.setdefault("socket_connect_timeout", 2)
    options.setdefault("socket_timeout", 5)
    options.setdefault("health_check_interval", 30)
    return redis.Redis.from_url(settings.redis_url, **options)


def lua_script(client: redis.Redis, package: str, name: str) -> Script:
    """The script `name` shipped beside the package's modules, registered on `client`."""
    return client.register_script(files(package).joinpath(name).read_text("utf-8"))
