"""A strict SSE reader for tests: every frame, comments included, with arrival times."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Frame:
    at: float
    #: "data" or "comment"
    kind: str
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def frames(response: httpx.Response) -> Iterator[Frame]:
    """Parse a response body as SSE; fails on anything that is not a well-formed frame."""
    buffer = ""
    for piece in response.iter_text():
        buffer += piece
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            now = time.monotonic()
            lines = block.split("\n")
            assert len(lines) == 1, f"multi-line frame: {block!r}"
            line = lines[0]
            if line.startswith(":"):
                yield Frame(now, "comment", line[1:].strip())
            else:
                assert line.startswith("data: "), f"not a data frame: {line!r}"
                yield Frame(now, "data", line[len("data: ") :])
    assert buffer == "", f"truncated frame at the end of the stream: {buffer!r}"


def content_of(chunk: dict[str, Any]) -> str:
    choice = chunk["choices"][0]
    if "delta" in choice:
        return str(choice["delta"].get("content") or "")
    return str(choice.get("text") or "")
