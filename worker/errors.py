"""One rooted error hierarchy, and the retry rule, in one place.

Every error carries `error_type`, a message that has been through `redact` (so it can go
to a log, a stream or an HTTP answer), and two statuses that never mean the same thing:
`http_status` is what Stripe answered (None when Stripe was not asked), `answer_status`
is what the receiver answers its sender for it.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import RedisError

from worker.redact import redact

# The `error_type` values of the error stream (README, "Streams, for agent authors").
AUTHENTICATION = "authentication_error"
INVALID_REQUEST = "invalid_request_error"
NOT_FOUND = "not_found"
RATE_LIMIT = "rate_limit"
API_ERROR = "api_error"
CONNECTION = "connection_error"


class StripeWorkerError(Exception):
    """Root of every error this project raises on purpose."""

    error_type: str = "error"
    http_status: int | None = None  # Stripe's status, for errors of a Stripe call
    answer_status: int = 400  # the receiver's answer to its sender
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        request_id: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        self.message = redact(message)
        super().__init__(self.message)
        if http_status is not None:
            self.http_status = http_status
        self.request_id = request_id
        if retryable is not None:
            self.retryable = retryable

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.error_type,
            "message": self.message,
            "http_status": self.http_status,
            "request_id": self.request_id,
            "retryable": self.retryable,
        }


class SettingsError(StripeWorkerError):
    """Raised when an environment variable has a value that cannot be used."""

    error_type = "settings_error"


class SpecError(StripeWorkerError):
    """Raised when a component's JSON is malformed, before any network call."""

    error_type = "invalid_spec"


class UsageError(StripeWorkerError):
    """Raised when a command is called wrongly (a missing option, an unknown entry id)."""

    error_type = "usage_error"


class ReceiverUnreachable(StripeWorkerError):
    """Raised when `stripe-worker send` cannot reach the receiver it posts to."""

    error_type = "receiver_unreachable"


class InvalidMessage(StripeWorkerError):
    """Raised when a queue message or its arguments are not a valid piece of work."""

    error_type = "invalid_message"


class SecretMissing(StripeWorkerError):
    """Raised when a named secret is in neither SECRETS_DIR nor the environment."""

    error_type = "secret_missing"


class ModeMismatch(StripeWorkerError):
    """Raised when test and live would mix: an event's livemode against the key's mode."""

    error_type = "livemode_mismatch"


class WebhookRejected(StripeWorkerError):
    """Raised when a webhook fails verification or parsing; answered 4xx."""

    error_type = "invalid_webhook"

    def __init__(self, error_type: str, message: str, answer_status: int = 400) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.answer_status = answer_status


class QueueUnavailable(StripeWorkerError):
    """Raised when work could not be queued safely (Redis or broker down); answered 503."""

    error_type = "unavailable"
    answer_status = 503
    retryable = True


class NotReplicated(StripeWorkerError, RedisError):
    """Raised when a write reached the Redis master but not REDIS_MIN_REPLICAS replicas in
    time; a RedisError, so whatever retries on Redis trouble retries this."""

    # redis-py types error_type as its ExceptionType enum; ours is a str, and __init__ below
    # drops the instance value redis-py sets, so this one is what is read.
    error_type = "unavailable"  # type: ignore[assignment]
    answer_status = 503
    retryable = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        # redis-py 8's RedisError.__init__ sets an instance `error_type` (its ExceptionType
        # enum), which would hide ours and make to_dict() unserialisable.
        vars(self).pop("error_type", None)

    def __repr__(self) -> str:  # RedisError's reads error_type as its enum
        return f"NotReplicated({self.message!r})"


class InternalError(StripeWorkerError):
    """Raised in place of an unexpected exception in a task, so the work ends on the error
    stream (replayable once fixed) instead of vanishing."""

    error_type = "internal_error"


class StripeCallError(StripeWorkerError):
    """Raised when a call to Stripe did not succeed; subclasses say why."""


class AuthenticationFailed(StripeCallError):
    """Raised on 401/403: wrong, revoked or restricted key, or a test key used for live."""

    error_type = AUTHENTICATION


class InvalidRequest(StripeCallError):
    """Raised on 400/402 and idempotency mismatches: the request itself is wrong."""

    error_type = INVALID_REQUEST


class IdempotencyMismatch(InvalidRequest):
    """Raised when Stripe refuses an idempotency key already used with other parameters."""


