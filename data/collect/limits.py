"""Rate limits, retries and error classification for the runner."""

from __future__ import annotations

import asyncio
import email.utils
import random
import time


class TokenBucket:
    """Refills ``rate`` units per second up to ``capacity``; ``take`` waits until it can."""

    def __init__(self, per_minute: float, burst_seconds: float = 1.0) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst_seconds)
        self.level = self.capacity
        self.stamp = time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self, amount: float = 1.0) -> None:
        amount = min(amount, self.capacity)  # one oversize request must still get through
        async with self.lock:
            while True:
                t = time.monotonic()
                self.level = min(self.capacity, self.level + (t - self.stamp) * self.rate)
                self.stamp = t
                if self.level >= amount:
                    self.level -= amount
                    return
                await asyncio.sleep((amount - self.level) / self.rate)


class ModelLimits:
    """Per-model requests-per-minute and tokens-per-minute buckets (either may be absent).
    Tokens are counted before the call from the prompt length and ``max_tokens``, the same
    conservative count providers reserve."""

    def __init__(self, rpm: float | None, tpm: float | None) -> None:
        self.rpm = TokenBucket(rpm) if rpm else None
        self.tpm = TokenBucket(tpm) if tpm else None

    async def wait(self, tokens: float) -> None:
        if self.rpm:
            await self.rpm.take(1)
        if self.tpm:
            await self.tpm.take(tokens)


def backoff(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform on [0, min(cap, base·2^(attempt−1))]."""
    return rng.uniform(0, min(cap, base * 2 ** max(0, attempt - 1)))


def retry_after(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, or ``Retry-After`` as seconds
    or an HTTP date), if it said."""
    headers = getattr(exc, "litellm_response_headers", None)
    resp = getattr(exc, "response", None)
    if headers is None and resp is not None:
        headers = getattr(resp, "headers", None)
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, when.timestamp() - time.time()) if when else None


RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504, 529}


_CONNECTION_ERRORS = ("APIConnectionError", "ConnectError", "ConnectionRefusedError",
                      "ClientConnectorError", "ConnectionResetError")


def _connection_failure(exc: BaseException) -> bool:
    """litellm reports a refused or dropped connection as a 500 ("Connection error.") with the
    client's connection error in the exception chain."""
    seen = 0
    e: BaseException | None = exc
    while e is not None and seen < 10:
        if type(e).__name__ in _CONNECTION_ERRORS:
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return "Connection error" in str(exc)


def classify(exc: BaseException) -> tuple[str, bool, int | None]:
    """(kind, retryable, http status) of an exception from litellm."""
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    if "Missing credentials" in str(exc):  # litellm reports a missing key as a 500
        return "auth", False, status
    if isinstance(exc, TimeoutError | asyncio.TimeoutError) or name in ("Timeout",
                                                                          "APITimeoutError"):
        return "timeout", True, status
    if name == "RateLimitError" or status == 429:
        return "rate_limit", True, 429
    if name in ("APIConnectionError",) or _connection_failure(exc):
        return "connection", True, status
    if name in ("AuthenticationError", "PermissionDeniedError") or status in (401, 403):
        return "auth", False, status
    if name == "ContextWindowExceededError":
        return "context_window", False, status
    if name in ("BadRequestError", "NotFoundError", "UnprocessableEntityError") or status in (
            400, 404, 422):
        return "bad_request", False, status
    if isinstance(status, int) and status in RETRYABLE_STATUS:
        return "server_error", True, status
    if name in ("InternalServerError", "ServiceUnavailableError", "APIError"):
        return "server_error", True, status
    return "error", False, status
