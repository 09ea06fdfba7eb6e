"""Fuzzing manifest.json: mutated manifests never make greetkit raise (issue 17).

Each case is the manifest of the real test bank (tests/bank.py: espeak-ng clips built by
greetkit.build) changed by one to three seeded mutations: a value swapped for another JSON
type, a huge / negative / NaN / infinite number, a NUL byte or a path leaving the store, a
deleted or duplicated field or clip, a value wrapped in a list or object, nesting thousands
of levels deep, or the text itself truncated or with a byte changed.

For every case, in process: ``greetkit.load`` returns a bank (never raises) whose
selections do not raise either, and ``greetkit verify`` / ``list`` / ``report``
(``greetkit.cli.main``) exit 0 or 1, exit 1 only with a message on stderr; any other
exception is a traceback and fails the test. A few cases also run ``python -m greetkit.cli``
in a subprocess, checking stderr holds no 'Traceback'.

Default mode: 40 cases, a few seconds. Extended mode (the issue's 3,000-manifest run)::

    GREETKIT_MANIFEST_FUZZ=3000 python -m pytest tests/test_manifest_fuzz.py -q -s

prints ``manifest fuzz: N cases (seed S): L loaded, R with refused clips, E refused
manifests, 0 raises, T s``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from bank import as_format_1

import greetkit
from greetkit.cli import main

CASES = int(os.environ.get("GREETKIT_MANIFEST_FUZZ", "40"))
SEED = int(os.environ.get("GREETKIT_MANIFEST_FUZZ_SEED", "17"))
#: Cases also run through a real `python -m greetkit.cli` subprocess (~1 s each).
SUBPROCESS_CASES = 2
DEPTHS = (40, 999, 2000, 5000)

HOSTILE: list[Any] = [
    None, True, False, 0, -1, 1, 2**31, 2**63, 10**400, -(10**30), 3.5, -0.0, 1e308,
    float("nan"), float("inf"), float("-inf"), "", "0", "44", "\0", "clips/\0.wav", "a\0b",
    "../../etc/passwd", "/etc/passwd", "clips/../manifest.json", "C:\\x.wav", "clips//x.wav",
    "\ud800", "x" * 200_001, [], {}, [1, 2], {"a": 1}, ["clips/x.wav"], {"n": 48000},
]


def _paths(node: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (keys / indices) to a value in a JSON tree, the root excluded."""
    found = []
    if isinstance(node, dict):
        for k, v in node.items():
            found.append((*at, k))
            found += _paths(v, (*at, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found.append((*at, i))
            found += _paths(v, (*at, i))
    return found


def _deep(depth: int) -> str:
    """A marker that :func:`_text` turns into ``depth`` nested lists (json.dumps itself
    would recurse too deep to write them)."""
    return f"\x01deep{depth}\x01"


def _text(mutated: dict[str, Any] | str) -> str:
    """The manifest file's text for a mutated document (deep-nesting markers expanded)."""
    if isinstance(mutated, str):
        return mutated
    text = json.dumps(mutated, ensure_ascii=False)
    for depth in DEPTHS:
        text = text.replace(json.dumps(_deep(depth)), "[" * depth + "1" + "]" * depth)
    return text


def _mutate(doc: dict[str, Any], rng: random.Random) -> dict[str, Any] | str:
    """One to three mutations of ``doc`` (a decoded manifest); a str is raw file text."""
    doc = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 3)):
        paths = _paths(doc)
        path = rng.choice(paths)
        parent: Any = doc
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        value = parent[last]
        op = rng.random()
        if op < 0.45:
            parent[last] = rng.choice(HOSTILE)
        elif op < 0.55:
            del parent[last]
        elif op < 0.65:
            parent[last] = rng.choice([[value], {"v": value}, str(value), len(str(value))])
        elif op < 0.72:
            parent[last] = _deep(rng.choice(DEPTHS))
        elif op < 0.80 and isinstance(parent, list):
            parent.append(copy.deepcopy(value))  # a duplicated clip, variant or item
        elif op < 0.88:
            doc[rng.choice(["format", "version", "clips", "texts", "default_language"])] = (
                rng.choice(HOSTILE))
        else:
            text = _text(doc)
            cut = rng.randrange(len(text))
            if rng.random() < 0.5:
                return text[:cut]
            return text[:cut] + rng.choice(['"', "{", "[", "\\", "\0", "]]", "é"]) + text[cut + 1:]
    return doc