class NotFound(StripeCallError):
    """Raised on 404, or when the customer asked for has been deleted."""

    error_type = NOT_FOUND


class RateLimited(StripeCallError):
    """Raised on 429, or when the shared pace has no slot soon: back-pressure, not a failure.

    Always retried, whatever Stripe-Should-Retry says, and never counted against the
    work's attempts (tasks/retry_policy.py): the work waits and tries again.
    """

    error_type = RATE_LIMIT
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = 429,
        request_id: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
        code: str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message, http_status=http_status, request_id=request_id)
        self.retry_after = retry_after  # Stripe's Retry-After, in seconds, when it sent one
        self.code = code  # rate_limit (too fast) or lock_timeout (one object busy)
        # Which limiter answered, when Stripe says (Stripe-Rate-Limited-Reason: global-rate,
        # endpoint-rate, global-concurrency, endpoint-concurrency, resource-specific).
        self.reason = reason


class StripeUnavailable(StripeCallError):
    """Raised on 409 and 5xx: Stripe could not finish the request; retried."""

    error_type = API_ERROR
    retryable = True


class ConnectionFailed(StripeCallError):
    """Raised when Stripe could not be reached or did not answer in time; retried."""

    error_type = CONNECTION
    retryable = True


def from_stripe_error(exc: Exception) -> StripeCallError:
    """Map a `stripe.StripeError` to ours, following stripe-python's retry rule.

    Temporary: 409, 429, 5xx, connection errors and timeouts. `Stripe-Should-Retry`
    overrides either way, except on a 429: that is always back-pressure. Everything
    else is permanent.
    """
    import stripe

    status = getattr(exc, "http_status", None)
    headers = {k.lower(): v for k, v in (getattr(exc, "headers", None) or {}).items()}
    request_id = getattr(exc, "request_id", None)
    message = getattr(exc, "user_message", None) or str(exc) or exc.__class__.__name__
    # stripe-python leaves `code` unset on its RateLimitError: read it from Stripe's body.
    body = getattr(exc, "json_body", None)
    error_body = body.get("error") if isinstance(body, dict) else None
    code = getattr(exc, "code", None) or (
        error_body.get("code") if isinstance(error_body, dict) else None
    )

    cls: type[StripeCallError]
    if isinstance(exc, stripe.APIConnectionError) or status is None:
        cls = ConnectionFailed
        message = f"could not reach Stripe: {message}"
    elif status in (401, 403):
        cls = AuthenticationFailed
        message = (
            f"Stripe refused the API key ({status}): {message}. Check the secret is the right "
            "key, not revoked or restricted, and a test key is not used for live mode."
        )
    elif status == 404:
        cls = NotFound
    elif status == 429:
        cls = RateLimited
    elif status == 409 or status >= 500:
        cls = StripeUnavailable
    else:
        cls = InvalidRequest
        # Stripe's `param` names the field its message is about ("must be at most 256
        # characters long" does not); stripe-python sets it on InvalidRequestError and
        # CardError (StripeErrorWithParamCode), from the error body otherwise.
        param = getattr(exc, "param", None) or (
            error_body.get("param") if isinstance(error_body, dict) else None
        )
        if param and str(param) not in message:
            message = f"{message} (param: {param})"
        if isinstance(exc, stripe.IdempotencyError) or code == "idempotency_key_in_use":
            cls = IdempotencyMismatch
            message = f"idempotency key reused with other parameters: {message}"

    if cls is RateLimited:
        return RateLimited(
            message,
            request_id=request_id,
            retry_after=_seconds(headers.get("retry-after")),
            code=code,
            reason=headers.get("stripe-rate-limited-reason"),
        )
    should_retry = headers.get("stripe-should-retry")
    retryable = {"true": True, "false": False}.get(should_retry or "")
    return cls(message, http_status=status, request_id=request_id, retryable=retryable)


def _seconds(value: str | None) -> float | None:
    """Retry-After in seconds (its HTTP-date form is not one Stripe sends); bounded."""
    try:
        return min(60.0, max(0.0, float(value))) if value else None
    except ValueError:
        return None


def is_retryable(exc: BaseException) -> bool:
    """The one retry rule: our errors say so themselves; anything else is a bug, never retried."""
    return isinstance(exc, StripeWorkerError) and exc.retryable
