"""``greetings/index.html``: a page to review a greeting bank by ear and by eye.

The library side of ``greetkit report``. One row per clip with a player, its text, engine and
voice, duration, loudness and true peak against the target, draft/stale flags and a waveform
drawn as inline SVG from the stored PCM; a coverage matrix of phrases x languages; the bank's
version and build time.

The page is self-contained: no scripts or styles from elsewhere, players point at the clip
files by relative path, so it works opened from disk, copied together with the store.

The HTML comes from the Jinja2 template ``report.html.j2`` shipped in ``greetkit/templates/``;
a project overrides it with its own ``templates/report.html.j2`` (next to voices.yaml), which
may ``{% extends "greetkit/report.html.j2" %}`` and replace single blocks. Unlike phrase
templates (sandboxed, they come from a spec that may be shared), the report template is the
project's own code: it runs in a plain environment with HTML autoescaping on.

>>> write_report("greetings", "voices.yaml")  # doctest: +SKIP
PosixPath('greetings/index.html')
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from greetkit.errors import GreetkitError, SpecError, SpecIssue, StoreError
from greetkit.manifest import BASE_RATE, ClipEntry, Manifest

TEMPLATE = "report.html.j2"
REPORT_NAME = "index.html"
#: Waveform drawing size (SVG user units); the page scales it to the cell.
WAVE_WIDTH = 320
WAVE_HEIGHT = 56

#: Coverage matrix cell states, in the order the legend lists them.
STATES: dict[str, str] = {
    "exists": "built with the preferred engine",
    "draft": "built by the offline fallback engine (draft)",
    "unbuilt": "written in voices.yaml but not in the bank (build failed or not run)",
    "missing": "phrase not written for this language",
    "na": ("not wanted: the fallback has one language, or the phrase's 'languages:' "
           "leaves this one out"),
}


@dataclass(frozen=True)
class Wave:
    """A clip's outline for an inline SVG: a closed path plus the ceiling guide lines."""

    path: str
    ceiling_y: tuple[float, float]
    width: int = WAVE_WIDTH
    height: int = WAVE_HEIGHT


@dataclass(frozen=True)
class ClipRow:
    """One clip as the page shows it."""

    entry: ClipEntry
    src: str
    variants: tuple[tuple[int, str], ...]
    wave: Wave | None
    loudness_ok: bool
    peak_ok: bool
    loudness_note: str
    peak_note: str
    stale: str | None
    problem: str | None


@dataclass(frozen=True)
class Cell:
    """One phrase x language cell of the coverage matrix."""

    phrase: str
    language: str
    state: str
    key: str | None = None
    stale: bool = False

    @property
    def title(self) -> str:
        what = STATES[self.state]
        return f"{self.key}: {what}" if self.key else what


@dataclass
class ReportData:
    """Everything the template receives (besides ``states``)."""

    manifest: Manifest
    store: Path
    rows: list[ClipRow]
    phrases: list[str]
    languages: list[str]
    cells: dict[tuple[str, str], Cell]
    coverage_source: str
    notes: list[str] = field(default_factory=list)

    def count(self, state: str) -> int:
        """How many matrix cells are in ``state``."""
        return sum(1 for c in self.cells.values() if c.state == state)

    @property
    def drafts(self) -> int:
        return sum(1 for r in self.rows if r.entry.draft)

    @property
    def draft_reasons(self) -> list[str]:
        """The distinct reasons clips are drafts, in row order: the page states each once
        and links the draft rows to it."""
        seen: dict[str, None] = {}
        for r in self.rows:
            if r.entry.draft and r.entry.draft_reason:
                seen.setdefault(r.entry.draft_reason)
        return list(seen)

    def draft_reason_number(self, reason: str) -> int:
        """1-based number of ``reason`` in :attr:`draft_reasons`."""
        return self.draft_reasons.index(reason) + 1

    @property
    def stale(self) -> int:
        return sum(1 for r in self.rows if r.stale)


