"""Choosing a family: detected from a chat template's source, or named by a server flag."""

from __future__ import annotations

from typing import Final

from .deepseek import CALL_BEGIN, CALLS_BEGIN, DEEPSEEK_R1, DEEPSEEK_V31
from .family import Family
from .functionary import FUNCTIONARY_V31, FUNCTIONARY_V32
from .granite import GRANITE, TOOL_CALL
from .harmony import CHANNEL, HARMONY, MESSAGE
from .hermes import GENERIC, HERMES
from .llama3 import LLAMA3, PYTHON_TAG
from .mistral import ARGS, MAGISTRAL, MISTRAL, MISTRAL_ARRAY, TOOL_CALLS
from .qwen_xml import FUNCTION, PARAMETER, QWEN3_CODER

__all__ = ["FAMILIES", "FamilyError", "detect_family", "family_by_name"]

#: Every family, by the name a server flag gives.
FAMILIES: Final[dict[str, Family]] = {
    family.name: family
    for family in (
        GENERIC, HERMES, QWEN3_CODER, LLAMA3, MISTRAL, MISTRAL_ARRAY, MAGISTRAL, DEEPSEEK_R1,
        DEEPSEEK_V31, HARMONY, GRANITE, FUNCTIONARY_V31, FUNCTIONARY_V32,
    )
}  # fmt: skip


class FamilyError(ValueError):
    """No family has that name; the message lists the names."""


def family_by_name(name: str) -> Family:
    """The family a flag names.

    :raises FamilyError: an unknown name.
    """
    family = FAMILIES.get(name)
    if family is None:
        raise FamilyError(
            f"unknown tool-call format {name!r}: expected one of {', '.join(FAMILIES)}"
        )
    return family


def detect_family(source: str | None) -> Family:
    """The family whose markup a chat template's Jinja source writes (in history, in its tools
    prompt or in its generation prompt); ``generic`` when it writes none of the known ones.

    The family says how output is parsed and forced, not how tools reach the prompt: a
    template that writes a family's calls without declaring ``tools`` (DeepSeek's R1 distills
    and V3.1) still needs the tools described in a system message.
    """
    if not source:
        return GENERIC
    if CHANNEL in source and MESSAGE in source:
        return HARMONY
    if CALLS_BEGIN in source or CALL_BEGIN in source:
        return DEEPSEEK_R1 if "```json" in source else DEEPSEEK_V31
    if TOOL_CALLS in source:
        if "[THINK]" in source:
            return MAGISTRAL
        return MISTRAL if ARGS in source else MISTRAL_ARRAY
    if PARAMETER in source and FUNCTION in source:
        return QWEN3_CODER
    if ">>>all" in source:
        return FUNCTIONARY_V32
    if FUNCTION in source and "<|start_header_id|>" in source:
        return FUNCTIONARY_V31
    if TOOL_CALL in source:
        return GRANITE
    if "<tool_call>" in source and "<arg_key>" not in source:  # GLM's own syntax: not Hermes
        return HERMES
    if "<|start_header_id|>" in source and (PYTHON_TAG in source or "ipython" in source):
        return LLAMA3
    return GENERIC
