"""``greetkit build``: voices.yaml -> rendered, normalized, stored clips -> manifest.

The pipeline reads top to bottom:

1. load and validate the spec (nothing is written if it is invalid);
2. take the store's lock and read the previous manifest;
3. check each preferred engine once; an unreachable one turns its clips into espeak drafts
   (:func:`greetkit.render.choose`);
4. compute each clip's content key; reuse clips whose key and files are unchanged;
5. render the rest through the render stage (:mod:`greetkit.render`: engine call with bounded
   concurrency per engine and the draft fallback, then the DSP chain per output rate), and
   write immutable clip files;
6. publish the new manifest last, atomically (only when something changed).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import time
from collections.abc import Callable
from concurrent.futures import Executor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from greetkit import __version__
from greetkit.engines import get_engine
from greetkit.errors import (
    AudioError,
    DraftsPresent,
    EngineError,
    GreetkitError,
    StoreError,
    WorkerError,
)
from greetkit.keys import content_key as content_key
from greetkit.keys import stale_reason
from greetkit.manifest import ClipEntry, EngineRecord, Manifest
from greetkit.pool import default_jobs, dsp_executor
from greetkit.render import (
    Rendered,
    RenderJob,
    assemble,
    choose,
    key_of,
    master,
    seed_of,
    synthesize,
    unusable,
)
from greetkit.spec import BASE_RATE, DRAFT_ENGINE, ClipSpec, Spec, load_spec
from greetkit.store import Store

#: Called as ``progress(key, status)`` when a clip finishes; status is one of
#: ``rendered``, ``reused``, ``draft``, ``failed``.
Progress = Callable[[str, str], None]


@dataclass
class BuildResult:
    """What a build did, for the summary line and for tools."""

    out: Path
    manifest: Manifest | None = None
    rendered: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    drafts: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    published: bool = False
    seconds: float = 0.0

    def check_strict(self) -> None:
        """The ``--strict`` policy: raise :class:`~greetkit.errors.DraftsPresent` (carrying
        this result) when any clip of the bank is a draft."""
        if self.drafts:
            keys = ", ".join(sorted(self.drafts))
            raise DraftsPresent(f"--strict: {len(self.drafts)} clips are drafts ({keys}); "
                                "build where the preferred engine is reachable", self)

    def summary(self) -> str:
        if not self.rendered and not self.failed:
            head = f"nothing to render: {len(self.reused)} clips up to date"
        else:
            head = f"{len(self.rendered)} rendered, {len(self.reused)} reused"
        version = f", version {self.manifest.version}" if self.manifest else ""
        return (f"{head}, {len(self.drafts)} drafts, {len(self.failed)} failed in "
                f"{self.seconds:.1f}s -> {self.out}{version}")


class _Builder:
    def __init__(self, spec: Spec, store: Store, *, force: bool,
                 progress: Progress | None, jobs: int = 1) -> None:
        self.spec = spec
        self.store = store
        self.force = force
        self.jobs = jobs
        self.progress = progress
        self.result = BuildResult(out=store.root)
        self.entries: dict[str, ClipEntry] = {}
        self.down: dict[str, str | None] = {}

    # -- 3. engines -------------------------------------------------------------------
    def unusable(self, name: str) -> str | None:
        """Why engine ``name`` cannot be used now, or None; checked at most once per build,
        and only for an engine some clip needs rendered (a no-op build checks nothing)."""
        if name not in self.down:
            self.down[name] = unusable(name)
        return self.down[name]

    # -- 4. plan ------------------------------------------------------------------------
    def plan(self, old: Manifest | None) -> list[RenderJob]:
        previous = old.by_key() if old else {}
        jobs = []
        for clip in self.spec.clips:
            before = previous.get(clip.key)
            if not self.force and before and self.reusable(before, clip):
                self.keep(before)
                continue
            try:  # the clip's engine, or its espeak draft while that engine is unreachable
                choice = choose(clip, self.unusable(clip.engine))
                key = key_of(clip, choice)
            except (GreetkitError, OSError) as exc:
                self.fail(clip.key, str(exc), previous)
                continue
            jobs.append(RenderJob(clip=clip, choice=choice, content_key=key,
                                  sample_rates=self.spec.sample_rates,
                                  project_dir=self.spec.project_dir))
        return jobs

    def keep(self, entry: ClipEntry) -> None:
        self.entries[entry.key] = entry
        self.result.reused.append(entry.key)
        if entry.draft:
            self.result.drafts[entry.key] = entry.draft_reason or "draft"
        self.notify(entry.key, "reused")

    def reusable(self, entry: ClipEntry, clip: ClipSpec) -> bool:
        """The stored clip is kept when it is not stale (the one rule, greetkit.keys) and its
        files are in place; a draft only while its preferred engine stays unreachable."""
        if stale_reason(entry, clip, self.spec.sample_rates) is not None:
            return False
        if entry.draft and not self.unusable(clip.engine):
            return False  # the real engine is back: replace the draft
        # Cheap check only (exists, size); 'greetkit verify' does the checksums.
        for f in entry.files.values():
            try:
                if self.store.path_of(f.file).stat().st_size != f.bytes:
                    return False
            except (OSError, StoreError):
                return False
        return True

    def fail(self, key: str, reason: str, previous: dict[str, ClipEntry]) -> None:
        self.result.failed[key] = reason
        if key in previous:  # keep the last good clip rather than lose it
            self.entries[key] = previous[key]
        self.notify(key, "failed")

    def notify(self, key: str, status: str) -> None:
        if self.progress:
            self.progress(key, status)

    # -- 5. render ----------------------------------------------------------------------
    async def render_all(self, jobs: list[RenderJob], previous: dict[str, ClipEntry]) -> None:
        limits: dict[str, asyncio.Semaphore] = {}
        widest = 1
        for job in jobs:
            for name in (job.choice.engine, DRAFT_ENGINE):
                if name not in limits:
                    slots = max(1, get_engine(name).max_concurrency)
                    limits[name] = asyncio.Semaphore(slots)
                    widest = max(widest, slots)
        workers = max(1, min(self.jobs, len(jobs)))
        # Bounded memory: a clip holds its engine audio from render until its files are
        # written; at most this many are in between (enough to keep every worker and every
        # engine slot busy), the rest wait before rendering.
        in_flight = asyncio.Semaphore(2 * workers + widest)
        pool = dsp_executor(workers)
        try:
            await asyncio.gather(*(self.render_one(j, limits, in_flight, pool, previous)
                                   for j in jobs))
        finally:
            # Ctrl-C or a fatal error: drop what has not started, wait for what has.
            pool.shutdown(wait=True, cancel_futures=True)
        order = {clip.key: i for i, clip in enumerate(self.spec.clips)}
        self.result.rendered.sort(key=order.__getitem__)  # spec order, whoever finished first

    async def render_one(self, job: RenderJob, limits: dict[str, asyncio.Semaphore],
                         in_flight: asyncio.Semaphore, pool: Executor,
                         previous: dict[str, ClipEntry]) -> None:
        """The render stage for one clip (greetkit.render): the engine call, with the draft
        fallback, here; mastering on the DSP pool (worker processes); storing here."""
        key = job.clip.key
        async with in_flight:
            try:
                take = await synthesize(job, limits)
            except (EngineError, AudioError) as exc:
                self.fail(key, str(exc), previous)
                return
            loop = asyncio.get_running_loop()
            try:
                outputs = await loop.run_in_executor(pool, functools.partial(
                    master, take.audio, job.clip, job.sample_rates, seed=seed_of(job, take)))
                entry = await loop.run_in_executor(None, self.store_clip,
                                                   assemble(job, take, outputs))
            except BrokenProcessPool as exc:
                raise WorkerError("a DSP worker process died (out of memory, or killed); "
                                  "nothing was published and the previous bank is intact: "
                                  "build again, or with --jobs 1") from exc
            except StoreError:
                # The store itself cannot be written (disk full, read-only, permissions):
                # every other clip would fail the same way, so stop the build with one
                # clear error before the manifest is touched.
                raise
            except GreetkitError as exc:
                self.fail(key, str(exc), previous)
                return
        self.entries[key] = entry
        self.result.rendered.append(key)
        if entry.draft:
            self.result.drafts[key] = entry.draft_reason or "draft"
        self.notify(key, "draft" if entry.draft else "rendered")

    def store_clip(self, rendered: Rendered) -> ClipEntry:
        """Write each rate's file (immutable, named by the content key) and describe them."""
        clip, choice, key = rendered.clip, rendered.choice, rendered.content_key
        stem = f"{clip.key}.{key[:16]}"
        main: Any = None
        files = {}
        for out in rendered.outputs:
            rate = out.sample_rate
            stored = self.store.write_clip(stem if rate == BASE_RATE else f"{stem}.{rate}",
                                           out.pcm, rate)
            if rate == BASE_RATE:
                main = out  # the base file's chain: its gain, limiting and warnings are the clip's
            files[rate] = stored.record(lufs=round(out.lufs, 3),
                                        true_peak_db=round(out.true_peak_db, 3))
        out = main
        files = {BASE_RATE: files.pop(BASE_RATE), **files}
        return ClipEntry(
            key=clip.key, phrase=clip.phrase, language=clip.language, text=clip.text,
            engine=choice.engine, voice=choice.voice, preferred_engine=clip.engine,
            draft=choice.engine != clip.engine, draft_reason=choice.draft_reason,
            engine_version=rendered.engine_version,
            content_key=key, channels=1,
            duration=round(files[BASE_RATE].samples / BASE_RATE, 4),
            target_lufs=clip.loudness.target_lufs,
            true_peak_ceiling_db=clip.loudness.true_peak_ceiling_db,
            gain_db=round(out.gain_db, 3), limiter_db=round(out.limiter_db, 3),
            warnings=tuple(out.warnings), files=files,
        )

    # -- 6. publish ---------------------------------------------------------------------
    def manifest(self, old: Manifest | None) -> Manifest:
        order = [c.key for c in self.spec.clips]
        clips = [self.entries[k] for k in order if k in self.entries]
        texts: dict[str, dict[str, str]] = {}
        for c in self.spec.clips:
            texts.setdefault(c.phrase, {})[c.language] = c.text
        return Manifest(
            version=(old.version + 1) if old else 1,
            built_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            generator=f"greetkit {__version__}",
            default_language=self.spec.default_language,
            languages=tuple(self.spec.languages),
            phrases=self.spec.phrases,
            clips=tuple(clips),
            texts=texts,
            engines=_engine_records(clips),
        )


