"""How a freshly revealed Temporary Access Pass is shown to the agent who reads it out over the
phone: its characters in groups of four, and each character spelt out (the NATO alphabet for
letters, with their case; digits and symbols by name), so that ``uNvi%z3@`` reaches the caller
as "lower-case uniform, capital November, ...".

Nothing here keeps the pass: it is spelt for one page and forgotten with it.
"""

from __future__ import annotations

from dataclasses import dataclass

GROUP_SIZE = 4

NATO: dict[str, str] = {
    "a": "alfa",
    "b": "bravo",
    "c": "charlie",
    "d": "delta",
    "e": "echo",
    "f": "foxtrot",
    "g": "golf",
    "h": "hotel",
    "i": "india",
    "j": "juliett",
    "k": "kilo",
    "l": "lima",
    "m": "mike",
    "n": "november",
    "o": "oscar",
    "p": "papa",
    "q": "quebec",
    "r": "romeo",
    "s": "sierra",
    "t": "tango",
    "u": "uniform",
    "v": "victor",
    "w": "whiskey",
    "x": "x-ray",
    "y": "yankee",
    "z": "zulu",
}
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SYMBOLS: dict[str, str] = {
    "!": "exclamation mark",
    '"': "double quote",
    "#": "hash",
    "$": "dollar sign",
    "%": "percent sign",
    "&": "ampersand",
    "'": "apostrophe",
    "(": "opening bracket",
    ")": "closing bracket",
    "*": "asterisk",
    "+": "plus sign",
    ",": "comma",
    "-": "hyphen",
    ".": "full stop",
    "/": "slash",
    ":": "colon",
    ";": "semicolon",
    "<": "less-than sign",
    "=": "equals sign",
    ">": "greater-than sign",
    "?": "question mark",
    "@": "at sign",
    "[": "opening square bracket",
    "\\": "backslash",
    "]": "closing square bracket",
    "^": "caret",
    "_": "underscore",
    "`": "backtick",
    "{": "opening curly bracket",
    "|": "vertical bar",
    "}": "closing curly bracket",
    "~": "tilde",
    " ": "space",
}


@dataclass(frozen=True)
class SpeltCharacter:
    """One character of the pass and how to say it."""

    char: str
    spoken: str


def tap_groups(value: str, size: int = GROUP_SIZE) -> list[str]:
    """``value`` in groups of ``size`` characters (the last may be shorter)."""
    return [value[i : i + size] for i in range(0, len(value), size)]


def spell_character(char: str) -> str:
    """How to say ``char`` over the phone: ``N`` is "capital November", ``u`` "lower-case
    uniform", ``3`` "digit three", ``%`` "percent sign"; anything else by its code point."""
    lower = char.lower()
    if char.isascii() and lower in NATO:
        word = NATO[lower]
        return f"capital {word.capitalize()}" if char.isupper() else f"lower-case {word}"
    if char.isascii() and char.isdigit():
        return f"digit {DIGITS[int(char)]}"
    if char in SYMBOLS:
        return SYMBOLS[char]
    return f"character U+{ord(char):04X}"


def tap_spelling(value: str, size: int = GROUP_SIZE) -> list[list[SpeltCharacter]]:
    """``value`` spelt out, character by character, in the same groups as :func:`tap_groups`."""
    return [
        [SpeltCharacter(char, spell_character(char)) for char in group]
        for group in tap_groups(value, size)
    ]
