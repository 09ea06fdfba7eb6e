"""Resolution of a checked voices.yaml into clips (greetkit/resolve.py)."""

from __future__ import annotations

import pytest

from greetkit.errors import SpecError
from greetkit.spec import load_spec

HEAD = """\
version: 1
defaults: {engine: espeak, sample_rates: [16000], loudness: broadcast}
languages:
  en: {voices: {espeak: en-us, recorded: ignored}, rate: "+10%"}
  de: {voices: {espeak: de}, engine: espeak}
"""


def test_engine_precedence_entry_over_language_over_phrase_over_default(write_spec) -> None:  # type: ignore[no-untyped-def]
    """An entry's engine wins; else the language's; else the phrase's; else the default."""
    path = write_spec(HEAD.replace("en-us, recorded", "en-us, edge: en-US-AvaNeural, recorded")
                      .replace("{espeak: de}", "{espeak: de, edge: de-DE-KatjaNeural}")
                      + "phrases:\n"
                      "  hi:\n    engine: edge\n    en: Hello\n    de: Hallo\n"
                      "  bye:\n    engine: edge\n    en: {text: Bye, engine: espeak}\n"
                      "  ok:\n    en: Okay\n")
    spec = load_spec(path)
    assert {c.key: (c.engine, c.voice) for c in spec.clips} == {
        "en_hi": ("edge", "en-US-AvaNeural"), "de_hi": ("espeak", "de"),
        "en_bye": ("espeak", "en-us"), "en_ok": ("espeak", "en-us")}
    assert spec.clip("en_hi").draft_voice == "en-us"


def test_recording_entry_uses_the_recorded_engine(write_spec, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """'recording:' makes the clip a recorded take with its absolute path in the options."""
    import numpy as np
    import soundfile as sf

    sf.write(tmp_path / "take.wav", np.zeros(4800, dtype=np.int16), 48000, subtype="PCM_16")
    spec = load_spec(write_spec(HEAD + "phrases:\n  hi:\n"
                                "    en: {text: Hello, recording: take.wav}\n"))
    clip = spec.clip("en_hi")
    assert (clip.engine, clip.voice) == ("recorded", "ignored")
    assert clip.options["recording"] == str((tmp_path / "take.wav").resolve())


def test_options_merge_language_delivery_under_the_entrys(write_spec) -> None:  # type: ignore[no-untyped-def]
    """Delivery options: the language's, then the entry's on top."""
    spec = load_spec(write_spec(HEAD + "phrases:\n  hi:\n"
                                "    en: {text: Hello, pitch: +5Hz, rate: '-5%'}\n"))
    assert dict(spec.clip("en_hi").options) == {"rate": "-5%", "pitch": "+5Hz"}


def test_loudness_numbers_override_the_inherited_preset(write_spec) -> None:  # type: ignore[no-untyped-def]
    """The bank's preset, a phrase's number on top, an entry's preset replacing both."""
    spec = load_spec(write_spec(HEAD + "phrases:\n  hi:\n"
                                "    loudness: {true_peak_db: -3}\n"
                                "    en: Hello\n"
                                "    de: {text: Hallo, loudness: telephony}\n"))
    en, de = spec.clip("en_hi").loudness, spec.clip("de_hi").loudness
    assert (en.target_lufs, en.true_peak_ceiling_db, en.preset) == (-23.0, -3.0, None)
    assert de.preset == "telephony"


def test_every_clip_carries_the_banks_rates(write_spec) -> None:  # type: ignore[no-untyped-def]
    """Each resolved clip lists the rates it is stored at, 48 kHz first."""
    spec = load_spec(write_spec(HEAD + "phrases:\n  hi:\n    en: Hello\n"
                                "fallback: {language: de, text: Hallo}\n"))
    assert {c.key: c.sample_rates for c in spec.clips} == {
        "en_hi": (48000, 16000), "fallback": (48000, 16000)}
    assert spec.clip("fallback").language == "de"


def test_template_languages_limit_the_phrase(write_spec) -> None:  # type: ignore[no-untyped-def]
    """A template with 'languages:' makes clips for those only, and says so in spec.only."""
    spec = load_spec(write_spec(HEAD + "phrases:\n  hi:\n    template: t.j2\n"
                                "    languages: [de]\n", {"t.j2": "Hallo {{ language }}"}))
    assert [c.key for c in spec.clips] == ["de_hi"]
    assert spec.clip("de_hi").text == "Hallo de"
    assert dict(spec.only) == {"hi": ("de",)}


def test_schema_and_resolve_problems_are_reported_together(write_spec) -> None:  # type: ignore[no-untyped-def]
    """A malformed value (schema) and an undeclared language (resolve) in one error."""
    path = write_spec(HEAD + "phrases:\n  hi:\n    en: {text: Hello, rate: fast}\n"
                      "    fr: Salut\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert [str(i) for i in info.value.issues] == [
        "voices.yaml:8: phrases.hi.en.rate: 'fast' is not a rate; write it like '+10%'",
        "voices.yaml:9: phrases.hi.fr: unknown language 'fr' for phrase 'hi'; declare it under "
        "'languages:' or choose one of 'en', 'de'",
    ]


def test_audition_takes_the_languages_voice_options_and_the_banks_loudness(write_spec) -> None:  # type: ignore[no-untyped-def]
    """An ad-hoc text resolves like a phrase: variables filled, the language's espeak voice
    and delivery, the bank's loudness."""
    from greetkit.resolve import audition_clip

    spec = load_spec(write_spec(HEAD.replace("version: 1\n", "version: 1\nvariables: {n: Ada}\n")
                                + "phrases:\n  hi:\n    en: Hello\n"))
    clip, notes = audition_clip("Hi {{ n }}", spec, language="en")
    assert (clip.text, clip.engine, clip.voice, clip.draft_voice) == (
        "Hi Ada", "espeak", "en-us", "en-us")
    assert dict(clip.options) == {"rate": "+10%"}
    assert clip.loudness.preset == "broadcast" and notes == ()


def test_audition_text_follows_the_rule_for_clip_texts(write_spec) -> None:  # type: ignore[no-untyped-def]
    """Text a voices.yaml clip may not have (here: no letters) is refused, naming --text."""
    from greetkit.resolve import audition_clip

    with pytest.raises(SpecError) as info:
        audition_clip("...", None, language="en")
    assert [str(i) for i in info.value.issues] == [
        "--text: text '...' has no letters or digits, so no engine can speak it; write words"]
