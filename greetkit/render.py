"""The render stage: one clip's text -> engine audio -> delivered int16 PCM at every rate.

``greetkit build`` and ``greetkit preview --text`` both go through here, so a clip is chosen,
drafted, capped and mastered by one set of rules:

1. :func:`choose` picks the engine and voice: the clip's own, or (when that engine cannot be
   used now) an espeak *draft* that keeps the bank complete and is replaced by the next build
   that reaches the real engine;
2. :func:`synthesize` calls the engine, falls back to the draft when an online engine fails
   even after its own retries, and refuses a runaway take (:data:`MAX_CLIP_SECONDS`);
3. :func:`master` runs the DSP chain (:mod:`greetkit.dsp`: BS.1770 loudness, EBU Tech 3341
   true-peak limiting, dithered int16) once per output rate from the engine's source audio.

:func:`render_clip` is the three in a row for one :class:`RenderJob`: a plain function of
its argument (no shared state, picklable input and output), so clips can be rendered in
parallel, in threads or in worker processes. Nothing here writes files; storing the result is
the build's job.

>>> job = RenderJob(clip=clip, choice=choose(clip, None), sample_rates=(48000,))  # doctest: +SKIP
>>> rendered = render_clip(job)  # doctest: +SKIP
>>> rendered.outputs[0].pcm.dtype  # doctest: +SKIP
dtype('int16')
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from greetkit.engines import get_engine
from greetkit.engines.base import RenderedAudio, RenderRequest
from greetkit.errors import AudioError, EngineError, EngineUnavailable, GreetkitError
from greetkit.keys import content_key
from greetkit.params import too_long
from greetkit.spec import DRAFT_ENGINE, ClipSpec

if TYPE_CHECKING:
    from greetkit.dsp import ProcessedAudio

#: Per-engine concurrency limits (an ``asyncio.Semaphore`` per engine name, say); an engine
#: without one renders unbounded.
Limits = Mapping[str, AbstractAsyncContextManager[object]]


@dataclass(frozen=True)
class Choice:
    """Which engine and voice render a clip, and why it is a draft (None when it is not)."""

    engine: str
    voice: str
    draft_reason: str | None = None

    @property
    def draft(self) -> bool:
        return self.draft_reason is not None


@dataclass(frozen=True, kw_only=True)
class RenderJob:
    """Everything the render stage needs for one clip."""

    clip: ClipSpec
    choice: Choice
    #: Output rates, Hz; :attr:`Rendered.outputs` follows this order.
    sample_rates: tuple[int, ...]
    #: Directory of voices.yaml, for engines that read files (a recorded take).
    project_dir: Path = Path(".")
    #: The content key of ``choice``; computed when omitted.
    content_key: str | None = None
    #: Seed of the TPDF dither; None derives it from the content key (same inputs, same bytes).
    seed: int | None = None


@dataclass(frozen=True)
class Take:
    """An engine's raw audio for a clip and the choice that made it."""

    choice: Choice
    content_key: str
    audio: RenderedAudio


@dataclass(frozen=True)
class Rendered:
    """One clip rendered and mastered: the stage's output."""

    clip: ClipSpec
    choice: Choice
    content_key: str
    engine_version: str
    #: One per :attr:`RenderJob.sample_rates`, in that order.
    outputs: tuple[ProcessedAudio, ...]


def can_draft(clip: ClipSpec) -> bool:
    """Whether an espeak draft may stand in for ``clip``: only for an online engine (an
    offline one failing is a real error, not weather) and with an espeak voice to draft in."""
    if not clip.draft_voice:
        return False
    try:
        return not get_engine(clip.engine).offline
    except GreetkitError:
        return True  # an engine that cannot even be imported is not offline-capable


def unusable(engine: str) -> str | None:
    """Why ``engine`` cannot be used now (its quick availability check), or None."""
    try:
        get_engine(engine).check_available()
    except GreetkitError as exc:
        return f"{engine} unavailable: {exc}"
    return None


def choose(clip: ClipSpec, unavailable: str | None) -> Choice:
    """The clip's own engine and voice, or, when ``unavailable`` says why that engine cannot
    be used, the espeak draft. Raises :class:`EngineUnavailable` (with that reason) when the
    clip cannot be drafted (see :func:`can_draft`)."""
    if unavailable is None:
        return Choice(clip.engine, clip.voice)
    if not clip.draft_voice or not can_draft(clip):
        raise EngineUnavailable(unavailable, engine=clip.engine)
    return Choice(DRAFT_ENGINE, clip.draft_voice, unavailable)


