"""Each family's forced-call grammar, compiled by llama.cpp against the embedded model's
vocabulary: it accepts the family's own call text and nothing else, and what the model
generates under it parses back into valid calls."""

from __future__ import annotations

import json

import jsonschema  # type: ignore[import-untyped]
import pytest

from model.families import MAX_FORCED_CALLS, parse_output, tools_prompt
from model.grammar import check_grammar
from model.tools import ToolChoice, ToolError, parse_tools
from tests.model.embedded import EmbeddedModel, chat_prompt
from tests.model.families.cases import CASES, CET, PARIS, ROME, TIME, TOOLS, Case, case_id

_NAMED = ToolChoice("required", "get_weather")
_ANY = ToolChoice("required")
_ONE = ToolChoice("required", parallel=False)


def _forced(case: Case, text: str) -> str:
    """A forced answer's text: the part after what the prompt already wrote."""
    marker = case.prompt[-3:] if case.prompt else ""
    return text.removeprefix(marker)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_named_function(vocab_model: EmbeddedModel, case: Case) -> None:
    family = case.family_object
    grammar = family.grammar(TOOLS, _NAMED)
    check_grammar(grammar, vocab_model.vocab)
    canonical = case.canonical or case.history_call
    assert vocab_model.accepts(grammar, canonical)
    assert vocab_model.accepts(grammar, _forced(case, family.write_calls([("get_weather", ROME)])))
    assert not vocab_model.accepts(grammar, _forced(case, family.write_calls([("get_time", CET)])))
    assert not vocab_model.accepts(grammar, "Sure! " + canonical)
    wrong = family.write_calls([("get_weather", {"city": "Paris", "unit": "kelvin"})])
    assert not vocab_model.accepts(grammar, _forced(case, wrong))
    two = family.write_calls([("get_weather", PARIS), ("get_weather", ROME)])
    assert not vocab_model.accepts(grammar, _forced(case, two))


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_required_with_parallel_calls(vocab_model: EmbeddedModel, case: Case) -> None:
    family = case.family_object
    grammar = family.grammar(TOOLS, _ANY)
    check_grammar(grammar, vocab_model.vocab)
    one, two = [("get_time", CET)], [("get_weather", ROME), ("get_time", CET)]
    assert vocab_model.accepts(grammar, _forced(case, family.write_calls(one)))
    several = family.name != "harmony"  # harmony's <|call|> ends the answer: one call
    assert vocab_model.accepts(grammar, _forced(case, family.write_calls(two))) is several
    many = family.write_calls([("get_time", {"zone": str(n)}) for n in range(MAX_FORCED_CALLS)])
    assert vocab_model.accepts(grammar, _forced(case, many)) is several
    more = family.write_calls([("get_time", {"zone": str(n)}) for n in range(MAX_FORCED_CALLS + 1)])
    assert not vocab_model.accepts(grammar, _forced(case, more))
    single = family.grammar(TOOLS, _ONE)
    assert vocab_model.accepts(single, _forced(case, family.write_calls(one)))
    assert not vocab_model.accepts(single, _forced(case, family.write_calls(two)))


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_unenforceable_parameters_are_named(case: Case) -> None:
    bad = {"type": "function", "function": {"name": "bad", "parameters": {"not": {}}}}
    tools = parse_tools([TIME, bad])
    with pytest.raises(ToolError) as caught:
        case.family_object.grammar(tools, _ANY)
    assert caught.value.param == "tools[1].function.parameters"
    case.family_object.grammar(tools, ToolChoice("required", "get_time"))
    with pytest.raises(ValueError, match="forces no call"):
        case.family_object.grammar(tools, ToolChoice("auto"))


# Sampling under a grammar is slow on CPU (every step checks the whole vocabulary), so the
# model runs for the families whose syntax the parser converts or continues, rather than all.
_GENERATED = ("qwen3-coder", "harmony", "functionary-v3.2", "llama3", "mistral")


@pytest.mark.parametrize("case", [case for case in CASES if case.family in _GENERATED], ids=case_id)
def test_generated_calls_parse_back(full_model: EmbeddedModel, case: Case) -> None:
    family = case.family_object
    choice = ToolChoice("required", "get_time")
    grammar = family.grammar(TOOLS, choice)
    prompt = chat_prompt(tools_prompt(family, TOOLS, choice), "What time is it in Oslo?")
    text = full_model.generate(prompt + case.prompt[-3:], grammar, seed=1, limit=120)
    assert text is not None, "no end within 120 tokens"
    out = parse_output(family, TOOLS, text, prompt=case.prompt)
    assert (out.content, out.reasoning) == ("", ""), text
    assert [call.name for call in out.calls] == ["get_time"], text
    jsonschema.validate(json.loads(out.calls[0].arguments), TIME["function"]["parameters"])
