"""Per-request control of reasoning: ``reasoning_effort``, ``chat_template_kwargs`` and
``thinking_budget``, shared by the APIs that render a chat template.

- ``chat_template_kwargs`` (as llama.cpp's and vLLM's servers take it): an object of up to
  :data:`MAX_TEMPLATE_KWARGS` template variables, each a JSON scalar (a string of at most
  :data:`MAX_TEMPLATE_STRING` characters); names are identifiers and never the template's own
  variables (``messages``, ``tools``, ...). E.g. ``{"enable_thinking": false}`` for Qwen3.
- ``reasoning_effort`` (OpenAI's values): ``none`` turns thinking off where the template can
  (``enable_thinking: false``) and sets a thinking budget of 0, so a think block the template
  opens anyway is closed at once; ``minimal`` sets a budget of :data:`MINIMAL_BUDGET` tokens;
  ``low``, ``medium`` and ``high`` reach the template as its ``reasoning_effort`` variable
  (gpt-oss' template reads it). Explicit ``chat_template_kwargs`` and ``thinking_budget`` win.
- ``thinking_budget`` (a Sluice extension): reasoning tokens allowed before the think block is
  closed and the answer begins; unset, the server's ``--reasoning-budget``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from stream.errors import InvalidRequest

from .openai import integer

__all__ = [
    "MAX_TEMPLATE_KWARGS",
    "MAX_TEMPLATE_STRING",
    "MINIMAL_BUDGET",
    "REASONING_FIELDS",
    "ReasoningOptions",
    "reasoning_options",
]

MAX_TEMPLATE_KWARGS: Final = 32
MAX_TEMPLATE_STRING: Final = 4096
MINIMAL_BUDGET: Final = 256
#: The request fields this module reads.
REASONING_FIELDS: Final = frozenset({"reasoning_effort", "chat_template_kwargs", "thinking_budget"})
_EFFORTS: Final = ("none", "minimal", "low", "medium", "high")
_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
#: Variables the template gets from Sluice itself.
_RESERVED: Final = frozenset(
    {"messages", "tools", "add_generation_prompt", "bos_token", "eos_token", "raise_exception"}
)


@dataclass(frozen=True, slots=True)
class ReasoningOptions:
    """What a request asks of reasoning: template variables and a thinking budget."""

    template_kwargs: dict[str, Any] = field(default_factory=dict)
    #: Reasoning tokens allowed; None: the server's default.
    thinking_budget: int | None = None


def _template_kwargs(value: Any) -> dict[str, Any]:
    param = "chat_template_kwargs"
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(f"'{param}' must be an object of template variables.", param=param)
    if len(value) > MAX_TEMPLATE_KWARGS:
        raise InvalidRequest(
            f"'{param}' may hold at most {MAX_TEMPLATE_KWARGS} variables, got {len(value)}.",
            param=param,
        )
    for key, item in value.items():
        if not _NAME.fullmatch(key) or key in _RESERVED:
            raise InvalidRequest(
                f"{key[:80]!r} in '{param}' is not a template variable a request may set "
                "(an identifier of up to 64 characters, not one Sluice sets).",
                param=param,
            )
        at = f"{param}.{key}"
        if not (item is None or isinstance(item, bool | int | float | str)):
            raise InvalidRequest(f"'{at}' must be a string, number, boolean or null.", param=at)
        if isinstance(item, str) and len(item) > MAX_TEMPLATE_STRING:
            raise InvalidRequest(
                f"'{at}' may be at most {MAX_TEMPLATE_STRING} characters long.", param=at
            )
        if isinstance(item, int) and not isinstance(item, bool) and abs(item) >= 2**53:
            raise InvalidRequest(f"'{at}' is too large.", param=at)
    return dict(value)


def reasoning_options(body: Mapping[str, Any]) -> ReasoningOptions:
    """The reasoning fields of ``body`` (module notes). :raises InvalidRequest: naming one."""
    kwargs = _template_kwargs(body.get("chat_template_kwargs"))
    budget = integer(body, "thinking_budget", 0, 2**31 - 1)
    effort = body.get("reasoning_effort")
    derived: dict[str, Any] = {}
    if effort is not None:
        if effort not in _EFFORTS:
            raise InvalidRequest(
                f"Invalid value for 'reasoning_effort': {str(effort)[:80]!r}; expected one of "
                f"{', '.join(_EFFORTS)}.",
                param="reasoning_effort",
            )
        if effort == "none":
            derived["enable_thinking"] = False
            budget = 0 if budget is None else budget
        elif effort == "minimal":
            budget = MINIMAL_BUDGET if budget is None else budget
        else:
            derived["reasoning_effort"] = effort
    return ReasoningOptions({**derived, **kwargs}, budget)
