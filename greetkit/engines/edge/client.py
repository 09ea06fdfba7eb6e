"""The edge-tts client: importing it, its version, and pointing it at an endpoint.

Endpoint override (tests, proxies, self-hosted relays): ``GREETKIT_EDGE_URL`` replaces the
client's module attribute ``edge_tts.communicate.WSS_URL`` (it must contain ``?``); the voice
list URL is derived from it (``.../edge/v1?...`` -> ``.../voices/list?...``) unless
``GREETKIT_EDGE_VOICES_URL`` is set. The client reads both constants as module globals, so
this module is the one place that patches them.
"""

from __future__ import annotations

import os
import re
import urllib.parse
import urllib.request
from typing import Any

from greetkit.errors import EngineUnavailable

ENGINE = "edge"
ENV_URL = "GREETKIT_EDGE_URL"
ENV_VOICES_URL = "GREETKIT_EDGE_VOICES_URL"

#: Hosts that are never reached through a proxy (a relay or a test server on this machine).
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def import_edge_tts() -> Any:
    """The ``edge_tts`` module, or EngineUnavailable naming the extra to install."""
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
    return str(getattr(import_edge_tts(), "__version__", "unknown"))


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


class _Applied:
    """The endpoint the client was last pointed at (its clock skew belongs to that server)."""

    url: str | None = None


def configure_client() -> str:
    """Point the edge-tts client at :func:`endpoint` and return that URL.

    For the engine before each render, and for callers that stream with
    ``edge_tts.Communicate`` themselves. Clock skew learned from one server's ``Date`` is
    meaningless for another, so the client's class-level skew is reset whenever the endpoint
    changes.
    """
    import_edge_tts()
    from edge_tts import communicate, voices
    from edge_tts.drm import DRM

    url = endpoint()
    # Both modules import the constant by name, so it is patched where it is read.
    setattr(communicate, "WSS_URL", url)  # noqa: B010
    setattr(voices, "VOICE_LIST", voices_url())  # noqa: B010
    if url != _Applied.url:
        DRM.clock_skew_seconds = 0.0
        _Applied.url = url
    host = urllib.parse.urlsplit(url).hostname or ""
    if host in LOCAL_HOSTS:
        # The client honours proxy variables (trust_env); a local server must not be proxied.
        for name in ("NO_PROXY", "no_proxy"):
            present = [h for h in os.environ.get(name, "").split(",") if h.strip()]
            if host not in present:
                os.environ[name] = ",".join([*present, host])
    return url


def reachability_target(url: str) -> tuple[str, int]:
    """(host, port) a TCP connect must reach: the endpoint, or the proxy that would carry it."""
    parts = urllib.parse.urlsplit(url)
    secure = parts.scheme in ("wss", "https")
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    proxies = urllib.request.getproxies()
    proxy = proxies.get("https" if secure else "http") or proxies.get("all")
    # A local endpoint (a relay or test server) is never proxied: the client is told so too.
    if proxy and host not in LOCAL_HOSTS and not urllib.request.proxy_bypass(host):
        p = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        return p.hostname or host, p.port or 80
    return host, port
