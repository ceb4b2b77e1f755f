"""model.pattern and model.automaton: what a schema pattern means, what is refused, and the
grammar llama.cpp gets for it."""

from __future__ import annotations

import bisect
import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from model.automaton import Automaton, compile_pattern
from model.grammar import json_schema_grammar
from model.pattern import PatternError
from tests.model.embedded import EmbeddedModel


def _matches(automaton: Automaton, text: str) -> bool:
    state = 0
    for char in text:
        code = ord(char)
        for chars, target in automaton.moves[state]:
            k = bisect.bisect_right([lo for lo, _ in chars], code) - 1
            if k >= 0 and chars[k][1] >= code:
                state = target
                break
        else:
            return False
    return automaton.accepting[state]


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        # Accepted before and enforced as some other pattern: each is malformed.
        ("^(ab$", "missing ')' for the group opened at position 1"),
        ("^([a-z]$", "missing ')' for the group opened at position 1"),
        ("^ab(c|d$", "missing ')' for the group opened at position 3"),
        ("^a{3,1}$", "maximum 1 below its minimum 3"),
        ("[z-a]", "the range z-a is out of order"),
        ("^[z-a]$", "the range z-a is out of order"),
        ("a**", "nothing to repeat"),
        ("*a", "nothing to repeat"),
        ("a|?", "nothing to repeat"),
        ("ab)", "unbalanced ')'"),
        ("[ab", "missing ']'"),
        ("ab\\", "lone '\\'"),
        ("[a-\\d]", "a range with a shorthand"),
    ],
)
def test_malformed_patterns_are_refused(pattern: str, problem: str) -> None:
    with pytest.raises(PatternError) as caught:
        compile_pattern(pattern, "#/properties/c/pattern")
    message = str(caught.value)
    assert message.startswith("the pattern at #/properties/c/pattern is not a valid regular")
    assert problem in message


@pytest.mark.parametrize(
    ("pattern", "what"),
    [
        ("^(?=a)b$", "lookaround"),
        ("^(?<n>a)$", "named group"),
        ("^a\\1$", "the escape '\\1'"),
        ("\\bword", "the escape '\\b'"),
        ("\\u0041", "the escape '\\u'"),
        ('say "hi"', "'\"'"),
        ("a{", "'{' at position 1"),
        ("a{,5}", "'{' at position 1"),  # a count in Python, a literal in ECMA-262
        ("[]a]", "the empty class"),
        ("a^b", "'^' at position 1"),
        ("(a$|b)", "'$' at position 2"),
        ("a{1001}", "a count above 1000"),
        ("x{99999999999}", "'{' at position 1"),
        ("(" * 40 + "a" + ")" * 40, "groups nested deeper than 32"),
    ],
)
def test_patterns_outside_the_subset_are_refused(pattern: str, what: str) -> None:
    with pytest.raises(PatternError) as caught:
        compile_pattern(pattern, "#/pattern")
    assert what in str(caught.value)
    assert "#/pattern" in str(caught.value)


@pytest.mark.parametrize("pattern", ["[^\\s\\S]", "^[^\\d\\D]$", "^a[^\\w\\W]b"])
def test_patterns_that_can_never_match_are_refused(pattern: str) -> None:
    with pytest.raises(PatternError, match="can never match"):
        compile_pattern(pattern, "#/pattern")


@pytest.mark.parametrize(
    ("pattern", "bound"),
    [
        # Both froze the engine (llama.cpp's grammar explored their ambiguity for ever).
        ("^([a-z]{0,50}){0,50}$", "too complex"),
        ("^(a{0,1000}){0,1000}$", "too large"),
        ("^(\\w{1,40}\\s?){1,50}$", "too complex"),
        (".*a.{20}", "too complex"),  # 2**20 states as a deterministic automaton
    ],
)
def test_patterns_past_the_cost_bounds_are_refused(pattern: str, bound: str) -> None:
    with pytest.raises(PatternError, match=bound) as caught:
        compile_pattern(pattern, "#/properties/x/pattern")
    assert "#/properties/x/pattern" in str(caught.value)


