"""Engine registry: a plain mapping of names to engine classes.

Built-in engines are listed in :data:`BUILTIN`; third-party packages add their own through the
``greetkit.engines`` entry-point group (``myengine = "my_pkg.tts:MyEngine"``). Engine modules
import their optional dependencies lazily, so a missing extra only disables that engine.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from greetkit.engines.base import (
    Engine,
    ListsVoices,
    RefreshesVoices,
    RenderedAudio,
    RenderRequest,
    VoiceList,
)
from greetkit.errors import EngineUnavailable, UsageError
from greetkit.suggest import did_you_mean

__all__ = ["BUILTIN", "Engine", "RenderRequest", "RenderedAudio", "VoiceList", "declare",
           "engine_names", "get_engine", "list_voices", "register"]

#: name -> "module:Class" for the engines that ship with greetkit.
BUILTIN: dict[str, str] = {
    "espeak": "greetkit.engines.espeak:EspeakEngine",
    "edge": "greetkit.engines.edge:EdgeEngine",
    "recorded": "greetkit.engines.recorded:RecordedEngine",
}

ENTRY_POINT_GROUP = "greetkit.engines"

_instances: dict[str, Engine] = {}
#: Engines declared by name in the voices.yaml loaded last (its ``engines:`` section).
_declared: dict[str, Engine] = {}
#: Engines registered in this process with :func:`register`; they take precedence over all.
_registered: dict[str, Engine] = {}


def declare(engines: dict[str, Engine]) -> None:
    """Make the named engines of a voices.yaml's ``engines:`` section resolvable by name,
    replacing those of the spec loaded before."""
    _declared.clear()
    _declared.update(engines)


def register(name: str, engine: Engine | None) -> Engine | None:
    """Make ``engine`` the engine named ``name`` in this process (``None`` removes it again);
    returns the engine registered under that name before, if any.

    A registered engine wins over a built-in or plugin of the same name, so tests can stand one
    in for a real engine (see :func:`greetkit.testing.fake_engine`). To ship an engine, use the
    entry-point group instead.

    >>> from greetkit.testing import FakeEngine
    >>> register("fake", FakeEngine())  # returns None: nothing was registered as "fake"
    >>> get_engine("fake").offline, "fake" in engine_names()
    (True, True)
    >>> register("fake", None)  # doctest: +ELLIPSIS
    <greetkit.testing.FakeEngine object at ...>
    """
    previous = _registered.pop(name, None)
    if engine is not None:
        _registered[name] = engine
    return previous


def _plugin_targets() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def engine_names() -> list[str]:
    """Every engine name known: built-ins first, then entry-point plugins, then engines
    registered in this process."""
    names = list(BUILTIN)
    names += [n for n in sorted(_plugin_targets()) if n not in BUILTIN]
    names += [n for n in _registered if n not in names]
    return names


def get_engine(name: str, **options: Any) -> Engine:
    """Return the engine registered as ``name`` (one shared instance per name).

    >>> get_engine("espeak").name
    'espeak'
    """
    if not options and name in _registered:
        return _registered[name]
    if not options and name in _declared:
        return _declared[name]
    if not options and name in _instances:
        return _instances[name]
    target = BUILTIN.get(name) or _plugin_targets().get(name)
    if target is None:
        raise EngineUnavailable(
            f"unknown engine {name!r}; {did_you_mean(name, engine_names())}", engine=name,
            retryable=False,
        )
    module_name, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except ImportError as exc:
        raise EngineUnavailable(
            f"engine {name!r} cannot be imported ({exc}); install its extra", engine=name,
            retryable=False,
        ) from exc
    engine: Engine = cls(**options)
    if not options:
        _instances[name] = engine
    return engine


def _speaks(voice_languages: tuple[str, ...], language: str) -> bool:
    wanted = language.replace("_", "-").casefold()
    return any(c.casefold() == wanted or c.casefold().startswith(wanted + "-")
               for c in voice_languages)


def list_voices(name: str, *, language: str | None = None, project_dir: Path | None = None,
                refresh: bool = False) -> VoiceList:
    """The voices engine ``name`` offers, only those speaking ``language`` if given (``zh``
    matches ``zh-CN``). ``refresh`` first fetches the engine's full list into ``project_dir``
    (engines that support it: :class:`~greetkit.engines.base.RefreshesVoices`).

    >>> "en-US-AvaNeural" in [v.name for v in list_voices("edge", language="en").voices]
    True
    """
    engine = get_engine(name)
    if not isinstance(engine, ListsVoices):
        raise UsageError(f"engine {name!r} has no voice list; engines with one: "
                         + ", ".join(n for n in engine_names() if _lists_voices(n)))
    if refresh:
        if not isinstance(engine, RefreshesVoices):
            raise UsageError(f"--refresh does not apply to {name!r}: its voices ship with it")
        engine.refresh_voices(project_dir or Path.cwd())
    found = engine.voice_list(project_dir=project_dir)
    if language:
        found = VoiceList(found.columns,
                          tuple(v for v in found.voices if _speaks(v.languages, language)),
                          found.source)
    return found


def _lists_voices(name: str) -> bool:
    try:
        return isinstance(get_engine(name), ListsVoices)
    except EngineUnavailable:
        return False