def wave(pcm: npt.NDArray[np.int16], ceiling_db: float, *, width: int = WAVE_WIDTH,
         height: int = WAVE_HEIGHT) -> Wave:
    """The min/max outline of ``pcm`` as an SVG path ``width`` x ``height`` (0 dBFS fills
    the height), plus where the true-peak ceiling falls, for dashed guide lines."""
    from greetkit.preview import envelope

    lo, hi = envelope(pcm, width)
    mid = height / 2
    # At least a hairline per column, so silence still reads as a line rather than nothing.
    top = np.minimum(mid - hi * mid, mid - 0.5)
    bottom = np.maximum(mid - lo * mid, mid + 0.5)
    points = [f"{x},{y:.1f}" for x, y in enumerate(top)]
    points += [f"{x},{y:.1f}" for x, y in reversed(list(enumerate(bottom)))]
    level = 10 ** (ceiling_db / 20) * mid
    return Wave("M" + " L".join(points) + " Z", (round(mid - level, 1), round(mid + level, 1)),
                width, height)


def _href(target: Path, page_dir: Path) -> str:
    """A relative URL from the page to ``target``, so the page works from disk anywhere the
    store is copied together with it."""
    rel = os.path.relpath(target.resolve(), page_dir.resolve())
    return urllib.parse.quote(Path(rel).as_posix())


def collect(store_dir: Path | str, spec_path: Path | str | None = None,
            out: Path | str | None = None) -> ReportData:
    """Read the store (and voices.yaml, when given) into what the page shows.

    An unreadable or invalid voices.yaml does not stop the report: coverage then comes from
    the manifest, and a note says so.
    """
    from greetkit.keys import stale_clips
    from greetkit.preview import loudness_note, peak_note, read_pcm
    from greetkit.store import Store

    store = Store(store_dir)
    manifest = store.manifest()
    if manifest is None:
        raise StoreError(f"{store.root}: no manifest.json; run 'greetkit build' first")
    page = Path(out) if out is not None else store.root / REPORT_NAME
    notes: list[str] = []
    spec = None
    if spec_path is not None:
        from greetkit.spec import load_spec

        try:
            spec = load_spec(spec_path)
        except GreetkitError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            notes.append(f"voices.yaml could not be read ({first}); coverage and stale flags "
                         "come from the manifest alone")
    # The one stale rule (greetkit.keys), asked once per clip for the rows and the matrix.
    stale = stale_clips(manifest.clips, spec) if spec is not None else {}
    notes += [r.problem for r in manifest.refused]  # clips the manifest's schema refused

    rows = []
    for entry in manifest.clips:
        problem = None
        wave_: Wave | None = None
        try:
            path = store.path_of(entry.base.file)
            pcm = read_pcm(path, entry.base)
            wave_ = wave(pcm, entry.true_peak_ceiling_db)
        except StoreError as exc:
            problem = str(exc)
            path = store.root / entry.base.file
        variants = [(rate, _href(store.root / f.file, page.parent))
                    for rate, f in entry.files.items() if rate != BASE_RATE]
        rows.append(ClipRow(
            entry=entry, src=_href(path, page.parent), variants=tuple(variants), wave=wave_,
            loudness_ok=loudness_note(entry.lufs, entry.target_lufs) == "ok",
            peak_ok=peak_note(entry.true_peak_db, entry.true_peak_ceiling_db) == "ok",
            loudness_note=loudness_note(entry.lufs, entry.target_lufs),
            peak_note=peak_note(entry.true_peak_db, entry.true_peak_ceiling_db),
            stale=stale.get(entry.key),
            problem=problem,
        ))

    phrases, languages, cells = coverage(manifest, spec, stale=stale)
    return ReportData(manifest=manifest, store=store.root, rows=rows, phrases=phrases,
                      languages=languages, cells=cells,
                      coverage_source="voices.yaml" if spec else "the manifest", notes=notes)