def _run_cli(args: list[str]) -> tuple[int, str]:
    """``greetkit ARGS`` in process: (exit code, stderr). Any exception propagates."""
    out, err = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(args)
        except SystemExit as exc:
            code = exc.code
    return (code if isinstance(code, int) else 1 if code else 0), err.getvalue()


def _check(store: Path, stats: Counter[str]) -> None:
    """Load and run the read commands on ``store``; raises AssertionError on a violation."""
    bank = greetkit.load(store)
    if bank.problem:
        stats["refused manifests"] += 1
    else:
        stats["loaded"] += 1
        stats["with refused clips"] += bool(bank.unavailable)
    for phrase, language in (("default", "en"), ("default", "zh-CN"), ("bye", None),
                             ("thanks", "en"), ("nothing", "xx")):
        bank.select(phrase, language)
    for args in (["verify"], ["list"], ["report", "--html", str(store.parent / "r.html")]):
        code, err = _run_cli([*args, "--out", str(store)])
        assert code in (0, 1), (args, code, err)
        assert code == 0 or err.strip(), (args, "exit 1 without a message")
        assert "Traceback" not in err, (args, err)


def _write(store: Path, mutated: dict[str, Any] | str) -> None:
    (store / "manifest.json").write_text(_text(mutated), encoding="utf-8", errors="surrogatepass")


@pytest.mark.parametrize("layout", [2, 1], ids=["format-2", "format-1"])
def test_mutated_manifests_never_raise(built_store: Path, tmp_path: Path,
                                       caplog: pytest.LogCaptureFixture, layout: int) -> None:
    """CASES seeded mutations of a real manifest, in the format greetkit writes and in the
    format-1 layout it still reads: load never raises, verify/list/report exit 0 or 1 with a
    message, never a traceback (in process and, for a few, in a subprocess)."""
    caplog.set_level(logging.CRITICAL, logger="greetkit")  # thousands of expected warnings
    store = Path(shutil.copytree(built_store, tmp_path / "greetings"))
    original = json.loads((built_store / "manifest.json").read_text(encoding="utf-8"))
    if layout == 1:
        original = as_format_1(original)
    rng = random.Random(SEED)
    stats: Counter[str] = Counter()
    failures: list[str] = []
    started = time.perf_counter()
    for case in range(CASES):
        mutated = _mutate(original, rng)
        _write(store, mutated)
        try:
            _check(store, stats)
        except Exception as exc:  # every exception is the finding
            failures.append(f"case {case}: {type(exc).__name__}: {str(exc)[:300]}")
        if case < SUBPROCESS_CASES:
            for verb in ("verify", "list"):
                result = subprocess.run(
                    [sys.executable, "-m", "greetkit.cli", verb, "--out", str(store)],
                    capture_output=True, text=True, timeout=120, check=False)
                if result.returncode not in (0, 1) or "Traceback" in result.stderr:
                    failures.append(f"case {case}: {verb} exit {result.returncode}: "
                                    f"{result.stderr[-300:]}")
        caplog.clear()
    seconds = time.perf_counter() - started
    print(f"\nmanifest fuzz, format {layout}: {CASES} cases (seed {SEED}): "
          f"{stats['loaded']} loaded, "
          f"{stats['with refused clips']} with refused clips, {stats['refused manifests']} "
          f"refused manifests, {len(failures)} raises, {seconds:.1f} s")
    assert not failures, "\n".join(failures[:20])
    # The mutations reach both kinds of refusal, or the fuzz tests less than it claims.
    assert stats["with refused clips"] and stats["refused manifests"]


def test_mutations_include_each_hostile_kind() -> None:
    """The mutator produces NaN, infinity, NUL bytes, deep nesting and raw-text damage."""
    doc = {"format": 1, "clips": [{"file": "clips/a.wav", "samples": 3}], "texts": {}}
    rng = random.Random(1)
    seen = [_text(_mutate(doc, rng)) for _ in range(400)]
    assert any("NaN" in s for s in seen) and any("Infinity" in s for s in seen)
    assert any("\0" in s for s in seen) and any("[" * 2000 in s for s in seen)
    assert any(not s.startswith("{") or not s.endswith("}") for s in seen)