def _engine_records(clips: list[ClipEntry]) -> dict[str, EngineRecord]:
    """name -> the LiveKit engine entry its clips were rendered with, plus the engine's own
    level: the median over its non-draft clips of the loudness before the DSP gain (BS.1770
    integrated loudness, the clip's measured LUFS minus the gain applied)."""
    from statistics import median

    from greetkit.engines.livekit import LiveKitEngine

    levels: dict[str, list[float]] = {}
    for entry in clips:
        if not entry.draft:
            levels.setdefault(entry.engine, []).append(entry.lufs - entry.gain_db)
    records: dict[str, EngineRecord] = {}
    for name, values in levels.items():
        try:
            engine = get_engine(name)
        except GreetkitError:
            continue  # a reused clip of an engine no longer declared
        if isinstance(engine, LiveKitEngine):
            dist, ver = engine.distribution
            records[name] = EngineRecord(livekit=engine.target, options=dict(engine.options),
                                         plugin=f"{dist}=={ver}", lufs=round(median(values), 2))
    return records


def _same_bank(a: Manifest, b: Manifest | None) -> bool:
    if b is None:
        return False
    ja, jb = a.to_json(), b.to_json()
    for volatile in ("version", "built_at", "generator"):
        ja.pop(volatile, None)
        jb.pop(volatile, None)
    return ja == jb


