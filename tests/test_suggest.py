"""greetkit.suggest: the one "did you mean" policy."""

from __future__ import annotations

from greetkit.suggest import did_you_mean, suggest

VOICES = ["en-US-AvaNeural", "zh-CN-XiaoxiaoNeural", "zh-CN-YunxiNeural"]


def test_same_name_in_another_case_comes_first() -> None:
    """A name differing only in case is suggested as spelled in the choices."""
    assert suggest("en-us-avaneural", VOICES) == ["en-US-AvaNeural"]


def test_a_truncated_name_is_completed_alphabetically() -> None:
    """A prefix of several names suggests the alphabetically first one."""
    assert suggest("zh-CN-", VOICES) == ["zh-CN-XiaoxiaoNeural"]
    assert suggest("zh-CN-", VOICES, n=2) == ["zh-CN-XiaoxiaoNeural", "zh-CN-YunxiNeural"]


def test_a_name_containing_the_word_is_suggested() -> None:
    """A fragment from the middle of a name finds it."""
    assert suggest("yunxi", VOICES) == ["zh-CN-YunxiNeural"]


def test_misspellings_get_the_closest_names_best_first() -> None:
    """Transposed letters are matched by spelling, the closest first, at most n."""
    keys = ["en_default", "zh_default", "fallback"]
    assert suggest("zh_defualt", keys, n=3) == ["zh_default", "en_default"]
    assert suggest("zh_defualt", keys) == ["zh_default"]


def test_nothing_close_suggests_nothing() -> None:
    """An unrelated word, an empty word and no choices give no suggestion."""
    assert suggest("xyz", ["en", "zh"]) == []
    assert suggest("", ["en", "zh"]) == []
    assert suggest("en", []) == []


def test_did_you_mean_names_the_suggestion_or_the_choices() -> None:
    """The hint is 'did you mean', else the caller's text, else the list of choices."""
    assert did_you_mean("edgy", ["espeak", "edge"]) == "did you mean 'edge'?"
    assert did_you_mean("loud", ["speech", "podcast"]) == "choose one of 'speech', 'podcast'"
    assert did_you_mean("loud", ["speech"], otherwise="see the README") == "see the README"
    assert did_you_mean("fr", []) == "declare it first"


def test_names_equal_but_for_case_suggest_the_one_spelled_like_the_word() -> None:
    """Of 'en-US' and 'en-us', a lower-case typo gets 'en-us'."""
    assert suggest("en-uss", ["en-US", "en-us"]) == ["en-us"]
    assert suggest("en-USS", ["en-US", "en-us"]) == ["en-US"]


def test_names_alike_only_in_a_shared_suffix_are_not_suggested() -> None:
    """Two voices sharing 'Neural', or two unrelated language codes, are not typos."""
    assert suggest("zh-CN-XiaoxiaoNeural", ["en-US-AvaNeural"]) == []
    assert suggest("de", ["en"]) == []
