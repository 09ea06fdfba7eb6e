"""Render clips with any LiveKit TTS plugin: the agent's own voice, declared in voices.yaml.

A named engine in voices.yaml's ``engines:`` section points at a callable that returns a
``livekit.agents.tts.TTS`` (usually the plugin's class) plus its keyword options::

    engines:
      agent:
        livekit: livekit.plugins.openai:TTS
        options: {model: gpt-4o-mini-tts}
    languages:
      en: {voices: {agent: alloy}}      # passed as the plugin's ``voice`` option

Each render builds the TTS with ``callable(**options, voice=voice)`` and collects
``tts.synthesize(text)``. Secrets never go into voices.yaml: plugins read their API keys from
the environment as they do inside an agent. The engine's :meth:`LiveKitEngine.version` names
the plugin's distribution and version, the callable and the options, so it is part of every
clip's content key: upgrading the plugin or changing an option re-renders that engine's clips,
and nothing else.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Callable, Mapping
from functools import cache
from importlib.metadata import distribution, packages_distributions
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from greetkit.engines.base import RenderedAudio, RenderRequest
from greetkit.engines.retry import RetryPolicy, call_with_retries
from greetkit.errors import EngineError, EngineUnavailable
from greetkit.suggest import did_you_mean

#: Seconds a render may wait for the provider's connection, per attempt.
CONNECT_TIMEOUT = 10.0
#: Tries per clip under greetkit's shared policy (the build drafts the clip after these).
#: The plugin's own retry loop is turned off (``max_retry=0``) so one loop decides, as for
#: every online engine; the per-attempt bound is the plugin's ``CONNECT_TIMEOUT``.
RETRY = RetryPolicy(attempts=2, backoff=0.5, max_backoff=8.0, deadline=None,
                    attempt_timeout=None)


def resolve(target: str) -> Callable[..., Any]:
    """Import ``module:callable`` (``livekit.plugins.openai:TTS``); raise ValueError saying why."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{target!r} is not 'module:callable'; write e.g. "
                         "'livekit.plugins.openai:TTS'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        dist = module_name.replace(".", "-")
        raise ValueError(f"cannot import {module_name!r} ({exc}); install the plugin, e.g. "
                         f"pip install {dist}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{module_name!r} has no {attr!r}; check the name")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{target!r} is not callable; name the plugin's TTS class")
    return obj  # type: ignore[no-any-return]


