"""Errors of the edge service in one line each, and whether a retry can help.

:func:`classify` is the edge engine's classifier for :mod:`greetkit.engines.retry`:
429, 408, 5xx, dropped connections, timeouts, empty answers and truncated streams are worth
another attempt; a token refused twice or a protocol the client does not know are not.
"""

from __future__ import annotations

import asyncio


class TruncatedStream(Exception):
    """The stream ended early or decoded short of the service's own timings; retryable."""


def describe(exc: BaseException) -> str:
    """``exc`` as one line a user can act on (HTTP status with its meaning, host and port)."""
    import aiohttp

    if isinstance(exc, aiohttp.ClientResponseError):
        # aiohttp's own message ('Invalid response status') says nothing the status does not.
        meaning = {403: "forbidden", 429: "rate limited", 500: "server error",
                   502: "bad gateway", 503: "service unavailable", 504: "gateway timeout"}
        return f"HTTP {exc.status} {meaning.get(exc.status, 'refused')}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or str(exc.os_error) or type(exc.os_error).__name__
        return f"cannot connect to {exc.host}:{exc.port} ({reason})"
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


def classify(exc: BaseException) -> tuple[bool, str]:
    """(retryable, description) for an exception raised while talking to the service."""
    import aiohttp
    from edge_tts import exceptions as ex

    desc = describe(exc)
    if isinstance(exc, aiohttp.ClientResponseError):
        if exc.status == 429 or exc.status >= 500 or exc.status == 408:
            return True, desc
        if exc.status == 403:
            # The client already corrected its clock from the Date header and tried again.
            return False, (f"{desc}: the service rejected edge-tts's token twice; upgrade it "
                           "(pip install -U 'greetkit[edge]')")
        return False, desc
    if isinstance(exc, TruncatedStream | ex.NoAudioReceived | ex.WebSocketError
                  | aiohttp.ClientError | asyncio.TimeoutError | OSError):
        return True, desc
    if isinstance(exc, ex.SkewAdjustmentError):
        return True, desc
    if isinstance(exc, ex.UnknownResponse | ex.UnexpectedResponse):
        return False, f"{desc} (the service's protocol changed? upgrade edge-tts)"
    return False, desc
