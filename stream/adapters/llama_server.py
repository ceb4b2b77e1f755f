"""llama.cpp server's request extensions on ``/v1/chat/completions`` and ``/v1/completions``.

Scripts and UIs written against llama.cpp's own server send these; each is taken with its
meaning there where Sluice can honour it:

- ``cache_prompt`` (a boolean) and ``id_slot`` (an integer, -1 or more) are hints, accepted
  and checked: prefix reuse is always on, and requests never wait for a given slot;
- ``n_predict`` is ``max_tokens`` (-1: no limit but the context); both given is a 400;
- ``grammar``: GBNF text, compiled against the vocabulary and bounded like the grammars
  Sluice builds (at most :data:`MAX_GRAMMAR` characters and repetition counts up to
  :data:`MAX_REPEAT`; a grammar that llama.cpp refuses is a 400 naming ``grammar``), and run
  under the engine's grammar cost limits;
- ``json_schema`` (top level) is ``response_format`` ``json_schema`` with that schema;
- ``n_probs`` is ``top_logprobs`` (chat, with ``logprobs``) or the legacy ``logprobs``;
- ``samplers`` (an array of names) is honoured when it asks for Sluice's own order:
  ``penalties``, ``top_k``, ``top_p``, ``min_p``, ``temperature``; the names of samplers Sluice
  does not have (``dry``, ``typ_p``, ``xtc``, ``top_n_sigma``) are accepted, as those are off
  unless their own parameters (which Sluice refuses) turn them on. Another order, or leaving
  out a sampler whose parameter is set, is a 400 naming ``samplers``.

Other llama.cpp server parameters are refused by name as unknown.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from model.errors import InvalidInput
from model.params import SamplingParams
from stream.errors import InvalidRequest

from .openai import boolean, integer

__all__ = [
    "LLAMA_SERVER",
    "MAX_GRAMMAR",
    "MAX_REPEAT",
    "Extensions",
    "check_samplers",
    "extensions",
    "schema_param",
]

#: The extension parameters, for the adapters' allowed fields.
LLAMA_SERVER: Final = frozenset(
    {"cache_prompt", "id_slot", "n_predict", "grammar", "json_schema", "n_probs", "samplers"}
)
#: Longest GBNF grammar accepted, in characters.
MAX_GRAMMAR: Final = 16384
#: Largest repetition count (``x{n}``, ``x{m,n}``) in a GBNF grammar: llama.cpp writes each
#: repetition out, one copy (or nested optional rule) per count.
MAX_REPEAT: Final = 1000

_SLUICE_ORDER: Final = ("penalties", "top_k", "top_p", "min_p", "temperature")
_ABSENT: Final = frozenset({"dry", "typ_p", "typical_p", "xtc", "top_n_sigma"})
# Repetition counts outside string literals and character classes.
_LITERAL_OR_CLASS: Final = re.compile(r'"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]')
_COUNTS: Final = re.compile(r"\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}")


@dataclass(frozen=True, slots=True)
class Extensions:
    """What a body's llama.cpp server extensions ask for."""

    #: ``n_predict`` as given (None: absent; -1: no limit).
    n_predict: int | None = None
    grammar: str | None = None
    json_schema: dict[str, Any] | None = None
    n_probs: int | None = None

    def max_tokens(self, given: int | None, name: str) -> int | None:
        """The completion limit: ``given`` (the body's ``name``), or ``n_predict``.

        :raises InvalidRequest: both were given.
        """
        if self.n_predict is None:
            return given
        if given is not None:
            raise InvalidRequest(
                f"'n_predict' and '{name}' both set the completion limit; send one.",
                param="n_predict",
            )
        return None if self.n_predict == -1 else self.n_predict


