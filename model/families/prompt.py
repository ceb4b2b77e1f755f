"""The tools prompt for templates that write a family's calls but do not declare ``tools``.

DeepSeek's R1 distills and V3.1 write earlier calls in their own markup yet leave describing
the tools to the system message. Sluice's generic tools prompt (:mod:`model.tools`) asks for the
generic ``<tool_call>`` format; for such a family it asks for the family's own syntax instead,
shown by an example, so that the model answers in the syntax its parser reads (llama.cpp's
fixed DeepSeek-R1 template does the same).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..tools import Tool, ToolChoice, tool_choice_rule, tools_system_prompt
from .family import Family
from .hermes import Hermes

__all__ = ["tools_prompt"]


def tools_prompt(family: Family, tools: Sequence[Tool], choice: ToolChoice) -> str:
    """The system prompt section describing ``tools`` and how ``family`` calls them ("" for
    ``none``); for Hermes and generic, exactly :func:`model.tools.tools_system_prompt`."""
    if isinstance(family, Hermes) or choice.mode == "none" or not tools:
        return tools_system_prompt(tools, choice)
    specs = "\n".join(json.dumps(tool.spec(), ensure_ascii=False) for tool in tools)
    example = family.write_calls([("<function name>", {"<argument>": "<value>"})])
    return (
        "# Tools\n\nYou can call these functions, described by JSON schemas in <tools></tools>:\n"
        f"<tools>\n{specs}\n</tools>\n\n"
        f"To call a function, write the call in exactly this format, one after another:\n"
        f"{example}\n"
        "The results come back in the next message. " + tool_choice_rule(choice)
    )
