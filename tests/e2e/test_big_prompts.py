"""Prompts far past the context: refused cheaply (by their length, before any rendering or
tokenizing), while another client's stream and ``/health`` go on. Counts, not speed: the only
timing asserted is that nothing stalled for seconds."""

from __future__ import annotations

import itertools
import json
import threading
import time

import httpx

from .server import running_server

# Just under the default 8 MiB body limit.
WORDS = "word " * 1_600_000
FLOOD = {
    "/v1/chat/completions": json.dumps(
        {"messages": [{"role": "user", "content": WORDS}], "max_tokens": 1}
    ).encode(),
    "/v1/completions": json.dumps({"prompt": WORDS, "max_tokens": 1}).encode(),
}
TOKENS = 120
#: Far above a decode step here (tens of ms), far below the seconds a stall took.
STALL = 2.5


def test_a_flood_of_oversized_prompts_stalls_no_one() -> None:
    with running_server() as srv:
        done = threading.Event()
        arrivals: list[float] = []
        refusals: list[httpx.Response] = []
        health: list[float] = []
        finish: list[str] = []
        usage: list[int] = []

        def stream() -> None:
            body = {
                "messages": [{"role": "user", "content": "Count to fifty."}],
                "max_tokens": TOKENS,
                "ignore_eos": True,
                "temperature": 0,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            try:
                with (
                    httpx.Client(base_url=srv.url, timeout=120) as client,
                    client.stream("POST", "/v1/chat/completions", json=body) as response,
                ):
                    for line in response.iter_lines():
                        if not line.startswith("data: {"):
                            continue
                        chunk = json.loads(line[6:])
                        if chunk.get("usage"):
                            usage.append(chunk["usage"]["completion_tokens"])
                        if not chunk["choices"]:
                            continue
                        choice = chunk["choices"][0]
                        if choice["delta"].get("content"):
                            arrivals.append(time.monotonic())
                        if choice["finish_reason"]:
                            finish.append(choice["finish_reason"])
            finally:
                done.set()

        def flood(path: str) -> None:
            with httpx.Client(base_url=srv.url, timeout=120) as client:
                while not done.is_set():
                    refusals.append(
                        client.post(
                            path, content=FLOOD[path], headers={"content-type": "application/json"}
                        )
                    )

        def probe() -> None:
            with httpx.Client(base_url=srv.url, timeout=120) as client:
                while not done.is_set():
                    started = time.monotonic()
                    assert client.get("/health").status_code == 200
                    health.append(time.monotonic() - started)
                    time.sleep(0.1)

        threads = [threading.Thread(target=stream), threading.Thread(target=probe)]
        threads += [threading.Thread(target=flood, args=(path,)) for path in FLOOD]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
    # The stream came whole, every token of it.
    assert finish == ["length"]
    assert usage == [TOKENS]
    assert len(arrivals) >= 2
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert max(gaps) < STALL
    assert len(health) >= 3
    assert max(health) < STALL
    assert len(refusals) >= 2
    for reply in refusals:
        assert reply.status_code == 400
        error = reply.json()["error"]
        assert error["code"] == "context_length_exceeded"
        assert "characters, which make at least" in error["message"]  # never tokenized
