"""/v1/embeddings against the real server, with the openai SDK."""

from __future__ import annotations

import base64
import json
import math
import socket
import struct
import threading
import time
from typing import Any

import httpx
import openai

from .server import RunningServer

CAT = "The cat sat on the mat."
PARAPHRASE = "A cat was sitting on the mat."
UNRELATED = "Stock markets fell sharply today."


def client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.api, api_key="unused", max_retries=0, timeout=120)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))  # both are unit vectors


def test_float_vectors_are_unit_and_mean_something(server: RunningServer) -> None:
    embedder = server.app.registry.get().embedder
    with client(server) as sdk:
        sdk.embeddings.create(model="m", input=CAT)  # the context is made at first use
        decodes = embedder.decodes
        reply = sdk.embeddings.create(
            model="m", input=[CAT, PARAPHRASE, UNRELATED, CAT], encoding_format="float"
        )
    assert embedder.decodes == decodes + 1  # four inputs, one batch
    assert reply.object == "list"
    assert reply.model == "SmolLM2-135M-Instruct"
    assert [d.index for d in reply.data] == [0, 1, 2, 3]
    cat, paraphrase, unrelated, again = (d.embedding for d in reply.data)
    assert len(cat) == 576  # SmolLM2-135M's hidden size
    for vector in (cat, paraphrase, unrelated):
        assert math.isclose(math.fsum(x * x for x in vector), 1.0, abs_tol=1e-6)
    assert math.isclose(cosine(cat, again), 1.0, abs_tol=1e-6)
    assert cosine(cat, paraphrase) > cosine(cat, unrelated)
    assert reply.usage.prompt_tokens == reply.usage.total_tokens > 20


def test_base64_and_token_ids_give_the_same_vectors(server: RunningServer) -> None:
    with client(server) as sdk:
        floats = sdk.embeddings.create(model="m", input=CAT, encoding_format="float")
        # Without encoding_format the SDK asks for base64 and decodes it itself.
        decoded = sdk.embeddings.create(model="m", input=CAT)
    raw = httpx.post(
        server.api + "/embeddings",
        json={"input": CAT, "encoding_format": "base64"},
        timeout=120,
    ).json()
    data = base64.b64decode(raw["data"][0]["embedding"])
    unpacked = list(struct.unpack(f"<{len(data) // 4}f", data))
    expected = floats.data[0].embedding
    assert len(unpacked) == len(expected)
    assert all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(unpacked, expected, strict=True))
    assert all(
        math.isclose(a, b, abs_tol=1e-6)
        for a, b in zip(decoded.data[0].embedding, expected, strict=True)
    )
    tokens = httpx.post(
        server.url + "/tokenize", json={"content": CAT, "add_special": True}, timeout=60
    ).json()["tokens"]
    by_ids = httpx.post(
        server.api + "/embeddings", json={"input": [tokens, tokens[:3]]}, timeout=120
    ).json()
    assert by_ids["usage"]["prompt_tokens"] == len(tokens) + 3
    assert math.isclose(cosine(by_ids["data"][0]["embedding"], expected), 1.0, abs_tol=1e-5)
    single = httpx.post(server.api + "/embeddings", json={"input": tokens}, timeout=120).json()
    assert len(single["data"]) == 1


def test_bad_requests_name_the_parameter(server: RunningServer) -> None:
    past_the_context = server.engine_stats()["ctx_size"] + 1
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "input"),
        ({"input": []}, "input"),
        ({"input": [[]]}, "input"),
        ({"input": ""}, "input"),
        ({"input": ["a", ""]}, "input[1]"),
        ({"input": [1, "a"]}, "input"),
        ({"input": ["a"] * 2049}, "input"),
        ({"input": [[1, 10**9]]}, "input"),
        ({"input": [7] * past_the_context}, "input"),
        ({"input": "a", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "a", "dimensions": 64}, "dimensions"),
        ({"input": "a", "dimensions": 0}, "dimensions"),
        ({"input": "a", "truncate": True}, "truncate"),
        ({"input": "a", "user": 5}, "user"),
    ]
    for body, param in cases:
        reply = httpx.post(server.api + "/embeddings", json=body, timeout=120)
        assert reply.status_code == 400, (body, reply.text)
        assert reply.json()["error"]["param"] == param, body
    own = httpx.post(server.api + "/embeddings", json={"input": "a", "dimensions": 576})
    assert own.status_code == 200


def test_embeddings_never_stall_a_running_stream(server: RunningServer) -> None:
    """Embeddings run on their own thread: a stream keeps getting tokens between them."""
    chunks: list[str] = []
    finish: list[str | None] = []

    def stream() -> None:
        with client(server) as sdk:
            for chunk in sdk.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": "Count from one to one hundred."}],
                max_tokens=128,
                extra_body={"ignore_eos": True},
                stream=True,
            ):
                if chunk.choices and chunk.choices[0].delta.content:
                    chunks.append(chunk.choices[0].delta.content)
                if chunk.choices and chunk.choices[0].finish_reason:
                    finish.append(chunk.choices[0].finish_reason)

    seen: list[int] = []  # stream chunks received when each embedding request completed
    with client(server) as sdk:
        sdk.embeddings.create(model="m", input=CAT)  # the embedding context exists from here
        streamer = threading.Thread(target=stream)
        streamer.start()
        while streamer.is_alive():
            sdk.embeddings.create(model="m", input=[CAT, PARAPHRASE, UNRELATED])
            if streamer.is_alive():
                seen.append(len(chunks))
    streamer.join()
    assert finish == ["length"]
    assert len(chunks) > 10
    during = [count for count in seen if 0 < count < len(chunks)]
    # Several embedding requests completed while tokens flowed, with tokens between them.
    assert len(set(during)) >= 2, seen


def test_a_client_that_leaves_stops_its_embeddings(server: RunningServer) -> None:
    embedder = server.app.registry.get().embedder
    with client(server) as sdk:
        sdk.embeddings.create(model="m", input=CAT)  # the context is made at first use
    start = embedder.decodes
    # 400 inputs, at most 16 per decode: 25 decodes if it were read to the end.
    inputs = [f"Sentence number {i} is about rivers." for i in range(400)]
    body = json.dumps({"model": "m", "input": inputs}).encode()
    head = (
        f"POST /v1/embeddings HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as leaving:
        leaving.sendall(head + body)
        for _ in range(6000):  # up to 10 minutes on a loaded machine
            if embedder.decodes > start:
                break
            time.sleep(0.1)
        assert embedder.decodes > start
    # The thread finishes the decode it is in and skips the rest of the request.
    with client(server) as sdk:
        assert len(sdk.embeddings.create(model="m", input=CAT).data) == 1
    assert embedder.decodes - start < 10
