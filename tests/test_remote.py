"""greetkit.remote against real servers: SeaweedFS (S3), a file:// directory and a static
HTTP server. Publish, pull, pinned versions, rollback, races, corruption and SIGKILL."""

from __future__ import annotations

import functools
import http.server
import os
import random
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("obstore")

from bank import build_greeting, clip_files, greeting_text
from download_files import download_files
from seaweed import BUCKET, S3Server, Unavailable, seaweedfs

from greetkit.cli import cli
from greetkit.errors import RemoteError
from greetkit.remote import CA_BUNDLE_ENV, ChecksumMismatch, Remote
from greetkit.store import Store


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    """A SeaweedFS S3 server on loopback for this module (skipped only if it cannot start)."""
    try:
        with seaweedfs() as server:
            yield server
    except Unavailable as exc:
        pytest.skip(f"SeaweedFS unavailable: {exc}")


@pytest.fixture
def s3_env(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for k, v in s3.env().items():
        monkeypatch.setenv(k, v)
    return s3.env()


@pytest.fixture
def bucket(s3_env: dict[str, str]) -> str:
    """A fresh prefix in the server's bucket for one test."""
    return f"s3://{BUCKET}/gk-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def project(tmp_path: Path) -> Callable[[str], Store]:
    """Build the two-phrase spec with ``text`` as the default greeting; returns the store."""
    config = tmp_path / "src" / "voices.yaml"
    config.parent.mkdir()

    def make(text: str) -> Store:
        return Store(build_greeting(config, text))

    return make


def _greetkit(args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run the real CLI (error mapping included) in a subprocess."""
    return subprocess.run([sys.executable, "-m", "greetkit.cli", *args], capture_output=True,
                          text=True, timeout=300, env=dict(os.environ))


def test_publish_then_pull_gives_an_identical_verified_bank(
        bucket: str, project: Callable[[str], Store], tmp_path: Path) -> None:
    """publish → pull into an empty directory: `greetkit verify` passes, clips identical."""
    src = project("Hello there.")
    runner = CliRunner()
    out = runner.invoke(cli, ["publish", bucket, "-o", str(src.root), "-q"])
    assert out.exit_code == 0, out.output
    assert "version 1: 4 of 4 clip files uploaded" in out.output
    dest = tmp_path / "pulled"
    out = runner.invoke(cli, ["pull", bucket, "-o", str(dest), "-q"])
    assert out.exit_code == 0, out.output
    out = runner.invoke(cli, ["verify", "-o", str(dest)])
    assert out.exit_code == 0, out.output
    assert clip_files(Store(dest)) == clip_files(src)
    assert Store(dest).versions() == [1]


def test_pull_of_a_pinned_version(bucket: str, project: Callable[[str], Store],
                                  tmp_path: Path) -> None:
    """After v2 is published, pull --version 1 gives v1, and a plain pull gives v2."""
    remote = Remote.open(bucket)
    remote.publish(project("Hello there."))
    result = remote.publish(project("Welcome back."))
    assert result.version == 2
    assert len(result.transferred) == 2  # 'bye' clips are shared with v1
    dest = Store(tmp_path / "pulled")
    remote.pull(dest, version=1)
    assert greeting_text(dest) == "Hello there." and dest.verify() == []
    remote.pull(dest)
    assert greeting_text(dest) == "Welcome back." and dest.verify() == []
    assert dest.versions() == [1, 2]


def test_remote_rollback_then_pull_gives_the_old_version(
        bucket: str, project: Callable[[str], Store], tmp_path: Path) -> None:
    """greetkit rollback URL --to 1 moves the remote pointer; the next pull gets v1."""
    remote = Remote.open(bucket)
    remote.publish(project("Hello there."))
    remote.publish(project("Welcome back."))
    out = CliRunner().invoke(cli, ["rollback", bucket, "--to", "1"])
    assert out.exit_code == 0, out.output
    assert "current version is now 1" in out.output
    dest = Store(tmp_path / "pulled")
    remote.pull(dest)
    assert greeting_text(dest) == "Hello there."
    assert remote.versions() == [1, 2]  # nothing deleted


def test_noop_pull_fetches_only_the_pointer(bucket: str, project: Callable[[str], Store],
                                            tmp_path: Path) -> None:
    """A second pull with nothing new makes one request (manifest.json) and writes nothing."""
    remote = Remote.open(bucket)
    remote.publish(project("Hello there."))
    dest = Store(tmp_path / "pulled")
    remote.pull(dest)
    before = {p: p.stat().st_mtime_ns for p in dest.root.rglob("*") if p.is_file()}
    again = remote.pull(dest)
    assert not again.changed and again.requests == 1 and again.transferred == []
    assert {p: p.stat().st_mtime_ns for p in dest.root.rglob("*") if p.is_file()} == before


def test_corrupted_remote_clip_is_refused_by_name(
        bucket: str, project: Callable[[str], Store], tmp_path: Path) -> None:
    """A clip whose bytes differ from the manifest's sha256 is named; the local bank stays."""
    import obstore

    remote = Remote.open(bucket)
    remote.publish(project("Hello there."))
    dest = Store(tmp_path / "pulled")
    remote.pull(dest)
    before = dest.manifest_path.read_bytes()
    v2 = remote.publish(project("Welcome back."))
    bad = v2.transferred[0]
    obstore.put(remote.objects.store, bad, b"RIFF" + b"\0" * 100)  # the bucket was tampered with
    with pytest.raises(ChecksumMismatch, match=f"{bad}: checksum mismatch"):
        remote.pull(dest)
    assert dest.manifest_path.read_bytes() == before
    assert dest.verify() == [] and greeting_text(dest) == "Hello there."
    out = _greetkit(["pull", bucket, "-o", str(dest.root), "-q"])
    assert out.returncode == 1 and f"{bad}: checksum mismatch" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_two_concurrent_publishes_leave_valid_versions(
        bucket: str, project: Callable[[str], Store], tmp_path: Path,
        s3_env: dict[str, str]) -> None:
    """Two publishers at once: each gets its own version number, the pointer names a
    complete version, and both versions pull and verify."""
    a = project("Hello there.")
    b_root = tmp_path / "b"
    shutil.copytree(a.root, b_root)
    project("Welcome back.")  # store a is now the second bank; b keeps the first
    env = {**os.environ, **s3_env}
    procs = [subprocess.Popen([sys.executable, "-m", "greetkit.cli", "publish", bucket, "-o",
                               str(root), "-q"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT) for root in (a.root, b_root)]
    outputs = [p.communicate(timeout=120)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    remote = Remote.open(bucket)
    assert remote.versions() == [1, 2]
    texts = set()
    for v in (1, 2):
        dest = Store(tmp_path / f"v{v}")
        remote.pull(dest, version=v)
        assert dest.verify() == []
        texts.add(greeting_text(dest))
    assert texts == {"Hello there.", "Welcome back."}
    assert remote.current().version in (1, 2)


def test_livekit_download_files_pulls_from_s3(bucket: str, s3_env: dict[str, str],
                                             project: Callable[[str], Store],
                                             tmp_path: Path) -> None:
    """`python -m livekit.agents download-files` with GREETKIT_SOURCE=s3://... and the AWS_*
    variables pulls a bank that verifies and whose clips are byte-identical."""
    src = project("Hello there.")
    Remote.open(bucket).publish(src)
    bank = tmp_path / "worker" / "greetings"
    run = download_files(tmp_path, GREETKIT_SOURCE=bucket, GREETKIT_BANK=str(bank), **s3_env)
    assert run.returncode == 0, run.stderr
    assert "greetkit: pulled" in run.stderr, run.stderr
    assert Store(bank).verify() == []
    assert clip_files(Store(bank)) == clip_files(src)


def test_nothing_published_is_one_line(bucket: str, tmp_path: Path) -> None:
    """Pulling from an empty prefix says nothing is published there (404), exit 1."""
    out = _greetkit(["pull", bucket, "-o", str(tmp_path / "x")])
    assert out.returncode == 1
    assert "nothing published here" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_wrong_credentials_are_one_line(bucket: str, project: Callable[[str], Store],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong secret key is reported as access denied, naming what to check."""
    src = project("Hello there.")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(RemoteError, match=r"access denied \(403\).*AWS_ACCESS_KEY_ID"):
        Remote.open(bucket).publish(src)


# -- file:// and a static HTTP server ---------------------------------------------------

@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A static HTTP server on 127.0.0.1 serving a directory (like a bucket behind a CDN)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/bank"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        # A client that stops reading (a refused oversized manifest) is expected here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


def test_pull_over_http_from_a_static_server(
        http_root: tuple[Path, str], project: Callable[[str], Store], tmp_path: Path) -> None:
    """publish to file://, serve that directory over HTTP, pull pinned and current."""
    root, url = http_root
    remote = Remote.open(f"file://{root / 'bank'}")
    remote.publish(project("Hello there."))
    remote.publish(project("Welcome back."))
    dest = Store(tmp_path / "pulled")
    Remote.open(url).pull(dest, version=1)
    assert greeting_text(dest) == "Hello there." and dest.verify() == []
    Remote.open(url).pull(dest)
    assert greeting_text(dest) == "Welcome back." and dest.verify() == []
    with pytest.raises(RemoteError, match="read-only"):
        Remote.open(url).publish(dest)


@pytest.fixture
def https_root(tmp_path: Path) -> Iterator[tuple[Path, str, Path]]:
    """A static HTTPS server on 127.0.0.1 serving a directory, with a certificate signed by a
    throwaway test CA made here with the openssl command: (directory, URL, CA file)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test CA (Debian: openssl)")
    tls = tmp_path / "tls"
    tls.mkdir()

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=tls, check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=greetkit-test-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr",
        "-subj", "/CN=127.0.0.1")
    (tls / "ext").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                             "extendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "srv.pem", "-days", "2", "-extfile", "ext")
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls / "srv.pem", tls / "srv.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"https://127.0.0.1:{server.server_address[1]}/bank", tls / "ca.pem"
    finally:
        server.shutdown()
        server.server_close()


def test_pull_over_https_from_a_static_server(
        https_root: tuple[Path, str, Path], project: Callable[[str], Store], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """publish to file://, serve that directory over HTTPS (a CDN's shape), pull pinned and
    current, trusting the server's CA through GREETKIT_CA_BUNDLE; https:// is read-only."""
    root, url, ca = https_root
    remote = Remote.open(f"file://{root / 'bank'}")
    remote.publish(project("Hello there."))
    remote.publish(project("Welcome back."))
    monkeypatch.setenv(CA_BUNDLE_ENV, str(ca))
    dest = Store(tmp_path / "pulled")
    Remote.open(url).pull(dest, version=1)
    assert greeting_text(dest) == "Hello there." and dest.verify() == []
    Remote.open(url).pull(dest)
    assert greeting_text(dest) == "Welcome back." and dest.verify() == []
    published = {p.name: p.read_bytes() for p in (root / "bank" / "clips").iterdir()}
    assert {p.name: p.read_bytes() for p in (dest.root / "clips").iterdir()} == published
    with pytest.raises(RemoteError, match="read-only"):
        Remote.open(url).publish(dest)


def test_https_with_an_untrusted_certificate_is_refused_in_one_line(
        https_root: tuple[Path, str, Path], project: Callable[[str], Store], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the CA the server's certificate is not trusted: one line, nothing written."""
    root, url, _ca = https_root
    Remote.open(f"file://{root / 'bank'}").publish(project("Hello there."))
    monkeypatch.delenv(CA_BUNDLE_ENV, raising=False)
    dest = tmp_path / "pulled"
    with pytest.raises(RemoteError) as info:
        Remote.open(url).pull(Store(dest))
    assert "\n" not in str(info.value) and url.split("/bank")[0] in str(info.value)
    assert not (dest / "manifest.json").exists()


# -- SIGKILL at random moments ------------------------------------------------------------

KILLS = 10


def _kill_during(cmd: list[str], delay: float) -> None:
    proc = subprocess.Popen(cmd, env=dict(os.environ), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def _ok(args: list[str]) -> None:
    out = _greetkit(args)
    assert out.returncode == 0, out.stdout + out.stderr


def _kill_cycle(publish_url: str, pull_url: str, tmp_path: Path) -> None:
    """KILLS rounds: SIGKILL a publish of a new 120-clip bank at a random moment, check the
    remote's current version pulls complete, SIGKILL a pull at a random moment, check the
    local bank verifies, then re-run both and check they finish with the new bank."""
    from synthetic import synthetic_store

    rng = random.Random(16)
    dest = tmp_path / "pulled"
    for i in range(KILLS):
        src = synthetic_store(tmp_path / f"src{i}", 120, seed=i)
        publish = ["publish", publish_url, "-o", str(src.root), "-q", "-j", "2"]
        _kill_during([sys.executable, "-m", "greetkit.cli", *publish], rng.uniform(0.2, 1.5))
        check = Store(tmp_path / f"check{i}")
        if i:  # the remote's current version is complete: it pulls and verifies
            _ok(["pull", pull_url, "-o", str(check.root), "-q"])
            assert check.verify() == []
        _ok(publish)
        pull = ["pull", pull_url, "-o", str(dest), "-q", "-j", "2"]
        _kill_during([sys.executable, "-m", "greetkit.cli", *pull], rng.uniform(0.2, 1.2))
        if Store(dest).manifest_path.exists():
            assert Store(dest).verify() == []  # the old bank or the new, never a mix
        _ok(pull)
        assert Store(dest).verify() == []
        current = Store(dest).manifest()
        assert current is not None and current.clips[0].files == \
            src.manifest().clips[0].files  # type: ignore[union-attr]


@pytest.mark.slow
def test_sigkill_during_publish_and_pull_s3(bucket: str, tmp_path: Path) -> None:
    """10 SIGKILLs of a publish and 10 of a pull against S3: never a broken version."""
    _kill_cycle(bucket, bucket, tmp_path)


@pytest.mark.slow
def test_sigkill_during_publish_and_pull_https(http_root: tuple[Path, str],
                                               tmp_path: Path) -> None:
    """The same with the pull side over HTTP from a static server (publish to file://)."""
    root, url = http_root
    _kill_cycle(f"file://{root / 'bank'}", url, tmp_path)


# -- hostile remote manifests --------------------------------------------------------------

@pytest.mark.parametrize("over", ["file", "http"])
def test_deeply_nested_remote_manifest_is_one_line_and_changes_nothing(
        over: str, http_root: tuple[Path, str], project: Callable[[str], Store],
        tmp_path: Path) -> None:
    """A remote manifest.json nested 100,000 levels deep (a RecursionError for a plain
    json.loads) is refused by the local manifest's nesting cap: exit 1, one line, no
    traceback, and the bank already pulled stays as it was."""
    root, http_url = http_root
    published = root / "bank"
    Remote.open(published.as_uri()).publish(project("Hello there."))
    dest = tmp_path / "dest"
    url = published.as_uri() if over == "file" else http_url
    assert _greetkit(["pull", url, "-o", str(dest)]).returncode == 0
    before = clip_files(Store(dest)), (dest / "manifest.json").read_bytes()
    (published / "manifest.json").write_bytes(b"[" * 100_000 + b"]" * 100_000)
    out = _greetkit(["pull", url, "-o", str(dest)])
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip().splitlines() == [
        f"greetkit: {url}/manifest.json: manifest nests 100000 levels deep (a manifest has at "
        "most 32); publish the bank again"]
    assert (clip_files(Store(dest)), (dest / "manifest.json").read_bytes()) == before


@pytest.mark.parametrize("over", ["file", "http"])
def test_oversized_remote_manifest_is_refused_from_its_size(
        over: str, http_root: tuple[Path, str], project: Callable[[str], Store],
        tmp_path: Path) -> None:
    """A 200 MB (sparse) remote manifest.json is refused from the size the store reports,
    before its body is read; nothing is written locally."""
    root, http_url = http_root
    published = root / "bank"
    Remote.open(published.as_uri()).publish(project("Hello there."))
    os.truncate(published / "manifest.json", 200_000_000)
    url = published.as_uri() if over == "file" else http_url
    with pytest.raises(RemoteError) as info:
        Remote.open(url).pull(Store(tmp_path / "dest"))
    assert str(info.value) == (f"{url}/manifest.json: 200000000 bytes, more than the "
                               "67108864 it can be; publish the bank again")
    assert not (tmp_path / "dest").exists()
