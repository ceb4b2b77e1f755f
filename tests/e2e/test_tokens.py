"""llama.cpp server's /tokenize and /detokenize against the real server."""

from __future__ import annotations

from typing import Any

import httpx

from .server import RunningServer


def post(server: RunningServer, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=60)


def tokens_of(server: RunningServer, text: str, **options: Any) -> list[Any]:
    reply = post(server, "/tokenize", {"content": text, **options})
    assert reply.status_code == 200, reply.text
    found: list[Any] = reply.json()["tokens"]
    return found


def text_of(server: RunningServer, tokens: list[int]) -> str:
    reply = post(server, "/detokenize", {"tokens": tokens})
    assert reply.status_code == 200, reply.text
    content: str = reply.json()["content"]
    return content


def test_round_trips(server: RunningServer) -> None:
    for text in ("Hello, world!", "  leading spaces\nand lines", "naïve café 🦙 ∑", ""):
        tokens = tokens_of(server, text)
        assert all(isinstance(t, int) for t in tokens)
        assert text_of(server, tokens) == text
    assert tokens_of(server, "") == []
    assert len(tokens_of(server, "Hello, world!")) < len("Hello, world!")


def test_pieces_are_text_or_the_bytes_of_part_of_a_character(server: RunningServer) -> None:
    text = "Llamas 🦙 and 雲"
    ids = tokens_of(server, text)
    pieces = tokens_of(server, text, with_pieces=True)
    assert [p["id"] for p in pieces] == ids
    raw = b"".join(
        p["piece"].encode() if isinstance(p["piece"], str) else bytes(p["piece"]) for p in pieces
    )
    assert raw.decode() == text
    # The emoji is split across byte-level tokens: those pieces come as byte lists.
    assert any(isinstance(p["piece"], list) for p in pieces)


def test_special_token_text_stays_text(server: RunningServer) -> None:
    marker = "<|im_start|>"
    # The chat template writes this marker as one control token; client text never does.
    assert len(tokens_of(server, marker)) > 1
    assert text_of(server, tokens_of(server, f"{marker}user\nhi")) == f"{marker}user\nhi"


def test_bad_requests_name_the_parameter(server: RunningServer) -> None:
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("/tokenize", {}, "content"),
        ("/tokenize", {"content": 3}, "content"),
        ("/tokenize", {"content": "x", "with_pieces": "yes"}, "with_pieces"),
        ("/tokenize", {"content": "x", "parse_special": True}, "parse_special"),
        ("/tokenize", {"content": "x", "n_probs": 2}, "n_probs"),
        ("/detokenize", {"tokens": [1, -1]}, "tokens"),
        ("/detokenize", {"tokens": [10**9]}, "tokens"),
        ("/detokenize", {"tokens": [1.5]}, "tokens"),
        ("/detokenize", {"tokens": "12"}, "tokens"),
        ("/detokenize", {"tokens": [1] * 131073}, "tokens"),
    ]
    # A lone surrogate, as JSON writes it: not text.
    surrogate = b'{"content": "\\ud83d"}'
    lone = httpx.post(server.url + "/tokenize", content=surrogate, timeout=60)
    assert lone.status_code == 400
    assert lone.json()["error"]["param"] == "content"
    for path, body, param in cases:
        reply = post(server, path, body)
        assert reply.status_code == 400, (path, body, reply.text)
        assert reply.json()["error"]["param"] == param, (path, body)
