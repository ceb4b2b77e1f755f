"""A chat answer read by its model family inside the engine's :class:`Sequence`, driven by a
scripted token source: reasoning, content and calls as events; truncation; repeated calls;
the thinking budget and the grammar held while reasoning; family markers that are control
tokens rendered, other control tokens not; extra end tokens."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from model.chat_output import ChatOutput
from model.events import Delta, Event, Finished, ToolCallDelta
from model.families import FAMILIES, Family
from model.params import GenerationRequest
from model.sampling import Sampler
from model.sequence import Phase, Sequence
from tests.model.families.cases import CET, PARIS, TOOLS


class ScriptedVocabulary:
    """Token ids for text pieces; ids in ``control`` render only with ``special=True``."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.control: set[int] = set()

    def token(self, text: str, *, control: bool = False) -> int:
        if text in self.texts:
            return self.texts.index(text)
        self.texts.append(text)
        if control:
            self.control.add(len(self.texts) - 1)
        return len(self.texts) - 1

    def piece(self, token: int, *, special: bool = False) -> bytes:
        if token in self.control and not special:
            return b""
        return self.texts[token].encode()


class RecordingSampler:
    """What a sequence asks of its sampler: grammar held or not, tokens forced."""

    def __init__(self) -> None:
        self.grammar_held = False
        self.held: list[bool] = []
        self.forced: list[int] = []

    def force(self, tokens: Any) -> None:
        self.forced.extend(tokens)


class Sink:
    accepting = True
    gone = False


def _sequence(
    vocab: ScriptedVocabulary,
    family: Family,
    *,
    tools: bool = True,
    max_tokens: int = 10_000,
    **output: Any,
) -> tuple[Sequence, RecordingSampler]:
    chat = ChatOutput(family, TOOLS if tools else (), **output)
    request = GenerationRequest(prompt=(0,), max_tokens=max_tokens, output=chat)
    sequence = Sequence(request, Sink(), vocab)
    sampler = RecordingSampler()
    sequence.sampler = cast(Sampler, sampler)
    return sequence, sampler


def _run(
    sequence: Sequence, tokens: list[int], sampler: RecordingSampler | None = None
) -> list[Event]:
    events: list[Event] = []
    for token in tokens:
        events += sequence.on_token(token, eog=False, room=1000)
        if sampler is not None:
            sampler.held.append(sampler.grammar_held)
        if sequence.phase is Phase.DONE:
            return events
    return events


def _eog(sequence: Sequence) -> list[Event]:
    return sequence.on_token(-1, eog=True, room=1000)


def _split(vocab: ScriptedVocabulary, text: str, size: int) -> list[int]:
    return [vocab.token(text[i : i + size]) for i in range(0, len(text), size)]


def _answer(events: list[Event]) -> dict[str, Any]:
    deltas = [e for e in events if isinstance(e, Delta)]
    calls: dict[int, list[str]] = {}
    for event in events:
        if isinstance(event, ToolCallDelta):
            if event.name is not None:
                calls[event.call] = [event.name, ""]
            calls[event.call][1] += event.arguments
    finished = [e for e in events if isinstance(e, Finished)]
    assert len(finished) == 1
    assert events[-1] is finished[0]
    return {
        "reasoning": "".join(d.reasoning for d in deltas),
        "content": "".join(d.text for d in deltas),
        "calls": [(name, _arguments(args)) for name, args in calls.values()],
        "finish": finished[0].reason,
        "usage": finished[0].usage,
    }