def key_of(clip: ClipSpec, choice: Choice) -> str:
    """The content key of ``clip`` rendered as ``choice`` (:func:`greetkit.keys.content_key`)."""
    return content_key(clip, get_engine(choice.engine), choice.voice)


async def _call(job: RenderJob, choice: Choice, limits: Limits | None) -> RenderedAudio:
    clip = job.clip
    request = RenderRequest(key=clip.key, text=clip.text, language=clip.language,
                            voice=choice.voice, options=clip.options,
                            project_dir=job.project_dir)
    limit = limits.get(choice.engine) if limits else None
    async with limit or nullcontext():
        return await get_engine(choice.engine).render(request)


async def synthesize(job: RenderJob, limits: Limits | None = None) -> Take:
    """Render ``job``'s text with its chosen engine, or with the espeak draft when an online
    engine fails even after its own retries.

    Raises :class:`EngineError` naming the engine when the render fails and no draft can
    stand in (``"edge: ..."``) or the draft fails too, and :class:`AudioError` for a take
    longer than :data:`MAX_CLIP_SECONDS`.
    """
    clip, choice = job.clip, job.choice
    key = job.content_key or key_of(clip, choice)
    try:
        audio = await _call(job, choice, limits)
    except EngineError as exc:
        if choice.draft or not clip.draft_voice or not can_draft(clip):
            raise EngineError(f"{choice.engine}: {exc}", engine=choice.engine,
                              retryable=exc.retryable) from exc
        choice = Choice(DRAFT_ENGINE, clip.draft_voice, f"{choice.engine} failed: {exc}")
        try:
            key = key_of(clip, choice)
            audio = await _call(job, choice, limits)
        except (GreetkitError, OSError) as exc2:
            raise EngineError(f"{choice.draft_reason}; draft failed too: {exc2}",
                              engine=DRAFT_ENGINE) from exc2
    cap = too_long(audio.duration)
    if cap:
        raise AudioError(f"{choice.engine} produced {audio.duration:.0f} s of audio; {cap}, "
                         "shorten the text or take")
    return Take(choice, key, audio)


def master(audio: RenderedAudio, clip: ClipSpec, sample_rates: tuple[int, ...], *,
           seed: int) -> tuple[ProcessedAudio, ...]:
    """The DSP chain (:func:`greetkit.dsp.process`: mono, resample, trim, BS.1770 loudness to
    the clip's target, EBU Tech 3341 true-peak limit, TPDF-dithered int16) once per output
    rate, each from the engine's source audio so no output is resampled twice. Pure: no I/O,
    the same inputs give the same samples. Raises :class:`AudioError` for silent audio."""
    from greetkit.dsp import DspParams, process

    base = DspParams(target_lufs=clip.loudness.target_lufs,
                     true_peak_ceiling_db=clip.loudness.true_peak_ceiling_db)
    return tuple(process(audio.samples, audio.sample_rate, replace(base, sample_rate=rate),
                         seed=seed)
                 for rate in sample_rates)


def seed_of(job: RenderJob, take: Take) -> int:
    """The dither seed: ``job.seed``, or one derived from the content key (same inputs,
    same bytes)."""
    return job.seed if job.seed is not None else int(take.content_key[:8], 16)


def assemble(job: RenderJob, take: Take, outputs: tuple[ProcessedAudio, ...]) -> Rendered:
    """The stage's output from ``take`` and its mastered ``outputs`` (see :func:`finish`;
    the build masters in worker processes and assembles here)."""
    return Rendered(clip=job.clip, choice=take.choice, content_key=take.content_key,
                    engine_version=get_engine(take.choice.engine).version(), outputs=outputs)


def finish(job: RenderJob, take: Take) -> Rendered:
    """Master ``take`` at every rate of ``job`` (the CPU-heavy half of the stage)."""
    return assemble(job, take, master(take.audio, job.clip, job.sample_rates,
                                      seed=seed_of(job, take)))


def render_clip(job: RenderJob) -> Rendered:
    """The whole render stage for one clip: :func:`synthesize`, then :func:`master` at every
    rate. A plain function of ``job`` (runs its own event loop; call it from a worker thread
    or process, not from inside a running loop). Raises :class:`EngineError` or
    :class:`AudioError` as those do."""
    return finish(job, asyncio.run(synthesize(job)))
