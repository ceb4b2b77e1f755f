"""The fuzz campaign: hypothesis-generated requests, valid-shaped and hostile, on every route,
against the real server process over real sockets (httpx, HTTP/1.1 and h2c).

Each example is a batch of requests sent while a reference stream runs. After each batch: the
process is alive, the reference stream completed intact (every token, a clean end), ``/health``
answers, and no response was a 5xx or anything but an OpenAI-shaped body (errors in streams
included). The one 5xx allowed is the 504 a request's own tiny ``timeout`` asks for.

CI runs a small budget (``SLUICE_FUZZ_EXAMPLES``, default 25 batches: about a minute); a long
local campaign: ``SLUICE_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest -s tests/e2e/test_fuzz.py``
(prints the number of requests sent).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings

from .fuzz_inputs import FuzzRequest, requests
from .server import ROOT, free_port

EXAMPLES = int(os.environ.get("SLUICE_FUZZ_EXAMPLES", "25"))
#: Most requests per batch (SLUICE_FUZZ_BATCH): more per reference stream in long campaigns.
BATCH = int(os.environ.get("SLUICE_FUZZ_BATCH", "6"))
REFERENCE_TOKENS = 6
#: Requests sent and batches run, over all examples (printed at the end of a run with -s).
SENT: list[int] = [0]
BATCHES: list[int] = [0]


class Target:
    """The server process, its log, and an HTTP/1.1 and an h2c client."""

    def __init__(self, url: str, process: subprocess.Popen[str], log: Path) -> None:
        self.url = url
        self.process = process
        self.log = log
        # Idle connections are dropped before Hypercorn's 5 s keep-alive timeout closes them,
        # which a request could race.
        pool = httpx.Limits(keepalive_expiry=2)
        options: dict[str, Any] = {"base_url": url, "timeout": 60, "limits": pool}
        self.h1 = httpx.Client(**options)
        self.h2 = httpx.Client(**options, http1=False, http2=True)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if httpx.get(self.url + "/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the server did not become ready: {self.log_tail()}")

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def close(self) -> None:
        self.h1.close()
        self.h2.close()


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    log = tmp_path_factory.mktemp("fuzz") / "server.log"
    port = free_port()
    argv = [sys.executable, "service.py", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--threads", "1", "--ctx-size", "512", "--body-timeout", "10"]
    argv += ["--log-level", "warning"]
    with log.open("w") as output:
        process = subprocess.Popen(
            argv, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, text=True
        )
        running = Target(f"http://127.0.0.1:{port}", process, log)
        try:
            running.wait_ready()
            yield running
        finally:
            running.close()
            process.kill()
            process.wait()
    print(f"\nfuzz: {SENT[0]} requests in {BATCHES[0]} batches")


def check_error(error: Any, where: str, *, anthropic: bool = False) -> None:
    assert isinstance(error, dict), where
    keys = {"message", "type"} if anthropic else {"message", "type", "param", "code"}
    assert set(error) == keys, where
    assert isinstance(error["message"], str), where
    assert error["message"], where
    assert isinstance(error["type"], str), where


def check(request: FuzzRequest, response: httpx.Response, body: bytes) -> None:
    where = f"{request.method} {request.path} -> {response.status_code}: {body[:300]!r}"
    status = response.status_code
    kind = response.headers.get("content-type", "")
    anthropic = request.path.startswith("/v1/messages")
    if status == 504:  # only the request's own deadline, answered as such
        error = json.loads(body)["error"]
        assert error["type" if anthropic else "code"].startswith(("deadline", "timeout")), where
        return
    assert status < 500, where
    if request.method == "HEAD" or status == 204:
        return
    if request.path == "/metrics" and status == 200:
        assert kind.startswith("text/plain"), where
        return
    if kind.startswith("text/event-stream"):
        assert status == 200, where
        done = request.path in ("/v1/chat/completions", "/v1/completions")
        check_stream(body.decode(), where, done=done, anthropic=anthropic)
        return
    assert kind.startswith("application/json"), where
    data = json.loads(body)
    if status >= 400:
        assert set(data) == ({"type", "error"} if anthropic else {"error"}), where
        check_error(data["error"], where, anthropic=anthropic)


def check_stream(text: str, where: str, *, done: bool, anthropic: bool) -> None:
    """Whole SSE frames (``event:``/``id:`` lines allowed), each ``data:`` a JSON document
    (``[DONE]`` last where the API sends it); error documents in the API's shape."""
    assert text.endswith("\n\n"), where
    frames = [f for f in text.split("\n\n") if f and not f.startswith(":")]
    assert frames, where
    if done:
        assert frames.pop() == "data: [DONE]", where
    for frame in frames:
        data = [line for line in frame.split("\n") if line.startswith("data: ")]
        assert len(data) == 1, where
        document = json.loads(data[0][len("data: ") :])
        if isinstance(document.get("error"), dict):
            check_error(document["error"], where, anthropic=anthropic)


def send(target: Target, request: FuzzRequest) -> None:
    client = target.h2 if request.http2 else target.h1
    try:
        response, body = exchange(client, request)
    except httpx.RemoteProtocolError as exc:
        # Hypercorn ends an HTTP/2 connection gracefully after 1000 requests (GOAWAY,
        # NO_ERROR); a request sent past its last stream id was never processed and is
        # retried on a new connection, as RFC 9113 section 6.8 allows. Nothing else is.
        if "ConnectionTerminated error_code:0" not in str(exc):
            raise
        response, body = exchange(client, request)
    SENT[0] += 1
    check(request, response, body)


def exchange(client: httpx.Client, request: FuzzRequest) -> tuple[httpx.Response, bytes]:
    with client.stream(
        request.method, request.path, content=request.body, headers=request.headers
    ) as response:
        return response, response.read()


def reference_stream(target: Target, outcome: list[Any]) -> None:
    body = {
        "messages": [{"role": "user", "content": "Name a colour."}],
        "max_tokens": REFERENCE_TOKENS,
        "ignore_eos": True,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    try:
        with httpx.Client(base_url=target.url, timeout=120) as client:
            reply = client.post("/v1/chat/completions", json=body)
        frames = [f for f in reply.text.split("\n\n") if f.startswith("data: ")]
        documents = [json.loads(f[6:]) for f in frames[:-1]]
        finish = [c["finish_reason"] for d in documents for c in d["choices"] if c["finish_reason"]]
        usage = [d["usage"]["completion_tokens"] for d in documents if d.get("usage")]
        outcome.append((reply.status_code, frames[-1], finish, usage))
    except Exception as exc:  # reported by the batch's assertion, not lost in the thread
        outcome.append(exc)


@pytest.mark.timeout(max(300, EXAMPLES * 20))
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    # No shrinking: against a real server it takes many minutes; the failing batch is shown
    # as drawn, and each failure class found becomes a named regression test.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(batch=requests(BATCH))
def test_fuzz_every_route(target: Target, batch: list[FuzzRequest]) -> None:
    BATCHES[0] += 1
    outcome: list[Any] = []
    reference = threading.Thread(target=reference_stream, args=(target, outcome))
    reference.start()
    try:
        for request in batch:
            send(target, request)
        reference.join(timeout=120)
        assert target.process.poll() is None, "the server process died"
        assert outcome == [(200, "data: [DONE]", ["length"], [REFERENCE_TOKENS])]
        assert target.h1.get("/health").status_code == 200
    except (AssertionError, httpx.HTTPError) as exc:
        raise AssertionError(f"{exc}\n--- server log ---\n{target.log_tail()}") from exc
    finally:
        reference.join(timeout=120)
