"""Retries for online engines: one policy, one loop, one breaker, shared by every engine.

An online engine (edge-tts, a LiveKit plugin) only says what one attempt is and which of its
errors a retry can help (a *classifier*); this module decides when to try again:

* :class:`RetryPolicy`: how many attempts, and how long to wait between them: exponential
  backoff with *full jitter* (a uniform wait in ``[0, min(cap, base * 2**(n-1))]``, so clients
  that failed together do not retry together), inside an optional total deadline per clip;
* :class:`Budget`: that deadline's clock, started when the first request is actually sent
  (waiting for a connection slot is not the service being slow);
* :func:`call_with_retries`: the loop, which gives up with one
  :class:`~greetkit.errors.EngineError` saying what failed, after how many attempts and how
  long, and whether trying again later can help (``retryable``);
* :class:`Breaker`: after a few clips *in a row* fail every retry, the rest of the build fails
  at once (and becomes drafts) instead of each waiting out its own deadline.

>>> policy = RetryPolicy(attempts=3, backoff=0.5, max_backoff=8.0)
>>> [policy.max_delay(n) for n in (1, 2, 3, 6)]
[0.5, 1.0, 2.0, 8.0]
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from greetkit.errors import EngineError

_T = TypeVar("_T")

#: ``classify(exc) -> (retryable, one-line description)`` for an error of one attempt.
Classifier = Callable[[BaseException], tuple[bool, str]]


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """When to try a failed request again.

    ``attempts`` counts the first try. The wait before retry ``n`` (1-based) is uniform in
    ``[0, min(max_backoff, backoff * 2**(n-1))]`` ("full jitter"). ``deadline`` (seconds, or
    None) bounds all attempts of one clip together; ``attempt_timeout`` (or None) one attempt.
    """

    attempts: int = 5
    backoff: float = 0.5
    max_backoff: float = 8.0
    deadline: float | None = 60.0
    attempt_timeout: float | None = 30.0

    def max_delay(self, retry: int) -> float:
        """The longest wait before retry number ``retry`` (1 for the first retry)."""
        return min(self.max_backoff, self.backoff * 2.0 ** (retry - 1))

    def delay(self, retry: int) -> float:
        """A jittered wait before retry number ``retry``: uniform in ``[0, max_delay]``."""
        return random.uniform(0, self.max_delay(retry))


class Budget:
    """The clock of one clip's deadline, shared by all its requests and their attempts.

    It starts at :meth:`start` (when a request is actually sent), not when it is created.
    """

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.started: float | None = None

    def start(self) -> None:
        """Start the clock if it is not running yet (the first request is being sent)."""
        if self.started is None:
            self.started = time.monotonic()

    def elapsed(self) -> float:
        """Seconds since :meth:`start` (0 before it)."""
        return 0.0 if self.started is None else time.monotonic() - self.started

    def timeout(self, limit: float) -> float:
        """How long the next attempt may take: ``limit``, within what remains of the deadline
        (at least 0.1 s, so an attempt always gets a chance to answer)."""
        remaining = self.remaining()
        return max(0.1, limit if remaining is None else min(limit, remaining))

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - self.elapsed()

    def allows(self, wait: float) -> bool:
        """True when waiting ``wait`` seconds still leaves time before the deadline."""
        return self.deadline is None or self.elapsed() + wait < self.deadline


async def call_with_retries(attempt: Callable[[], Awaitable[_T]], *, policy: RetryPolicy,
                            classify: Classifier, engine: str,
                            budget: Budget | None = None) -> tuple[_T, int]:
    """Await ``attempt()`` until it succeeds; return its result and the retries it took.

    An error that ``classify`` calls permanent, the last of ``policy.attempts``, or one whose
    backoff would overrun the deadline ends the loop with an :class:`EngineError`
    ``"<description> (after N attempts in T s)"`` chained to the last error. ``attempt`` is
    expected to call ``budget.start()`` when it actually sends a request; without a budget the
    clock starts with the first attempt.
    """
    if budget is None:
        budget = Budget(policy.deadline)
        budget.start()
    tries = 0
    while True:
        tries += 1
        try:
            return await attempt(), tries - 1
        except Exception as exc:  # classified: anything unknown is the classifier's call
            retryable, description = classify(exc)
            wait = policy.delay(tries)
            if not retryable or tries >= policy.attempts or not budget.allows(wait):
                plural = "s" if tries > 1 else ""
                raise EngineError(f"{description} (after {tries} attempt{plural} in "
                                  f"{budget.elapsed():.1f}s)", engine=engine,
                                  retryable=retryable) from exc
            await asyncio.sleep(wait)


@dataclass
class Breaker:
    """Counts clips that failed every retry in a row; open at ``threshold`` (0: never)."""

    failures_in_a_row: int = 0
    last_failure: str = ""

    def check(self, threshold: int, engine: str) -> None:
        """Raise a retryable :class:`EngineError` without trying when the breaker is open."""
        if threshold and self.failures_in_a_row >= threshold:
            raise EngineError(f"not tried after {self.failures_in_a_row} clips in a row "
                              f"failed ({self.last_failure})", engine=engine, retryable=True)

    def failed(self, error: EngineError) -> None:
        """Record a clip that failed; only failures a retry could help count (a bad voice
        or option says nothing about the service)."""
        if error.retryable:
            self.failures_in_a_row += 1
            self.last_failure = str(error)

    def succeeded(self) -> None:
        self.failures_in_a_row = 0
