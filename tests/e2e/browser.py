"""Headless Chromium for end-to-end tests: a page served on its own origin runs a script
against the server and posts its findings back.

Chromium comes from Debian (``scripts/bootstrap browser``; CI installs it); without it the
tests that need it are skipped, saying so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from .server import free_port

#: Flags for a root user on a machine without a network: no sandbox, and none of Chromium's
#: own connections to Google's hosts.
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium() -> str:
    """Chromium's path, or the test is skipped with the reason."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("Chromium is not installed (scripts/bootstrap browser installs it)")
    return path


class PageOrigin:
    """An HTTP server on its own port (another origin than the API's) serving one page."""

    def __init__(self) -> None:
        self.port = free_port()
        self.page = ""
        self.result: dict[str, Any] | None = None
        self.posted = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def page_origin() -> Iterator[PageOrigin]:
    """Serve :attr:`PageOrigin.page` at ``/`` and take one JSON result at ``POST /result``."""
    origin = PageOrigin()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = origin.page.encode()
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            origin.result = json.loads(self.rfile.read(length))
            self.send_response(204)
            self.end_headers()
            origin.posted.set()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", origin.port), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield origin
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def run_page(origin: PageOrigin, page: str, timeout: float = 120) -> dict[str, Any]:
    """Open ``page`` in headless Chromium and return what it posts to ``/result``."""
    browser = chromium()
    origin.page = page
    origin.posted.clear()
    with tempfile.TemporaryDirectory() as profile:
        process = subprocess.Popen(
            [browser, *_FLAGS, f"--user-data-dir={profile}", origin.url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            if not origin.posted.wait(timeout):
                raise AssertionError(f"the page posted no result within {timeout} s")
        finally:
            process.kill()
            process.wait(timeout=30)
    assert origin.result is not None
    return origin.result
