"""A real browser on another origin, CORS on: ``EventSource`` resuming a stream by itself
with ``Last-Event-ID``, and a WebSocket with the key subprotocol."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from .browser import PageOrigin, chromium, page_origin, run_page
from .server import RunningServer, running_server

_SCRIPT = """
const api = "http://127.0.0.1:%(port)d";
const body = (extra) => JSON.stringify(Object.assign({
  model: "sluice", messages: [{role: "user", content: "Name three colours."}],
  max_tokens: 24, temperature: 0, ignore_eos: true, stream: true}, extra));
const out = {};

async function eventSourceResumes() {
  // Start a resumable stream, read its headers, and leave.
  const ctrl = new AbortController();
  const first = await fetch(api + "/v1/chat/completions", {method: "POST",
    headers: {"content-type": "application/json"},
    body: body({stream_options: {resumable: true}}), signal: ctrl.signal});
  const url = first.headers.get("x-stream-url");
  ctrl.abort();
  out.url = url;
  // EventSource reads it; after two events another reader takes the stream over, so the
  // EventSource's connection ends and the browser reconnects with Last-Event-ID by itself.
  const ids = [], data = [];
  let opens = 0;
  await new Promise((resolve) => {
    const es = new EventSource(api + url);
    es.onopen = () => { opens += 1; };
    es.onmessage = async (e) => {
      ids.push(e.lastEventId);
      data.push(e.data);
      if (e.data === "[DONE]") { es.close(); resolve(); }
      else if (ids.length === 2) {
        const other = new AbortController();
        fetch(api + url, {signal: other.signal}).then(() => other.abort()).catch(() => {});
      }
    };
  });
  out.ids = ids;
  out.opens = opens;
  out.text = data.filter((d) => d !== "[DONE]")
    .map((d) => JSON.parse(d).choices.map((c) => c.delta.content || "").join("")).join("");
}

async function webSocketStreams() {
  const ws = new WebSocket(api.replace("http", "ws") + "/v1/chat/completions",
                           ["sluice.key.unused"]);
  const text = await new Promise((resolve, reject) => {
    let text = "";
    ws.onopen = () => ws.send(JSON.stringify({type: "request", id: "r1",
      body: JSON.parse(body({max_tokens: 24}))}));
    ws.onmessage = (m) => {
      const msg = JSON.parse(m.data);
      if (msg.event) text += msg.event.choices.map((c) => c.delta.content || "").join("");
      if (msg.done) resolve(text);
      if (msg.error) reject(new Error(JSON.stringify(msg.error)));
    };
    ws.onerror = () => reject(new Error("websocket error"));
  });
  out.wsProtocol = ws.protocol;
  out.wsText = text;
  ws.close();
}

(async () => {
  try { await eventSourceResumes(); await webSocketStreams(); }
  catch (e) { out.error = String(e); }
  await fetch("/result", {method: "POST", body: JSON.stringify(out)});
})();
"""


@pytest.fixture(scope="module")
def origin() -> Iterator[PageOrigin]:
    chromium()
    with page_origin() as page:
        yield page


@pytest.fixture(scope="module")
def cors_server(origin: PageOrigin) -> Iterator[RunningServer]:
    with running_server(cors_origins=origin.url) as running:
        yield running


def test_eventsource_resumes_and_a_websocket_streams_across_origins(
    origin: PageOrigin, cors_server: RunningServer
) -> None:
    page = "<!doctype html><script>" + _SCRIPT % {"port": cors_server.port} + "</script>"
    result = run_page(origin, page)
    assert "error" not in result, result
    stream = result["url"].rsplit("/", 1)[1]
    # Every event exactly once, in order, across the reconnection; then [DONE].
    assert result["ids"] == [f"{stream}:{n}" for n in range(1, len(result["ids"]) + 1)]
    assert result["opens"] >= 2, result
    assert result["wsProtocol"] == "sluice.key.unused"
    # Both transports carry the same generation as a plain POST would.
    body = {
        "model": "sluice",
        "messages": [{"role": "user", "content": "Name three colours."}],
        "max_tokens": 24,
        "temperature": 0,
        "ignore_eos": True,
    }
    whole = httpx.post(cors_server.api + "/chat/completions", json=body, timeout=60).json()
    expected = whole["choices"][0]["message"]["content"]
    assert result["text"] == expected
    assert result["wsText"] == expected