def coverage(manifest: Manifest, spec: Any = None, *, stale: Mapping[str, str] | None = None
             ) -> tuple[list[str], list[str], dict[tuple[str, str], Cell]]:
    """The phrases x languages matrix: (phrases, languages, cells keyed (phrase, language)).

    What is *written* (a phrase has text for a language) comes from the spec when there is
    one, else from the manifest's ``texts`` and clips. A written cell is ``exists``/``draft``
    when the bank has its clip, else ``unbuilt``; an unwritten one is ``missing``, unless
    it is unwritten on purpose: the fallback is one clip in one language, and a phrase with
    ``languages: [...]`` is meant for those only, so their other cells are ``na``.
    """
    from greetkit.keys import stale_clips
    from greetkit.spec import clip_key

    built = manifest.by_key()
    if spec is not None:
        phrases = list(spec.phrases)
        languages = list(spec.languages)
        written = {(c.phrase, c.language) for c in spec.clips}
    else:
        phrases = list(manifest.phrases)
        languages = list(manifest.languages)
        written = {(p, lang) for p, texts in manifest.texts.items() for lang in texts}
    # Clips the spec no longer names still show (they are flagged stale in their rows).
    for c in manifest.clips:
        written.add((c.phrase, c.language))
        if c.phrase not in phrases:
            phrases.append(c.phrase)
        if c.language not in languages:
            languages.append(c.language)
    if stale is None:
        stale = stale_clips(manifest.clips, spec) if spec is not None else {}

    cells: dict[tuple[str, str], Cell] = {}
    for phrase in phrases:
        for lang in languages:
            key = clip_key(lang, phrase)
            if (phrase, lang) not in written:
                on_purpose = phrase == "fallback" or (
                    spec is not None and phrase in spec.only and lang not in spec.only[phrase])
                state = "na" if on_purpose else "missing"
                cells[phrase, lang] = Cell(phrase, lang, state)
                continue
            entry = built.get(key)
            if entry is None or entry.language != lang:
                cells[phrase, lang] = Cell(phrase, lang, "unbuilt", key)
            else:
                cells[phrase, lang] = Cell(phrase, lang, "draft" if entry.draft else "exists",
                                           key, key in stale)
    return phrases, languages, cells


def _environment(project_dir: Path | None) -> Any:
    import jinja2

    shipped = jinja2.PackageLoader("greetkit", "templates")
    loaders: list[jinja2.BaseLoader] = []
    if project_dir is not None:
        loaders.append(jinja2.FileSystemLoader(str(project_dir / "templates")))
    # The shipped template also answers to 'greetkit/report.html.j2', for overrides that
    # extend it and replace a block or two.
    loaders += [shipped, jinja2.PrefixLoader({"greetkit": shipped})]
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=True,  # every value is text from voices.yaml: escape it
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_report(data: ReportData, project_dir: Path | None = None) -> str:
    """The page's HTML for ``data``, from the project's ``templates/report.html.j2`` when
    ``project_dir`` has one, else the shipped template."""
    import jinja2

    from greetkit import __version__

    env = _environment(project_dir)
    try:
        template = env.get_template(TEMPLATE)
        html: str = template.render(report=data, states=STATES, greetkit_version=__version__)
    except jinja2.TemplateError as exc:
        # A broken override is a project file with a mistake: report it like one (exit 2).
        line = exc.lineno if isinstance(exc, jinja2.TemplateSyntaxError) else None
        name = f"templates/{TEMPLATE}"
        raise SpecError([SpecIssue(name, line, "", f"{exc}; fix the template, or delete it to "
                                   "use the shipped one")]) from None
    return html


def write_report(store_dir: Path | str, spec_path: Path | str | None = None,
                 out: Path | str | None = None, *,
                 on_note: Callable[[str], None] | None = None) -> Path:
    """Write the HTML report of the bank in ``store_dir`` to ``out`` (default
    ``<store_dir>/index.html``) and return its path.

    ``spec_path`` (voices.yaml) adds what the manifest cannot know: phrases not written for a
    language, clips that are stale. Its directory's ``templates/report.html.j2`` overrides
    the shipped template. ``on_note`` receives anything worth telling the user.

    >>> write_report("greetings", "voices.yaml")  # doctest: +SKIP
    PosixPath('greetings/index.html')
    """
    from greetkit.store import atomic_write

    store_dir = Path(store_dir)
    page = Path(out) if out is not None else store_dir / REPORT_NAME
    data = collect(store_dir, spec_path, page)
    for note in data.notes:
        if on_note:
            on_note(note)
    project_dir = Path(spec_path).parent if spec_path is not None else store_dir.parent
    html = render_report(data, project_dir)
    page.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(page, html.encode("utf-8"))
    return page
