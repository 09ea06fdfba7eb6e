"""The edge engine: one clip = speakable text, cut into requests, each retried, joined.

Per render it takes a resolved copy of its options (:mod:`.options`), points the client at the
endpoint (:mod:`.client`), cuts the text under the service's byte limit (:mod:`.text`) and
sends each piece as one request (:mod:`.stream`) through the shared retry loop
(:mod:`greetkit.engines.retry`) with edge's classifier (:mod:`.classify`). Per build (one event
loop) it keeps the bound on open connections and the circuit breaker.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from greetkit.engines.base import RenderedAudio, RenderRequest, VoiceList
from greetkit.engines.retry import Breaker, Budget, call_with_retries
from greetkit.errors import EngineError, EngineUnavailable

from .classify import classify
from .client import (
    ENGINE,
    configure_client,
    edge_tts_version,
    endpoint,
    import_edge_tts,
    reachability_target,
)
from .options import EdgeOptions, ResolvedOptions
from .stream import TICKS_PER_SECOND, Prosody, decode_checked, stream
from .text import is_speakable, split_text, text_budget
from .voices import refresh_voice_cache, voice_list, voice_problem


@dataclass
class _BuildState:
    """Per event loop (one build): the concurrency bound and the circuit breaker."""

    semaphore: asyncio.Semaphore
    breaker: Breaker = field(default_factory=Breaker)


@dataclass
class _Clip:
    """One clip's requests joined: samples, rate and what the manifest's info keeps."""

    parts: list[npt.NDArray[np.float32]] = field(default_factory=list)
    sample_rate: int = 0
    retries: int = 0
    nbytes: int = 0
    boundaries: list[dict[str, Any]] = field(default_factory=list)

    def add(self, samples: npt.NDArray[np.float32], rate: int, retries: int, nbytes: int,
            boundaries: list[dict[str, Any]]) -> None:
        if self.sample_rate and rate != self.sample_rate:
            raise EngineError("the service changed sample rate mid-clip "
                              f"({self.sample_rate} -> {rate} Hz)", engine=ENGINE)
        # Each request's offsets start at its own audio; shift them onto the whole clip.
        shift = sum(p.shape[0] for p in self.parts) * TICKS_PER_SECOND // rate
        self.boundaries += [{**b, "offset": b["offset"] + shift} for b in boundaries]
        self.sample_rate = rate
        self.parts.append(samples)
        self.retries += retries
        self.nbytes += nbytes


class EdgeEngine:
    """Microsoft Edge neural voices through edge-tts, with retries and integrity checks.

    Keyword options (else the ``GREETKIT_EDGE_*`` environment, else defaults), see
    :class:`~greetkit.engines.edge.EdgeOptions`: ``max_concurrency`` (4), ``attempts`` (5),
    ``deadline`` (60 s per clip, all attempts), ``backoff`` (0.5 s, doubled per retry with full
    jitter, capped at ``max_backoff`` 8 s), ``attempt_timeout`` (30 s), ``breaker`` (3 clips in
    a row failing every retry make the rest of the build fail at once; 0 disables),
    ``check_timeout`` (2.5 s).

    >>> audio = asyncio.run(EdgeEngine().render(RenderRequest(  # doctest: +SKIP
    ...     key="en_default", text="Hi!", language="en", voice="en-US-AvaNeural")))
    """

    name: ClassVar[str] = ENGINE
    #: The build's bound on renders at once: the ``max_concurrency`` option, else 4.
    max_concurrency: int = 4
    offline: ClassVar[bool] = False

    def __init__(self, *, max_concurrency: int | None = None, attempts: int | None = None,
                 deadline: float | None = None, backoff: float | None = None,
                 max_backoff: float | None = None, attempt_timeout: float | None = None,
                 breaker: int | None = None, check_timeout: float | None = None) -> None:
        self.options = EdgeOptions(
            max_concurrency=max_concurrency, attempts=attempts, deadline=deadline,
            backoff=backoff, max_backoff=max_backoff, attempt_timeout=attempt_timeout,
            breaker=breaker, check_timeout=check_timeout)
        if max_concurrency is not None:
            self.max_concurrency = max(1, int(max_concurrency))
        self._builds: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _BuildState] = (
            weakref.WeakKeyDictionary())

    # -- Protocol ---------------------------------------------------------------------------
    def version(self) -> str:
        """``edge-tts X.Y.Z``: part of the content key, so a client upgrade re-renders."""
        return f"edge-tts {edge_tts_version()}"

    def check_available(self) -> None:
        """A TCP connect (DNS included) to the endpoint, or its proxy, within ~2.5 s.

        Only the URL is needed, not the client: a build with nothing to render that asks
        whether edge is back (to replace drafts) must not pay for importing edge-tts and
        aiohttp. :meth:`render` points the client at the endpoint itself."""
        host, port = reachability_target(endpoint())
        timeout = self.options.resolved().check_timeout
        outcome: list[OSError | None] = []

        def connect() -> None:
            try:
                with socket.create_connection((host, port), timeout=timeout):
                    outcome.append(None)
            except OSError as exc:
                outcome.append(exc)

        # getaddrinfo has no timeout of its own: bound the whole thing from outside, in a
        # daemon thread so a hung DNS lookup cannot hold up the process's exit either.
        thread = threading.Thread(target=connect, name="greetkit-edge-check", daemon=True)
        thread.start()
        thread.join(timeout + 0.5)
        error = outcome[0] if outcome else None
        if not outcome or error is not None:
            reason = ("timed out" if not outcome or isinstance(error, socket.timeout)
                      else str(error))
            raise EngineUnavailable(f"cannot reach {host}:{port} ({reason})", engine=ENGINE,
                                    retryable=True) from error

    def validate_voice(self, voice: str, language: str, *,
                       project_dir: Path | None = None) -> str | None:
        """See :func:`voice_problem`; without ``project_dir`` the current directory's cache."""
        return voice_problem(voice, language, project_dir or Path.cwd())

    def voice_list(self, *, project_dir: Path | None = None) -> VoiceList:
        """The project's cached service list (see :meth:`refresh_voices`), else the built-in
        list of well-known voices: the list voices.yaml validation checks against."""
        return voice_list(project_dir)

    def refresh_voices(self, project_dir: Path) -> Path:
        """Fetch the service's voice list into ``project_dir/.greetkit/edge-voices.json``."""
        return refresh_voice_cache(project_dir)

    async def render(self, request: RenderRequest) -> RenderedAudio:
        """Render one clip (split into requests if long), retrying what can be retried."""
        if not is_speakable(request.text):
            raise EngineError(f"text {request.text!r} has no letters or digits; "
                              "edge returns no audio for it", engine=ENGINE, retryable=False)
        import_edge_tts()
        configure_client()
        options = self.options.resolved()
        prosody = Prosody.from_options(request.options)
        pieces = split_text(request.text, text_budget(request.voice, prosody.rate,
                                                      prosody.pitch, prosody.volume))
        build = self._build_state(options)
        build.breaker.check(options.breaker, ENGINE)
        # The deadline runs from the first request actually sent, not from the call: queueing
        # behind the concurrency bound is not the service being slow.
        budget = Budget(options.deadline)
        clip = _Clip()
        for piece in pieces:
            try:
                await self._render_piece(piece, request.voice, prosody, options, budget, clip)
            except EngineError as exc:
                build.breaker.failed(exc)
                raise
        build.breaker.succeeded()
        info = {"retries": clip.retries, "requests": len(pieces), "bytes": clip.nbytes,
                "boundaries": clip.boundaries, "sample_rate": clip.sample_rate,
                "seconds": round(budget.elapsed(), 3)}
        return RenderedAudio(np.concatenate(clip.parts).astype(np.float32), clip.sample_rate,
                             info)

    def concurrency(self) -> int:
        """The bound on simultaneous requests: option, ``GREETKIT_EDGE_CONCURRENCY``, or 4."""
        return self.options.resolved().max_concurrency

    # -- internals --------------------------------------------------------------------------
    def _build_state(self, options: ResolvedOptions) -> _BuildState:
        # asyncio primitives belong to one loop and each build runs its own (asyncio.run), so
        # the bound and the breaker are kept per loop: one build, one budget.
        loop = asyncio.get_running_loop()
        state = self._builds.get(loop)
        if state is None:
            state = _BuildState(asyncio.Semaphore(options.max_concurrency))
            self._builds[loop] = state
        return state

    async def _render_piece(self, text: str, voice: str, prosody: Prosody,
                            options: ResolvedOptions, budget: Budget, clip: _Clip) -> None:
        """One request of a clip, retried under the options' policy, added to ``clip``."""
        policy = options.retry
        semaphore = self._build_state(options).semaphore

        async def attempt() -> tuple[npt.NDArray[np.float32], int, int, list[dict[str, Any]]]:
            async with semaphore:
                budget.start()
                timeout = budget.timeout(options.attempt_timeout)
                streamed = await asyncio.wait_for(stream(text, voice, prosody, timeout),
                                                  timeout)
            samples, rate = decode_checked(streamed.mp3, streamed.boundaries)
            return samples, rate, len(streamed.mp3), streamed.boundaries

        (samples, rate, nbytes, boundaries), retries = await call_with_retries(
            attempt, policy=policy, classify=classify, engine=ENGINE, budget=budget)
        clip.add(samples, rate, retries, nbytes, boundaries)
