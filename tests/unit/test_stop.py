from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.stop import StopMatcher

# A small alphabet so that stops, overlaps and partial prefixes actually occur.
_TEXT = st.text(alphabet="ab\n", max_size=40)
_STOPS = st.lists(st.text(alphabet="ab\n", max_size=5), max_size=4)


def _expected(text: str, stops: list[str]) -> tuple[str, bool]:
    found = [index for stop in stops if stop and (index := text.find(stop)) >= 0]
    return (text[: min(found)], True) if found else (text, False)


def _longest_live_tail(text: str, stops: list[str]) -> str:
    for start in range(len(text) + 1):
        tail = text[start:]
        if tail and any(len(tail) < len(stop) and stop.startswith(tail) for stop in stops):
            return tail
    return ""


def _split(text: str, cuts: list[int]) -> list[str]:
    bounds = [0, *sorted(cuts), len(text)]
    return [text[start:end] for start, end in itertools.pairwise(bounds)]


@given(data=st.data(), text=_TEXT, stops=_STOPS)
def test_any_split_emits_the_text_before_the_earliest_stop(
    data: st.DataObject, text: str, stops: list[str]
) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=len(text) + 2))
    matcher = StopMatcher(stops)
    emitted, consumed, matched = "", "", False
    for piece in _split(text, cuts):
        out, matched = matcher.push(piece)
        emitted += out
        consumed += piece
        if matched:
            break
        # Maximally incremental: exactly the longest possible stop prefix is held back.
        assert emitted + matcher.held == consumed
        assert matcher.held == _longest_live_tail(consumed, stops)
    if not matched:
        emitted += matcher.flush()

    assert (emitted, matcher.matched) == _expected(text, stops)
    if matched:
        assert matcher.push("more") == ("", True)


@pytest.mark.parametrize("stops", [[], [""], ["", ""]])
def test_without_stops_text_passes_straight_through(stops: list[str]) -> None:
    matcher = StopMatcher(stops)
    assert matcher.push("Hello <|im_end|>") == ("Hello <|im_end|>", False)
    assert matcher.held == ""
    assert matcher.flush() == ""
    assert not matcher.matched


def test_stop_split_across_three_pushes() -> None:
    matcher = StopMatcher(["<|im_end|>"])
    assert matcher.push("Hello <|im") == ("Hello ", False)
    assert matcher.held == "<|im"
    assert matcher.push("_en") == ("", False)
    assert matcher.push("d|> trailing") == ("", True)
    assert matcher.matched


def test_overlapping_prefix_releases_only_what_cannot_match() -> None:
    matcher = StopMatcher(["aab"])
    assert matcher.push("a") == ("", False)
    assert matcher.push("a") == ("", False)
    assert matcher.push("a") == ("a", False)
    assert matcher.held == "aa"
    assert matcher.push("b") == ("", True)


def test_later_listed_stop_occurring_earlier_wins() -> None:
    matcher = StopMatcher(["world", "lo"])
    assert matcher.push("hello world") == ("hel", True)


def test_partial_prefix_is_released_when_it_turns_out_not_to_match() -> None:
    matcher = StopMatcher(["</s>"])
    assert matcher.push("a <") == ("a ", False)
    assert matcher.held == "<"
    assert matcher.push("/") == ("", False)
    assert matcher.push("b>") == ("</b>", False)
    assert matcher.held == ""
    assert matcher.flush() == ""
    assert not matcher.matched


def test_held_prefix_is_returned_by_flush() -> None:
    matcher = StopMatcher(["\nUser:"])
    assert matcher.push("Sure.\nUs") == ("Sure.", False)
    assert matcher.flush() == "\nUs"
    assert not matcher.matched


def test_shorter_stop_waits_for_a_longer_one_that_started_earlier() -> None:
    matcher = StopMatcher(["aba", "b"])
    assert matcher.push("ab") == ("", False)
    assert matcher.push("a") == ("", True)


def test_shorter_stop_wins_once_the_longer_one_fails() -> None:
    matcher = StopMatcher(["aba", "b"])
    assert matcher.push("ab") == ("", False)
    assert matcher.push("c") == ("a", True)


def test_flush_cuts_at_a_stop_confirmed_by_the_end_of_the_stream() -> None:
    matcher = StopMatcher(["aba", "b"])
    assert matcher.push("ab") == ("", False)
    assert matcher.flush() == "a"
    assert matcher.matched


def test_push_after_match_returns_nothing() -> None:
    matcher = StopMatcher(["."])
    assert matcher.push("one. two") == ("one", True)
    assert matcher.push("three") == ("", True)
    assert matcher.flush() == ""
