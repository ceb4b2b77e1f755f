"""Each family's parser on realistic output: whole, split at every boundary, cut short, and
with repeated calls."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.families import (
    ContentText,
    DuplicateCall,
    OutputParser,
    Piece,
    ReasoningText,
    ToolCallArguments,
    ToolCallStart,
    parse_output,
)
from tests.model.families.cases import CASES, CET, PARIS, ROME, TOOLS, Case, Sample, case_id, ids

_SAMPLES = [(case, sample) for case in CASES for sample in case.samples]
_SAMPLE_IDS = [f"{case.family}-{i}" for case in CASES for i in range(len(case.samples))]


def _collapse(pieces: Sequence[Piece]) -> list[Piece]:
    out: list[Piece] = []
    for piece in pieces:
        last = out[-1] if out else None
        if isinstance(piece, ContentText) and isinstance(last, ContentText):
            out[-1] = ContentText(last.text + piece.text)
        elif isinstance(piece, ReasoningText) and isinstance(last, ReasoningText):
            out[-1] = ReasoningText(last.text + piece.text)
        elif (
            isinstance(piece, ToolCallArguments)
            and isinstance(last, ToolCallArguments)
            and last.index == piece.index
        ):
            out[-1] = ToolCallArguments(piece.index, last.fragment + piece.fragment)
        else:
            out.append(piece)
    return out


def _stream(
    case: Case, chunks: Sequence[str], *, prompt: str = "", truncated: bool = False
) -> list[Piece]:
    parser = OutputParser(case.family_object, TOOLS, prompt=prompt, new_id=ids())
    pieces = [piece for chunk in chunks for piece in parser.push(chunk)]
    return _collapse([*pieces, *parser.finish(truncated=truncated)])


@pytest.mark.parametrize(("case", "sample"), _SAMPLES, ids=_SAMPLE_IDS)
def test_sample_parses(case: Case, sample: Sample) -> None:
    out = parse_output(case.family_object, TOOLS, sample.text, prompt=sample.prompt)
    assert out.reasoning == sample.reasoning
    assert out.content == sample.content
    assert [(call.name, json.loads(call.arguments)) for call in out.calls] == list(sample.calls)
    assert not out.duplicate


@pytest.mark.parametrize(("case", "sample"), _SAMPLES, ids=_SAMPLE_IDS)
def test_every_split_gives_the_same_pieces(case: Case, sample: Sample) -> None:
    text = sample.text
    whole = _stream(case, [text], prompt=sample.prompt)
    for cut in range(len(text) + 1):
        assert _stream(case, [text[:cut], text[cut:]], prompt=sample.prompt) == whole, cut
    assert _stream(case, list(text), prompt=sample.prompt) == whole


@given(data=st.data(), which=st.integers(0, len(_SAMPLES) - 1))
def test_any_split_gives_the_same_pieces(data: st.DataObject, which: int) -> None:
    case, sample = _SAMPLES[which]
    text = sample.text
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=12)))
    chunks = [text[a:b] for a, b in itertools.pairwise([0, *cuts, len(text)])]
    truncated = data.draw(st.booleans())
    assert _stream(case, chunks, prompt=sample.prompt, truncated=truncated) == _stream(
        case, [text], prompt=sample.prompt, truncated=truncated
    )


@pytest.mark.parametrize(("case", "sample"), _SAMPLES, ids=_SAMPLE_IDS)
def test_output_cut_anywhere_leaks_no_markup(case: Case, sample: Sample) -> None:
    family = case.family_object
    full = parse_output(family, TOOLS, sample.text, prompt=sample.prompt)
    for end in range(len(sample.text) + 1):
        out = parse_output(family, TOOLS, sample.text[:end], prompt=sample.prompt, truncated=True)
        assert not any(marker in out.content for marker in family.markers), end
        # Nor a piece of markup: the content so far is the start of the whole answer's.
        assert full.content.startswith(out.content), end
        assert full.reasoning.startswith(out.reasoning), end
        assert [c.name for c in out.calls] == [c.name for c in full.calls][: len(out.calls)]
        # Every call but the one being written when the output was cut is whole.
        assert out.calls[:-1] == [
            type(c)(o.id, c.name, c.arguments)
            for o, c in zip(out.calls[:-1], full.calls, strict=False)
        ]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_a_repeated_call_is_dropped_and_reported(case: Case) -> None:
    family = case.family_object
    text = family.write_calls([("get_weather", PARIS), ("get_weather", PARIS)])
    out = parse_output(family, TOOLS, text)
    assert [(c.name, json.loads(c.arguments)) for c in out.calls] == [("get_weather", PARIS)]
    assert out.duplicate
    pieces = _stream(case, list(text))
    assert sum(isinstance(p, DuplicateCall) for p in pieces) == 1
    assert sum(isinstance(p, ToolCallStart) for p in pieces) == 1
    assert not any(isinstance(p, ContentText) for p in pieces)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_calls_that_differ_are_all_kept(case: Case) -> None:
    family = case.family_object
    other = {**PARIS, "unit": "fahrenheit"}
    calls = [("get_weather", PARIS), ("get_weather", other), ("get_time", CET), ("get_time", CET)]
    text = family.write_calls(calls)
    out = parse_output(family, TOOLS, text)
    assert [(c.name, json.loads(c.arguments)) for c in out.calls] == calls[:3]
    assert out.duplicate
    assert _stream(case, list(text)) == _stream(case, [text])
    # The second call to get_weather is held while it could still repeat the first, and
    # starts once its arguments differ.
    parser = OutputParser(family, TOOLS, new_id=ids())
    second = text.index("fahrenheit")
    started = [p for p in parser.push(text[:second]) if isinstance(p, ToolCallStart)]
    assert len(started) == 1
    started = [p for p in parser.push(text[second:]) if isinstance(p, ToolCallStart)]
    assert [p.name for p in started] == ["get_weather", "get_time"]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_a_repeat_cut_short_is_dropped(case: Case) -> None:
    family = case.family_object
    text = family.write_calls([("get_weather", ROME), ("get_weather", ROME)])
    cut = text.rindex("Rome")
    out = parse_output(family, TOOLS, text[:cut], truncated=True)
    assert [(c.name, json.loads(c.arguments)) for c in out.calls] == [("get_weather", ROME)]
    assert (out.content, out.duplicate) == ("", False)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_calls_are_content_without_tools(case: Case) -> None:
    family = case.family_object
    text = family.write_calls([("get_weather", PARIS)])
    out = parse_output(family, None, text)
    assert out.calls == []
    if not family.framed:
        assert out.content == text  # nothing is lost when calls are not asked for
