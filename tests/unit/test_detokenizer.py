from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from model.detokenizer import Detokenizer

# Multi-byte and multi-code-point material that byte-fallback vocabularies split across tokens.
_TRICKY = ["é", "e\u0301", "中文", "日本語", "😀", "👍🏽", "👨\u200d👩\u200d👧", "🇫🇷", "क्"]
_TEXT = st.lists(st.one_of(st.characters(codec="utf-8"), st.sampled_from(_TRICKY))).map("".join)


def _detokenizer(chunks: list[bytes]) -> Detokenizer:
    return Detokenizer(chunks.__getitem__)


def _decode_all(chunks: list[bytes]) -> tuple[list[str], str]:
    detokenizer = _detokenizer(chunks)
    return [detokenizer.push(token) for token in range(len(chunks))], detokenizer.flush()


@given(data=st.data(), text=_TEXT)
def test_any_split_of_valid_text_round_trips(data: st.DataObject, text: str) -> None:
    encoded = text.encode()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(encoded)), max_size=len(encoded) + 2)))
    bounds = [0, *cuts, len(encoded)]
    chunks = [encoded[start:end] for start, end in itertools.pairwise(bounds)]

    pushed, flushed = _decode_all(chunks)

    assert "".join(pushed) + flushed == text
    assert all("\ufffd" not in piece for piece in pushed)


def test_character_split_across_tokens_comes_out_whole() -> None:
    chunks = [b"a", *(bytes([byte]) for byte in "😀".encode()), b"b"]
    assert _decode_all(chunks) == (["a", "", "", "", "😀", "b"], "")


def test_complete_character_is_emitted_with_its_last_byte() -> None:
    detokenizer = _detokenizer(["中".encode()[:2], "中".encode()[2:] + b"x"])
    assert detokenizer.push(0) == ""
    assert detokenizer.push(1) == "中x"


def test_invalid_byte_is_replaced_immediately() -> None:
    detokenizer = _detokenizer([b"ok\xff", b"\xc0", b"!"])
    assert detokenizer.push(0) == "ok\ufffd"
    assert detokenizer.push(1) == "\ufffd"
    assert detokenizer.push(2) == "!"
    assert detokenizer.flush() == ""


def test_interrupted_sequence_is_replaced_when_the_next_byte_breaks_it() -> None:
    detokenizer = _detokenizer([b"\xe2\x82", b"A"])
    assert detokenizer.push(0) == ""
    assert detokenizer.push(1) == "\ufffdA"


def test_incomplete_sequence_at_the_end_is_replaced_on_flush() -> None:
    detokenizer = _detokenizer([b"hi\xf0\x9f\x98"])
    assert detokenizer.push(0) == "hi"
    assert detokenizer.flush() == "\ufffd"
    assert detokenizer.flush() == ""


def test_empty_piece_yields_nothing() -> None:
    assert _decode_all([b"", b"x", b""]) == (["", "x", ""], "")


def test_a_cut_drops_an_incomplete_last_character() -> None:
    euro = "€".encode()
    chunks = [b"a", euro[:2]]
    detokenizer = Detokenizer(lambda token: chunks[token])
    assert detokenizer.push(0) == "a"
    assert detokenizer.push(1) == ""
    assert detokenizer.flush(cut=True) == ""