def _grammar(body: Mapping[str, Any]) -> str | None:
    text = body.get("grammar")
    if text is None:
        return None
    # llama.cpp reads the grammar as a C string: a NUL would end it early.
    if not isinstance(text, str) or not text.strip() or "\x00" in text:
        raise InvalidRequest("'grammar' must be GBNF text.", param="grammar")
    if len(text) > MAX_GRAMMAR:
        raise InvalidRequest(
            f"'grammar' is {len(text)} characters; the limit is {MAX_GRAMMAR}.", param="grammar"
        )
    for match in _COUNTS.finditer(_LITERAL_OR_CLASS.sub('""', text)):
        count = max(int(match.group(1)), int(match.group(2) or 0))
        if count > MAX_REPEAT:
            raise InvalidRequest(
                f"'grammar' repeats {count} times ({match.group(0)}); the limit is {MAX_REPEAT}.",
                param="grammar",
            )
    return text


def extensions(body: Mapping[str, Any], *, max_probs: int) -> Extensions:
    """The extensions in ``body``; ``max_probs``: the API's largest ``n_probs``.

    :raises InvalidRequest: naming the parameter.
    """
    boolean(body, "cache_prompt")
    integer(body, "id_slot", -1)
    n_predict = integer(body, "n_predict", -1)
    if n_predict == 0:
        raise InvalidRequest(
            "0 is not a valid value for 'n_predict': expected -1 (no limit) or at least 1.",
            param="n_predict",
        )
    schema = body.get("json_schema")
    if schema is not None and not isinstance(schema, dict):
        raise InvalidRequest("'json_schema' must be a JSON Schema object.", param="json_schema")
    grammar = _grammar(body)
    if grammar is not None and schema is not None:
        raise InvalidRequest("'grammar' and 'json_schema' cannot both be set.", param="grammar")
    return Extensions(
        n_predict=n_predict,
        grammar=grammar,
        json_schema=schema,
        n_probs=integer(body, "n_probs", 0, max_probs),
    )


def _active(name: str, sampling: SamplingParams) -> bool:
    if name == "penalties":
        return sampling.penalized
    if name == "top_k":
        return sampling.top_k > 0
    if name == "top_p":
        return sampling.top_p < 1.0
    if name == "min_p":
        return sampling.min_p > 0.0
    return sampling.temperature != 1.0


def check_samplers(body: Mapping[str, Any], sampling: SamplingParams) -> None:
    """``samplers`` is one Sluice runs as asked (see the module notes).

    :raises InvalidRequest: naming ``samplers``.
    """
    value = body.get("samplers")
    if value is None:
        return
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise InvalidRequest("'samplers' must be an array of sampler names.", param="samplers")
    unknown = [name for name in value if name not in _SLUICE_ORDER and name not in _ABSENT]
    if unknown:
        raise InvalidRequest(
            f"'samplers' names {unknown[0]!r}, which Sluice does not have.", param="samplers"
        )
    ours = [name for name in value if name in _SLUICE_ORDER]
    if ours != sorted(set(ours), key=_SLUICE_ORDER.index):
        raise InvalidRequest(
            f"'samplers' asks for {', '.join(ours)}; Sluice runs them only in the order "
            f"{', '.join(_SLUICE_ORDER)}, each once.",
            param="samplers",
        )
    left_out = [name for name in _SLUICE_ORDER if name not in ours and _active(name, sampling)]
    if left_out:
        raise InvalidRequest(
            f"'samplers' leaves out {left_out[0]}, yet this request sets it.", param="samplers"
        )


_SCHEMA_PARAM: Final = "response_format.json_schema.schema"


@contextmanager
def schema_param(param: str | None) -> Iterator[None]:
    """Name ``param`` instead of ``response_format``'s schema in the errors of the grammar
    built inside (llama.cpp server's ``json_schema`` is its own parameter)."""
    try:
        yield
    except InvalidInput as exc:
        if param is None or param == _SCHEMA_PARAM or exc.param != _SCHEMA_PARAM:
            raise
        raise InvalidRequest(exc.message.replace(_SCHEMA_PARAM, param), param=param) from None
