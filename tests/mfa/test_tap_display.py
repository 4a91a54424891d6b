"""The pass as the agent reads it out (issue 13, "TAP display"): grouped by four, each character
spelt with its case. If this failed, an agent would read ``uNvi%z3@`` to a caller with nothing
telling a capital N from a lower-case one, or a percent sign from a letter."""

from __future__ import annotations

from mfa.tap_display import spell_character, tap_groups, tap_spelling


def test_the_issues_example_is_grouped_and_spelt_with_its_case() -> None:
    assert tap_groups("uNvi%z3@") == ["uNvi", "%z3@"]
    spoken = [[c.spoken for c in group] for group in tap_spelling("uNvi%z3@")]
    assert spoken == [
        ["lower-case uniform", "capital November", "lower-case victor", "lower-case india"],
        ["percent sign", "lower-case zulu", "digit three", "at sign"],
    ]


def test_a_last_group_may_be_short_and_an_unknown_character_is_named_by_code_point() -> None:
    assert tap_groups("abcdefghij") == ["abcd", "efgh", "ij"]
    assert spell_character("é") == "character U+00E9"
    assert spell_character("X") == "capital X-ray"
