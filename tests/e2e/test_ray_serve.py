"""Sluice on a real local Ray cluster, started as a user starts it (``python -m
stream.ray_serve``), each replica with the embedded model on one thread: streams through
Ray's HTTP proxy, replicas told apart by ``X-Sluice-Replica``, a cancelled stream's slot
freed, and scale to zero and back."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from stream.ray_serve import REPLICA_HEADER

from .server import free_port
from .sse_client import Frame, frames

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
CHAT = "/v1/chat/completions"


class RayServe:
    """``python -m stream.ray_serve`` as a process, with its log."""

    def __init__(self, url: str, log: IO[str], process: subprocess.Popen[str]) -> None:
        self.url = url
        self._log = log
        self.process = process

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read()

    def wait_for_replicas(self, count: int, after: int = 0, timeout: float = 150) -> int:
        """Wait until the CLI reports ``count`` running replicas past log offset ``after``;
        returns the offset just past that line."""
        wanted = re.compile(rf"replicas running: {count}\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = wanted.search(self.log(), after)
            if found:
                return found.end()
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"never saw {count} replicas running:\n{self.log()[-4000:]}")

    def replica_stats(self, replica: str, timeout: float = 60) -> dict[str, Any]:
        """One replica's engine figures from ``/ready``, asked until that replica answers
        (Ray's proxy picks the replica)."""
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while time.monotonic() < deadline:
                ready = client.get("/ready")
                if ready.headers[REPLICA_HEADER] == replica:
                    stats: dict[str, Any] = ready.json()["engine"]
                    return stats
        raise AssertionError(f"{replica} never answered /ready")


@contextlib.contextmanager
def ray_serve(*flags: str) -> Iterator[RayServe]:
    port = free_port()
    argv = [sys.executable, "-m", "stream.ray_serve", *flags]
    argv += ["--threads", "1", "--host", "127.0.0.1", "--port", str(port)]
    with tempfile.TemporaryFile("w+") as log:
        # Its own session: whatever Ray leaves behind can be ended without touching
        # anything else.
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            # No usage report to Ray's servers: the test reaches nothing off this machine.
            env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        served = RayServe(f"http://127.0.0.1:{port}", log, process)
        try:
            yield served
            # As an orchestrator stops it: SIGTERM, a clean exit, nothing of Ray left over.
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=90) == 0, served.log()[-4000:]
            deadline = time.monotonic() + 15
            while session_alive(process.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not session_alive(process.pid), "Ray processes outlived the CLI"
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=60)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def session_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def stream_chat(url: str, body: dict[str, Any]) -> tuple[str, list[Frame], str]:
    with (
        httpx.Client(base_url=url, timeout=120) as client,
        client.stream("POST", CHAT, json=body) as response,
    ):
        assert response.status_code == 200, response.read()
        return response.headers[REPLICA_HEADER], list(frames(response)), response.http_version


def test_two_replicas_share_streams_and_a_cancel_frees_the_slot() -> None:
    with ray_serve("--replicas", "2", "--slots", "4") as served:
        served.wait_for_replicas(2)
        results: dict[int, tuple[str, list[Frame], str]] = {}

        def run(i: int) -> None:
            body = {
                "messages": [{"role": "user", "content": f"Tell me about the number {i}."}],
                "max_tokens": 16,
                "ignore_eos": True,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            results[i] = stream_chat(served.url, body)

        workers = [threading.Thread(target=run, args=(i,)) for i in range(16)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=240)
        assert sorted(results) == list(range(16))
        for _, received, version in results.values():
            assert version == "HTTP/1.1"
            data = [f for f in received if f.kind == "data"]
            assert data[-1].text == "[DONE]"
            assert data[-2].json()["usage"]["completion_tokens"] == 16
            assert data[-3].json()["choices"][0]["finish_reason"] == "length"
        spread = Counter(replica for replica, _, _ in results.values())
        print(f"16 streams over replicas: {dict(spread)}")
        assert len(spread) == 2, spread

        # A client that leaves mid-stream: Ray cancels the replica's request task, and the
        # replica's engine drops the sequence at once, not after its 3000 tokens.
        body = {
            "messages": [{"role": "user", "content": "Tell me a long story."}],
            "max_tokens": 3000,
            "ignore_eos": True,
            "stream": True,
        }
        with (
            httpx.Client(base_url=served.url, timeout=120) as client,
            client.stream("POST", CHAT, json=body) as response,
        ):
            replica = response.headers[REPLICA_HEADER]
            # Held, not abandoned: dropping a half-read HTTP/1.1 body closes the connection.
            reading = frames(response)
            tokens = 0
            while tokens < 5:
                tokens += next(reading).kind == "data"
            during = served.replica_stats(replica)
        assert during["active"] == 1
        deadline = time.monotonic() + 60
        while (after := served.replica_stats(replica))["active"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert after["active"] == 0
        assert after["gone"] == during["gone"] + 1
        # Counted from a /ready read taken just before the disconnect: Ray's cancellation
        # takes milliseconds to arrive, and the sequence goes at the next step (1 step here,
        # on the 2-core machine; the bound leaves room for a loaded one).
        steps = after["steps"] - during["steps"]
        print(f"decode steps between a live read and the freed slot: {steps}")
        assert steps < 50

        # Ray's proxy speaks HTTP/1.1 only: no h2c, unlike Sluice served by Hypercorn.
        with (
            pytest.raises(httpx.HTTPError),
            httpx.Client(base_url=served.url, http1=False, http2=True, timeout=30) as client,
        ):
            client.get("/health")


def test_scales_to_zero_and_a_request_brings_a_replica_back() -> None:
    flags = ("--replicas", "1", "--min-replicas", "0", "--max-replicas", "1")
    with ray_serve(*flags, "--downscale-delay", "2") as served:
        served.wait_for_replicas(1)
        first = httpx.get(served.url + "/v1/models", timeout=120)
        assert first.status_code == 200
        position = len(served.log())
        position = served.wait_for_replicas(0, after=position)
        body = {
            "messages": [{"role": "user", "content": "Hello!"}],
            "max_tokens": 4,
            "ignore_eos": True,
        }
        reply = httpx.post(served.url + CHAT, json=body, timeout=150)
        served.wait_for_replicas(1, after=position)
    assert reply.status_code == 200, reply.text
    assert reply.json()["usage"]["completion_tokens"] == 4
    # A new replica (the first one is gone) loaded the model and answered.
    assert reply.headers[REPLICA_HEADER] != first.headers[REPLICA_HEADER]
