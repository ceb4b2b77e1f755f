"""JSON Schema ``pattern``s parsed and checked: the syntax tree :mod:`model.automaton` compiles.

The accepted subset of ECMA-262 regular expressions (the dialect JSON Schema names) is
parsed in full, so a malformed pattern is refused instead of being enforced as some other
one; Python's ``re`` compiles each pattern too, as a second opinion:

- characters, ``.``, classes ``[a-z]`` and ``[^...]``, the shorthands ``\\d \\D \\w \\W
  \\s \\S``, escaped ASCII punctuation (``\\.``, ``\\-``, ...);
- groups ``(...)`` and ``(?:...)``, alternatives ``|``, quantifiers ``* + ? {n} {n,} {n,m}``
  with counts up to 1000 (a lazy ``?`` after one changes nothing for matching);
- ``^`` at the start and ``$`` at the end of the pattern or of a top-level alternative;
  without them a pattern may match anywhere in the string, as JSON Schema says.

Refused (a :class:`~model.json_schema.SchemaError` naming the place): lookaround, named
groups, backreferences, word boundaries, other escapes, ``"`` and ``\\`` (JSON text needs
escapes for them), control characters, a ``{`` that is no quantifier, ranges out of order,
counts whose maximum is below their minimum, and patterns that can never match.

Narrower than the pattern (the output still matches): no class, shorthand or ``.`` produces
``"``, ``\\``, DEL, a control character or a surrogate (JSON strings cannot hold them raw), so
``\\s`` is a space or one of Unicode's other spaces, never a tab or a newline.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

__all__ = [
    "JSON_CHARS",
    "Alt",
    "CharSet",
    "Chars",
    "Node",
    "PatternError",
    "Repeat",
    "Seq",
    "merge_chars",
    "parse_pattern",
]

#: Code point intervals, sorted, disjoint and not adjacent.
CharSet = tuple[tuple[int, int], ...]

#: What a JSON string holds without escapes: no '"', '\\', DEL, control character or surrogate.
JSON_CHARS: Final[CharSet] = (
    (0x20, 0x21),
    (0x23, 0x5B),
    (0x5D, 0x7E),
    (0x80, 0xD7FF),
    (0xE000, 0x10FFFF),
)
_MAX_COUNT: Final = 1000
_MAX_DEPTH: Final = 32
_DIGITS: Final = ((0x30, 0x39),)
_WORD: Final = ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A))
# ECMA-262 WhiteSpace and LineTerminator: what \s matches, so what \S must exclude.
_SPACES: Final = (
    (0x09, 0x0D),
    (0x20, 0x20),
    (0xA0, 0xA0),
    (0x1680, 0x1680),
    (0x2000, 0x200A),
    (0x2028, 0x2029),
    (0x202F, 0x202F),
    (0x205F, 0x205F),
    (0x3000, 0x3000),
    (0xFEFF, 0xFEFF),
)
_SHORTHANDS: Final = {"d": _DIGITS, "w": _WORD, "s": _SPACES}
# What '.' does not match (ECMA-262 line terminators; JSON_CHARS has no '\n' or '\r').
_LINE_BREAKS: Final = ((0x2028, 0x2029),)


class PatternError(Exception):
    """The pattern is malformed, or cannot (or may not) be enforced; the message says why."""


def merge_chars(intervals: Iterable[tuple[int, int]]) -> CharSet:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(intervals):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return tuple(out)


def _intersect(a: CharSet, b: CharSet) -> CharSet:
    out: list[tuple[int, int]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def _without(a: CharSet, b: CharSet) -> CharSet:
    """``a`` less every character of ``b``."""
    gaps: list[tuple[int, int]] = []
    start = 0
    for lo, hi in b:
        if lo > start:
            gaps.append((start, lo - 1))
        start = hi + 1
    gaps.append((start, 0x10FFFF))
    return _intersect(a, tuple(gaps))


def _single(chars: CharSet) -> bool:
    return len(chars) == 1 and chars[0][0] == chars[0][1]


# -- the syntax tree ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Chars:
    """One character of a set (empty: nothing matches)."""

    chars: CharSet


@dataclass(frozen=True, slots=True)
class Seq:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Alt:
    options: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Repeat:
    """``item`` ``low`` to ``high`` times."""

    item: Node
    low: int
    #: None: unbounded.
    high: int | None


Node = Chars | Seq | Alt | Repeat
_ANYTHING: Final = Repeat(Chars(JSON_CHARS), 0, None)


class _Parser:
    """Recursive descent over the accepted subset; positions in messages count from 0."""

    def __init__(self, text: str, where: str) -> None:
        self._text = text
        self._where = where
        self._i = 0

    def parse(self) -> Node:
        node = self._alternatives(0)
        if self._i < len(self._text):  # only a ')' stops the top level early
            raise self._malformed(f"unbalanced ')' at position {self._i}")
        return node

    def _malformed(self, problem: str) -> PatternError:
        return PatternError(
            f"the pattern at {self._where} is not a valid regular expression: {problem}"
        )

    def _refused(self, what: str) -> PatternError:
        return PatternError(f"{what} in the pattern at {self._where} cannot be enforced")

    def _peek(self) -> str:
        return self._text[self._i] if self._i < len(self._text) else ""

    def _alternatives(self, depth: int) -> Node:
        options = [self._sequence(depth)]
        while self._peek() == "|":
            self._i += 1
            options.append(self._sequence(depth))
        return options[0] if len(options) == 1 else Alt(tuple(options))

    def _sequence(self, depth: int) -> Node:
        text = self._text
        items: list[Node] = []
        starts = ends = False
        if depth == 0 and self._peek() == "^":
            starts = True
            self._i += 1
        while self._i < len(text) and text[self._i] not in "|)":
            if depth > 0 and text[self._i :] == "$":
                break  # "^(ab$": the group is what is wrong, and its caller says so
            if depth == 0 and text[self._i] == "$" and text[self._i + 1 : self._i + 2] in "|":
                ends = True
                self._i += 1
                break
            items.append(self._quantified(self._atom(depth)))
        if depth == 0:
            # Unanchored, a pattern matches anywhere in the string (JSON Schema).
            items = [*([] if starts else [_ANYTHING]), *items, *([] if ends else [_ANYTHING])]
        return items[0] if len(items) == 1 else Seq(tuple(items))

    def _atom(self, depth: int) -> Node:
        c = self._text[self._i]
        at = self._i
        self._i += 1
        if c == "(":
            return self._group(depth, at)
        if c == "[":
            return Chars(self._class(at))
        if c == ".":
            return Chars(_without(JSON_CHARS, _LINE_BREAKS))
        if c == "\\":
            return Chars(_intersect(self._escape(), JSON_CHARS))
        if c in "*+?":
            raise self._malformed(f"nothing to repeat at position {at}")
        if c == "{":
            raise self._refused(f"'{{' at position {at} (not a quantifier; write \\{{)")
        if c in "^$":
            raise self._refused(f"{c!r} at position {at} (only at the start or end)")
        return Chars(self._literal(c))

    def _literal(self, c: str) -> CharSet:
        if c in '"\\\x7f' or c < " ":
            raise self._refused(repr(c))
        if 0xD800 <= ord(c) <= 0xDFFF:
            raise self._refused(f"the lone surrogate {c!r}")
        return ((ord(c), ord(c)),)

    def _group(self, depth: int, at: int) -> Node:
        if depth + 1 > _MAX_DEPTH:
            raise self._refused(f"groups nested deeper than {_MAX_DEPTH}")
        if self._peek() == "?":
            if not self._text.startswith("?:", self._i):
                raise self._refused(f"lookaround or a named group at position {at}")
            self._i += 2
        node = self._alternatives(depth + 1)
        if self._peek() != ")":
            raise self._malformed(f"missing ')' for the group opened at position {at}")
        self._i += 1
        return node

    def _quantified(self, node: Node) -> Node:
        c = self._peek()
        at = self._i
        if c == "*":
            low, high = 0, None
        elif c == "+":
            low, high = 1, None
        elif c == "?":
            low, high = 0, 1
        elif c == "{":
            low, high = self._counts()
        else:
            return node
        self._i += 1 if c != "{" else 0
        if self._peek() == "?":  # lazy: the same strings match
            self._i += 1
        if self._peek() in ("*", "+", "?", "{"):
            raise self._malformed(f"nothing to repeat at position {self._i}")
        if high is not None and high < low:
            raise self._malformed(
                f"the quantifier at position {at} has its maximum {high} below its minimum {low}"
            )
        if low > _MAX_COUNT or (high or 0) > _MAX_COUNT:
            raise self._refused(f"a count above {_MAX_COUNT} at position {at}")
        return Repeat(node, low, high)

    def _counts(self) -> tuple[int, int | None]:
        found = re.compile(r"\{(\d{1,7})(,(\d{0,7}))?\}").match(self._text, self._i)
        if found is None:
            raise self._refused(f"'{{' at position {self._i} (not a quantifier; write \\{{)")
        self._i = found.end()
        low = int(found.group(1))
        if found.group(2) is None:
            return low, low
        return low, int(found.group(3)) if found.group(3) else None

    def _class(self, at: int) -> CharSet:
        negated = self._peek() == "^"
        self._i += negated
        if self._peek() == "]":
            raise self._refused(f"the empty class at position {at} (write \\] for ']')")
        members: list[tuple[int, int]] = []
        while True:
            if self._i >= len(self._text):
                raise self._malformed(f"missing ']' for the class opened at position {at}")
            if self._peek() == "]":
                self._i += 1
                break
            first = self._class_atom()
            if self._peek() == "-" and self._text[self._i + 1 : self._i + 2] not in ("]", ""):
                self._i += 1
                last = self._class_atom()
                if not _single(first) or not _single(last):
                    raise self._malformed(f"a range with a shorthand in the class at {at}")
                if last[0][0] < first[0][0]:
                    lo, hi = chr(first[0][0]), chr(last[0][0])
                    raise self._malformed(f"the range {lo}-{hi} is out of order")
                members.append((first[0][0], last[0][0]))
            else:
                members.extend(first)
        # The class means what it says; only then is it cut to what JSON text holds raw
        # (cutting shorthands first would widen a negated class).
        chosen = merge_chars(members)
        return _without(JSON_CHARS, chosen) if negated else _intersect(chosen, JSON_CHARS)

    def _class_atom(self) -> CharSet:
        c = self._text[self._i]
        self._i += 1
        if c == "\\":
            return self._escape()
        return self._literal(c)

    def _escape(self) -> CharSet:
        """The characters an escape stands for, all of them (callers cut to JSON_CHARS)."""
        if self._i >= len(self._text):
            raise self._malformed("the pattern ends with a lone '\\'")
        e = self._text[self._i]
        self._i += 1
        if e.lower() in _SHORTHANDS:
            chars = _SHORTHANDS[e.lower()]
            return chars if e.islower() else _without(((0, 0x10FFFF),), chars)
        if e.isascii() and not e.isalnum() and e.isprintable() and e not in '"\\':
            return ((ord(e), ord(e)),)
        raise self._refused(f"the escape '\\{e}'")


def parse_pattern(pattern: str, where: str) -> Node:
    """The syntax tree of ``pattern``; ``where`` (a schema path) is named in errors.

    Unanchored sides match any JSON string characters (the tree spells that out).

    :raises PatternError: see the module notes.
    """
    tree = _Parser(pattern, where).parse()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "possible nested set" and the like
            re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise PatternError(
            f"the pattern at {where} is not a valid regular expression: {exc}"
        ) from None
    return tree