def _arguments(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text  # cut off: OpenAI's arguments can be, too


# Each family: reasoning (where it has a block) then two calls, as its model writes them.
CALLING = ["generic", "hermes", "qwen3-coder", "llama3", "mistral", "mistral-array", "magistral"]


@pytest.mark.parametrize("name", CALLING)
@pytest.mark.parametrize("size", [1, 3, 1000])
def test_reasoning_then_calls_in_each_family(name: str, size: int) -> None:
    family = FAMILIES[name]
    vocab = ScriptedVocabulary()
    reasoning = family.reasoning
    assert reasoning is not None
    thought = f"{reasoning.open}\nThe user wants weather and time.\n{reasoning.close}\n\n"
    text = thought + family.write_calls([("get_weather", PARIS), ("get_time", CET)])
    sequence, _ = _sequence(vocab, family)
    events = _run(sequence, _split(vocab, text, size))
    events += _eog(sequence)
    answer = _answer(events)
    assert answer["reasoning"] == "The user wants weather and time."
    assert answer["content"] == ""
    assert answer["calls"] == [("get_weather", PARIS), ("get_time", CET)]
    assert answer["finish"] == "tool_calls"
    usage = answer["usage"]
    assert usage.completion_tokens == len(_split(vocab, text, size))
    if size < len(text):
        assert 0 < usage.reasoning_tokens < usage.completion_tokens
    else:
        assert usage.reasoning_tokens == 1  # one token held both


@pytest.mark.parametrize("name", ["generic", "llama3", "mistral", "qwen3-coder"])
def test_a_call_cut_off_by_max_tokens_never_becomes_content(name: str) -> None:
    family = FAMILIES[name]
    vocab = ScriptedVocabulary()
    whole = family.write_calls([("get_weather", PARIS)])
    tokens = _split(vocab, whole, 2)
    for cut in range(1, len(tokens)):
        sequence, _ = _sequence(vocab, family, max_tokens=cut)
        answer = _answer(_run(sequence, tokens))
        assert answer["finish"] == "length"
        assert answer["content"] == "", (cut, answer)
        assert sequence.usage().completion_tokens == cut


def test_the_issue_example_a_named_call_cut_off_is_no_content() -> None:
    vocab = ScriptedVocabulary()
    tokens = [vocab.token(t) for t in ("<tool_call>", "\n", '{"', "name", '":', ' "', "get", "_")]
    sequence, _ = _sequence(vocab, FAMILIES["generic"], max_tokens=len(tokens))
    answer = _answer(_run(sequence, tokens))
    assert answer == {**answer, "content": "", "reasoning": "", "finish": "length"}


def test_a_repeated_call_ends_the_answer_with_tool_calls() -> None:
    family = FAMILIES["hermes"]
    vocab = ScriptedVocabulary()
    once = family.write_calls([("get_weather", PARIS)])
    tokens = _split(vocab, once + "\n" + once + "\n" + once, 4)
    sequence, _ = _sequence(vocab, family)
    events = _run(sequence, tokens)
    assert sequence.phase is Phase.DONE
    answer = _answer(events)
    assert answer["calls"] == [("get_weather", PARIS)]
    assert answer["finish"] == "tool_calls"
    assert answer["content"] == ""
    # It ended on the repeat, long before the third copy.
    assert sequence.generated < len(tokens) * 2 // 3 + 1


def test_a_different_second_call_is_kept() -> None:
    family = FAMILIES["hermes"]
    vocab = ScriptedVocabulary()
    rome = {"city": "Rome", "unit": "celsius"}
    text = family.write_calls([("get_weather", PARIS), ("get_weather", rome)])
    sequence, _ = _sequence(vocab, family)
    events = _run(sequence, _split(vocab, text, 5)) + _eog(sequence)
    assert _answer(events)["calls"] == [("get_weather", PARIS), ("get_weather", rome)]


def test_without_tools_call_markup_is_content_and_reasoning_still_splits() -> None:
    vocab = ScriptedVocabulary()
    text = '<think>hmm</think>\n\nUse <tool_call>{"name": "x"}</tool_call> like this.'
    sequence, _ = _sequence(vocab, FAMILIES["generic"], tools=False)
    answer = _answer(_run(sequence, _split(vocab, text, 2)) + _eog(sequence))
    assert answer["reasoning"] == "hmm"
    assert answer["content"] == 'Use <tool_call>{"name": "x"}</tool_call> like this.'
    assert answer["finish"] == "stop"


def test_a_stream_cut_inside_the_think_block_ends_cleanly() -> None:
    vocab = ScriptedVocabulary()
    tokens = [vocab.token("<think>"), *_split(vocab, "I am still thinking about </th", 3)]
    sequence, _ = _sequence(vocab, FAMILIES["generic"], max_tokens=len(tokens))
    answer = _answer(_run(sequence, tokens))
    assert answer["reasoning"] == "I am still thinking about"
    assert answer["content"] == ""
    assert answer["finish"] == "length"
    assert answer["usage"].reasoning_tokens == len(tokens)


def test_the_thinking_budget_forces_the_end_of_reasoning_once() -> None:
    family = FAMILIES["generic"]
    vocab = ScriptedVocabulary()
    close = [vocab.token("\n"), vocab.token("</think>"), vocab.token("\n\n")]
    sequence, sampler = _sequence(
        vocab, family, prompt_end="<|im_start|>assistant\n<think>\n", thinking_budget=3,
        end_of_reasoning=tuple(close),
    )  # fmt: skip
    assert sampler.grammar_held  # the prompt opened the block: no grammar yet
    thinking = [vocab.token(w) for w in ("Let", " me", " think", " more")]
    events = _run(sequence, thinking[:2], sampler)
    assert sampler.forced == []
    events += _run(sequence, thinking[2:3], sampler)
    assert sampler.forced == close  # three reasoning tokens: spent
    # The engine samples the forced tokens next; the grammar applies after the block.
    events += _run(sequence, close, sampler)
    assert sampler.held == [True, True, True, True, False, False]
    events += _run(sequence, _split(vocab, "It is sunny.", 4), sampler)
    assert sampler.forced == close  # never again
    answer = _answer(events + _eog(sequence))
    assert answer["reasoning"] == "Let me think"
    assert answer["content"] == "It is sunny."
    assert answer["usage"].reasoning_tokens == 4  # three words and the forced newline


def test_a_budget_of_zero_closes_a_block_the_prompt_opened_at_once() -> None:
    vocab = ScriptedVocabulary()
    close = (vocab.token("</think>"),)
    _, sampler = _sequence(
        vocab, FAMILIES["generic"], prompt_end="<think>\n", thinking_budget=0,
        end_of_reasoning=close,
    )  # fmt: skip
    assert sampler.forced == list(close)


def test_no_budget_without_an_open_block() -> None:
    vocab = ScriptedVocabulary()
    sequence, sampler = _sequence(
        vocab, FAMILIES["generic"], thinking_budget=0, end_of_reasoning=(vocab.token("x"),)
    )
    assert not sampler.grammar_held
    _run(sequence, _split(vocab, "Plain answer.", 3), sampler)
    assert sampler.forced == []
    assert sampler.held == [False] * 5


def test_only_the_familys_control_tokens_are_rendered_and_its_ends_end() -> None:
    family = FAMILIES["harmony"]
    vocab = ScriptedVocabulary()
    markers = ("<|channel|>", "<|message|>", "<|end|>", "<|start|>", "<|constrain|>", "<|call|>")
    ids = {text: vocab.token(text, control=True) for text in markers}
    other = vocab.token("<|im_end|>", control=True)
    text_tokens = [
        ids["<|channel|>"], vocab.token("analysis"), ids["<|message|>"],
        vocab.token("Need weather."), other, ids["<|end|>"],
        ids["<|start|>"], vocab.token("assistant"), ids["<|channel|>"],
        vocab.token("commentary to=functions.get_weather "), ids["<|constrain|>"],
        vocab.token("json"), ids["<|message|>"], vocab.token(json.dumps(PARIS)),
    ]  # fmt: skip
    sequence, _ = _sequence(
        vocab, family, marker_tokens=frozenset(ids.values()),
        end_tokens=frozenset({ids["<|call|>"]}),
    )  # fmt: skip
    events = _run(sequence, text_tokens)
    events += sequence.on_token(ids["<|call|>"], eog=False, room=1000)
    assert sequence.phase is Phase.DONE
    answer = _answer(events)
    assert answer["reasoning"] == "Need weather."  # <|im_end|> is not harmony's: invisible
    assert answer["calls"] == [("get_weather", PARIS)]
    assert answer["finish"] == "tool_calls"
    assert answer["usage"].completion_tokens == len(text_tokens)  # the end is not output


def test_a_released_grammar_is_never_held_again() -> None:
    # Harmony's reasoning is a channel that may come after answer text: a grammar that has
    # seen part of the answer keeps holding it.
    vocab = ScriptedVocabulary()
    sequence, sampler = _sequence(vocab, FAMILIES["harmony"])
    assert not sampler.grammar_held
    tokens = [vocab.token(t) for t in ("<|channel|>", "analysis", "<|message|>", "Think.")]
    _run(sequence, tokens, sampler)
    assert sequence._reader is not None
    assert sequence._reader.in_reasoning
    assert sampler.held == [False] * len(tokens)
