"""A hostile voices.yaml cannot escape, read, execute or run away (issue 7).

Covers greetkit/spec.py and greetkit/phrases.py: the Jinja2 sandbox and its size/work caps,
includes and template names confined to templates/, recorded takes confined to the project,
safe clip keys, Python-object YAML tags, alias bombs, deep nesting and the text/clip limits.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from greetkit.errors import SpecError
from greetkit.spec import MAX_CLIPS, MAX_DEPTH, MAX_NODES, MAX_TEXT_CHARS, load_spec

HEAD = """\
version: 1
defaults: {engine: espeak}
variables: {agent_name: Xiaozhi}
languages:
  en: {voices: {espeak: en-us}}
"""


def spec_with(write_spec, phrase_yaml: str, templates: dict[str, str] | None = None) -> Path:  # type: ignore[no-untyped-def]
    return write_spec(HEAD + "phrases:\n" + phrase_yaml, templates)


def issues(path: Path) -> list[str]:
    """The spec's issues as printed, or [] when it is valid."""
    try:
        load_spec(path)
    except SpecError as exc:
        return [str(i) for i in exc.issues]
    return []


@pytest.mark.parametrize("expr", [
    "agent_name.__class__.__mro__",
    "agent_name.__class__.__base__.__subclasses__()",
    "range.__globals__",
    "self._TemplateReference__context",
    "(agent_name|attr('__class__'))",
    "agent_name.format.__globals__",
])
def test_templates_cannot_reach_python_internals(write_spec, expr: str) -> None:  # type: ignore[no-untyped-def]
    """Attribute access to dunder/private internals is a spec error on the phrase's line."""
    path = spec_with(write_spec, f'  hi:\n    en: "{{{{ {expr} }}}}"\n')
    found = issues(path)
    assert len(found) == 1
    assert found[0].startswith("voices.yaml:8: phrases.hi.en.text: template tried something unsafe")


@pytest.mark.parametrize("source", [
    "{% include '../voices.yaml' %}",
    "{% include '../../etc/passwd' %}",
    "{% include '/etc/passwd' %}",
    "{% import '../voices.yaml' as v %}x",
    "{% extends '/etc/hostname' %}",
])
def test_includes_cannot_leave_templates(write_spec, source: str) -> None:  # type: ignore[no-untyped-def]
    """include/import/extends of paths outside templates/ are 'not found' errors."""
    path = spec_with(write_spec, f'  hi:\n    en: "{source}"\n', {"ok.j2": "fine"})
    found = issues(path)
    assert len(found) == 1 and "not found in templates/" in found[0], found


def test_template_names_and_symlinks_cannot_leave_templates(write_spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """'template: ../x' and a templates/ symlink to a file elsewhere are refused."""
    secret = tmp_path.parent / f"{tmp_path.name}-secret.txt"
    secret.write_text("TOP SECRET words")
    path = spec_with(write_spec, "  a:\n    template: ../voices.yaml\n"
                                 "  b:\n    template: link.j2\n"
                                 "  c:\n    en: \"{% include 'link.j2' %}\"\n", {})
    (tmp_path / "templates" / "link.j2").symlink_to(secret)
    found = issues(path)
    assert len(found) == 3 and all("not found in templates/" in f for f in found), found
    assert not any("SECRET" in f for f in found)


@pytest.mark.parametrize(("source", "needle"), [
    ("{{ 'a' * 100000000 }}", "limit is 2000"),
    ("{{ [1] * 100000000 }}", "limit is 2000"),
    ("{{ 2 ** 99999999 }}", "too large"),
    ("{{ '%100000000s' % 'x' }}", "width"),
    ("{{ '%*s' % (100000000, 'x') }}", "width"),
    ("{{ '{:>100000000}'.format(1) }}", "width"),
    ("{{ '{0:{1}}'.format(1, 100000000) }}", "too large"),
    ("{{ agent_name|center(100000000) }}", "too large"),
    ("{{ '%100000000s'|format('x') }}", "width"),
    ("{{ agent_name.ljust(100000000) }}", "too large"),
    ("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}x",
     "loop iterations"),
    ("{% for a in agent_name %}{% for b in agent_name %}{% for c in agent_name %}"
     "{% for d in agent_name %}{% for e in agent_name %}{% endfor %}{% endfor %}{% endfor %}"
     "{% endfor %}{% endfor %}x", "loop iterations"),
    ("{% set a = agent_name * 100 %}{% set b = a ~ a %}{% set c = b ~ b %}{{ c }}",
     "limit is 2000"),
    ("{% macro f(s) %}{{ f(s ~ s) }}{% endmacro %}{{ f('ab') }}", "limit is 2000"),
    ("{% macro f(n) %}{{ f(n * n) }}{% endmacro %}{{ f(3) }}", "too large"),
    ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "RecursionError"),
    ("{{ lipsum(100000) }}", "'lipsum' is undefined"),
])
def test_runaway_templates_fail_fast(write_spec, source: str, needle: str) -> None:  # type: ignore[no-untyped-def]
    """Templates that would allocate gigabytes or loop for hours stop at a cap with a spec error
    naming it (the sandbox alone allowed them). Speed is not asserted here (bench/ measures
    speed); the cap's error is what proves the work was cut short."""
    path = spec_with(write_spec, f"  hi:\n    en: \"{source}\"\n")
    found = issues(path)
    assert len(found) == 1 and found[0].startswith("voices.yaml:8: phrases.hi.en.text: "), found
    assert needle in found[0]


