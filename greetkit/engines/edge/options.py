"""The edge engine's options: keyword arguments, else ``GREETKIT_EDGE_*``, else defaults.

The engine keeps the options it was given; each render takes a resolved copy
(:meth:`EdgeOptions.resolved`), so the environment is read per build and a render in flight
never sees a setting change under it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from greetkit.engines.retry import RetryPolicy
from greetkit.errors import EngineUnavailable

from .client import ENGINE

ENV_CONCURRENCY = "GREETKIT_EDGE_CONCURRENCY"
ENV_ATTEMPTS = "GREETKIT_EDGE_ATTEMPTS"
ENV_DEADLINE = "GREETKIT_EDGE_DEADLINE"
ENV_BACKOFF = "GREETKIT_EDGE_BACKOFF"

#: Option -> the environment variable that sets it when the option is not given.
ENVIRONMENT = {"max_concurrency": ENV_CONCURRENCY, "attempts": ENV_ATTEMPTS,
               "deadline": ENV_DEADLINE, "backoff": ENV_BACKOFF}


@dataclass(frozen=True, kw_only=True)
class EdgeOptions:
    """How the edge engine talks to the service.

    ``None`` means "not given": the ``GREETKIT_EDGE_*`` variable named in :data:`ENVIRONMENT`,
    else the default, decides when a render resolves them.
    """

    #: Requests open at once (per build); 4.
    max_concurrency: int | None = None
    #: Tries per request, the first included; 5.
    attempts: int | None = None
    #: Seconds per clip, all its requests and attempts together; 60.
    deadline: float | None = None
    #: The first retry's longest wait in seconds, doubled per retry (full jitter); 0.5.
    backoff: float | None = None
    #: The cap on one wait between attempts; 8 s.
    max_backoff: float | None = None
    #: Seconds one attempt may take; 30.
    attempt_timeout: float | None = None
    #: Clips in a row failing every retry that make the rest of the build fail at once;
    #: 3 (0 disables).
    breaker: int | None = None
    #: Seconds :meth:`EdgeEngine.check_available`'s TCP connect may take; 2.5.
    check_timeout: float | None = None

    def resolved(self, environ: Mapping[str, str] | None = None) -> ResolvedOptions:
        """A copy with every option decided (given, else from ``environ``, else default).

        Raises :class:`EngineUnavailable` naming a variable that is not a number.
        """
        env = os.environ if environ is None else environ

        def pick(name: str) -> float:
            value = getattr(self, name)
            if value is None and name in ENVIRONMENT:
                value = _env_number(env, ENVIRONMENT[name])
            return float(getattr(DEFAULTS, name) if value is None else value)

        return ResolvedOptions(
            max_concurrency=max(1, int(pick("max_concurrency"))),
            attempts=max(1, int(pick("attempts"))), deadline=pick("deadline"),
            backoff=pick("backoff"), max_backoff=pick("max_backoff"),
            attempt_timeout=pick("attempt_timeout"), breaker=int(pick("breaker")),
            check_timeout=pick("check_timeout"))


@dataclass(frozen=True, kw_only=True)
class ResolvedOptions:
    """:class:`EdgeOptions` with every value decided; the defaults live here."""

    max_concurrency: int = 4
    attempts: int = 5
    deadline: float = 60.0
    backoff: float = 0.5
    max_backoff: float = 8.0
    attempt_timeout: float = 30.0
    breaker: int = 3
    check_timeout: float = 2.5

    @property
    def retry(self) -> RetryPolicy:
        """The shared retry policy these options describe."""
        return RetryPolicy(attempts=self.attempts, backoff=self.backoff,
                           max_backoff=self.max_backoff, deadline=self.deadline,
                           attempt_timeout=self.attempt_timeout)


DEFAULTS = ResolvedOptions()


def _env_number(environ: Mapping[str, str], name: str) -> float | None:
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise EngineUnavailable(f"{name}={raw!r} is not a number", engine=ENGINE,
                                retryable=False) from None
