"""Content keys and the one stale rule (greetkit/keys.py), as build, list, report and preview
see them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from bank import BUILD_SPEC
from click.testing import CliRunner

from greetkit.build import build
from greetkit.cli import cli
from greetkit.preview import load_clip
from greetkit.report import collect


@pytest.fixture
def bank(store: Path) -> Path:
    """A private copy of the test bank with its voices.yaml beside it; returns the spec."""
    spec = store.parent / "voices.yaml"
    spec.write_text(BUILD_SPEC, encoding="utf-8")
    return spec


def list_status(spec: Path) -> dict[str, str]:
    out = CliRunner().invoke(cli, ["list", "-c", str(spec)])
    assert out.exit_code == 0, out.output
    rows = [line.split() for line in out.output.splitlines()[1:-1]]
    return {row[0]: row[-1] for row in rows}


def test_unchanged_spec_is_current_everywhere(bank: Path) -> None:
    """With voices.yaml as built, list shows no clip stale and the build renders nothing."""
    assert set(list_status(bank).values()) == {"built"}
    result = build(bank, bank.parent / "greetings")
    assert result.rendered == [] and "nothing to render" in result.summary()


def test_changed_preset_is_stale_in_list_report_and_preview(bank: Path) -> None:
    """A new loudness preset changes every content key: list, the report and preview say
    stale, and the build re-renders exactly those clips, after which nothing is stale."""
    bank.write_text(BUILD_SPEC.replace("  language: en\n", "  language: en\n"
                                       "  loudness: telephony\n", 1), encoding="utf-8")
    statuses = list_status(bank)
    assert set(statuses.values()) == {"stale"}
    data = collect(bank.parent / "greetings", bank)
    assert all(row.stale and "loudness changed" in row.stale for row in data.rows)
    preview = load_clip(bank.parent / "greetings", "en_default", spec=bank)
    assert preview.stale is not None and "loudness" in preview.stale
    result = build(bank, bank.parent / "greetings")
    assert sorted(result.rendered) == sorted(statuses)
    assert set(list_status(bank).values()) == {"built"}
    assert build(bank, bank.parent / "greetings").rendered == []


def test_changed_language_rate_is_stale(bank: Path) -> None:
    """A language's rate option changes its clips' keys only: those are stale, others not."""
    bank.write_text(BUILD_SPEC.replace("zh: {voices: {espeak: cmn}}",
                                       "zh: {voices: {espeak: cmn}, rate: '+20%'}"),
                    encoding="utf-8")
    statuses = list_status(bank)
    assert statuses["zh_default"] == "stale"
    assert {k for k, v in statuses.items() if v == "stale"} == {"zh_default"}
    rows = {row.entry.key: row.stale for row in collect(bank.parent / "greetings", bank).rows}
    assert rows["zh_default"] is not None and rows["en_default"] is None
    assert build(bank, bank.parent / "greetings").rendered == ["zh_default"]


def test_noop_build_does_not_import_scipy(bank: Path) -> None:
    """A build with nothing to render never imports scipy (the DSP chain's dependency)."""
    code = ("import sys; from greetkit.build import build; "
            f"r = build({str(bank)!r}); assert not r.rendered, r.summary(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=bank.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_noop_build_of_edge_drafts_imports_no_client(tmp_path: Path) -> None:
    """The shipped shape offline: edge preferred but unreachable, so the clips are espeak
    drafts. A rebuild still asks edge whether it is back (to replace the drafts), but that
    check is a TCP connect: neither the edge-tts client, aiohttp nor scipy is imported."""
    spec = tmp_path / "voices.yaml"
    spec.write_text(
        "version: 1\ndefaults: {engine: edge, language: en}\n"
        "languages:\n  en: {voices: {edge: en-US-AvaNeural, espeak: en-us}}\n"
        "phrases:\n  default:\n    en: \"Hi there!\"\n", encoding="utf-8")
    first = build(spec)
    assert first.drafts and first.rendered == ["en_default"]
    code = ("import sys; from greetkit.build import build; "
            f"r = build({str(spec)!r}); assert not r.rendered, r.summary(); "
            "print(sorted({m.split('.')[0] for m in sys.modules} "
            "& {'scipy', 'edge_tts', 'aiohttp'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
