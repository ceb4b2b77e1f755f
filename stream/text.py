"""Client text must be Unicode: lone UTF-16 surrogates in a parsed JSON body.

JSON may write a lone surrogate (``"\\ud83d"``) and Python's ``json`` reads it into a ``str``
that cannot be encoded as UTF-8. Such a string would fail wherever it is written again: the
prompt, an echoed field (``metadata``, ``user``), a stored response, even the error naming an
unknown field. So a body holding one anywhere is refused once, when it is parsed, naming
where it was.
"""

from __future__ import annotations

import re
from typing import Any, Final

__all__ = ["lone_surrogate"]

# A surrogate written as a JSON escape, or UTF-8-encoded (which ``json.loads`` lets through on
# bytes); a body matching neither holds none, so most bodies are never walked. A body that
# is not UTF-8 (JSON also detects UTF-16 and UTF-32) is always walked.
_MAYBE: Final = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def lone_surrogate(body: bytes, document: Any) -> tuple[str | None, str] | None:
    """Where ``document`` (parsed from ``body``) holds a lone surrogate: the parameter (a
    path such as ``input[0].call_id``; None for a top-level key) and the surrogate as
    ``\\uXXXX``. None when every string and key is valid Unicode."""
    utf8 = body[:1] not in (b"\x00", b"\xff", b"\xfe") and body[1:2] != b"\x00"
    if utf8 and not _MAYBE.search(body):
        return None
    # Iterative: a body may nest as deep as the JSON parser allows.
    todo: list[tuple[str | None, Any]] = [(None, document)]
    while todo:
        path, value = todo.pop()
        if isinstance(value, str):
            found = _surrogate(value)
            if found is not None:
                return path, found
        elif isinstance(value, dict):
            for key, item in value.items():
                found = _surrogate(key)
                if found is not None:
                    return path, found
                todo.append((key if path is None else f"{path}.{key}", item))
        elif isinstance(value, list):
            todo.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
    return None


def _surrogate(text: str) -> str | None:
    if text.isascii():
        return None
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        return f"\\u{ord(text[exc.start]):04x}"
    return None
