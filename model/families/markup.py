"""Matching tool-call markup in streamed text: call heads, JSON extents, partial markers.

A call head (the markup from a block's opener up to its arguments) is written as a sequence
of steps, and matched against the text seen so far with three outcomes: it is a head (and where
the arguments start), it cannot be one, or it could still become one (more text is needed).
Streaming parsers hold text back exactly while the answer is the last.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "NAME_CHARS",
    "WHITESPACE",
    "ArgsStart",
    "HeadMatch",
    "JsonExtent",
    "Lit",
    "Name",
    "Skip",
    "Step",
    "Ws",
    "canonical_json",
    "match_any",
    "match_steps",
    "partial_suffix",
]

#: The characters of an OpenAI function name.
NAME_CHARS: Final = frozenset(string.ascii_letters + string.digits + "_-")
WHITESPACE: Final = " \t\r\n"
_MAX_NAME: Final = 64


@dataclass(frozen=True, slots=True)
class Lit:
    """One of these literal strings."""

    options: tuple[str, ...]

    def __init__(self, *options: str) -> None:
        object.__setattr__(self, "options", options)


@dataclass(frozen=True, slots=True)
class Ws:
    """Optional whitespace, at most ``limit`` characters (more cannot be a head)."""

    limit: int = 32


@dataclass(frozen=True, slots=True)
class Name:
    """A function name: one of the known names, or any valid name when none are known."""


@dataclass(frozen=True, slots=True)
class Skip:
    """One to ``limit`` characters of ``chars`` (an id, a content type), not kept."""

    chars: frozenset[str]
    limit: int = 64


@dataclass(frozen=True, slots=True)
class ArgsStart:
    """The ``{`` that opens the arguments, not consumed."""


Step = Lit | Ws | Name | Skip | ArgsStart


@dataclass(frozen=True, slots=True)
class HeadMatch:
    """``yes``: a head ending at ``end`` (where the arguments begin) naming ``name``;
    ``no``: the text cannot begin one; ``more``: it could still, given more text."""

    status: Literal["yes", "no", "more"]
    end: int = 0
    name: str = ""


_NO: Final = HeadMatch("no")
_MORE: Final = HeadMatch("more")


def match_steps(
    text: str, pos: int, steps: Sequence[Step], names: frozenset[str] | None
) -> HeadMatch:
    """Match ``steps`` against ``text`` from ``pos``."""
    name = ""
    for step in steps:
        if isinstance(step, Ws):
            end = pos
            while end < len(text) and text[end] in WHITESPACE:
                end += 1
            if end - pos > step.limit:
                return _NO
            if end == len(text):
                return _MORE
            pos = end
        elif isinstance(step, Lit):
            rest = text[pos : pos + max(map(len, step.options))]
            literal = next((option for option in step.options if rest.startswith(option)), None)
            if literal is None:
                return _MORE if any(option.startswith(rest) for option in step.options) else _NO
            pos += len(literal)
        elif isinstance(step, Name):
            end = pos
            while end < len(text) and text[end] in NAME_CHARS and end - pos <= _MAX_NAME:
                end += 1
            name = text[pos:end]
            if len(name) > _MAX_NAME or (
                names is not None and not any(known.startswith(name) for known in names)
            ):
                return _NO
            if end == len(text):
                return _MORE
            if not name or (names is not None and name not in names):
                return _NO
            pos = end
        elif isinstance(step, Skip):
            end = pos
            while end < len(text) and text[end] in step.chars and end - pos <= step.limit:
                end += 1
            if end - pos > step.limit:
                return _NO
            if end == len(text):
                return _MORE
            if end == pos:
                return _NO
            pos = end
        else:
            if pos == len(text):
                return _MORE
            return HeadMatch("yes", pos, name) if text[pos] == "{" else _NO
    return HeadMatch("yes", pos, name)


def match_any(
    text: str, pos: int, alternatives: Sequence[Sequence[Step]], names: frozenset[str] | None
) -> HeadMatch:
    """The first alternative that matches, in order; an earlier one that could still match
    makes the answer ``more``, so that any split of the text gives the same result."""
    for steps in alternatives:
        found = match_steps(text, pos, steps, names)
        if found.status != "no":
            return found
    return _NO


class JsonExtent:
    """Finds where a JSON object or array ends in streamed text.

    ``stop``: characters that, outside a JSON string, mean the value broke off before them
    (the markup after it has begun).
    """

    __slots__ = ("_depth", "_escaped", "_in_string", "_stop")

    def __init__(self, stop: str = "") -> None:
        self._stop = stop
        self._depth = 0
        self._in_string = False
        self._escaped = False

    def feed(self, text: str) -> tuple[int, bool]:
        """How much of ``text`` belongs to the value, and whether the value ended there."""
        for i, char in enumerate(text):
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif char == "\\":
                    self._escaped = True
                elif char == '"':
                    self._in_string = False
            elif char == '"':
                self._in_string = True
            elif char in "{[":
                self._depth += 1
            elif char in "}]":
                self._depth -= 1
                if self._depth <= 0:
                    return i + 1, True
            elif char in self._stop:
                return i, True
        return len(text), False


def canonical_json(text: str) -> str:
    """JSON text without the whitespace outside strings (how two calls' arguments compare)."""
    out: list[str] = []
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in WHITESPACE:
            continue
        out.append(char)
    return "".join(out)


def partial_suffix(text: str, markers: Sequence[str]) -> int:
    """The length of the longest end of ``text`` that begins one of ``markers``."""
    longest = 0
    for marker in markers:
        for size in range(min(len(marker) - 1, len(text)), longest, -1):
            if text.endswith(marker[:size]):
                longest = size
                break
    return longest