def option_problems(factory: Callable[..., Any], options: Mapping[str, Any]) -> list[str]:
    """Each option ``factory`` does not accept (with the accepted names), as a message."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return []  # a builtin without a signature: the first render says what is wrong
    params = signature.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return []
    accepted = [n for n, p in params.items()
                if p.kind in (inspect.Parameter.KEYWORD_ONLY,
                              inspect.Parameter.POSITIONAL_OR_KEYWORD) and n != "self"]
    problems = []
    for name in options:
        if name not in accepted:
            hint = did_you_mean(name, accepted, otherwise="accepted: " + ", ".join(accepted))
            problems.append(f"option {name!r} is not accepted by the plugin; {hint}")
    if "voice" not in accepted:
        problems.append("the plugin takes no 'voice' option, so per-language voices cannot "
                        "be passed to it; name a TTS class with a 'voice' keyword")
    return problems


@cache
def plugin_distribution(module_name: str) -> tuple[str, str]:
    """(distribution name, version) of the installed package that ships ``module_name``.

    Found by the module's file in each candidate distribution's file list, so namespace
    packages (every LiveKit plugin lives under ``livekit.plugins``) resolve to the plugin's
    own distribution. ``("unknown", "0")`` when no distribution lists the file.
    """
    module = importlib.import_module(module_name)
    top = module_name.split(".")[0]
    file = getattr(module, "__file__", None)
    wanted = None
    if file:
        parts = Path(file).parts
        if top in parts:
            index = len(parts) - 1 - parts[::-1].index(top)
            wanted = "/".join(parts[index:])
    for dist_name in packages_distributions().get(top, []):
        dist = distribution(dist_name)
        if wanted and any(str(f) == wanted for f in dist.files or ()):
            return dist.metadata["Name"], dist.version
    return "unknown", "0"


class LiveKitEngine:
    """One named ``engines:`` entry of voices.yaml over a LiveKit ``tts.TTS`` factory."""

    max_concurrency: ClassVar[int] = 4
    offline: ClassVar[bool] = False

    def __init__(self, name: str, target: str, options: Mapping[str, Any]) -> None:
        self.name = name  # per instance: engines are named in voices.yaml
        self.target = target
        self.options = dict(options)
        self.factory = resolve(target)
        self.distribution = plugin_distribution(target.partition(":")[0])

    def version(self) -> str:
        dist, ver = self.distribution
        options = json.dumps(self.options, sort_keys=True, ensure_ascii=False, default=str)
        return f"{dist}=={ver} {self.target} {options}"

    def check_available(self) -> None:
        """Nothing generic to probe before the first request: a failing render drafts."""

    def validate_voice(self, voice: str, language: str, *,
                       project_dir: Path | None = None) -> str | None:
        return None  # provider voice lists are not generic; the first render checks it

    def make_tts(self, voice: str | None = None) -> Any:
        """A new ``tts.TTS`` from this entry (``voice`` as the plugin's ``voice`` option)."""
        kwargs = dict(self.options)
        if voice:
            kwargs["voice"] = voice
        try:
            return self.factory(**kwargs)
        except Exception as exc:  # a plugin's own validation (missing API key, ...)
            raise EngineUnavailable(f"{self.target}(...) failed: {_why(exc)}", engine=self.name,
                                    retryable=False) from exc

    async def render(self, request: RenderRequest) -> RenderedAudio:
        """Render one clip through the plugin, retried under the shared :data:`RETRY` policy."""
        from livekit.agents import APIConnectOptions

        tts = self.make_tts(request.voice)
        options = APIConnectOptions(max_retry=0, timeout=CONNECT_TIMEOUT)
        try:
            (samples, rate), _ = await call_with_retries(
                lambda: self._synthesize(tts, request, options), policy=RETRY,
                classify=self._classify, engine=self.name)
        finally:
            await tts.aclose()
        dist, ver = self.distribution
        return RenderedAudio(samples=samples, sample_rate=rate,
                             info={"plugin": f"{dist}=={ver}", "target": self.target})

    async def _synthesize(self, tts: Any, request: RenderRequest, options: Any
                          ) -> tuple[np.ndarray[Any, np.dtype[np.float32]], int]:
        """One attempt: the plugin's frames for ``request.text`` as float samples and rate."""
        frames: list[np.ndarray[Any, np.dtype[np.int16]]] = []
        rate, channels = int(tts.sample_rate), int(tts.num_channels)
        async with tts.synthesize(request.text, conn_options=options) as stream:
            async for event in stream:
                frame = event.frame
                rate, channels = int(frame.sample_rate), int(frame.num_channels)
                frames.append(np.frombuffer(frame.data, dtype=np.int16).copy())
        if not frames or not sum(len(f) for f in frames):
            raise EngineError(f"returned no audio for {request.key}", engine=self.name,
                              retryable=True)
        pcm = np.concatenate(frames).astype(np.float32) / 32768.0
        return (pcm.reshape(-1, channels) if channels > 1 else pcm), rate

    def _classify(self, exc: BaseException) -> tuple[bool, str]:
        """(retryable, description): the plugin's own verdict (LiveKit's ``APIError``
        ``.retryable``: connection errors, timeouts, 429 and 5xx); anything else is final."""
        from livekit.agents import APIError

        retryable = isinstance(exc, APIError | EngineError) and bool(exc.retryable)
        return retryable, f"{self.target}: {_why(exc)}"


def _why(exc: BaseException) -> str:
    """The innermost cause of a plugin error, in one line (connection refused, HTTP 401...)."""
    parts = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = " ".join(str(current).split()) or type(current).__name__
        if text not in parts:
            parts.append(text)
        current = current.__cause__ or current.__context__
    return "; ".join(parts)[:300]
