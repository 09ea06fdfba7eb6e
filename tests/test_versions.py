"""Published versions in a local store: manifests/<version>.json, rollback, pinning, gc."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

import greetkit
from greetkit.build import build
from greetkit.cli import cli
from greetkit.errors import StoreError
from greetkit.store import Store

SPEC = """\
version: 1
defaults: {{engine: espeak, language: en}}
languages:
  en: {{voices: {{espeak: en-us}}}}
phrases:
  default:
    en: "{text}"
"""


@pytest.fixture
def two_versions(write_spec: Callable[[str], Path]) -> Store:
    """A store with version 1 ("Hello there.") and version 2 ("Welcome back.") built."""
    config = write_spec(SPEC.format(text="Hello there."))
    build(config)
    config.write_text(SPEC.format(text="Welcome back."), encoding="utf-8")
    build(config)
    return Store(config.parent / "greetings")


def test_each_build_keeps_its_version(two_versions: Store) -> None:
    """Every published build stays readable as manifests/<version>.json."""
    assert two_versions.versions() == [1, 2]
    current = two_versions.manifest()
    assert current is not None and current.version == 2
    v1 = two_versions.manifest(1)
    assert v1 is not None and v1.clips[0].text == "Hello there."


def test_rollback_makes_an_old_version_current(two_versions: Store) -> None:
    """rollback --to 1 moves manifest.json back; nothing is deleted; the store verifies."""
    files = sorted(p.name for p in two_versions.root.rglob("*") if p.is_file())
    result = CliRunner().invoke(cli, ["rollback", "--to", "1", "-o", str(two_versions.root)])
    assert result.exit_code == 0, result.output
    assert "current version is now 1" in result.output
    current = two_versions.manifest()
    assert current is not None and current.version == 1
    assert current.clips[0].text == "Hello there."
    assert two_versions.verify() == []
    assert sorted(p.name for p in two_versions.root.rglob("*") if p.is_file()) == files


def test_build_after_rollback_never_reuses_a_number(two_versions: Store,
                                                    write_spec: Callable[[str], Path]) -> None:
    """A build after rolling back to 1 publishes version 3, leaving 2 untouched."""
    two_versions.rollback(1)
    v2 = (two_versions.root / "manifests" / "2.json").read_bytes()
    config = write_spec(SPEC.format(text="Good morning."))
    result = build(config)
    assert result.manifest is not None and result.manifest.version == 3
    assert two_versions.versions() == [1, 2, 3]
    assert (two_versions.root / "manifests" / "2.json").read_bytes() == v2


def test_rollback_to_a_missing_version_is_one_line(two_versions: Store) -> None:
    """An unknown version is refused naming the versions kept; manifest.json is unchanged."""
    before = two_versions.manifest_path.read_bytes()
    with pytest.raises(StoreError, match=r"no version 7 \(kept versions: 1, 2\)"):
        two_versions.rollback(7)
    assert two_versions.manifest_path.read_bytes() == before


def test_rollback_refuses_a_version_with_missing_clips(two_versions: Store) -> None:
    """A version whose clips were deleted is not made current (the bank stays playable)."""
    v1 = two_versions.manifest(1)
    assert v1 is not None
    two_versions.path_of(v1.clips[0].base.file).unlink()
    with pytest.raises(StoreError, match="version 1 cannot be restored: en_default"):
        two_versions.rollback(1)
    current = two_versions.manifest()
    assert current is not None and current.version == 2


def test_load_pins_a_version(two_versions: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """load(version=1) plays version 1's clip while version 2 is current."""
    bank = greetkit.load(two_versions.root, version=1)
    assert bank.manifest is not None and bank.manifest.version == 1
    assert bank.resolve("default", language="en").text == "Hello there."
    current = greetkit.load(two_versions.root)
    assert current.resolve("default", language="en").text == "Welcome back."


def test_load_of_a_missing_version_says_how_to_get_it(two_versions: Store) -> None:
    """A pinned version that is not in the store gives a bank with a one-line problem."""
    bank = greetkit.load(two_versions.root, version=9)
    assert bank.problem is not None and "no version 9" in bank.problem
    with pytest.raises(StoreError, match="greetkit pull URL --version 9"):
        greetkit.load(two_versions.root, version=9, strict=True)


def test_gc_keeps_the_newest_versions(two_versions: Store,
                                      write_spec: Callable[[str], Path]) -> None:
    """gc --keep 2 keeps versions 2 and 3 with their clips and deletes version 1's clips."""
    build(write_spec(SPEC.format(text="Good morning.")))
    v1 = two_versions.manifest(1)
    assert v1 is not None
    result = CliRunner().invoke(cli, ["gc", "--keep", "2", "-o", str(two_versions.root)])
    assert result.exit_code == 0, result.output
    assert not two_versions.path_of(v1.clips[0].base.file).exists()
    with pytest.raises(StoreError, match="version 1 cannot be restored"):
        two_versions.rollback(1)
    for v in (2, 3):
        assert two_versions.verify(two_versions.manifest(v)) == []


def test_gc_keeps_the_pinned_and_current_version(two_versions: Store,
                                                 write_spec: Callable[[str], Path]) -> None:
    """--pin 1 keeps version 1 even though --keep 1 keeps only the newest."""
    build(write_spec(SPEC.format(text="Good morning.")))
    v2 = two_versions.manifest(2)
    assert v2 is not None
    two_versions.gc(keep=1, pin=1)
    assert two_versions.verify(two_versions.manifest(1)) == []
    assert not two_versions.path_of(v2.clips[0].base.file).exists()


def test_old_store_without_versions_still_loads(two_versions: Store) -> None:
    """A store written before versions existed (manifest.json only) loads and gcs as before."""
    for p in (two_versions.root / "manifests").iterdir():
        p.unlink()
    (two_versions.root / "manifests").rmdir()
    assert json.loads(two_versions.manifest_path.read_text())["version"] == 2
    assert greetkit.load(two_versions.root).resolve("default", language="en").text == \
        "Welcome back."
    two_versions.gc()
    assert two_versions.verify() == []
