"""OpenAI request parameters, each shown to have its documented effect (openai SDK)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from .server import RunningServer

STORY: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Tell me a short story about a fox."}
]
PROMPT = "Once upon a time, in a quiet forest, there lived"


@pytest.fixture
def sdk(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.api, api_key="unused", max_retries=0, timeout=120)


def complete(sdk: openai.OpenAI, **extra: Any) -> str:
    body: dict[str, Any] = {"model": "m", "prompt": PROMPT, "max_tokens": 24, **extra}
    return str(sdk.completions.create(**body).choices[0].text)


def test_temperature_zero_is_deterministic_and_default_sampling_varies(sdk: openai.OpenAI) -> None:
    assert complete(sdk, temperature=0) == complete(sdk, temperature=0)
    samples = {complete(sdk, temperature=1.0) for _ in range(4)}
    assert len(samples) > 1


def test_seed_reproduces(sdk: openai.OpenAI) -> None:
    first = complete(sdk, temperature=1.0, seed=1234)
    assert complete(sdk, temperature=1.0, seed=1234) == first
    others = {complete(sdk, temperature=1.0, seed=s) for s in (1, 2, 3)}
    assert others != {first}


@pytest.mark.parametrize(
    "narrowing", [{"top_k": 1}, {"top_p": 1e-6}, {"min_p": 1.0}], ids=["top_k", "top_p", "min_p"]
)
def test_narrowing_to_one_candidate_equals_greedy(
    sdk: openai.OpenAI, narrowing: dict[str, Any]
) -> None:
    greedy = complete(sdk, temperature=0)
    for seed in (5, 6):
        kwargs = {"temperature": 1.5, "seed": seed}
        assert complete(sdk, extra_body=narrowing, **kwargs) == greedy


@pytest.mark.parametrize(
    "penalty",
    [
        {"frequency_penalty": 2.0},
        {"presence_penalty": 2.0},
        {"extra_body": {"repeat_penalty": 1.8}},
    ],
    ids=["frequency", "presence", "repeat"],
)
def test_penalties_change_greedy_output(sdk: openai.OpenAI, penalty: dict[str, Any]) -> None:
    # Greedy text from a small model repeats itself (names, phrases); every penalty must
    # steer it somewhere else within a few dozen tokens. Ignored, the texts would be equal.
    plain = sdk.completions.create(model="m", prompt=PROMPT, max_tokens=48, temperature=0)
    penalised = sdk.completions.create(
        model="m", prompt=PROMPT, max_tokens=48, temperature=0, **penalty
    )
    assert penalised.choices[0].text != plain.choices[0].text


def test_logit_bias_bans_and_forces_tokens(server: RunningServer, sdk: openai.OpenAI) -> None:
    runtime = server.app.registry.default()
    greedy = sdk.completions.create(
        model="m", prompt=PROMPT, max_tokens=8, temperature=0, logprobs=0
    )
    assert greedy.choices[0].logprobs is not None
    first = (greedy.choices[0].logprobs.tokens or [""])[0]
    banned = runtime.model.tokenize(first, add_special=False, parse_special=False)
    assert len(banned) == 1
    without = sdk.completions.create(
        model="m",
        prompt=PROMPT,
        max_tokens=8,
        temperature=0,
        logprobs=0,
        logit_bias={str(banned[0]): -100},
    )
    assert without.choices[0].logprobs is not None
    assert first not in (without.choices[0].logprobs.tokens or [])
    forced_id = runtime.model.tokenize(" banana", add_special=False, parse_special=False)[0]
    forced = sdk.completions.create(
        model="m",
        prompt=PROMPT,
        max_tokens=5,
        temperature=0,
        logit_bias={str(forced_id): 100},
    )
    piece = runtime.model.token_text(forced_id)
    assert forced.choices[0].text == piece * 5


def test_max_completion_tokens_and_finish_reasons(sdk: openai.OpenAI) -> None:
    cut = sdk.chat.completions.create(
        model="m", messages=STORY, max_completion_tokens=5, extra_body={"ignore_eos": True}
    )
    assert cut.usage is not None
    assert cut.usage.completion_tokens == 5
    assert cut.choices[0].finish_reason == "length"
    free = sdk.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Say yes."}], temperature=0
    )
    assert free.choices[0].finish_reason == "stop"


def test_chat_stop_list_never_leaks(sdk: openai.OpenAI) -> None:
    free = sdk.chat.completions.create(model="m", messages=STORY, temperature=0, max_tokens=40)
    text = free.choices[0].message.content or ""
    words = text.split()
    assert len(words) > 6
    stop = words[3]
    stopped = sdk.chat.completions.create(
        model="m", messages=STORY, temperature=0, max_tokens=40, stop=["zzzz", stop]
    )
    result = stopped.choices[0].message.content or ""
    assert stop not in result
    assert text.startswith(result)
    assert stopped.choices[0].finish_reason == "stop"


def test_n_greedy_choices_equal_one_greedy_answer(sdk: openai.OpenAI) -> None:
    # The forks share the prompt's KV by copy: any corruption would change their text.
    one = sdk.chat.completions.create(model="m", messages=STORY, temperature=0, max_tokens=20)
    three = sdk.chat.completions.create(
        model="m", messages=STORY, temperature=0, max_tokens=20, n=3
    )
    assert [c.index for c in three.choices] == [0, 1, 2]
    assert {c.message.content for c in three.choices} == {one.choices[0].message.content}
    assert three.usage is not None
    assert one.usage is not None
    assert three.usage.prompt_tokens == one.usage.prompt_tokens
    assert three.usage.completion_tokens == 3 * one.usage.completion_tokens


def test_n_sampled_choices_stream_by_index(sdk: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = {
        "model": "m",
        "messages": STORY,
        "temperature": 1.0,
        "seed": 7,
        "max_tokens": 16,
        "n": 3,
    }
    whole = sdk.chat.completions.create(**kwargs)
    texts = [c.message.content for c in whole.choices]
    assert len(set(texts)) > 1  # independent choices, not copies
    parts: dict[int, str] = defaultdict(str)
    finishes: dict[int, str] = {}
    for chunk in sdk.chat.completions.create(**kwargs, stream=True):
        for choice in chunk.choices:
            parts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    assert [parts[i] for i in range(3)] == texts
    assert sorted(finishes) == [0, 1, 2]


def test_n_larger_than_the_slots_is_refused(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        sdk.chat.completions.create(model="m", messages=STORY, n=50)
    assert error.value.param == "n"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_chat_logprobs_are_consistent_with_the_text(sdk: openai.OpenAI, stream: bool) -> None:
    kwargs: dict[str, Any] = {
        "model": "m",
        "messages": STORY,
        "temperature": 0,
        "max_tokens": 24,
        "logprobs": True,
        "top_logprobs": 3,
    }
    if stream:
        text, entries = "", []
        for chunk in sdk.chat.completions.create(**kwargs, stream=True):
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                if chunk.choices[0].logprobs and chunk.choices[0].logprobs.content:
                    entries += chunk.choices[0].logprobs.content
    else:
        reply = sdk.chat.completions.create(**kwargs)
        text = reply.choices[0].message.content or ""
        assert reply.choices[0].logprobs is not None
        entries = list(reply.choices[0].logprobs.content or [])
    assert text
    assert b"".join(bytes(e.bytes or []) for e in entries) == text.encode()
    for entry in entries:
        assert entry.logprob <= 0
        assert len(entry.top_logprobs) == 3
        tops = [t.logprob for t in entry.top_logprobs]
        assert tops == sorted(tops, reverse=True)
        # Greedy: the chosen token is the most likely one.
        assert entry.top_logprobs[0].token == entry.token
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob)


def test_legacy_completion_logprobs(sdk: openai.OpenAI) -> None:
    reply = sdk.completions.create(
        model="m", prompt=PROMPT, max_tokens=12, temperature=0, logprobs=2
    )
    choice = reply.choices[0]
    assert choice.logprobs is not None
    tokens = choice.logprobs.tokens or []
    assert "".join(tokens) == choice.text
    assert len(choice.logprobs.token_logprobs or []) == len(tokens)
    offsets = choice.logprobs.text_offset or []
    assert offsets == [len("".join(tokens[:i])) for i in range(len(tokens))]
    for top in choice.logprobs.top_logprobs or []:
        assert 1 <= len(top) <= 2
        assert all(v <= 0 for v in top.values())


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"frequency_penalty": -2.5}, "frequency_penalty"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"n": 0}, "n"),
        ({"logit_bias": {"5": 101}}, "logit_bias"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"modalities": ["text", "audio"]}, "modalities"),
    ],
)
def test_out_of_range_and_unsupported_are_named(
    sdk: openai.OpenAI, extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        sdk.chat.completions.create(model="m", messages=STORY, max_tokens=2, extra_body=extra)
    assert error.value.param == param
    assert param in error.value.message


def test_openai_defaults_of_unimplemented_parameters_are_accepted(sdk: openai.OpenAI) -> None:
    # What an editor plugin sends on every legacy completion, and chat clients that spell out
    # every default.
    legacy = sdk.completions.create(
        model="m", prompt="Once upon a time", max_tokens=2, best_of=1, echo=False, suffix=""
    )
    assert legacy.choices[0].text is not None
    chat = sdk.chat.completions.create(
        model="m",
        messages=STORY,
        max_tokens=2,
        modalities=["text"],
        extra_body={"audio": None, "prediction": None, "functions": [], "function_call": "none"},
    )
    assert chat.choices[0].message.content is not None
    with pytest.raises(openai.BadRequestError) as error:
        sdk.completions.create(model="m", prompt="Once", max_tokens=2, best_of=2)
    assert error.value.param == "best_of"


def test_bookkeeping_parameters_are_accepted(sdk: openai.OpenAI) -> None:
    reply = sdk.chat.completions.create(
        model="m", messages=STORY, max_tokens=2, user="u-1", metadata={"k": "v"}, store=False
    )
    assert reply.choices[0].message.content is not None