def build(
    config: Path | str = "voices.yaml",
    out: Path | str | None = None,
    *,
    force: bool = False,
    strict: bool = False,
    progress: Progress | None = None,
    on_plan: Callable[[int, int], None] | None = None,
    wait: float = 0.0,
    jobs: int | None = None,
) -> BuildResult:
    """Build the greeting bank described by ``config`` into ``out`` (default: ``greetings/``
    next to the config). Returns a :class:`BuildResult`.

    Raises :class:`~greetkit.errors.SpecError` (nothing written) for an invalid spec,
    :class:`~greetkit.errors.StoreError` when the store cannot be written (the previous bank
    stays intact), and :class:`~greetkit.errors.DraftsPresent` with ``strict=True`` when a
    clip could only be drafted. ``wait`` is how many seconds to wait for another build
    holding the store's lock before raising :class:`~greetkit.errors.StoreLocked`.

    ``jobs`` clips are mastered at once, in worker processes (default: every core,
    :func:`greetkit.pool.default_jobs`; 1 masters in this process). The result does not
    depend on it: same files, same manifest. Where workers cannot be forked (macOS,
    Windows, or a caller already running threads) they are spawned, and a script calling
    ``build`` then needs the usual ``if __name__ == "__main__":`` guard.
    A worker that dies raises :class:`~greetkit.errors.WorkerError` (nothing published).

    >>> result = build("voices.yaml")  # doctest: +SKIP
    >>> print(result.summary())  # doctest: +SKIP
    4 rendered, 0 reused, 4 drafts, 0 failed in 1.2s -> greetings, version 1
    """
    started = time.monotonic()
    spec = load_spec(config)
    store = Store(Path(out) if out is not None else spec.project_dir / "greetings")
    if jobs is not None and jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    builder = _Builder(spec, store, force=force, progress=progress,
                       jobs=default_jobs() if jobs is None else jobs)
    builder.result.warnings += [str(w) for w in spec.warnings]
    with store.lock(wait=wait):
        store.clean_temp()  # leftovers of a build that died
        old = _read_old(store, builder.result)
        todo = builder.plan(old)
        if on_plan:
            on_plan(len(todo), len(spec.clips))
        if todo:
            store.prepare()
            asyncio.run(builder.render_all(todo, old.by_key() if old else {}))
        manifest = builder.manifest(old)
        if _same_bank(manifest, old):
            builder.result.manifest = old
        else:
            builder.result.manifest = store.publish(manifest)
            builder.result.published = True
    for entry in builder.result.manifest.clips if builder.result.manifest else ():
        builder.result.warnings += [f"{entry.key}: {w}" for w in entry.warnings
                                    if entry.key in builder.result.rendered]
    builder.result.seconds = time.monotonic() - started
    if strict:
        builder.result.check_strict()
    return builder.result


def _read_old(store: Store, result: BuildResult) -> Manifest | None:
    try:
        return store.manifest()
    except StoreError as exc:
        # An unreadable manifest is replaced by this build; say so rather than stop.
        result.warnings.append(f"previous manifest ignored: {exc}")
        return None