def test_ordinary_templates_still_work(write_spec) -> None:  # type: ignore[no-untyped-def]
    """The caps leave normal template use alone: filters, loops, formatting, concatenation."""
    path = spec_with(write_spec, "  hi:\n    en: \"{% for w in ['Hi', 'there'] %}{{ w }} "
                                 "{% endfor %}{{ agent_name|upper ~ '!' }} {{ '%s'|format(3) }}"
                                 " {{ '{} {}'.format('a', 2) }} {{ 'ha' * 3 }}\"\n")
    spec = load_spec(path)
    assert spec.clip("en_hi").text == "Hi there XIAOZHI! 3 a 2 hahaha"


def _take(path: Path) -> Path:
    t = np.arange(4800) / 48000
    sf.write(path, 0.3 * np.sin(2 * np.pi * 440 * t), 48000, subtype="PCM_16")
    return path


@pytest.mark.parametrize("where", ["parent", "absolute", "symlink"])
def test_recorded_takes_cannot_leave_the_project(write_spec, tmp_path: Path, where: str) -> None:  # type: ignore[no-untyped-def]
    """A take outside the project ('../', absolute, or a symlink out) is an error unless
    'allow_outside: true' is set."""
    outside = _take(tmp_path.parent / f"{tmp_path.name}-outside.wav")
    ref = {"parent": f"../{outside.name}", "absolute": str(outside), "symlink": "link.wav"}[where]
    if where == "symlink":
        (tmp_path / "link.wav").symlink_to(outside)
    path = spec_with(write_spec, f"  hi:\n    en: {{text: Hi, recording: '{ref}'}}\n")
    found = issues(path)
    assert len(found) == 1 and "is outside the project" in found[0] and ":8: " in found[0]
    path.write_text(HEAD + "phrases:\n  hi:\n    en: {text: Hi, recording: '" + ref
                    + "', allow_outside: true}\n")
    spec = load_spec(path)
    assert spec.clip("en_hi").options["recording"] == str(outside.resolve())


