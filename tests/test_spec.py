"""voices.yaml parsing and validation (greetkit/spec/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from greetkit.errors import SpecError
from greetkit.spec import load_spec

MINIMAL = """\
version: 1
defaults:
  engine: espeak
variables:
  agent_name: Xiaozhi
languages:
  en:
    voices: {espeak: en-us}
  zh:
    voices: {espeak: cmn}
phrases:
  default:
    en: "Hi! I'm {{ agent_name }}!"
    zh: "你好！"
fallback:
  text: Hello!
"""


def errors(path: Path) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return [str(i) for i in info.value.issues]


def test_shipped_voices_yaml_has_the_plans_greetings(project: Path) -> None:
    """The shipped spec yields the seed plan's four keys with edge voices and a template."""
    spec = load_spec(project / "voices.yaml")
    clips = {c.key: c for c in spec.clips}
    assert set(clips) == {"en_default", "zh_default", "en_child_friendly", "fallback"}
    assert clips["en_default"].text == "Hi! I'm Xiaozhi!"
    assert clips["en_child_friendly"].text == "Hello friend! I'm Xiaozhi!"
    assert clips["en_default"].voice == "en-US-AvaNeural"
    assert clips["zh_default"].voice == "zh-CN-XiaoxiaoNeural"
    assert clips["zh_default"].draft_voice == "cmn"
    assert spec.sample_rates == (48000, 24000)


def test_minimal_spec_resolves_variables_and_keys(write_spec) -> None:  # type: ignore[no-untyped-def]
    """Keys are <language>_<phrase>; inline text is a template over variables."""
    spec = load_spec(write_spec(MINIMAL))
    assert [c.key for c in spec.clips] == ["en_default", "zh_default", "fallback"]
    assert spec.clip("en_default").text == "Hi! I'm Xiaozhi!"
    assert spec.clip("fallback").language == "en"
    assert spec.loudness.target_lufs == -18.0 and spec.loudness.true_peak_ceiling_db == -1.5


def test_every_error_is_reported_at_once_with_its_line(write_spec) -> None:  # type: ignore[no-untyped-def]
    """Unknown engine, preset, language, undefined variable and unspeakable text: all listed."""
    path = write_spec(
        "version: 1\n"                      # 1
        "defaults:\n"                       # 2
        "  engine: edgy\n"                  # 3
        "  loudness: loud\n"                # 4
        "languages:\n"                      # 5
        "  en: {voices: {espeak: en-us}}\n"  # 6
        "phrases:\n"                        # 7
        "  default:\n"                      # 8
        "    en: 'Hi {{ agent }}'\n"        # 9
        "    fr: Salut\n"                   # 10
        "  quiet:\n"                        # 11
        "    en: '!!!'\n"                   # 12
    )
    got = errors(path)
    assert got == [
        "voices.yaml:3: defaults.engine: unknown engine 'edgy'; did you mean 'edge'?",
        "voices.yaml:4: defaults.loudness: unknown loudness preset 'loud'; choose one of "
        "'speech', 'podcast', 'broadcast', 'telephony'",
        "voices.yaml:9: phrases.default.en.text: 'agent' is undefined; define it under "
        "'variables:'",
        "voices.yaml:10: phrases.default.fr: unknown language 'fr' for phrase 'default'; declare "
        "it under 'languages:' or choose one of 'en'",
        "voices.yaml:12: phrases.quiet.en.text: text '!!!' has no letters or digits, so no "
        "engine can speak it; write words",
    ]


def test_duplicate_keys_are_errors(write_spec) -> None:  # type: ignore[no-untyped-def]
    """A key given twice is named with both lines."""
    got = errors(write_spec(MINIMAL + "phrases:\n  x:\n    en: hi\n"))
    assert got == ["voices.yaml:17: phrases: duplicate key 'phrases' (first at line 11); keep one"]


def test_python_tags_are_rejected(write_spec) -> None:  # type: ignore[no-untyped-def]
    """A tag that would construct a Python object is an error, never executed."""
    got = errors(write_spec(MINIMAL.replace("text: Hello!",
                                            "text: !!python/object/apply:os.system [id]")))
    assert len(got) == 1
    assert got[0].startswith("voices.yaml:16: fallback.text: YAML tag")
    assert "is not allowed" in got[0]


def test_yaml_syntax_error_names_the_line(write_spec) -> None:  # type: ignore[no-untyped-def]
    """Broken indentation yields one line-numbered message."""
    got = errors(write_spec("version: 1\nlanguages:\n  en: [\n"))
    assert len(got) == 1 and got[0].startswith("voices.yaml:")
    assert "YAML syntax error" in got[0]


def test_unknown_espeak_voice_is_an_error_with_suggestion(write_spec) -> None:  # type: ignore[no-untyped-def]
    """espeak's voice list ships with it, so a typo is an error."""
    got = errors(write_spec(MINIMAL.replace("{espeak: en-us}", "{espeak: en-uss}")))
    assert got == ["voices.yaml:8: languages.en.voices.espeak: unknown espeak voice 'en-uss'; "
                   "did you mean 'en-us'?"]


