"""livekit.plugins.greetkit: LiveKit's own ``download-files`` step pulls the bank named by
GREETKIT_SOURCE (pinned by GREETKIT_BANK_VERSION) into GREETKIT_BANK. A file:// source here;
tests/test_remote.py runs the same step against SeaweedFS."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("obstore")
pytest.importorskip("livekit.agents")

from bank import build_greeting, clip_files, greeting_text
from download_files import download_files

from greetkit.remote import Remote
from greetkit.store import Store


@pytest.fixture
def published(tmp_path: Path) -> Callable[[str], Store]:
    """Build the spec with ``text`` as the greeting and publish it to ``tmp_path/remote``."""
    config = tmp_path / "src" / "voices.yaml"
    config.parent.mkdir()

    def publish(text: str) -> Store:
        store = Store(build_greeting(config, text))
        Remote.open((tmp_path / "remote").as_uri()).publish(store)
        return store

    return publish


def test_download_files_pulls_the_published_bank(published: Callable[[str], Store],
                                                 tmp_path: Path) -> None:
    """The step discovers the plugin and pulls a bank that verifies, byte-identical."""
    src = published("Hello there.")
    bank = tmp_path / "worker" / "greetings"
    bank.parent.mkdir()
    run = download_files(bank.parent, GREETKIT_SOURCE=(tmp_path / "remote").as_uri(),
                         GREETKIT_BANK=str(bank))
    assert run.returncode == 0, run.stderr
    assert "livekit.plugins.greetkit" in run.stderr
    assert "greetkit: pulled" in run.stderr and "version 1" in run.stderr, run.stderr
    assert Store(bank).verify() == []
    assert clip_files(Store(bank)) == clip_files(src)
    assert len(clip_files(src)) == 4


def test_download_files_pulls_the_pinned_version(published: Callable[[str], Store],
                                                 tmp_path: Path) -> None:
    """GREETKIT_BANK_VERSION=1 gives version 1 after version 2 is current."""
    published("Hello there.")
    published("Welcome back.")
    bank = tmp_path / "bank"
    run = download_files(tmp_path, GREETKIT_SOURCE=(tmp_path / "remote").as_uri(),
                         GREETKIT_BANK=str(bank), GREETKIT_BANK_VERSION="1")
    assert run.returncode == 0, run.stderr
    assert Store(bank).verify() == []
    assert greeting_text(Store(bank)) == "Hello there."


def test_default_bank_is_greetings_in_the_working_directory(
        published: Callable[[str], Store], tmp_path: Path) -> None:
    """Without GREETKIT_BANK the bank goes to ./greetings, where greetkit.load looks."""
    src = published("Hello there.")
    work = tmp_path / "app"
    work.mkdir()
    run = download_files(work, GREETKIT_SOURCE=(tmp_path / "remote").as_uri())
    assert run.returncode == 0, run.stderr
    assert clip_files(Store(work / "greetings")) == clip_files(src)


def test_failed_pull_is_one_line_and_the_step_goes_on(published: Callable[[str], Store],
                                                      tmp_path: Path) -> None:
    """Nothing published at the source: one error line, no traceback, exit 0, and a bank
    already pulled is left as it was."""
    src = published("Hello there.")
    bank = tmp_path / "bank"
    download_files(tmp_path, GREETKIT_SOURCE=(tmp_path / "remote").as_uri(),
                   GREETKIT_BANK=str(bank))
    before = clip_files(Store(bank))
    run = download_files(tmp_path, GREETKIT_SOURCE=(tmp_path / "empty").as_uri(),
                         GREETKIT_BANK=str(bank))
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    failed = [line for line in run.stderr.splitlines() if "greetkit: bank pull failed" in line]
    assert len(failed) == 1 and "manifest.json" in failed[0], run.stderr
    assert "finished downloading files for livekit.plugins.greetkit" in run.stderr
    assert clip_files(Store(bank)) == before == clip_files(src)
    assert Store(bank).verify() == []


def test_bad_pinned_version_is_one_line(tmp_path: Path) -> None:
    """GREETKIT_BANK_VERSION that is not a number names the variable and the fix."""
    run = download_files(tmp_path, GREETKIT_SOURCE=(tmp_path / "remote").as_uri(),
                         GREETKIT_BANK=str(tmp_path / "bank"), GREETKIT_BANK_VERSION="v7")
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert "GREETKIT_BANK_VERSION='v7' is not a version number" in run.stderr
    assert not (tmp_path / "bank").exists()


def test_no_source_pulls_nothing(tmp_path: Path) -> None:
    """With GREETKIT_SOURCE unset the plugin says so and writes nothing."""
    run = download_files(tmp_path)
    assert run.returncode == 0, run.stderr
    assert "GREETKIT_SOURCE is not set; no bank to pull" in run.stderr
    assert not (tmp_path / "greetings").exists()


@pytest.mark.slow
def test_wheel_ships_the_plugin_as_a_namespace_portion(tmp_path: Path) -> None:
    """greetkit's wheel holds livekit/plugins/greetkit/__init__.py and no livekit/__init__.py
    or livekit/plugins/__init__.py (which would shadow every other LiveKit plugin)."""
    import shutil
    import subprocess
    import sys
    import zipfile

    repo = Path(__file__).resolve().parent.parent
    src = tmp_path / "src"
    shutil.copytree(repo, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "*.egg-info", "greetings", "__pycache__", ".*_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                    str(tmp_path / "dist"), str(src)], check=True, timeout=600)
    (wheel,) = (tmp_path / "dist").glob("greetkit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "livekit/plugins/greetkit/__init__.py" in names
    assert "livekit/__init__.py" not in names and "livekit/plugins/__init__.py" not in names
    assert "greetkit/remote.py" in names