def test_allow_outside_must_be_literally_true(write_spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """'allow_outside: yes-please' (a string) does not open the door."""
    outside = _take(tmp_path.parent / f"{tmp_path.name}-o.wav")
    path = spec_with(write_spec, f"  hi:\n    en: {{text: Hi, recording: '{outside}', "
                                 "allow_outside: 'true'}\n")
    assert any("outside the project" in f for f in issues(path))


KEY_OK = re.compile(r"^[A-Za-z0-9_-]+\Z")
NASTY_NAMES = ["../x", "a/b", "a\\b", "..", ".", "a\0b", "en\n", "a b", "A", "ü", "a.b",
               "-x", "_x", "x" * 49, "fallback", "con", "a:b", "%2e%2e", "\u202ex"]


@settings(max_examples=150, deadline=None, database=None)
@given(phrase=st.one_of(st.sampled_from(NASTY_NAMES), st.text(max_size=12)),
       lang=st.one_of(st.sampled_from([*NASTY_NAMES, "en", "zh-CN", "en_US"]),
                      st.text(max_size=12)))
def test_only_safe_keys_become_file_names(phrase: str, lang: str, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    """Whatever phrase names and language codes a spec uses, an accepted clip key holds only
    letters, digits, '_' and '-' (never '/', '..', NUL or a newline)."""
    import json

    root = tmp_path_factory.mktemp("keys")
    doc = (f"version: 1\ndefaults: {{engine: espeak}}\nlanguages:\n  {json.dumps(lang)}: "
           f"{{voices: {{espeak: en-us}}}}\nphrases:\n  {json.dumps(phrase)}:\n    "
           f"{json.dumps(lang)}: Hello\n")
    (root / "voices.yaml").write_text(doc, encoding="utf-8", errors="surrogatepass")
    try:
        spec = load_spec(root / "voices.yaml")
    except SpecError:
        return
    for clip in spec.clips:
        assert KEY_OK.match(clip.key), clip.key
        assert ".." not in clip.key and len(clip.key) <= 64


@pytest.mark.parametrize("tagged", [
    "!!python/object/apply:os.system ['touch pwned']",
    "!!python/object/new:subprocess.Popen [['touch', 'pwned']]",
    "!!python/name:os.system",
    "!!python/module:os",
    "!custom thing",
    "!!binary cHduZWQ=",
])
def test_yaml_tags_that_construct_objects_are_rejected(write_spec, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                       tagged: str) -> None:
    """Python-object and custom tags are errors on their line; nothing is executed."""
    path = spec_with(write_spec, f"  hi:\n    en: {tagged}\n")
    found = issues(path)
    assert found and found[0].startswith("voices.yaml:8: phrases.hi.en: YAML tag")
    assert not (tmp_path / "pwned").exists()


def test_alias_bomb_is_capped(write_spec) -> None:  # type: ignore[no-untyped-def]
    """A billion-laughs document (9**9 values through aliases) stops at MAX_NODES, with the
    line-numbered error saying so (the cap, not a timer, bounds the work)."""
    bomb = "variables:\n  a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"  {c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True))
    path = write_spec("version: 1\n" + bomb)
    found = issues(path)
    assert any(f"more than {MAX_NODES} values" in f and f.startswith("voices.yaml:")
               for f in found), found


def test_deep_nesting_is_a_line_numbered_error(write_spec) -> None:  # type: ignore[no-untyped-def]
    """10,000 nested lists used to overflow the YAML composer's recursion (a traceback)."""
    path = write_spec("version: 1\nvariables:\n  x: " + "[" * 10000 + "]" * 10000 + "\n")
    found = issues(path)
    assert found == [f"voices.yaml:3: values nest more than {MAX_DEPTH} levels deep; "
                     "flatten the document"]


def test_huge_integer_is_a_spec_error_not_a_traceback(write_spec) -> None:  # type: ignore[no-untyped-def]
    """An integer past Python's 4300-digit str limit is reported on its line."""
    path = write_spec(HEAD + "phrases:\n  hi:\n    en: " + "9" * 5000 + "\n")
    found = issues(path)
    assert found and found[0].startswith("voices.yaml:8: phrases.hi.en: bad value")


def test_text_length_and_control_characters_are_limited(write_spec) -> None:  # type: ignore[no-untyped-def]
    """Over-long text, a NUL and an over-long variable each get a clear error."""
    long = "word " * (MAX_TEXT_CHARS // 5 + 1)
    path = write_spec(HEAD.replace("agent_name: Xiaozhi", "agent_name: " + "x" * 1500)
                      + f"phrases:\n  a:\n    en: \"{long}\"\n  b:\n    en: \"Hi\\0there\"\n")
    found = issues(path)
    assert any("variables.agent_name: value is 1500 characters" in f for f in found)
    assert any("phrases.a.en.text: text is" in f and f"under {MAX_TEXT_CHARS}" in f
               for f in found)
    assert any("phrases.b.en.text: text contains the control character U+0000" in f
               for f in found)


def test_number_of_clips_is_limited(write_spec) -> None:  # type: ignore[no-untyped-def]
    """More than MAX_CLIPS clips is one clear error instead of a very long build."""
    phrases = "".join(f"  p{i}:\n    en: Hello {i}\n" for i in range(MAX_CLIPS + 1))
    found = issues(write_spec(HEAD + "phrases:\n" + phrases))
    assert len(found) == 1 and f"{MAX_CLIPS + 1} clips; the limit is {MAX_CLIPS}" in found[0]


# -- sizes checked before reading, encodings, key collisions (issue 17) ---------------------

_MAXRSS_PROBE = """
import resource, sys
from greetkit.errors import SpecError
from greetkit.spec import load_spec
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    load_spec(sys.argv[1])
except SpecError as exc:
    print("\\n".join(str(i) for i in exc.issues))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)  # KiB on Linux
"""


def _probe(path: Path) -> tuple[list[str], int]:
    """load_spec in a fresh interpreter: its printed issues and how much it raised the peak
    RSS (ru_maxrss, KiB), imports excluded. The peak a child inherits from its parent only
    raises 'before', and reading 400 MB would still lift the peak far past it."""
    out = subprocess.run([sys.executable, "-c", _MAXRSS_PROBE, str(path)], capture_output=True,
                         text=True, timeout=120, cwd=path.parent, check=False)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    *found, rss = out.stdout.splitlines()
    return found, int(rss)


#: What refusing a 400 MB file may add to the peak RSS: reading it would add >= 390,000 KiB.
EXTRA_KIB = 50_000


def test_huge_template_is_refused_from_its_size_without_reading_it(write_spec) -> None:  # type: ignore[no-untyped-def]
    """A 400 MB (sparse) file in templates/ is a line-numbered error; memory stays bounded."""
    path = spec_with(write_spec, "  hi:\n    template: big.j2\n")
    os.truncate(_touch(path.parent / "templates" / "big.j2"), 400_000_000)
    found, rss_kib = _probe(path)
    assert found == ["voices.yaml:8: phrases.hi.en.template: templates/big.j2: template is "
                     "larger than 10000 characters; keep templates/ files short"]
    assert rss_kib < EXTRA_KIB, f"peak RSS {rss_kib} KiB: it was read"


def test_huge_template_through_the_cli_exits_2_without_traceback(write_spec) -> None:  # type: ignore[no-untyped-def]
    """`greetkit build` on the 400 MB template: exit 2, one line, no traceback."""
    path = spec_with(write_spec, "  hi:\n    template: big.j2\n")
    os.truncate(_touch(path.parent / "templates" / "big.j2"), 400_000_000)
    out = subprocess.run([sys.executable, "-m", "greetkit.cli", "build"], capture_output=True,
                         text=True, timeout=120, cwd=path.parent, check=False)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "voices.yaml:8:" in out.stderr and "larger than 10000 characters" in out.stderr


def test_huge_included_template_is_refused_too(write_spec) -> None:  # type: ignore[no-untyped-def]
    """An {% include %} of a huge file stops at the size check as well."""
    path = spec_with(write_spec, "  hi:\n    en: \"Hi {% include 'big.j2' %}\"\n")
    os.truncate(_touch(path.parent / "templates" / "big.j2"), 400_000_000)
    found = issues(path)
    assert found == ["voices.yaml:8: phrases.hi.en.text: templates/big.j2: template is "
                     "larger than 10000 characters; keep templates/ files short"]


def _touch(path: Path) -> Path:
    path.touch()
    return path


def test_huge_voices_yaml_is_refused_from_its_size(tmp_path: Path) -> None:
    """A 400 MB (sparse) voices.yaml is one error and is never read into memory."""
    path = tmp_path / "voices.yaml"
    os.truncate(_touch(path), 400_000_000)
    found, rss_kib = _probe(path)
    assert found == ["voices.yaml: file is larger than 1000000 bytes; voices.yaml should be "
                     "small"]
    assert rss_kib < EXTRA_KIB, f"peak RSS {rss_kib} KiB: it was read"


def test_voices_yaml_that_reports_size_zero_is_read_only_up_to_the_cap(tmp_path: Path) -> None:
    """A voices.yaml linked to /dev/zero (st_size 0, endless) stops at the cap."""
    path = tmp_path / "voices.yaml"
    path.symlink_to("/dev/zero")
    found, rss_kib = _probe(path)
    assert found == ["voices.yaml: file is larger than 1000000 bytes; voices.yaml should be "
                     "small"]
    assert rss_kib < EXTRA_KIB, f"peak RSS {rss_kib} KiB: it was read"


def test_template_linked_to_an_endless_file_is_refused_before_reading(write_spec) -> None:  # type: ignore[no-untyped-def]
    """A templates/ link to /dev/zero (endless, not a regular file) is never read."""
    path = spec_with(write_spec, "  hi:\n    template: zero.j2\n")
    (path.parent / "templates" / "zero.j2").symlink_to("/dev/zero")
    # /dev/zero is outside templates/, so it is refused as not found before any read.
    found = issues(path)
    assert len(found) == 1 and "not found in templates/" in found[0], found


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_huge_recorded_take_is_refused_from_its_size(write_spec, suffix: str) -> None:  # type: ignore[no-untyped-def]
    """A 400 MB (sparse) take, which the build would read whole to hash and decode, is a
    spec error on its line."""
    path = spec_with(write_spec, f"  hi:\n    en: {{text: Hi, recording: big{suffix}}}\n")
    os.truncate(_touch(path.parent / f"big{suffix}"), 400_000_000)
    found, rss_kib = _probe(path)
    assert found == [f"voices.yaml:8: phrases.hi.en.recording: recording 'big{suffix}' is 400 "
                     "MB; a take may be at most 100 MB, trim or compress it"]
    assert rss_kib < EXTRA_KIB, f"peak RSS {rss_kib} KiB: it was read"


@pytest.mark.parametrize(("body", "line", "column", "byte"), [
    (b"version: 1\n# caf\xe9 in Latin-1\nlanguages: {}\n", 2, 6, "0xe9"),
    (b"\xff\xfev\x00e\x00r\x00", 1, 1, "0xff"),
    (b"version: 1\nphrases:\n  hi:\n    en: \"ok\"\n    zh: \"\xe4\xbd\"\n", 5, 10, "0xe4"),
])
def test_voices_yaml_that_is_not_utf8_names_the_line(tmp_path: Path, body: bytes, line: int,
                                                      column: int, byte: str) -> None:
    """The first byte that is not UTF-8 is reported with its line and column."""
    path = tmp_path / "voices.yaml"
    path.write_bytes(body)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert [str(i) for i in info.value.issues] == [
        f"voices.yaml:{line}: not UTF-8 text (byte {byte} at column {column}); save the file "
        "as UTF-8"]


def test_template_that_is_not_utf8_names_its_line(write_spec) -> None:  # type: ignore[no-untyped-def]
    """A Latin-1 templates/ file is an error naming the template's line, not a traceback."""
    path = spec_with(write_spec, "  hi:\n    template: latin.j2\n")
    (path.parent / "templates" / "latin.j2").write_bytes(b"Hello\nCaf\xe9 {{ agent_name }}\n")
    found = issues(path)
    assert found == ["voices.yaml:8: phrases.hi.en.template: templates/latin.j2:2: not UTF-8 "
                     "text (byte 0xe9); save the template as UTF-8"]


# -- documents the spec fuzz found slow (issue 17); the result is asserted, not the time ------

FUZZ_BOMB = ("a: &a [x, x, x, x, x, x, x, x, x]\n"
             + "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n"
                       for p, c in zip("abcdefgh", "bcdefghi", strict=True)))


def test_shipped_spec_behind_an_alias_bomb_is_only_the_node_cap_error(write_spec, project) -> None:  # type: ignore[no-untyped-def]
    """The fuzz's slowest kind (~4.5 s once): the bomb lines inserted above the shipped
    voices.yaml. One error; no made-up ones about sections cut off by the cap."""
    shipped = (project / "voices.yaml").read_text(encoding="utf-8")
    found = issues(write_spec(FUZZ_BOMB + shipped))
    assert found == [f"voices.yaml:2: e.1.5.2.3: document has more than {MAX_NODES} values; "
                     "keep voices.yaml small (anchors/aliases that expand a lot are a common "
                     "cause)"]


def test_alias_expansion_under_the_node_cap_is_fully_validated(write_spec) -> None:  # type: ignore[no-untyped-def]
    """Aliases expanding to ~7,000 values (under the cap) are checked value by value."""
    anchors = "".join("  " + line + "\n" for line in FUZZ_BOMB.splitlines()[:4])
    path = write_spec("x-anchors:\n" + anchors + HEAD.replace(
        "agent_name: Xiaozhi}", "agent_name: Xiaozhi, many: *c}")
        + "phrases:\n  hi:\n    en: Hello\nfallback:\n  text: *d\n")
    assert issues(path) == [
        "voices.yaml:1: x-anchors: unknown key 'x-anchors'; choose one of 'version', "
        "'defaults', 'variables', 'languages', 'phrases', 'fallback', 'engines'",
        "voices.yaml:8: variables.many: a variable must be text or a number",
        "voices.yaml:15: fallback.text: expected text, got list; quote the value",
    ]
