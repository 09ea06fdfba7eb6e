"""edge-tts: Microsoft Edge's online neural voices (MP3 over a WebSocket), hardened.

The service is reached through the real ``edge_tts`` client (the ``greetkit[edge]`` extra,
imported lazily so a missing extra only disables this engine). Around each render this module
adds what a build needs from a flaky, rate-limited online service:

* bounded concurrency (a per-event-loop semaphore, default 4, ``GREETKIT_EDGE_CONCURRENCY``);
* retries with exponential backoff and full jitter on 429, 5xx, connection errors, timeouts,
  ``NoAudioReceived`` and truncated streams, within a total deadline per clip;
* truncation detection: a stream that ends without ``turn.end`` (the client raises nothing) or
  whose decoded audio is shorter than the service's own boundary metadata is never accepted;
* text the service cannot speak (no letters or digits) is rejected before any request, and
  long text is pre-split at sentence punctuation (``。！？；`` first) so no request exceeds the
  service's 4096-byte limit, which the client itself only enforces at whitespace;
* a per-build circuit breaker: after a few clips in a row fail every retry, the rest fail at once
  (and become drafts) instead of each waiting out its own deadline.

Endpoint override (tests, proxies, self-hosted relays): ``GREETKIT_EDGE_URL`` replaces the
client's module attribute ``edge_tts.communicate.WSS_URL`` (it must contain ``?``); the voice list
URL is derived from it (``.../edge/v1?...`` -> ``.../voices/list?...``) unless
``GREETKIT_EDGE_VOICES_URL`` is set.

The decoder's priming (about 1105 leading samples at 24 kHz for the service's header-less MP3)
is *not* cut here: it is near-silence, the DSP chain's trim stage removes leading silence with a
pad anyway, and a fixed cut would eat real audio if the stream ever carried a gapless (Xing/LAME)
header that the decoder already honours. It is only allowed for in the truncation check.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import random
import re
import socket
import threading
import time
import unicodedata
import urllib.parse
import urllib.request
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from xml.sax.saxutils import escape

import numpy as np
import numpy.typing as npt

from greetkit.engines.base import RenderedAudio, RenderRequest
from greetkit.errors import EngineError, EngineUnavailable
from greetkit.suggest import suggest

ENGINE = "edge"
ENV_URL = "GREETKIT_EDGE_URL"
ENV_VOICES_URL = "GREETKIT_EDGE_VOICES_URL"
ENV_CONCURRENCY = "GREETKIT_EDGE_CONCURRENCY"
ENV_ATTEMPTS = "GREETKIT_EDGE_ATTEMPTS"
ENV_DEADLINE = "GREETKIT_EDGE_DEADLINE"
ENV_BACKOFF = "GREETKIT_EDGE_BACKOFF"

#: Where ``greetkit voices --engine edge --refresh`` caches the service's voice list,
#: relative to the directory of voices.yaml.
VOICE_CACHE = Path(".greetkit") / "edge-voices.json"

#: The service's limit on one request's text, in bytes of escaped UTF-8.
MAX_REQUEST_BYTES = 4096
#: MP3 decoder delay for the service's header-less stream (measured: a signal encoded by LAME
#: without a Xing/Info frame and decoded by libsndfile/mpg123 lags by 1105 samples at 24 kHz).
DECODER_DELAY_SAMPLES = 1105
#: Slack for the truncation check: two MP3 frames (2 x 576 samples at 24 kHz).
TRUNCATION_SLACK_S = 0.048
TICKS_PER_SECOND = 10_000_000

#: Well-known neural voices (short name, locale, gender): the fallback when no list is cached.
KNOWN_VOICES: tuple[tuple[str, str, str], ...] = (
    ("en-US-AvaNeural", "en-US", "Female"),
    ("en-US-AndrewNeural", "en-US", "Male"),
    ("en-US-EmmaNeural", "en-US", "Female"),
    ("en-US-BrianNeural", "en-US", "Male"),
    ("en-US-JennyNeural", "en-US", "Female"),
    ("en-US-GuyNeural", "en-US", "Male"),
    ("en-US-AriaNeural", "en-US", "Female"),
    ("en-US-AvaMultilingualNeural", "en-US", "Female"),
    ("en-US-EmmaMultilingualNeural", "en-US", "Female"),
    ("en-GB-SoniaNeural", "en-GB", "Female"),
    ("en-GB-RyanNeural", "en-GB", "Male"),
    ("en-AU-NatashaNeural", "en-AU", "Female"),
    ("zh-CN-XiaoxiaoNeural", "zh-CN", "Female"),
    ("zh-CN-XiaoyiNeural", "zh-CN", "Female"),
    ("zh-CN-YunxiNeural", "zh-CN", "Male"),
    ("zh-CN-YunyangNeural", "zh-CN", "Male"),
    ("zh-TW-HsiaoChenNeural", "zh-TW", "Female"),
    ("ja-JP-NanamiNeural", "ja-JP", "Female"),
    ("ko-KR-SunHiNeural", "ko-KR", "Female"),
    ("de-DE-KatjaNeural", "de-DE", "Female"),
    ("de-DE-ConradNeural", "de-DE", "Male"),
    ("fr-FR-DeniseNeural", "fr-FR", "Female"),
    ("fr-FR-HenriNeural", "fr-FR", "Male"),
    ("es-ES-ElviraNeural", "es-ES", "Female"),
    ("es-MX-DaliaNeural", "es-MX", "Female"),
    ("it-IT-ElsaNeural", "it-IT", "Female"),
    ("pt-BR-FranciscaNeural", "pt-BR", "Female"),
)

_DEFAULTS = {"attempts": 5, "deadline": 60.0, "backoff": 0.5, "max_backoff": 8.0,
             "attempt_timeout": 30.0, "breaker": 3}
_SENTENCE_END = re.compile(r"(?<=[。！？；!?;])|(?<=[.…])(?=\s)|(?<=\n)")
_CLAUSE_END = re.compile(r"(?<=[，、,：:])")


def is_speakable(text: str) -> bool:
    """True when ``text`` has a letter or digit; the service returns no audio for the rest."""
    return any(unicodedata.category(ch)[0] in "LN" for ch in text)


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise EngineUnavailable(f"{name}={raw!r} is not a number", engine=ENGINE,
                                retryable=False) from None


def _import_edge_tts() -> Any:
    try:
        import edge_tts
    except ImportError as exc:
        raise EngineUnavailable(
            "the edge engine needs the 'edge' extra: pip install 'greetkit[edge]'",
            engine=ENGINE, retryable=False,
        ) from exc
    return edge_tts


def edge_tts_version() -> str:
    """The installed edge-tts version (raises EngineUnavailable if the extra is missing).

    Read from the package metadata, not the module: content keys need it on every build and
    importing the client (aiohttp included) costs most of a second a no-op build would not
    otherwise spend."""
    from importlib.metadata import PackageNotFoundError, version
    from importlib.util import find_spec

    try:
        if find_spec("edge_tts") is not None:  # locates the module without importing it
            return version("edge-tts")
    except (PackageNotFoundError, ValueError):
        pass
    # Not importable (the extra's own message), or no metadata: ask the module itself.
    return str(getattr(_import_edge_tts(), "__version__", "unknown"))


# -- endpoint -----------------------------------------------------------------------------

_applied_url: str | None = None


def endpoint() -> str:
    """The WebSocket URL renders go to: ``GREETKIT_EDGE_URL`` or the client's own default."""
    override = os.environ.get(ENV_URL, "").strip()
    if override:
        if "?" not in override:
            raise EngineUnavailable(
                f"{ENV_URL}={override!r} must contain '?' (the client appends "
                "'&ConnectionId=...'); e.g. ws://127.0.0.1:8080/edge/v1?TrustedClientToken=x",
                engine=ENGINE, retryable=False)
        return override
    from edge_tts import constants

    return str(constants.WSS_URL)


