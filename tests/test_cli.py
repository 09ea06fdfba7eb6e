"""The command line (greetkit/cli.py, greetkit/commands/)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from greetkit.cli import main

SPEC = """\
version: 1
defaults: {engine: espeak}
languages:
  en: {voices: {espeak: en-us}}
phrases:
  default:
    en: "Hi there!"
  bye:
    en: "Bye!"
"""


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the real console entry point in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", "greetkit.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_help_lists_every_command(tmp_path: Path) -> None:
    """--help lists every verb the CLI dispatches to."""
    from greetkit.cli import COMMANDS

    out = run("--help", cwd=tmp_path)
    assert out.returncode == 0
    assert {"build", "list", "verify", "gc", "loudness", "voices", "preview", "report"} <= set(
        COMMANDS)
    for verb in COMMANDS:
        assert f"  {verb} " in out.stdout


def test_help_imports_no_command_or_audio_library(tmp_path: Path) -> None:
    """--help is instant because it imports no command module and no heavy library."""
    probe = (
        "import sys\n"
        "from greetkit.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('greetkit.commands.', 'numpy', 'scipy', 'soundfile', 'soxr', 'yaml', 'jinja2',\n"
        "         'livekit', 'edge_tts')\n"
        "print('LOADED', sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    loaded = out.stdout.splitlines()[-1]
    assert loaded == "LOADED []", loaded


def test_build_list_verify_round_trip(write_spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """build writes the bank, list shows it, verify passes; a second build renders nothing."""
    write_spec(SPEC)
    out = run("build", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    *clips, summary = out.stdout.splitlines()
    assert summary.startswith("2 rendered, 0 reused, 0 drafts, 0 failed")
    # One line per rendered clip with its loudness, peak, gain and limiting.
    assert [c.split()[0] for c in clips] == ["en_default", "en_bye"]
    manifest = json.loads((tmp_path / "greetings" / "manifest.json").read_text())
    peaks = {c["key"]: c["files"]["48000"]["true_peak_db"] for c in manifest["clips"]}
    for line in clips:
        fields = line.split()
        # the printed true peak is the stored clip's, at or under the -1.5 dBTP ceiling
        assert fields[1:3] == ["-18.00", "LUFS"] and fields[4] == "dBTP"
        assert float(fields[3]) == pytest.approx(peaks[fields[0]], abs=0.005)
        assert float(fields[3]) <= -1.5
        assert fields[5] == "gain" and ("limited" in line or "not limited" in line)
    listing = run("list", cwd=tmp_path)
    assert listing.returncode == 0
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["KEY", "LANG", "ENGINE/VOICE", "DUR", "LUFS", "TP", "dB", "STATUS"]
    assert lines[1].split()[0] == "en_default" and lines[1].split()[-1] == "built"
    as_json = json.loads(run("list", "--json", cwd=tmp_path).stdout)
    assert [(c["key"], c["status"]) for c in as_json] == [("en_default", "built"),
                                                          ("en_bye", "built")]
    assert run("verify", cwd=tmp_path).stdout.startswith("ok: 2 clips")
    again = run("build", cwd=tmp_path)
    assert again.stdout.splitlines() == [again.stdout.splitlines()[-1]]
    assert again.stdout.startswith("nothing to render: 2 clips up to date")


def test_verify_names_a_flipped_byte(write_spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """One flipped byte in any clip makes verify exit 1 naming that clip."""
    write_spec(SPEC)
    assert run("build", cwd=tmp_path).returncode == 0
    clip = sorted((tmp_path / "greetings" / "clips").glob("en_bye*"))[0]
    data = bytearray(clip.read_bytes())
    data[len(data) // 2] ^= 0x01
    clip.write_bytes(bytes(data))
    out = run("verify", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.startswith("greetkit: en_bye (48000 Hz") and "checksum mismatch" in out.stderr
    assert "Traceback" not in out.stderr


def test_malformed_spec_exits_2_without_traceback_or_writes(write_spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The line-numbered error, exit 2, and greetings/ untouched."""
    write_spec(SPEC)
    assert run("build", cwd=tmp_path).returncode == 0
    store = tmp_path / "greetings"
    before = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}
    write_spec(SPEC.replace("    en: \"Bye!\"", "    de: \"Tschüss!\""))
    out = run("build", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == ("voices.yaml:9: phrases.bye.de: unknown language 'de' for "
                                  "phrase 'bye'; declare it under 'languages:' or choose one of "
                                  "'en'")
    assert {p: p.read_bytes() for p in store.rglob("*") if p.is_file()} == before


def test_list_without_a_build_says_what_to_do(tmp_path: Path) -> None:
    """No manifest: exit 1 with the fix."""
    with pytest.raises(SystemExit) as info:
        main(["list", "-c", str(tmp_path / "voices.yaml")])
    assert info.value.code == 1


def test_gc_dry_run_lists_without_deleting(write_spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """gc -n shows what an edited phrase left behind and keeps it."""
    write_spec(SPEC)
    run("build", cwd=tmp_path)
    write_spec(SPEC.replace("Bye!", "Bye bye!"))
    run("build", cwd=tmp_path)
    out = run("gc", "--dry-run", cwd=tmp_path)
    assert out.stdout.strip().endswith("would delete 1 files")
    assert len(list((tmp_path / "greetings" / "clips").iterdir())) == 3
    assert run("gc", cwd=tmp_path).stdout.strip().endswith("deleted 1 files")
    assert run("verify", cwd=tmp_path).returncode == 0


def test_build_strict_reports_the_bank_then_exits_1_on_drafts(write_spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """--strict with edge unreachable: the drafts are built, published and reported as
    usual, then one '--strict' line naming them and exit 1 (the policy is the library's)."""
    write_spec(SPEC.replace("engine: espeak", "engine: edge").replace(
        "{voices: {espeak: en-us}}", "{voices: {edge: en-US-AvaNeural, espeak: en-us}}"))
    out = run("build", "--strict", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stdout.splitlines()[-1].startswith("2 rendered, 0 reused, 2 drafts, 0 failed")
    drafted = [line for line in out.stderr.splitlines() if line.startswith("draft: ")]
    assert len(drafted) == 1 and "edge unavailable: " in drafted[0]
    assert set(drafted[0].split(": ")[1].split(", ")) == {"en_default", "en_bye"}
    assert out.stderr.splitlines()[-1] == (
        "greetkit: --strict: 2 clips are drafts (en_bye, en_default); build where the "
        "preferred engine is reachable")
    assert "Traceback" not in out.stderr
    manifest = json.loads((tmp_path / "greetings" / "manifest.json").read_text())
    assert [c["draft"] for c in manifest["clips"]] == [True, True]
