"""A real browser on another origin streams a chat completion with ``fetch`` and the headers
of the official OpenAI JavaScript SDK: the CORS preflight, the stream, the exposed headers.

Headless Chromium (Debian's ``chromium``; ``scripts/test`` installs it under CI=true). Without
it the test is skipped, saying so.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from .server import free_port, running_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
KEY = "sk-browser-test"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium is not installed (apt-get install chromium; scripts/test does "
    "it when CI=true)",
)

# The SDK's own headers (openai-node v4 to v6 in a browser; values as it makes them).
PAGE = """<!doctype html>
<html><body><script>
(async () => {
  const report = (result) => fetch("/result", {method: "POST", body: JSON.stringify(result)});
  try {
    const response = await fetch("%(api)s/v1/chat/completions", {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Authorization": "Bearer %(key)s",
        "X-Stainless-Lang": "js",
        "X-Stainless-Package-Version": "5.23.2",
        "X-Stainless-OS": "Unknown",
        "X-Stainless-Arch": "unknown",
        "X-Stainless-Runtime": "browser:chrome",
        "X-Stainless-Runtime-Version": "156.0.0",
        "X-Stainless-Retry-Count": "0",
        "X-Stainless-Timeout": "600",
      },
      body: JSON.stringify({
        messages: [{role: "user", content: "Say hello."}],
        max_tokens: 8,
        stream: true,
      }),
    });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let reads = 0, text = "";
    for (;;) {
      const {done, value} = await reader.read();
      if (done) break;
      reads += 1;
      text += decoder.decode(value, {stream: true});
    }
    await report({
      status: response.status,
      requestId: response.headers.get("x-request-id"),
      contentType: response.headers.get("content-type"),
      reads: reads,
      text: text,
    });
  } catch (error) {
    await report({error: String(error)});
  }
})();
</script></body></html>
"""


@contextmanager
def page_origin(page: str, port: int) -> Iterator[queue.Queue[dict[str, Any]]]:
    """Serve ``page`` at ``/`` on ``port``; what it POSTs to ``/result`` arrives on the
    queue."""
    results: queue.Queue[dict[str, Any]] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page.encode()
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers["content-length"])
            results.put(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield results
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def headless_chromium(url: str) -> Iterator[None]:
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory() as profile:
        # As root Chromium needs --no-sandbox; the others keep it off this closed network.
        browser = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                url,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            yield
        finally:
            os.killpg(browser.pid, signal.SIGKILL)  # its own session: the browser's processes
            browser.wait()


def test_a_page_on_another_origin_streams_with_the_sdk_headers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="sluice.access")
    page_port = free_port()
    origin = f"http://localhost:{page_port}"
    with running_server(cors_origins=origin, api_keys=KEY) as srv:
        page = PAGE % {"api": srv.url, "key": KEY}
        with page_origin(page, page_port) as results, headless_chromium(origin + "/"):
            result = results.get(timeout=120)
    assert "error" not in result, result
    assert result["status"] == 200
    assert result["contentType"].startswith("text/event-stream")
    assert result["requestId"]  # an exposed header
    assert result["text"].rstrip().endswith("data: [DONE]")
    events = [line for line in result["text"].splitlines() if line.startswith("data: {")]
    assert events
    assert all("chat.completion.chunk" in line for line in events)
    lines = [r.getMessage() for r in caplog.records if r.name == "sluice.access"]
    assert any(line.startswith("OPTIONS /v1/chat/completions 200") for line in lines)