def test_template_phrase_renders_per_language(write_spec) -> None:  # type: ignore[no-untyped-def]
    """A phrase from templates/ is rendered once per listed language with `language` set."""
    text = MINIMAL + "  kids:\n    template: kids.j2\n    languages: [en, zh]\n"
    text = text.replace("fallback:\n  text: Hello!\n", "") + "fallback:\n  text: Hello!\n"
    spec = load_spec(write_spec(text, {"kids.j2": "{% if language == 'zh' %}你好{% else %}"
                                                  "Hello {{ agent_name }}{% endif %}\n"}))
    assert spec.clip("en_kids").text == "Hello Xiaozhi"
    assert spec.clip("zh_kids").text == "你好"


def test_template_undefined_variable_names_template_line(write_spec) -> None:  # type: ignore[no-untyped-def]
    """StrictUndefined inside a template file points into the template."""
    text = MINIMAL.replace('en: "Hi! I\'m {{ agent_name }}!"', "en: {template: t.j2}")
    got = errors(write_spec(text, {"t.j2": "Hello\n{{ nobody }}\n"}))
    assert got == ["voices.yaml:13: phrases.default.en.template: templates/t.j2:2: 'nobody' is "
                   "undefined; define it under 'variables:'"]


def test_sandbox_blocks_python_internals(write_spec) -> None:  # type: ignore[no-untyped-def]
    """Attribute access to Python internals in a template is refused."""
    text = MINIMAL.replace("Hi! I'm {{ agent_name }}!", "{{ agent_name.__class__.__mro__ }}")
    assert errors(write_spec(text)) == [
        "voices.yaml:13: phrases.default.en.text: template tried something unsafe (access to "
        "attribute '__class__' of 'str' object is unsafe.); templates may only use variables "
        "and filters"]


