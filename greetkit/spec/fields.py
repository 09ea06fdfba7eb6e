"""The building blocks voices.yaml's schema is declared with (see :mod:`greetkit.spec.schema`).

A *kind* checks one value at a key path and returns what it means, or None after recording
an issue on the :class:`~greetkit.spec.document.Doc`: it never raises, so one pass over the
document collects every problem. :class:`Section` is a mapping with declared
:class:`Option` s (name, kind, default, docstring); :class:`MapOf` a mapping of user-chosen
names to values of one kind.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from greetkit.params import LOUDNESS_PRESETS
from greetkit.spec.document import Doc, Path_
from greetkit.spec.model import ALLOWED_RATES, BASE_RATE, Loudness
from greetkit.suggest import did_you_mean


@dataclass
class Context:
    """What checking needs besides the value: where issues go and the known engine names
    (the registry's, plus those the ``engines:`` section declares)."""

    doc: Doc
    engines: list[str]


class Kind:
    """Checks a value found at ``path``; returns its meaning or None (an issue recorded)."""

    def check(self, value: Any, path: Path_, ctx: Context) -> Any:
        raise NotImplementedError


def as_mapping(value: Any, path: Path_, ctx: Context, what: str) -> dict[str, Any]:
    """``value`` as a mapping; absent (None) is empty, anything else is an issue."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        ctx.doc.error(path, f"expected a mapping of {what}, got {type(value).__name__}")
        return {}
    return value


#: Option default meaning "as if the section were given empty" (it then reports what an
#: empty value lacks, e.g. 'no languages').
EMPTY = object()


@dataclass(frozen=True)
class Option:
    """One declared key of a :class:`Section`."""

    name: str
    kind: Kind
    #: Value when the key is absent or its value is invalid (``EMPTY``: check an empty value).
    default: Any = None
    doc: str = ""
    #: When set, leaving the key out is an issue with this message (cfgv's ``Required``).
    required: str | None = None


#: A check across a section's keys; False makes the whole value unusable (its issue recorded).
Rule = Callable[[Any, Path_, Context], bool]


@dataclass(frozen=True)
class Section(Kind):
    """A mapping with declared keys, checked into the dataclass ``into``.

    ``into`` receives one keyword per option, ``given`` (the keys written) and, when
    ``extra`` is set, ``entries``: the other keys checked with ``extra`` (a phrase's
    languages). Without ``extra`` an undeclared key is an issue with a suggestion.
    ``rules`` then check what involves several keys.
    """

    what: str
    options: tuple[Option, ...]
    into: Callable[..., Any]
    extra: Kind | None = None
    rules: tuple[Rule, ...] = ()
    #: Options checked before the others (the others may refer to what they declare).
    first: tuple[str, ...] = ()
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(o.name for o in self.options))

    def check(self, value: Any, path: Path_, ctx: Context) -> Any:
        m = as_mapping(value, path, ctx, self.what)
        if self.extra is None:
            for key in m:
                if key not in self.names:
                    ctx.doc.error((*path, key),
                                  f"unknown key {key!r}; {did_you_mean(key, self.names)}")
        order = sorted(self.options, key=lambda o: o.name not in self.first)
        values = {o.name: self._option(o, m, path, ctx) for o in order}
        if self.extra is not None:
            values["entries"] = {k: self.extra.check(v, (*path, k), ctx)
                                 for k, v in m.items() if k not in self.names}
        result = self.into(given=frozenset(m), **values)
        usable = [rule(result, path, ctx) for rule in self.rules]
        return result if all(usable) else None

    @staticmethod
    def _option(option: Option, m: Mapping[str, Any], path: Path_, ctx: Context) -> Any:
        where = (*path, option.name)
        if option.name not in m:
            if option.required is not None:
                ctx.doc.error(where, option.required)
            return option.kind.check(None, where, ctx) if option.default is EMPTY else (
                option.default)
        got = option.kind.check(m[option.name], where, ctx)
        if got is None and option.default is not EMPTY:
            return option.default
        return got


def _any_name(name: str, path: Path_, ctx: Context) -> bool:
    return True


@dataclass(frozen=True)
class MapOf(Kind):
    """A mapping of user-chosen names (checked by ``name``; False skips the entry) to values
    of one kind. ``empty``: the issue when there are none."""

    what: str
    value: Kind
    name: Callable[[str, Path_, Context], bool] = _any_name
    empty: str | None = None
    rules: tuple[Callable[[Any, Path_, Context], None], ...] = ()

    def check(self, value: Any, path: Path_, ctx: Context) -> dict[str, Any]:
        m = as_mapping(value, path, ctx, self.what)
        if not m and self.empty:
            ctx.doc.error(path, self.empty)
        out = {k: self.value.check(v, (*path, k), ctx)
               for k, v in m.items() if self.name(k, (*path, k), ctx)}
        for rule in self.rules:
            rule(out, path, ctx)
        return out


class Text(Kind):
    """Text; numbers are taken as written (``rate: 10`` would be '10')."""

    def check(self, value: Any, path: Path_, ctx: Context) -> str | None:
        if value is None and ctx.doc.has_issue(path):
            return None  # already reported (a rejected tag, say)
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            ctx.doc.error(path, f"expected text, got {type(value).__name__}; quote the value")
            return None
        return str(value)


class Stringified(Kind):
    """Any value, as text (a voice name is passed to its engine, which judges it)."""

    def check(self, value: Any, path: Path_, ctx: Context) -> str:
        return str(value)


class Value(Kind):
    """Any value, unchanged (checked later by whoever uses it, e.g. a plugin's signature)."""

    def check(self, value: Any, path: Path_, ctx: Context) -> Any:
        return value


class Flag(Kind):
    """True only when written ``true``."""

    def check(self, value: Any, path: Path_, ctx: Context) -> bool:
        return value is True


class EngineName(Kind):
    """The name of a registered or declared engine."""

    def check(self, value: Any, path: Path_, ctx: Context) -> str | None:
        name = Text().check(value, path, ctx)
        if name is not None and name not in ctx.engines:
            ctx.doc.error(path, f"unknown engine {name!r}; {did_you_mean(name, ctx.engines)}")
            return None
        return name


def engine_key(name: str, path: Path_, ctx: Context) -> bool:
    """A mapping key that must name an engine (``voices: {edge: ...}``)."""
    return EngineName().check(name, path, ctx) is not None


@dataclass(frozen=True)
class Number(Kind):
    """A number within [lo, hi]."""

    lo: float
    hi: float

    def check(self, value: Any, path: Path_, ctx: Context) -> float | None:
        lo, hi = self.lo, self.hi
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            ctx.doc.error(path, f"expected a number between {lo:g} and {hi:g}, got {value!r}")
            return None
        if not lo <= float(value) <= hi:
            ctx.doc.error(path, f"{value!r} is out of range; use a number between {lo:g} and "
                          f"{hi:g}")
            return None
        return float(value)


@dataclass(frozen=True)
class Delivery(Kind):
    """rate / pitch / volume in edge-tts's notation ('+10%', '+5Hz'), shared by every engine."""

    what: str
    pattern: re.Pattern[str]
    example: str

    def check(self, value: Any, path: Path_, ctx: Context) -> str | None:
        text = str(value)
        if isinstance(value, bool) or not self.pattern.match(text):
            ctx.doc.error(path, f"{text!r} is not a {self.what}; write it like {self.example!r}")
            return None
        return text


@dataclass(frozen=True)
class LoudnessSetting:
    """A ``loudness:`` value as written; :meth:`over` applies it to the inherited one."""

    preset: str | None = None
    #: A ``preset:`` inside a mapping, which the numbers beside it override.
    base: LoudnessSetting | None = None
    target_lufs: float | None = None
    true_peak_db: float | None = None

    def over(self, inherited: Loudness) -> Loudness:
        if self.preset is not None:
            return Loudness(*LOUDNESS_PRESETS[self.preset], self.preset)
        base = self.base.over(inherited) if self.base is not None else inherited
        if self.target_lufs is None and self.true_peak_db is None:
            return base
        return Loudness(base.target_lufs if self.target_lufs is None else self.target_lufs,
                        base.true_peak_ceiling_db if self.true_peak_db is None
                        else self.true_peak_db, None)


#: ``loudness:`` when not written: inherit.
INHERIT = LoudnessSetting()


class LoudnessKind(Kind):
    """A preset name, or ``{preset, target_lufs, true_peak_db}``."""

    def check(self, value: Any, path: Path_, ctx: Context) -> LoudnessSetting | None:
        if value is None:
            return INHERIT
        if isinstance(value, str):
            if value not in LOUDNESS_PRESETS:
                ctx.doc.error(path, f"unknown loudness preset {value!r}; "
                              f"{did_you_mean(value, LOUDNESS_PRESETS)}")
                return None
            return LoudnessSetting(preset=value)
        return _LOUDNESS_MAP.check(value, path, ctx)  # type: ignore[no-any-return]


def _loudness_map(given: frozenset[str], preset: LoudnessSetting | None,
                  target_lufs: float | None, true_peak_db: float | None) -> LoudnessSetting:
    return LoudnessSetting(base=preset, target_lufs=target_lufs, true_peak_db=true_peak_db)


_LOUDNESS_MAP = Section("loudness settings", (
    Option("target_lufs", Number(-40.0, -5.0), doc="Integrated loudness target (LUFS)."),
    Option("true_peak_db", Number(-20.0, 0.0), doc="True-peak ceiling (dBTP)."),
    Option("preset", LoudnessKind(), doc="Preset the numbers beside it override."),
), into=_loudness_map)


class Rates(Kind):
    """Extra output rates; 48 kHz is always first."""

    def check(self, value: Any, path: Path_, ctx: Context) -> tuple[int, ...]:
        if value is None:
            return (BASE_RATE,)
        if not isinstance(value, list):
            ctx.doc.error(path, "expected a list of sample rates, e.g. [48000, 24000]")
            return (BASE_RATE,)
        rates = [BASE_RATE]
        for i, rate in enumerate(value):
            if isinstance(rate, bool) or rate not in ALLOWED_RATES:
                ctx.doc.error((*path, str(i)), f"{rate!r} is not a supported rate; choose from "
                              + ", ".join(str(r) for r in ALLOWED_RATES))
            elif rate not in rates:
                rates.append(int(rate))
        return tuple(rates)
