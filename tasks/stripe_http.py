"""The HTTP client under the Stripe SDK: urllib3's keep-alive pools, without requests.

The SDK's default client goes through requests, whose Session prepares each request and
merges its settings (proxies read from the environment, cookies, hooks) on every call:
about a fifth of a signup's CPU in the worker (py-spy under bench/side_by_side.py).
This one speaks to urllib3, the library requests runs on, directly. As the SDK's
RequestsClient does (stripe/_http_client.py), it checks certificates against the SDK's
CA bundle, sends the SDK's headers and body as they are, and turns what goes wrong on
the network into the SDK's APIConnectionError, retryable for the same failures (a
timeout, a refused or dropped connection; not a certificate that does not verify), so
the SDK's retries and ours (worker/errors.py) see what they saw before. The proxy the
environment names (HTTPS_PROXY, NO_PROXY) is read once per host, not on every call.
"""

from __future__ import annotations

import textwrap
import threading
from collections.abc import Mapping
from typing import Any, NoReturn
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

import stripe
import urllib3
from urllib3 import exceptions as u3

# Network failures worth another try, as RequestsClient retries requests' Timeout and
# ConnectionError (which wrap these); an SSLError is a ProtocolError's sibling, not one.
_RETRYABLE = (u3.TimeoutError, u3.ProtocolError, u3.NewConnectionError, u3.ProxyError)


class StripeHttpClient(stripe.HTTPClient):
    """A `stripe.HTTPClient` on urllib3 pools of up to `pool_size` connections a host."""

    name = "urllib3"

    def __init__(self, timeout: float = 80, pool_size: int = 64) -> None:
        super().__init__()
        self._timeout = urllib3.Timeout(connect=timeout, read=timeout)
        self._pool_size = pool_size
        self._managers: dict[tuple[str, str], urllib3.PoolManager] = {}
        self._lock = threading.Lock()

    def _manager(self, url: str) -> urllib3.PoolManager:
        parts = urlsplit(url)
        found = self._managers.get((parts.scheme, parts.netloc))
        if found is not None:
            return found
        with self._lock:
            proxy = None if proxy_bypass(parts.hostname or "") else getproxies().get(parts.scheme)
            options: dict[str, Any] = {
                "maxsize": self._pool_size,  # one kept-alive connection per worker thread
                "cert_reqs": "CERT_REQUIRED",
                "ca_certs": stripe.ca_bundle_path,
                "timeout": self._timeout,
                "retries": False,  # the SDK and the task retry, knowing what is safe to send again
            }
            manager = (
                urllib3.ProxyManager(proxy, **options) if proxy else urllib3.PoolManager(**options)
            )
            return self._managers.setdefault((parts.scheme, parts.netloc), manager)

    # RequestsClient's own signature (stripe/_http_client.py), which already differs from
    # its base HTTPClient's (no `_usage`, bytes for str): the SDK calls it this way.
    def request(  # type: ignore[override]
        self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        try:
            answer = self._manager(url).request(
                method.upper(), url, body=post_data, headers=dict(headers or {}), redirect=False
            )
        except Exception as exc:  # every failure is the SDK's connection error
            _connection_error(exc)
        return answer.data, answer.status, answer.headers

    def request_stream(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError("no Stripe call of stripe-worker streams its answer")

    def close(self) -> None:
        with self._lock:
            for manager in self._managers.values():
                manager.clear()
            self._managers.clear()


def _connection_error(exc: Exception) -> NoReturn:
    """The SDK's APIConnectionError for `exc`, worded as RequestsClient words it."""
    if isinstance(exc, u3.SSLError):
        msg = (
            "Could not verify Stripe's SSL certificate.  Please make sure that your network "
            "is not intercepting certificates.  If this problem persists, let us know at "
            "support@stripe.com."
        )
        retry = False
    else:
        msg = (
            "Unexpected error communicating with Stripe.  If this problem persists, let us "
            "know at support@stripe.com."
        )
        retry = isinstance(exc, _RETRYABLE)
    detail = f"{type(exc).__name__}: {exc}"
    raise stripe.APIConnectionError(  # type: ignore[no-untyped-call]  # the SDK's, unannotated
        textwrap.fill(msg) + f"\n\n(Network error: {detail})", should_retry=retry
    ) from exc