def test_template_cannot_escape_templates_dir(write_spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """'../voices.yaml' is not a template name."""
    text = MINIMAL.replace('en: "Hi! I\'m {{ agent_name }}!"', "en: {template: ../voices.yaml}")
    got = errors(write_spec(text))
    assert len(got) == 1 and "not found in templates/" in got[0]


def test_loudness_presets_and_numbers(write_spec) -> None:  # type: ignore[no-untyped-def]
    """Presets map to (target, ceiling); explicit numbers override and are range-checked."""
    preset = "engine: espeak\n  loudness: broadcast"
    spec = load_spec(write_spec(MINIMAL.replace("engine: espeak", preset)))
    assert (spec.loudness.target_lufs, spec.loudness.true_peak_ceiling_db) == (-23.0, -1.0)
    text = MINIMAL.replace("engine: espeak", "engine: espeak\n  loudness: {target_lufs: -60}")
    assert errors(write_spec(text)) == [
        "voices.yaml:4: defaults.loudness.target_lufs: -60 is out of range; use a number "
        "between -40 and -5"]


def test_recorded_take_must_stay_in_project(write_spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A recording path outside the project is refused unless allowed explicitly."""
    text = MINIMAL.replace("zh: \"你好！\"", "zh: {text: 你好, recording: ../../etc/passwd.wav}")
    got = errors(write_spec(text))
    assert got == ["voices.yaml:14: phrases.default.zh.recording: '../../etc/passwd.wav' is "
                   "outside the project; move the take next to voices.yaml or set "
                   "'allow_outside: true'"]


def test_sample_rates_always_include_48k(write_spec) -> None:  # type: ignore[no-untyped-def]
    """48 kHz is always built; unsupported rates are errors."""
    rates = "engine: espeak\n  sample_rates: [{}]"
    spec = load_spec(write_spec(MINIMAL.replace("engine: espeak", rates.format(24000))))
    assert spec.sample_rates == (48000, 24000)
    got = errors(write_spec(MINIMAL.replace("engine: espeak", rates.format(11025))))
    assert got[0].startswith("voices.yaml:4: defaults.sample_rates.0: 11025 is not a supported")


def test_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    """No voices.yaml: a message that says what to do."""
    assert errors(tmp_path / "voices.yaml") == [
        "voices.yaml: file not found; run greetkit in the directory of voices.yaml or pass -c PATH"]


def test_telephony_and_webrtc_rates_are_built_from_source_audio(tmp_path: Path) -> None:
    """sample_rates: [8000, 16000] builds real espeak variants at those rates, each as long as
    the 48 kHz clip and measured (BS.1770-4) at the target within 0.1 LU, true peak under the
    ceiling."""
    import json

    import soundfile as sf

    from greetkit import loudness
    from greetkit.build import build

    (tmp_path / "voices.yaml").write_text(
        "version: 1\ndefaults: {engine: espeak, sample_rates: [8000, 16000]}\n"
        "languages: {en: {voices: {espeak: en-us}}}\n"
        "phrases: {hello: {en: \"Hello, thanks for calling.\"}}\n", encoding="utf-8")
    result = build(tmp_path / "voices.yaml", tmp_path / "greetings")
    assert not result.failed, result.failed
    spec = load_spec(tmp_path / "voices.yaml")
    assert spec.sample_rates == (48000, 8000, 16000)
    store = tmp_path / "greetings"
    (clip,) = json.loads((store / "manifest.json").read_text(encoding="utf-8"))["clips"]
    base_seconds = clip["files"]["48000"]["samples"] / 48000
    assert sorted(clip["files"]) == ["16000", "48000", "8000"]
    for key, variant in clip["files"].items():
        if key == "48000":
            continue
        pcm, rate = sf.read(store / variant["file"], dtype="int16")
        assert rate == int(key)
        assert abs(len(pcm) / rate - base_seconds) < 0.002
        measured = loudness.measure(pcm, rate)
        assert abs(measured.integrated_lufs - spec.loudness.target_lufs) < 0.1
        assert measured.true_peak_db <= spec.loudness.true_peak_ceiling_db + 0.05


@pytest.mark.parametrize(("entry", "line", "path"), [
    ('zh: ""', 14, "phrases.default.zh.text"),
    ("zh: ''", 14, "phrases.default.zh.text"),
    ('zh: {text: ""}', 14, "phrases.default.zh.text"),
])
def test_empty_text_is_a_line_numbered_error(write_spec, entry: str, line: int,  # type: ignore[no-untyped-def]
                                             path: str) -> None:
    """An empty text is refused with its line, not silently dropped from the bank."""
    got = errors(write_spec(MINIMAL.replace('zh: "你好！"', entry)))
    assert got == [f"voices.yaml:{line}: {path}: text is empty; write what the clip should say"]


def test_empty_fallback_text_is_a_line_numbered_error(write_spec) -> None:  # type: ignore[no-untyped-def]
    """fallback: {text: ""} is an error: a bank without its fallback clip must not publish."""
    got = errors(write_spec(MINIMAL.replace("fallback:\n  text: Hello!", 'fallback: {text: ""}')))
    assert got == ["voices.yaml:15: fallback.text: text is empty; write what the clip should say"]


def test_empty_template_name_is_a_line_numbered_error(write_spec) -> None:  # type: ignore[no-untyped-def]
    """template: "" names no file; the error says so at its line."""
    got = errors(write_spec(MINIMAL.replace('zh: "你好！"', 'zh: {template: ""}')))
    assert got == ["voices.yaml:14: phrases.default.zh.template: template name is empty; name a "
                   "file in templates/, e.g. 'template: greeting.j2'"]


def test_short_form_without_text_says_to_write_it(write_spec) -> None:  # type: ignore[no-untyped-def]
    """The short form 'zh:' with nothing after it is told to write the text there."""
    got = errors(write_spec(MINIMAL.replace('zh: "你好！"', "zh:")))
    assert got == ["voices.yaml:14: phrases.default.zh: no text after 'zh:'; write it there, "
                   "e.g. 'zh: Hello!', or delete the line"]


def test_languages_that_normalize_alike_are_an_error_naming_both_lines(write_spec) -> None:  # type: ignore[no-untyped-def]
    """'zh_TW' and 'zh-tw' are one language to the loader: an error naming both lines."""
    path = write_spec("version: 1\nlanguages:\n  zh_TW: {voices: {espeak: cmn}}\n"
                      "  zh-tw: {voices: {espeak: cmn}}\n"
                      "phrases:\n  hi:\n    zh_TW: 你好\n    zh-tw: 您好\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert [str(i) for i in info.value.issues] == [
        "voices.yaml:4: languages.zh-tw: language 'zh-tw' is the same as 'zh_TW' (line 3; "
        "language codes ignore case and treat '-' like '_'); keep one of them"]


def test_clips_that_would_share_a_store_key_are_an_error_naming_both_lines(write_spec) -> None:  # type: ignore[no-untyped-def]
    """'en' + 'us_hi' and 'en_us' + 'hi' both make key 'en_us_hi': an error naming both."""
    path = write_spec("version: 1\nlanguages:\n  en: {voices: {espeak: en-us}}\n"
                      "  en_US: {voices: {espeak: en-us}}\n"
                      "phrases:\n  us_hi:\n    en: Hello\n  hi:\n    en_US: Howdy\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert [str(i) for i in info.value.issues] == [
        "voices.yaml:9: phrases.hi.en_US: clip 'en_US_hi' would share its store key with clip "
        "'en_us_hi' (line 7; keys ignore case and treat '-' like '_'); rename the phrase or "
        "the language"]


def test_every_key_of_the_schema_is_declared_with_a_docstring() -> None:
    """The schema is data: each section's keys carry a docstring, and the top level lists
    exactly the sections the README documents."""
    from greetkit.spec.fields import MapOf, Section
    from greetkit.spec.schema import VOICES_YAML

    undocumented: list[str] = []

    def walk(section: Section, where: str) -> None:
        for option in section.options:
            if not option.doc:
                undocumented.append(f"{where}.{option.name}")
            kind = option.kind.value if isinstance(option.kind, MapOf) else option.kind
            if isinstance(kind, Section):
                walk(kind, f"{where}.{option.name}")

    walk(VOICES_YAML, "voices.yaml")
    assert undocumented == []
    assert VOICES_YAML.names == ("version", "defaults", "variables", "languages", "phrases",
                                 "fallback", "engines")