def voices_url() -> str:
    """The voice-list URL: ``GREETKIT_EDGE_VOICES_URL``, derived from the override, or default."""
    explicit = os.environ.get(ENV_VOICES_URL, "").strip()
    if explicit:
        return explicit
    if not os.environ.get(ENV_URL, "").strip():
        from edge_tts import constants

        return str(constants.VOICE_LIST)
    parts = urllib.parse.urlsplit(endpoint())
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    path = re.sub(r"/edge/v1/?$", "/voices/list", parts.path)
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def configure_client() -> str:
    """Point the edge-tts client at :func:`endpoint` (``GREETKIT_EDGE_URL`` or the service)
    and return that URL; for callers that stream with ``edge_tts.Communicate`` themselves."""
    return _apply_endpoint()


def _apply_endpoint() -> str:
    """Point the client at :func:`endpoint` (module attributes, imported by name) and return it.

    Clock skew learned from one server's ``Date`` is meaningless for another, so the client's
    class-level skew is reset whenever the endpoint changes.
    """
    global _applied_url
    _import_edge_tts()
    from edge_tts import communicate, voices
    from edge_tts.drm import DRM

    url = endpoint()
    # Both modules import the constant by name, so it is patched where it is read.
    setattr(communicate, "WSS_URL", url)  # noqa: B010
    setattr(voices, "VOICE_LIST", voices_url())  # noqa: B010
    if url != _applied_url:
        DRM.clock_skew_seconds = 0.0
        _applied_url = url
    host = urllib.parse.urlsplit(url).hostname or ""
    if host in _LOCAL_HOSTS:
        # The client honours proxy variables (trust_env); a local server must not be proxied.
        for name in ("NO_PROXY", "no_proxy"):
            present = [h for h in os.environ.get(name, "").split(",") if h.strip()]
            if host not in present:
                os.environ[name] = ",".join([*present, host])
    return url


