"""edge-tts: Microsoft Edge's online neural voices (MP3 over a WebSocket), hardened.

The service is reached through the real ``edge_tts`` client (the ``greetkit[edge]`` extra,
imported lazily so a missing extra only disables this engine). Around each render the engine
adds what a build needs from a flaky, rate-limited online service:

* bounded concurrency (a per-build semaphore, default 4, ``GREETKIT_EDGE_CONCURRENCY``);
* retries with exponential backoff and full jitter on 429, 5xx, connection errors, timeouts,
  ``NoAudioReceived`` and truncated streams, within a total deadline per clip
  (:mod:`greetkit.engines.retry`, shared by every online engine);
* truncation detection: a stream that ends without ``turn.end`` (the client raises nothing) or
  whose decoded audio is shorter than the service's own boundary metadata is never accepted;
* text the service cannot speak (no letters or digits) is rejected before any request, and
  long text is pre-split at sentence punctuation (``。！？；`` first) so no request exceeds the
  service's 4096-byte limit, which the client itself only enforces at whitespace;
* a per-build circuit breaker: after a few clips in a row fail every retry, the rest fail at once
  (and become drafts) instead of each waiting out its own deadline.

One module per concern:

========================  ==================================================================
:mod:`.client`            importing edge-tts, its version, pointing it at ``GREETKIT_EDGE_URL``
:mod:`.voices`            the voice catalogue: built-in, cached per project, fetched
:mod:`.text`              speakable text, split under the request byte limit
:mod:`.stream`            one request: MP3 and boundaries, decoded and checked whole
:mod:`.classify`          service errors in one line, and whether a retry can help
:mod:`.options`           :class:`EdgeOptions`: keyword options, environment, defaults
:mod:`.engine`            :class:`EdgeEngine`, the Engine Protocol over all of the above
========================  ==================================================================
"""

from __future__ import annotations

from .classify import TruncatedStream, classify, describe
from .client import (
    ENGINE,
    ENV_URL,
    ENV_VOICES_URL,
    configure_client,
    edge_tts_version,
    endpoint,
    voices_url,
)
from .engine import EdgeEngine
from .options import (
    ENV_ATTEMPTS,
    ENV_BACKOFF,
    ENV_CONCURRENCY,
    ENV_DEADLINE,
    EdgeOptions,
    ResolvedOptions,
)
from .stream import (
    DECODER_DELAY_SAMPLES,
    TICKS_PER_SECOND,
    TRUNCATION_SLACK_S,
    Prosody,
    decode_checked,
)
from .text import MAX_REQUEST_BYTES, is_speakable, split_text
from .voices import (
    KNOWN_VOICES,
    VOICE_CACHE,
    EdgeVoice,
    builtin_voices,
    cached_voices,
    fetch_voices,
    refresh_voice_cache,
    voice_problem,
)

__all__ = [
    "DECODER_DELAY_SAMPLES", "ENGINE", "ENV_ATTEMPTS", "ENV_BACKOFF", "ENV_CONCURRENCY",
    "ENV_DEADLINE", "ENV_URL", "ENV_VOICES_URL", "KNOWN_VOICES", "MAX_REQUEST_BYTES",
    "TICKS_PER_SECOND", "TRUNCATION_SLACK_S", "VOICE_CACHE", "EdgeEngine", "EdgeOptions",
    "EdgeVoice", "Prosody", "ResolvedOptions", "TruncatedStream", "builtin_voices",
    "cached_voices", "classify", "configure_client", "decode_checked", "describe",
    "edge_tts_version", "endpoint", "fetch_voices", "is_speakable", "refresh_voice_cache",
    "split_text", "voice_problem", "voices_url",
]
