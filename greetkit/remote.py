"""Ship a bank to a fleet: publish a store to object storage, pull a version, roll back.

A remote bank has the layout of a local store (see :mod:`greetkit.store`), so a store
directory served by any static web server is also a valid (read-only) source::

    <url>/manifest.json             the current version (a copy of manifests/<v>.json)
    <url>/manifests/<version>.json  every published version, written once (create-only)
    <url>/clips/<name>.wav          content-addressed clips, written once (create-only)

Publishing uploads the clips the remote lacks, then the new version's manifest, then the
``manifest.json`` pointer, so a reader sees the previous version or the new one, never a mix.
Clip and version uploads refuse to overwrite (``mode="create"``): of two publishers racing
for the same version number, the loser renumbers and tries again, and no version is mixed.

Pulling fetches the manifest, downloads only the clips the local store lacks, checks each
against its sha256, and publishes locally with the store's atomic rules (temp file, fsync,
rename, manifest last): a pull killed at any moment leaves the previous local bank intact,
and running it again finishes the job.

Locations go through `obstore <https://developmentseed.org/obstore/>`_ (``fleet`` extra):
``s3://bucket/prefix``, ``gs://``, ``az://``, ``file:///dir`` and read-only ``https://``
(``http://`` too, for a loopback or internal server). Credentials and endpoints come from
the standard environment variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_REGION``, ``AWS_ENDPOINT_URL``, ``AWS_ALLOW_HTTP=true``; ``GOOGLE_*``; ``AZURE_*``),
never from voices.yaml or the manifest.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlparse

from greetkit.errors import MissingExtra, RemoteError, StoreError
from greetkit.manifest import (
    MANIFEST_NAME,
    MANIFESTS_DIR,
    MAX_MANIFEST_BYTES,
    Manifest,
    decode_json,
    version_name,
)
from greetkit.store import CLIPS_DIR, Store, atomic_write, sha256_file

#: Transfers in flight at once (uploads or downloads).
DEFAULT_CONCURRENCY = 16
#: Attempts per request on throttling, 5xx and timeouts; obstore itself retries each
#: attempt with exponential backoff (up to 10 times), this covers errors it does not.
ATTEMPTS = 2
_T = TypeVar("_T")

#: ``progress(done, total, name)`` after each object transferred.
Progress = Callable[[int, int, str], None]


class ChecksumMismatch(RemoteError):
    """A downloaded object's sha256 differs from the manifest's."""


@dataclass
class TransferResult:
    """What a publish or pull did."""

    url: str
    version: int
    clips: int = 0  # clip files the version names
    transferred: list[str] = field(default_factory=list)  # keys uploaded / downloaded
    bytes: int = 0
    requests: int = 0
    seconds: float = 0.0
    changed: bool = True  # False: the destination already had this version current


def _needs_obstore() -> Any:
    try:
        import obstore
    except ImportError as exc:
        raise MissingExtra("publishing and pulling banks", "fleet") from exc
    return obstore


#: A PEM file of an extra root CA to trust for ``https://`` locations (a private CDN or an
#: internal CA); the system's roots stay trusted too.
CA_BUNDLE_ENV = "GREETKIT_CA_BUNDLE"
#: A CA bundle larger than this is not a CA bundle.
_MAX_CA_BYTES = 1 << 20


def _http_store(url: str) -> Any:
    from obstore.store import HTTPStore

    if TYPE_CHECKING:
        from obstore.store import ClientConfig
    options: ClientConfig = {}
    if url.startswith("http://"):
        options["allow_http"] = True
    ca = os.environ.get(CA_BUNDLE_ENV, "").strip()
    if ca and url.startswith("https://"):
        try:
            with open(ca, "rb") as f:
                pem = f.read(_MAX_CA_BYTES + 1)
        except OSError as exc:
            raise RemoteError(f"{CA_BUNDLE_ENV}={ca}: cannot read it ({exc.strerror}); point it "
                              "at a PEM file or unset it") from exc
        if len(pem) > _MAX_CA_BYTES or b"-----BEGIN CERTIFICATE-----" not in pem:
            raise RemoteError(f"{CA_BUNDLE_ENV}={ca}: not a PEM certificate; point it at the "
                              "CA's .pem file or unset it")
        options["root_certificate"] = pem
    return HTTPStore.from_url(url.rstrip("/") + "/", client_options=options or None)


class ObjectStore:
    """Requests to one location: GET, create-only or overwriting PUT, LIST, each retried on
    transient errors and failing as one :class:`RemoteError` line that says what to do."""

    def __init__(self, url: str, store: Any, *, writable: bool) -> None:
        self.url = url
        #: The obstore store behind the location.
        self.store = store
        self.writable = writable
        #: Requests made (retries included), for the transfer summary.
        self.requests = 0

    async def call(self, what: str, make: Callable[[], Awaitable[_T]]) -> _T:
        """One request with retries and jittered exponential backoff on transient errors."""
        from obstore.exceptions import (
            AlreadyExistsError,
            NotFoundError,
            PermissionDeniedError,
            PreconditionError,
            UnauthenticatedError,
        )

        permanent = (AlreadyExistsError, NotFoundError, PermissionDeniedError,
                     PreconditionError, UnauthenticatedError, RemoteError)
        for attempt in range(ATTEMPTS):
            self.requests += 1
            try:
                return await make()
            except permanent:
                raise
            except Exception as exc:  # obstore's GenericError: 5xx, timeouts, resets, 4xx
                if not _transient(exc):
                    raise
                if attempt == ATTEMPTS - 1:
                    raise RemoteError(f"{self.url}: {what} failed after {ATTEMPTS} attempts: "
                                      f"{_first_line(exc)}") from exc
                await asyncio.sleep(min(8.0, 0.25 * 2 ** attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")  # pragma: no cover

    async def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        """The object's bytes; an object larger than ``max_bytes`` is refused from its size,
        before its body is read."""
        import obstore

        def fetch_now() -> bytes:
            result = obstore.get(self.store, key)
            size = int(result.meta["size"])
            if max_bytes is not None and size > max_bytes:
                raise RemoteError(f"{self.url}/{key}: {size} bytes, more than the {max_bytes} "
                                  "it can be; publish the bank again")
            return bytes(result.bytes())

        # obstore's blocking calls in worker threads, not its *_async ones: a Rust future
        # still running when asyncio.run() closes its loop (a cancelled sibling, a racing
        # publisher's conflict) calls back into the closed loop and aborts the process at
        # exit (seen as exit -6 after a successful publish).
        async def fetch() -> bytes:
            return await asyncio.to_thread(fetch_now)

        try:
            return await self.call(f"GET {key}", fetch)
        except Exception as exc:
            raise self.explain(exc, key) from exc

    async def put(self, key: str, data: bytes, *, create: bool) -> bool:
        """Upload; with ``create`` an existing object is left alone and False returned."""
        import obstore
        from obstore.exceptions import AlreadyExistsError

        self.require_writable()
        mode: Literal["create", "overwrite"] = "create" if create else "overwrite"
        try:
            await self.call(f"PUT {key}",
                             lambda: asyncio.to_thread(obstore.put, self.store, key, data,
                                                       mode=mode))
        except AlreadyExistsError:
            return False
        except Exception as exc:
            raise self.explain(exc, key) from exc
        return True

    async def list(self, prefix: str) -> list[str]:
        import obstore
        from obstore.exceptions import NotFoundError

        def list_all() -> list[str]:
            return [str(meta["path"]) for batch in obstore.list(self.store, prefix)
                    for meta in batch]

        async def listing() -> list[str]:
            return await asyncio.to_thread(list_all)

        try:
            return await self.call(f"LIST {prefix}", listing)
        except NotFoundError:  # a local directory that does not exist yet
            return []
        except Exception as exc:
            if _status(exc) == 404:  # no such bucket yet: created by the first upload
                return []
            raise self.explain(exc, prefix) from exc

    def explain(self, exc: BaseException, key: str) -> BaseException:
        """A one-line :class:`RemoteError` saying what to do about ``exc``."""
        from obstore.exceptions import (
            NotFoundError,
            PermissionDeniedError,
            UnauthenticatedError,
        )

        if isinstance(exc, RemoteError):
            return exc
        if isinstance(exc, NotFoundError):
            if key == MANIFEST_NAME:
                return RemoteError(f"{self.url}: nothing published here (no {MANIFEST_NAME}); "
                                   "run 'greetkit publish' first or check the URL")
            return RemoteError(f"{self.url}: {key} not found (404); publish the bank again")
        if isinstance(exc, PermissionDeniedError | UnauthenticatedError):
            return RemoteError(f"{self.url}: access denied (403) for {key}; check the "
                               "credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                               "GOOGLE_APPLICATION_CREDENTIALS or AZURE_STORAGE_*)")
        text = _first_line(exc)
        if "403" in text or "AccessDenied" in text or "SignatureDoesNotMatch" in text \
                or "InvalidAccessKeyId" in text:
            return RemoteError(f"{self.url}: access denied (403) for {key}; check the "
                               "credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")
        if "404" in text or "NoSuchBucket" in text:
            return RemoteError(f"{self.url}: {key} not found (404); nothing published here")
        return RemoteError(f"{self.url}: {key}: {text}")

    def require_writable(self) -> None:
        if not self.writable:
            raise RemoteError(f"{self.url}: https:// locations are read-only; publish to the "
                              "bucket behind it (s3://, gs://, az://)")



class Remote:
    """A bank at a URL. Use :meth:`open`."""

    def __init__(self, url: str, store: Any, *, writable: bool,
                 concurrency: int = DEFAULT_CONCURRENCY) -> None:
        self.url = url
        self.objects = ObjectStore(url, store, writable=writable)
        self.concurrency = max(1, concurrency)

    @property
    def writable(self) -> bool:
        """False for read-only locations (https://)."""
        return self.objects.writable

    @classmethod
    def open(cls, url: str, *, concurrency: int = DEFAULT_CONCURRENCY) -> Remote:
        """Connect to ``url`` (nothing is requested yet). Raises :class:`RemoteError` for a
        scheme greetkit cannot use."""
        _needs_obstore()
        from obstore.store import LocalStore, from_url

        scheme = urlparse(url).scheme.lower()
        try:
            if scheme in ("http", "https"):
                return cls(url, _http_store(url), writable=False, concurrency=concurrency)
            if scheme == "file":
                path = Path(urlparse(url).path)
                path.mkdir(parents=True, exist_ok=True)
                return cls(url, LocalStore(path), writable=True, concurrency=concurrency)
            if scheme in ("s3", "s3a", "gs", "az", "abfs", "abfss", "azure"):
                return cls(url, from_url(url, **_env_config(scheme)), writable=True,
                           concurrency=concurrency)
        except (OSError, ValueError, RuntimeError) as exc:
            raise RemoteError(f"{url}: cannot open: {_first_line(exc)}") from exc
        raise RemoteError(f"{url}: unsupported location; use s3://, gs://, az://, file:// "
                          "or https://")

    # -- manifests ------------------------------------------------------------------------
    async def _manifest(self, version: int | None) -> tuple[Manifest, bytes]:
        key = MANIFEST_NAME if version is None else f"{MANIFESTS_DIR}/{version_name(version)}"
        try:
            raw = await self.objects.get(key, max_bytes=MAX_MANIFEST_BYTES)
        except RemoteError as exc:
            if version is not None and "not found" in str(exc):
                raise RemoteError(f"{self.url}: no version {version} published here") from exc
            raise
        source = f"{self.url}/{key}"
        try:
            # The same size and nesting caps as a local manifest: a hostile remote one must
            # be one line, not a RecursionError or a decoder eating the machine.
            data = decode_json(raw, source, fix="publish the bank again")
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            return Manifest.from_json(data, source=source), raw
        except StoreError as exc:
            raise RemoteError(str(exc)) from exc
        except ValueError as exc:
            raise RemoteError(f"{source}: not a greetkit manifest ({exc}); publish "
                              "the bank again") from exc

    async def _versions(self) -> list[int]:
        names = await self.objects.list(MANIFESTS_DIR)
        return sorted(int(Path(n).stem) for n in names
                      if n.endswith(".json") and Path(n).stem.isdigit())

    def versions(self) -> list[int]:
        """Every version published here, oldest first (not for https://: no listing)."""
        return asyncio.run(self._versions())

    def current(self) -> Manifest:
        """The current version's manifest."""
        return asyncio.run(self._manifest(None))[0]

    # -- publish --------------------------------------------------------------------------
    def publish(self, store: Store, *, progress: Progress | None = None) -> TransferResult:
        """Upload ``store``'s current bank as the next version; see the module docs."""
        return asyncio.run(self._publish(store, progress))

    async def _publish(self, store: Store, progress: Progress | None) -> TransferResult:
        self.objects.require_writable()
        started = time.monotonic()
        self.objects.requests = 0
        local = store.manifest()
        if local is None:
            raise StoreError(f"{store.manifest_path}: no manifest; run 'greetkit build' "
                             "before publishing")
        problems = store.verify(local)
        if problems:
            raise StoreError(f"{store.root}: cannot publish a damaged bank: {problems[0]}; "
                             "run 'greetkit verify'")
        files = _files(local)
        present = {Path(n).name for n in await self.objects.list(CLIPS_DIR)}
        missing = [f for f in files if Path(f).name not in present]
        result = TransferResult(self.url, 0, clips=len(files))

        async def upload(rel: str) -> None:
            data = store.path_of(rel).read_bytes()
            if await self.objects.put(rel, data, create=True):
                result.transferred.append(rel)
                result.bytes += len(data)

        await self._each(missing, upload, progress)
        # The version: create-only, so a racing publisher cannot overwrite ours (or we
        # theirs); the loser takes the next number.
        for _ in range(8):
            versions = await self._versions()
            version = (versions[-1] + 1) if versions else 1
            manifest = _renumbered(local, version)
            data = manifest.dumps().encode("utf-8")
            key = f"{MANIFESTS_DIR}/{version_name(version)}"
            if await self.objects.put(key, data, create=True):
                break
        else:
            raise RemoteError(f"{self.url}: another publisher keeps taking the next version "
                              "number; try again")
        await self.objects.put(MANIFEST_NAME, data, create=False)  # the pointer, last
        result.version = version
        result.requests = self.objects.requests
        result.seconds = time.monotonic() - started
        return result

    # -- pull -----------------------------------------------------------------------------
    def pull(self, store: Store, *, version: int | None = None,
             progress: Progress | None = None) -> TransferResult:
        """Bring ``version`` (default: the current one) into ``store`` and make it current
        there; see the module docs."""
        return asyncio.run(self._pull(store, version, progress))

    async def _pull(self, store: Store, version: int | None,
                    progress: Progress | None) -> TransferResult:
        started = time.monotonic()
        self.objects.requests = 0
        manifest, raw = await self._manifest(version)
        files = _files(manifest)
        sums = _checksums(manifest)
        for rel in files:
            store.path_of(rel)  # refuses a manifest whose paths leave the store
        result = TransferResult(self.url, manifest.version, clips=len(files))
        with store.lock():
            store.clean_temp()
            current = store.manifest() if store.manifest_path.exists() else None
            if current is not None and current.dumps() == manifest.dumps() \
                    and not store.verify(manifest):
                result.changed = False
                result.requests = self.objects.requests
                result.seconds = time.monotonic() - started
                return result
            store.prepare()
            missing = [rel for rel in files if not _have(store, rel, sums[rel])]

            async def download(rel: str) -> None:
                data = await self.objects.get(rel)
                if hashlib.sha256(data).hexdigest() != sums[rel][0] or \
                        len(data) != sums[rel][1]:
                    raise ChecksumMismatch(
                        f"{self.url}: {rel}: checksum mismatch (the remote object is "
                        "corrupted); the local bank is unchanged; publish the bank again")
                await asyncio.to_thread(atomic_write, store.path_of(rel), data)
                result.transferred.append(rel)
                result.bytes += len(data)

            await self._each(missing, download, progress)
            store.install(manifest, raw)
        result.requests = self.objects.requests
        result.seconds = time.monotonic() - started
        return result

    # -- rollback -------------------------------------------------------------------------
    def rollback(self, version: int) -> Manifest:
        """Point ``manifest.json`` at published ``version`` again, deleting nothing.
        Refuses a version whose clips are not all present remotely."""
        return asyncio.run(self._rollback(version))

    async def _rollback(self, version: int) -> Manifest:
        self.objects.require_writable()
        manifest, raw = await self._manifest(version)
        present = {Path(n).name for n in await self.objects.list(CLIPS_DIR)}
        lost = [f for f in _files(manifest) if Path(f).name not in present]
        if lost:
            raise RemoteError(f"{self.url}: version {version} cannot be restored: {lost[0]} "
                              f"is missing ({len(lost)} files in all)")
        await self.objects.put(MANIFEST_NAME, raw, create=False)
        return manifest

    # -- helpers --------------------------------------------------------------------------
    async def _each(self, items: Sequence[str], job: Callable[[str], Awaitable[None]],
                    progress: Progress | None) -> None:
        """Run ``job`` over ``items`` with at most ``concurrency`` in flight; the first
        failure cancels the rest and is raised."""
        queue = list(reversed(items))
        done = 0

        async def worker() -> None:
            nonlocal done
            while queue:
                name = queue.pop()
                await job(name)
                done += 1
                if progress:
                    progress(done, len(items), name)

        workers = [asyncio.ensure_future(worker())
                   for _ in range(min(self.concurrency, len(items)))]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise


#: Environment variables of :func:`pull_from_environment` (and of greetkit.preload for the
#: bank directory and pinned version): where the bank is published, where it goes, which version.
SOURCE_ENV = "GREETKIT_SOURCE"
BANK_ENV = "GREETKIT_BANK"
VERSION_ENV = "GREETKIT_BANK_VERSION"


def pull_from_environment(environ: Mapping[str, str] | None = None, *,
                          progress: Progress | None = None) -> TransferResult | None:
    """Pull the bank published at ``GREETKIT_SOURCE`` into ``GREETKIT_BANK`` (default
    ``greetings``), the version ``GREETKIT_BANK_VERSION`` pins or else the current one.

    Returns None when ``GREETKIT_SOURCE`` is unset (nothing to pull). What the
    ``livekit.plugins.greetkit`` plugin runs in ``python -m livekit.agents download-files``.
    Raises :class:`RemoteError` (a bad version number included) or :class:`StoreError`.
    """
    env = os.environ if environ is None else environ
    url = env.get(SOURCE_ENV, "").strip()
    if not url:
        return None
    raw = env.get(VERSION_ENV, "").strip()
    if raw and not (raw.isdigit() and int(raw) > 0):
        raise RemoteError(f"{VERSION_ENV}={raw!r} is not a version number; set it to a "
                          "published version (e.g. 3) or unset it for the current one")
    version = int(raw) if raw else None
    store = Store(Path(env.get(BANK_ENV, "").strip() or "greetings"))
    return Remote.open(url).pull(store, version=version, progress=progress)


def _env_config(scheme: str) -> dict[str, Any]:
    """Settings obstore does not take from the environment by itself (AWS_ENDPOINT_URL)."""
    config: dict[str, Any] = {}
    if scheme.startswith("s3"):
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT")
        if endpoint:
            config["endpoint"] = endpoint
            config["virtual_hosted_style_request"] = False
        if os.environ.get("AWS_ALLOW_HTTP", "").lower() in ("1", "true", "yes"):
            config["client_options"] = {"allow_http": True}
    return config


def _files(manifest: Manifest) -> list[str]:
    """Every clip file a manifest names, at every rate, without duplicates."""
    return list(_checksums(manifest))


def _checksums(manifest: Manifest) -> dict[str, tuple[str, int]]:
    """file -> (sha256, bytes) for every clip file a manifest names."""
    return {f.file: (f.sha256, f.bytes) for c in manifest.clips for f in c.files.values()}


def _have(store: Store, rel: str, expected: tuple[str, int]) -> bool:
    path = store.path_of(rel)
    try:
        if path.stat().st_size != expected[1]:
            return False
        return sha256_file(path) == expected[0]
    except OSError:
        return False


def _renumbered(manifest: Manifest, version: int) -> Manifest:
    import dataclasses

    return dataclasses.replace(manifest, version=version)


def _status(exc: BaseException) -> int | None:
    """The HTTP status in an obstore error message, if any."""
    found = re.search(r"status code: (\d{3})", str(exc))
    return int(found.group(1)) if found else None


def _transient(exc: BaseException) -> bool:
    """Whether trying again can help: throttling, 5xx, timeouts and resets (no status)."""
    status = _status(exc)
    return status is None or status >= 500 or status in (408, 429)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