_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def _reachability_target(url: str) -> tuple[str, int]:
    """(host, port) a TCP connect must reach: the endpoint, or the proxy that would carry it."""
    parts = urllib.parse.urlsplit(url)
    secure = parts.scheme in ("wss", "https")
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    proxies = urllib.request.getproxies()
    proxy = proxies.get("https" if secure else "http") or proxies.get("all")
    # A local endpoint (a relay or test server) is never proxied: the client is told so too.
    if proxy and host not in _LOCAL_HOSTS and not urllib.request.proxy_bypass(host):
        p = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        return p.hostname or host, p.port or 80
    return host, port


# -- voices -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EdgeVoice:
    """One voice of the service: its short name, locale and gender."""

    short_name: str
    locale: str
    gender: str = ""

    @property
    def language(self) -> str:
        return self.locale.split("-")[0].lower()


def builtin_voices() -> list[EdgeVoice]:
    """greetkit's small built-in list of well-known neural voices."""
    return [EdgeVoice(n, loc, g) for n, loc, g in KNOWN_VOICES]


def cached_voices(project_dir: Path | None) -> list[EdgeVoice] | None:
    """The voice list cached in ``project_dir`` (None when there is none or it is unreadable)."""
    if project_dir is None:
        return None
    path = project_dir / VOICE_CACHE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [EdgeVoice(str(v["ShortName"]), str(v["Locale"]), str(v.get("Gender", "")))
                for v in data["voices"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


async def fetch_voices() -> list[dict[str, Any]]:
    """The service's full voice list (raw JSON objects), with greetkit's errors on failure."""
    _apply_endpoint()
    import aiohttp
    from edge_tts import list_voices

    try:
        raw = await asyncio.wait_for(list_voices(), timeout=20)
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
        raise EngineError(f"cannot fetch the edge voice list from {voices_url().split('?')[0]}: "
                          f"{_describe(exc)}", engine=ENGINE, retryable=True) from exc
    return [dict(v) for v in raw]


def refresh_voice_cache(project_dir: Path) -> Path:
    """Fetch the service's voice list and write it to ``project_dir/.greetkit/edge-voices.json``.

    The write is atomic (temp file + ``os.replace``). Returns the cache path.
    """
    voices = asyncio.run(fetch_voices())
    path = project_dir / VOICE_CACHE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    payload = {"fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "source": voices_url().split("?")[0], "edge_tts": edge_tts_version(),
               "voices": voices}
    tmp.write_text(json.dumps(payload, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, path)
    return path


def voice_problem(voice: str, language: str, project_dir: Path | None = None) -> str | None:
    """Why ``voice`` looks wrong for ``language`` (with a suggestion), or None if it is fine.

    Uses the project's cached voice list when there is one, else the built-in list (then an
    unknown name is only 'not in the built-in list', since that list is short).

    >>> voice_problem("zh-CN-Xiao", "zh")
    "unknown edge voice 'zh-CN-Xiao'; did you mean 'zh-CN-XiaoxiaoNeural'?"
    """
    cached = cached_voices(project_dir)
    voices = cached if cached is not None else builtin_voices()
    by_name = {v.short_name: v for v in voices}
    found = by_name.get(voice)
    if found is None:
        guess = suggest(voice, by_name)
        if guess:
            return f"unknown edge voice {voice!r}; did you mean {guess[0]!r}?"
        if cached is not None:
            return (f"unknown edge voice {voice!r}; see 'greetkit voices --engine edge "
                    f"--language {language}'")
        return (f"edge voice {voice!r} is not in greetkit's built-in list; run 'greetkit voices "
                "--engine edge --refresh' where the service is reachable to check it")
    wanted = language.replace("_", "-").split("-")[0].lower()
    if found.language != wanted and "Multilingual" not in voice:
        return (f"edge voice {voice!r} speaks {found.locale}, not {language!r}; pick a "
                f"{language} voice ('greetkit voices --engine edge --language {language}')")
    return None


# -- text ---------------------------------------------------------------------------------


def split_text(text: str, limit: int) -> list[str]:
    """Split ``text`` into pieces whose XML-escaped UTF-8 is at most ``limit`` bytes.

    Cuts at sentence ends (``。！？；`` and ``.!?;``) first, then clauses (``，、,:``), then
    whitespace, and only as a last resort between characters; pieces are packed greedily so a
    short text stays one request. Pieces without letters or digits are dropped (the service
    returns no audio for them).
    """

    def size(s: str) -> int:
        return len(escape(s).encode("utf-8"))

    def atoms(s: str, level: int) -> list[str]:
        if size(s) <= limit:
            return [s]
        splitters: list[re.Pattern[str]] = [_SENTENCE_END, _CLAUSE_END, re.compile(r"(?<=\s)")]
        if level < len(splitters):
            parts = [p for p in splitters[level].split(s) if p]
            if len(parts) > 1:
                return [a for p in parts for a in atoms(p, level + 1)]
            return atoms(s, level + 1)
        out, cur = [], ""
        for ch in s:  # no boundary left: cut between characters (never inside one)
            if cur and size(cur + ch) > limit:
                out.append(cur)
                cur = ""
            cur += ch
        return [*out, cur] if cur else out

    pieces: list[str] = []
    for atom in atoms(text, 0):
        if pieces and size(pieces[-1] + atom) <= limit:
            pieces[-1] += atom
        else:
            pieces.append(atom)
    return [p.strip() for p in pieces if is_speakable(p)]


# -- errors -------------------------------------------------------------------------------


class _Truncated(Exception):
    """The stream ended early; retryable."""


def _describe(exc: BaseException) -> str:
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


def _classify(exc: BaseException) -> tuple[bool, str]:
    """(retryable, description) for an exception raised while talking to the service."""
    import aiohttp
    from edge_tts import exceptions as ex

    desc = _describe(exc)
    if isinstance(exc, aiohttp.ClientResponseError):
        if exc.status == 429 or exc.status >= 500 or exc.status == 408:
            return True, desc
        if exc.status == 403:
            # The client already corrected its clock from the Date header and tried again.
            return False, (f"{desc}: the service rejected edge-tts's token twice; upgrade it "
                           "(pip install -U 'greetkit[edge]')")
        return False, desc
    if isinstance(exc, _Truncated | ex.NoAudioReceived | ex.WebSocketError
                  | aiohttp.ClientError | asyncio.TimeoutError | OSError):
        return True, desc
    if isinstance(exc, ex.SkewAdjustmentError):
        return True, desc
    if isinstance(exc, ex.UnknownResponse | ex.UnexpectedResponse):
        return False, f"{desc} (the service's protocol changed? upgrade edge-tts)"
    return False, desc


# -- the engine ---------------------------------------------------------------------------


@dataclass
class _LoopState:
    """Per event loop (one build): the concurrency bound and the circuit breaker."""

    semaphore: asyncio.Semaphore
    failures_in_a_row: int = 0
    last_failure: str = ""


@dataclass(frozen=True)
class _Settings:
    attempts: int
    deadline: float
    backoff: float
    max_backoff: float
    attempt_timeout: float
    breaker: int


class EdgeEngine:
    """Microsoft Edge neural voices through edge-tts, with retries and integrity checks.

    Keyword options (else the ``GREETKIT_EDGE_*`` environment, else defaults):
    ``max_concurrency`` (4), ``attempts`` (5), ``deadline`` (60 s per clip, all attempts),
    ``backoff`` (0.5 s, doubled per retry with full jitter, capped at ``max_backoff`` 8 s),
    ``attempt_timeout`` (30 s), ``breaker`` (3 clips in a row failing every retry make the rest
    of the build fail at once; 0 disables).

    >>> audio = asyncio.run(EdgeEngine().render(RenderRequest(  # doctest: +SKIP
    ...     key="en_default", text="Hi!", language="en", voice="en-US-AvaNeural")))
    """

    name: ClassVar[str] = ENGINE
    max_concurrency: ClassVar[int] = 4
    offline: ClassVar[bool] = False

    def __init__(self, *, max_concurrency: int | None = None, attempts: int | None = None,
                 deadline: float | None = None, backoff: float | None = None,
                 max_backoff: float | None = None, attempt_timeout: float | None = None,
                 breaker: int | None = None, check_timeout: float = 2.5) -> None:
        self._overrides: dict[str, float] = {
            k: float(v) for k, v in (("attempts", attempts), ("deadline", deadline),
                                     ("backoff", backoff), ("max_backoff", max_backoff),
                                     ("attempt_timeout", attempt_timeout),
                                     ("breaker", breaker)) if v is not None}
        self._concurrency = max_concurrency
        self.check_timeout = check_timeout
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary())
        if max_concurrency is not None:
            # The Protocol declares a class-level default; an instance option shadows it so the
            # build's own semaphore uses the same bound.
            setattr(self, "max_concurrency", max(1, int(max_concurrency)))  # noqa: B010

    # -- Protocol ---------------------------------------------------------------------------
    def version(self) -> str:
        """``edge-tts X.Y.Z``: part of the content key, so a client upgrade re-renders."""
        return f"edge-tts {edge_tts_version()}"

    def check_available(self) -> None:
        """A TCP connect (DNS included) to the endpoint, or its proxy, within ~2.5 s.

        Only the URL is needed, not the client: a build with nothing to render that asks
        whether edge is back (to replace drafts) must not pay for importing edge-tts and
        aiohttp. :meth:`render` points the client at the endpoint itself."""
        url = endpoint()
        host, port = _reachability_target(url)

        outcome: list[OSError | None] = []

        def connect() -> None:
            try:
                with socket.create_connection((host, port), timeout=self.check_timeout):
                    outcome.append(None)
            except OSError as exc:
                outcome.append(exc)

        # getaddrinfo has no timeout of its own: bound the whole thing from outside, in a
        # daemon thread so a hung DNS lookup cannot hold up the process's exit either.
        thread = threading.Thread(target=connect, name="greetkit-edge-check", daemon=True)
        thread.start()
        thread.join(self.check_timeout + 0.5)
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

    async def render(self, request: RenderRequest) -> RenderedAudio:
        """Render one clip (split into requests if long), retrying what can be retried."""
        if not is_speakable(request.text):
            raise EngineError(f"text {request.text!r} has no letters or digits; "
                              "edge returns no audio for it", engine=ENGINE, retryable=False)
        _import_edge_tts()
        _apply_endpoint()
        settings = self._settings()
        rate, pitch, volume = (str(request.options.get(k, d)) for k, d in
                               (("rate", "+0%"), ("pitch", "+0Hz"), ("volume", "+0%")))
        pieces = split_text(request.text, self._text_budget(request.voice, rate, pitch, volume))
        state = self._loop_state()
        if settings.breaker and state.failures_in_a_row >= settings.breaker:
            raise EngineError(f"not tried after {state.failures_in_a_row} clips "
                              f"in a row failed ({state.last_failure})", engine=ENGINE,
                              retryable=True)
        # The deadline runs from the first request actually sent, not from the call: queueing
        # behind the concurrency bound is not the service being slow.
        clock: list[float] = []
        parts: list[npt.NDArray[np.float32]] = []
        sample_rate = 0
        info: dict[str, Any] = {"retries": 0, "requests": len(pieces), "bytes": 0,
                                "boundaries": []}
        for piece in pieces:
            try:
                samples, sr, meta = await self._render_piece(
                    request, piece, request.voice, (rate, pitch, volume), settings, clock)
            except EngineError as exc:
                if exc.retryable:
                    state.failures_in_a_row += 1
                    state.last_failure = str(exc)
                raise
            if sample_rate and sr != sample_rate:
                raise EngineError("the service changed sample rate mid-clip "
                                  f"({sample_rate} -> {sr} Hz)", engine=ENGINE)
            sample_rate = sr
            parts.append(samples)
            info["retries"] += meta["retries"]
            info["bytes"] += meta["bytes"]
            # Each request's offsets start at its own audio; shift them onto the whole clip.
            shift = sum(p.shape[0] for p in parts[:-1]) * TICKS_PER_SECOND // sr
            info["boundaries"] += [{**b, "offset": b["offset"] + shift}
                                   for b in meta["boundaries"]]
        state.failures_in_a_row = 0
        info["sample_rate"] = sample_rate
        info["seconds"] = round(time.monotonic() - clock[0], 3)
        return RenderedAudio(np.concatenate(parts).astype(np.float32), sample_rate, info)

    # -- internals --------------------------------------------------------------------------
    def _settings(self) -> _Settings:
        env = {"attempts": ENV_ATTEMPTS, "deadline": ENV_DEADLINE, "backoff": ENV_BACKOFF}

        def get(key: str) -> float:
            if key in self._overrides:
                return self._overrides[key]
            if key in env:
                return _env_number(env[key], _DEFAULTS[key])
            return _DEFAULTS[key]

        return _Settings(attempts=max(1, int(get("attempts"))), deadline=get("deadline"),
                         backoff=get("backoff"), max_backoff=get("max_backoff"),
                         attempt_timeout=get("attempt_timeout"), breaker=int(get("breaker")))

    def concurrency(self) -> int:
        """The bound on simultaneous requests: option, ``GREETKIT_EDGE_CONCURRENCY``, or 4."""
        if self._concurrency is not None:
            return max(1, self._concurrency)
        return max(1, int(_env_number(ENV_CONCURRENCY, type(self).max_concurrency)))

    def _loop_state(self) -> _LoopState:
        # asyncio primitives belong to one loop and each build runs its own (asyncio.run), so
        # the bound and the breaker are kept per loop: one build, one budget.
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            state = _LoopState(asyncio.Semaphore(self.concurrency()))
            self._loops[loop] = state
        return state

    @staticmethod
    def _text_budget(voice: str, rate: str, pitch: str, volume: str) -> int:
        """Bytes of escaped text that keep the whole SSML document within the service's limit."""
        from edge_tts.communicate import mkssml
        from edge_tts.data_classes import TTSConfig

        try:
            config = TTSConfig(voice, rate, volume, pitch, "SentenceBoundary")
        except (TypeError, ValueError) as exc:
            raise EngineError(f"edge cannot use voice/options {voice!r} rate={rate!r} "
                              f"pitch={pitch!r} volume={volume!r}: {exc}", engine=ENGINE,
                              retryable=False) from exc
        return MAX_REQUEST_BYTES - len(mkssml(config, "").encode("utf-8"))

    async def _render_piece(self, request: RenderRequest, text: str, voice: str,
                            prosody: tuple[str, str, str], settings: _Settings,
                            clock: list[float]
                            ) -> tuple[npt.NDArray[np.float32], int, dict[str, Any]]:
        state = self._loop_state()
        attempt = 0
        while True:
            attempt += 1
            try:
                async with state.semaphore:
                    if not clock:
                        clock.append(time.monotonic())
                    remaining = settings.deadline - (time.monotonic() - clock[0])
                    timeout = max(0.1, min(settings.attempt_timeout, remaining))
                    audio, boundaries, nbytes = await asyncio.wait_for(
                        self._stream(text, voice, prosody, timeout), timeout)
                samples, sr = _decode_checked(audio, boundaries)
                return samples, sr, {"retries": attempt - 1, "bytes": nbytes,
                                     "boundaries": boundaries}
            except Exception as exc:  # classified below; anything unknown is not retried
                retryable, desc = _classify(exc)
                elapsed = time.monotonic() - (clock[0] if clock else time.monotonic())
                delay = random.uniform(0, min(settings.max_backoff,
                                              settings.backoff * 2 ** (attempt - 1)))
                last = (not retryable or attempt >= settings.attempts
                        or elapsed + delay >= settings.deadline)
                if last:
                    tries = f"{attempt} attempt{'s' if attempt > 1 else ''}"
                    raise EngineError(f"{desc} (after {tries} in {elapsed:.1f}s)",
                                      engine=ENGINE, retryable=retryable) from exc
                await asyncio.sleep(delay)

    @staticmethod
    async def _stream(text: str, voice: str, prosody: tuple[str, str, str],
                      timeout: float) -> tuple[bytes, list[dict[str, Any]], int]:
        """One request: the MP3 bytes and boundary metadata, or an exception."""
        from edge_tts import Communicate

        rate, pitch, volume = prosody
        seconds = max(1, int(timeout + 0.999))
        comm = Communicate(text, voice, rate=rate, pitch=pitch, volume=volume,
                           connect_timeout=seconds, receive_timeout=seconds)
        audio = bytearray()
        boundaries: list[dict[str, Any]] = []
        async for chunk in comm.stream():
            if chunk["type"] == "audio":
                audio += chunk.get("data", b"")
            else:
                boundaries.append({"type": chunk["type"], "text": chunk.get("text", ""),
                                   "offset": chunk.get("offset", 0),
                                   "duration": chunk.get("duration", 0)})
        # The client counts audio bytes per request and folds them into cumulative_audio_bytes
        # only on turn.end: a stream the server closed early leaves them out. (edge-tts 7.3.1;
        # a client without that key skips this check; the duration check still applies.)
        cumulative = comm.state.get("cumulative_audio_bytes")
        if isinstance(cumulative, int) and cumulative != len(audio):
            raise _Truncated(f"stream ended without turn.end after {len(audio)} bytes")
        return bytes(audio), boundaries, len(audio)


def _decode_checked(mp3: bytes,
                    boundaries: Sequence[Mapping[str, Any]]) -> tuple[npt.NDArray[np.float32], int]:
    """Decode MP3 bytes and refuse audio shorter than the service's own boundary metadata."""
    import soundfile as sf

    try:
        samples, sr = sf.read(io.BytesIO(mp3), dtype="float32")
    except (RuntimeError, ValueError, sf.LibsndfileError) as exc:
        raise _Truncated(f"undecodable MP3 ({len(mp3)} bytes): {exc}") from exc
    if samples.shape[0] == 0:
        raise _Truncated("MP3 decoded to no samples")
    if boundaries:
        expected = max(float(b["offset"]) + float(b["duration"]) for b in boundaries)
        expected /= TICKS_PER_SECOND
        # The decoder's priming (a fixed count of samples for MPEG Layer III, whatever the rate)
        # shifts audio later; only the remainder counts as content.
        got = (samples.shape[0] - DECODER_DELAY_SAMPLES) / sr
        if got + TRUNCATION_SLACK_S < expected:
            raise _Truncated(f"audio is {got:.2f}s but the service's boundaries end at "
                             f"{expected:.2f}s: truncated stream")
    return np.asarray(samples, dtype=np.float32), int(sr)

