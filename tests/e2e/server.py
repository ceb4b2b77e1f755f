"""Start the real service (Hypercorn + the embedded model) on a free port, in a thread."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from hypercorn.asyncio import serve

from model.source import ResolvedModel, resolve_model
from service import Config, Sluice, create_app, hypercorn_config

_EMBEDDED: list[ResolvedModel] = []


def embedded_model() -> ResolvedModel:
    if not _EMBEDDED:
        _EMBEDDED.append(resolve_model(None))
    return _EMBEDDED[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RunningServer:
    app: Sluice
    port: int
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return self.url + "/v1"

    def engine_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = httpx.get(self.url + "/ready").json()["engine"]
        return stats

    def wait_idle(self, timeout: float = 30.0) -> dict[str, Any]:
        """Poll readiness until no sequence is active or queued; returns the last stats."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.engine_stats()
            if stats["active"] == 0 and stats["queued"] == 0:
                return stats
            if time.monotonic() > deadline:
                raise AssertionError(f"engine still busy after {timeout}s: {stats}")
            time.sleep(0.02)


@contextmanager
def running_server(
    *, resolved: ResolvedModel | None = None, **overrides: Any
) -> Iterator[RunningServer]:
    """The service on a free port with ``Config`` ``overrides``, serving ``resolved`` (by
    default the embedded model)."""
    # One llama.cpp thread: the test client and the server share a small, often busy
    # machine, where two OpenMP threads spin against each other and run several times slower.
    overrides.setdefault("threads", 1)
    config = Config(host="127.0.0.1", port=0, **overrides)
    app = create_app(config, resolved or embedded_model())
    hypercorn = hypercorn_config(config)
    hypercorn.graceful_timeout = 1.0
    # Port 0: the kernel picked a free port for the listening socket Sluice made.
    fd = int(hypercorn.bind[0].removeprefix("fd://"))
    with socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM) as listener:
        port_number: int = listener.getsockname()[1]
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(serve(app, hypercorn, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
        loop.close()

    thread = threading.Thread(target=run, name=f"sluice-test-{port_number}", daemon=True)
    thread.start()
    server = RunningServer(app, port_number, "https" if config.certfile else "http")
    deadline = time.monotonic() + 60
    while True:
        try:
            # Readiness only: the TLS tests check certificates with their own client.
            if httpx.get(server.url + "/ready", verify=False).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not become ready")
        time.sleep(0.05)
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)


ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def serving(
    argv: list[str], env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Run the service as a process (``argv`` plus ``--port``) until it is ready.

    Its output goes to a file (a pipe nobody reads could fill and block it) and is shown
    when it never becomes ready.
    """
    port = free_port()
    with tempfile.TemporaryFile("w+") as output:
        process = subprocess.Popen(
            [*argv, "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(url + "/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or process.poll() is not None:
                    output.seek(0)
                    raise AssertionError(f"service did not become ready: {output.read()}")
                time.sleep(0.05)
            yield url, process
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
