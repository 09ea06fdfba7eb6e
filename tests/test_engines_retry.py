"""The shared retry policy, loop and breaker of online engines (greetkit.engines.retry)."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from greetkit.engines.retry import Breaker, Budget, RetryPolicy, call_with_retries
from greetkit.errors import EngineError

FAST = RetryPolicy(attempts=4, backoff=0.001, max_backoff=0.004, deadline=10.0)


class Flaky:
    """An attempt that raises the scripted errors in turn, then returns ``"audio"``."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "audio"


def transient_only(exc: BaseException) -> tuple[bool, str]:
    """Connection errors are worth a retry; anything else is final."""
    return isinstance(exc, ConnectionError), f"{type(exc).__name__}: {exc}"


def run(attempt: Flaky, policy: RetryPolicy = FAST) -> tuple[str, int]:
    return asyncio.run(call_with_retries(attempt, policy=policy, classify=transient_only,
                                         engine="test"))


def test_backoff_doubles_up_to_the_cap_and_jitter_stays_below_it() -> None:
    """Retry n waits uniformly in [0, min(cap, base * 2**(n-1))]."""
    policy = RetryPolicy(backoff=0.5, max_backoff=3.0)
    assert [policy.max_delay(n) for n in (1, 2, 3, 4, 10)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    waits = [policy.delay(3) for _ in range(2000)]
    assert 0 <= min(waits) < 0.1 and 1.9 < max(waits) <= 2.0


def test_transient_errors_are_retried_and_counted() -> None:
    """Two connection errors then success: the result and 2 retries."""
    attempt = Flaky(ConnectionError("reset"), ConnectionError("reset"))
    assert run(attempt) == ("audio", 2)
    assert attempt.calls == 3


def test_a_permanent_error_is_not_retried() -> None:
    """A final error ends the loop at once, not retryable, chained to the cause."""
    attempt = Flaky(ValueError("bad voice"))
    with pytest.raises(EngineError) as info:
        run(attempt)
    assert attempt.calls == 1 and not info.value.retryable
    assert str(info.value).startswith("ValueError: bad voice (after 1 attempt in ")
    assert isinstance(info.value.__cause__, ValueError) and info.value.engine == "test"


def test_attempts_bound_the_retries() -> None:
    """Failing every time: exactly `attempts` calls, then a retryable error saying so."""
    attempt = Flaky(*(ConnectionError("refused") for _ in range(10)))
    with pytest.raises(EngineError) as info:
        run(attempt)
    assert attempt.calls == FAST.attempts and info.value.retryable
    assert "(after 4 attempts in " in str(info.value)


def test_a_wait_that_would_overrun_the_deadline_is_not_taken(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With a 0.2 s deadline and 1 s waits, the first failure is the last attempt."""
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    policy = RetryPolicy(attempts=10, backoff=1.0, max_backoff=1.0, deadline=0.2)
    attempt = Flaky(*(ConnectionError("refused") for _ in range(10)))
    started = time.monotonic()
    with pytest.raises(EngineError):
        run(attempt, policy)
    assert attempt.calls == 1 and time.monotonic() - started < 1.0


def test_budget_clock_starts_with_the_first_request() -> None:
    """Before start() no time is spent; after it, the attempt timeout shrinks to what remains
    and never below 0.1 s."""
    budget = Budget(5.0)
    assert budget.elapsed() == 0.0 and budget.timeout(30.0) == 5.0
    budget.start()
    assert 4.0 < budget.timeout(30.0) <= 5.0 and budget.timeout(1.0) == 1.0
    budget.started = time.monotonic() - 10.0  # deadline long gone
    assert budget.timeout(30.0) == 0.1 and not budget.allows(0.0)
    assert Budget(None).timeout(7.0) == 7.0 and Budget(None).allows(1e9)


def test_breaker_opens_after_retryable_failures_in_a_row() -> None:
    """Two retryable clip failures open a breaker of 2; a permanent one does not count."""
    breaker = Breaker()
    breaker.failed(EngineError("bad option", engine="test", retryable=False))
    breaker.check(2, "test")  # still closed
    for _ in range(2):
        breaker.failed(EngineError("HTTP 503", engine="test", retryable=True))
    with pytest.raises(EngineError) as info:
        breaker.check(2, "test")
    assert info.value.retryable and "not tried after 2 clips in a row" in str(info.value)
    assert "HTTP 503" in str(info.value)


def test_breaker_resets_on_success_and_zero_disables_it() -> None:
    """A clip that succeeds closes the breaker; threshold 0 never opens."""
    breaker = Breaker()
    for _ in range(5):
        breaker.failed(EngineError("HTTP 503", engine="test", retryable=True))
    breaker.check(0, "test")
    breaker.succeeded()
    breaker.check(1, "test")