@pytest.mark.parametrize(
    ("pattern", "yes", "no"),
    [
        ("^\\d{3}-\\d{4}$", ["555-1234"], ["55-1234", "555-12345", "\uff15\uff15\uff15-1234"]),
        ("ab|cd", ["ab", "xcdx", "abab"], ["ac", ""]),
        ("^a$|^b", ["a", "b", "bcd"], ["ab", "cb"]),
        ("^([a-z]{0,10}){0,10}$", ["", "abc", "a" * 100], ["a" * 101, "A"]),
        # Froze the engine as nested GBNF; as an automaton it is [a-z]{0,50}, 51 states.
        ("^([a-z]?){0,50}$", ["", "a" * 50], ["a" * 51]),
        ("^[^a-c]+$", ["xyz", "é!"], ["xa", ""]),
        ("^\\S+$", ["a-b"], ["a b", "a\u00a0b"]),
        ("^\\s$", [" ", "\u3000"], ["a"]),
        ("^.$", ["é"], ["\u2028", "ab"]),
        ("^[\\w.]+@[\\w-]+\\.[a-z]{2,}$", ["a.b@c-d.org"], ["a@b", "a b@c.de"]),
        ("^(a|ab)*c$", ["c", "abac", "aaabc"], ["abbc"]),
        ("^x*?y+?$", ["y", "xxyy"], ["x"]),  # lazy quantifiers match the same strings
        ("^$", [""], ["a"]),
    ],
)
def test_what_a_pattern_matches(pattern: str, yes: list[str], no: list[str]) -> None:
    automaton = compile_pattern(pattern, "#")
    for text in yes:
        assert _matches(automaton, text), text
    for text in no:
        assert not _matches(automaton, text), text


def test_json_text_characters_are_never_produced() -> None:
    # '"', '\\' and control characters need escapes in JSON text: no class yields them raw.
    automaton = compile_pattern("^[ -~]*[^a]$", "#")
    assert _matches(automaton, "ok!")
    for text in ('say "hi"', "back\\slash", "tab\there", "\x7f"):
        assert not _matches(automaton, text)


# Random patterns of the accepted subset against Python's re on the same strings: the
# automaton must match exactly what the pattern means. Strings stay in printable ASCII plus
# two letters, where ECMA-262 and Python (in ASCII mode) agree on every construct used.
_ALPHABET = "abc1 -é"
_ATOMS = st.sampled_from(
    [
        "a",
        "b",
        "c",
        "1",
        " ",
        "-",
        ".",
        "[ab]",
        "[^a]",
        "[a-c1]",
        "\\d",
        "\\w",
        "\\s",
        "\\D",
        "\\W",
        "\\S",
        "é",
    ]
)
_QUANTIFIERS = st.sampled_from(["", "", "*", "+", "?", "{2}", "{1,}", "{0,2}", "{1,3}", "*?"])


def _pattern_strategy() -> st.SearchStrategy[str]:
    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        group = st.builds(lambda a, b: f"({a}|{b})", inner, inner) | inner.map(lambda a: f"(?:{a})")
        return st.lists(
            st.tuples(group | _ATOMS, _QUANTIFIERS).map("".join), min_size=1, max_size=3
        ).map("".join)

    body = st.recursive(
        st.lists(st.tuples(_ATOMS, _QUANTIFIERS).map("".join), min_size=1, max_size=3).map("".join),
        extend,
        max_leaves=6,
    )
    return st.tuples(st.sampled_from(["", "^"]), body, st.sampled_from(["", "$"])).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pattern=_pattern_strategy(),
    texts=st.lists(st.text(_ALPHABET, max_size=8), min_size=8, max_size=8),
)
def test_the_automaton_matches_what_python_re_matches(pattern: str, texts: list[str]) -> None:
    try:
        automaton = compile_pattern(pattern, "#")
    except PatternError as exc:
        assume("can never match" not in str(exc) and "too" not in str(exc))
        raise
    reference = re.compile(pattern, re.ASCII)
    for text in texts:
        assert _matches(automaton, text) == bool(reference.search(text)), (pattern, text)


@pytest.mark.parametrize(
    ("text", "accepted"),
    [
        ('"abc"', True),
        ('"' + "a" * 100 + '"', True),
        ('"' + "a" * 101 + '"', False),
        ('"aB"', False),
        ('""', True),
    ],
)
def test_llama_cpp_enforces_the_automaton(
    vocab_model: EmbeddedModel, text: str, accepted: bool
) -> None:
    grammar = json_schema_grammar({"type": "string", "pattern": "^([a-z]{0,10}){0,10}$"})
    assert vocab_model.accepts(grammar, text) is accepted
