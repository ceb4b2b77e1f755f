"""Chat prompts: a conversation rendered by the chat template and tokenized, so that only the
template's own markup becomes special tokens (see :mod:`model.special_tokens`).

Client text is every string of the messages (contents, names, tool calls and results, Sluice's
generic tools prompt) and of the tools given to a template natively (names, descriptions,
parameter schemas, keys included), except the roles, which requests only take from a fixed set
and templates build markup from (``'<|' + role + '|>'``), and the keys of OpenAI's message and
tool structure (``name``, ``function``, ``arguments``, ...), which templates look up by name:
a shadowed ``name`` key (its first letter can complete ``<repo_name>`` in SmolLM2's vocabulary)
would make ``tool_call.function.name`` undefined. Sluice itself writes those keys.

A conversation whose client strings hold nothing a special token could come from is tokenized
exactly as before, the rendered text whole with ``parse_special``; any other takes the shielded
path, where client text is tokenized as plain text.

The template is checked when the model loads, on sample conversations (a user message; user,
assistant, user; a system and a user message): each must render or be refused by the template's
own ``raise_exception``, and one at least must render. A template that breaks there would break
on every request.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

from .errors import InvalidInput
from .llama import LlamaModel
from .special_tokens import ClientTextError, SpecialTokens, require_unicode
from .template import ChatTemplate, TemplateError, TemplateFailure, TemplateRejection

__all__ = ["MAX_DEPTH", "ChatPrompt", "PromptError"]

_log = logging.getLogger("sluice.prompt")

#: Deepest nesting of lists and objects in messages and tools (parameter schemas).
MAX_DEPTH: Final = 64

_SAMPLES: Final = (
    ("a user message", ({"role": "user", "content": "Hello!"},)),
    (
        "a user, an assistant and a user message",
        (
            {"role": "user", "content": "Hello!"},
            {"role": "assistant", "content": "Hi! How can I help?"},
            {"role": "user", "content": "Tell me a joke."},
        ),
    ),
    (
        "a system and a user message",
        (
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Hello!"},
        ),
    ),
)


class PromptError(InvalidInput):
    """The request's input cannot become a prompt; ``param`` names the offending field."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message, param=param)


#: Keys of OpenAI's message and tool structure (and JSON Schema's), never shielded.
_STRUCTURE: Final = frozenset(
    {
        "role", "content", "name", "tool_calls", "tool_call_id", "id", "type", "function",
        "arguments", "parameters", "description", "properties", "required", "items", "enum",
        "strict", "additionalProperties",
    }
)  # fmt: skip


class _Shield:
    # One conversation's client strings, shielded; remembers whether any changed.
    def __init__(self, special: SpecialTokens, param: str) -> None:
        self.special = special
        self.param = param
        self.changed = False

    def value(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, str):
            try:
                shielded, changed = self.special.shield(value)
            except ClientTextError as exc:
                raise PromptError(f"'{self.param}' contains a {exc}.", self.param) from None
            self.changed |= changed
            return shielded
        if depth >= MAX_DEPTH and isinstance(value, Mapping | list | tuple):
            raise PromptError(
                f"'{self.param}' is nested more than {MAX_DEPTH} levels deep.", self.param
            )
        if isinstance(value, Mapping):
            return {
                k if k in _STRUCTURE else self.value(k, depth + 1): self.value(v, depth + 1)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.value(item, depth + 1) for item in value]
        return value

    def message(self, message: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v if k == "role" else self.value(v, 1) for k, v in message.items()}


class ChatPrompt:
    """Turns conversations into prompt tokens with ``template`` and ``model``'s tokenizer."""

    def __init__(self, model: LlamaModel, template: ChatTemplate) -> None:
        self.model = model
        self.template = template
        self._special = SpecialTokens(model)

    def check(self) -> None:
        """Render the sample conversations (see the module's docstring).

        :raises TemplateError: the template fails on one, or refuses them all; says which.
        """
        refused: list[str] = []
        for label, messages in _SAMPLES:
            try:
                self._tokens(messages, None)
            except TemplateRejection as exc:
                refused.append(f"{label} ({exc})")
                _log.info("the chat template refuses %s: %s", label, exc)
            except TemplateError as exc:
                raise TemplateError(
                    f"{exc} (on a sample conversation: {label}); fix or replace the template"
                    " with --chat-template"
                ) from exc
        if len(refused) == len(_SAMPLES):
            raise TemplateError(
                f"chat template {self.template.name!r} refuses every sample conversation: "
                + "; ".join(refused)
            )

    def tokens(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        variables: Mapping[str, Any] | None = None,
    ) -> list[int]:
        """Render and tokenize ``messages`` (string or ``None`` contents) with ``tools`` given
        to the template natively (``None``: no tools) and more template ``variables`` (client
        text too: ``chat_template_kwargs``).

        :raises PromptError: the template refuses or cannot render these messages; a string
            holds a lone surrogate; messages or tools nest deeper than :data:`MAX_DEPTH`.
        :raises TemplateFailure: the template itself broke on them (the server's fault).
        """
        try:
            return self._tokens(messages, tools, variables)
        except TemplateFailure:
            raise
        except TemplateRejection as exc:
            raise PromptError(
                f"The model's chat template rejected these messages: {exc}", "messages"
            ) from None
        except TemplateError as exc:
            raise PromptError(f"The model's {exc}", "messages") from None

    def raw_tokens(self, text: str) -> list[int]:
        """A prompt written whole by the client, markup included (the legacy completions
        ``prompt``): special token texts in it are special tokens, as llama.cpp's server reads
        it. Cut in one pass per special token present: llama.cpp's own cutting takes time
        quadratic in the number of special tokens (half a minute for 1 MB of them).

        :raises PromptError: ``text`` holds a lone surrogate.
        """
        try:
            require_unicode(text)
        except ClientTextError as exc:
            raise PromptError(f"'prompt' contains a {exc}.", "prompt") from None
        return self._special.tokenize(text, add_special=True)

    def _tokens(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None,
        variables: Mapping[str, Any] | None = None,
    ) -> list[int]:
        shield = _Shield(self._special, "messages")
        shielded = [shield.message(message) for message in messages]
        if tools is not None:
            shield.param = "tools"
            tools = [shield.value(tool, 1) for tool in tools]
        if variables:
            shield.param = "chat_template_kwargs"
            variables = shield.value(variables, 1)
        text = self.template.render(shielded, tools=tools, variables=variables)
        try:
            if shield.changed:
                prompt = self._special.tokenize(text, add_special=True)
            else:
                prompt = self.model.tokenize(text, add_special=True, parse_special=True)
        except UnicodeEncodeError as exc:
            raise TemplateFailure(
                f"chat template {self.template.name!r} wrote text that is not Unicode: {exc}"
            ) from exc
        bos = self.model.bos
        if len(prompt) > 1 and prompt[0] == prompt[1] == bos:
            prompt = prompt[1:]  # the template wrote BOS itself
        return prompt
