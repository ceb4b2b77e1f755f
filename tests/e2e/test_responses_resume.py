"""Resuming a Responses stream against the real server: the openai SDK's
``responses.create(stream=True)`` cut by a proxy mid-stream, then replayed after the last
``sequence_number`` seen by ``GET /v1/responses/{id}?stream=true&starting_after=N`` (httpx
and the SDK's ``responses.retrieve``), by ``Last-Event-ID`` and on the stream's URL; keys,
expiry, and the responses whose streams are not kept."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from .proxy import cutting_proxy
from .server import RunningServer, running_server

RESPONSES = "/v1/responses"
TOKENS = 12
PROMPT = "Name three colours."
#: The SDK's type knows only OpenAI's stream options; it passes any through.
RESUMABLE: Any = {"resumable": True}


def _body(max_output_tokens: int = TOKENS, **extra: Any) -> dict[str, Any]:
    return {
        "model": "sluice",
        "input": PROMPT,
        "max_output_tokens": max_output_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": RESUMABLE,
        **extra,
    }


@dataclass
class Event:
    name: str
    id: str
    data: dict[str, Any]


def parse_events(text: str) -> list[Event]:
    """Every event of a resumable Responses stream (strictly: each block has one ``event``,
    ``id`` and ``data`` line, the first may carry ``retry``, heartbeats are comment lines)."""
    events: list[Event] = []
    fields: dict[str, str] = {}
    assert text.endswith("\n\n"), f"truncated stream: {text[-80:]!r}"
    for line in text.split("\n"):
        if line.startswith(":"):
            assert line == ": keep-alive", line
        elif line:
            name, _, value = line.partition(": ")
            assert name in ("event", "id", "data", "retry"), line
            assert name not in fields, line
            fields[name] = value
        elif fields:
            fields.pop("retry", None)
            assert set(fields) == {"event", "id", "data"}, fields
            data = json.loads(fields["data"])
            assert data["type"] == fields["event"]
            events.append(Event(fields["event"], fields["id"], data))
            fields = {}
    return events


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")


def _auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def keyed() -> Iterator[RunningServer]:
    """Keys on; a detached stream is kept 10 s."""
    with running_server(api_keys="key-a,key-b", resume_window=10.0) as running:
        yield running


@pytest.fixture(scope="module")
def uncut(keyed: RunningServer) -> tuple[list[Event], int]:
    """An uncut resumable Responses stream's events, and its size on the wire."""
    with (
        cutting_proxy(keyed.port, 1 << 30) as (port, forwarded),
        httpx.Client(timeout=60, headers=_auth("key-a")) as client,
    ):
        reply = client.post(f"http://127.0.0.1:{port}{RESPONSES}", json=_body())
    assert reply.status_code == 200, reply.text
    events = parse_events(reply.text)
    response_id = events[0].data["response"]["id"]
    assert reply.headers["x-stream-url"] == f"/v1/streams/{response_id}"
    # Event n of the stream is the event of sequence_number n - 1.
    assert [e.id for e in events] == [f"{response_id}:{n}" for n in range(1, len(events) + 1)]
    assert [e.data["sequence_number"] for e in events] == list(range(len(events)))
    assert events[-1].name == "response.incomplete"  # the output limit, with ignore_eos
    return events, forwarded[0]


def _sdk_until_cut(server: RunningServer, cut: int) -> tuple[list[dict[str, Any]], str, bool]:
    """The events the SDK yields through a proxy cutting at byte ``cut``, the stream URL the
    response named, and whether the stream was cut before its end."""
    with cutting_proxy(server.port, cut) as (port, _):
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="key-a", max_retries=0
        )
        stream = client.responses.create(
            model="sluice",
            input=PROMPT,
            max_output_tokens=TOKENS,
            temperature=0,
            stream=True,
            stream_options=RESUMABLE,
            extra_body={"ignore_eos": True},
            timeout=60,
        )
        url = stream.response.headers["x-stream-url"]
        seen: list[dict[str, Any]] = []
        try:
            for event in stream:
                seen.append(event.model_dump(mode="json", exclude_unset=True))
        except (httpx.HTTPError, openai.APIError):
            return seen, url, True
        return seen, url, False


@pytest.mark.parametrize("fraction", [0.3, 0.7])
def test_a_cut_stream_replays_exactly_the_events_after_starting_after(
    keyed: RunningServer, uncut: tuple[list[Event], int], fraction: float
) -> None:
    events, size = uncut
    seen, url, was_cut = _sdk_until_cut(keyed, int(size * fraction))
    assert was_cut
    assert seen, "cut before the first event: move the cut later"
    response_id = seen[0]["response"]["id"]
    assert url == f"/v1/streams/{response_id}"
    last = seen[-1]["sequence_number"]
    assert [e["sequence_number"] for e in seen] == list(range(last + 1))

    query = f"{RESPONSES}/{response_id}?stream=true&starting_after={last}"
    with httpx.Client(base_url=keyed.url, timeout=60, headers=_auth("key-a")) as client:
        resumed_before = _resumed(client)
        reply = client.get(query)
        assert reply.status_code == 200, reply.text
        rest = parse_events(reply.text)
        # The other ways in reach the same events: Last-Event-ID (POST again, or on the
        # stream's URL), which names the event after the one of sequence_number `last`.
        last_event_id = {"last-event-id": f"{response_id}:{last + 1}"}
        again = client.post(RESPONSES, json=_body(), headers=last_event_id)
        on_url = client.get(url, headers=last_event_id)
        for other in (again, on_url):
            assert other.status_code == 200, other.text
            assert [e.data for e in parse_events(other.text)] == [e.data for e in rest]
        # Only the starting key replays it.
        assert client.get(query, headers=_auth("key-b")).status_code == 404
        assert httpx.get(keyed.url + query, timeout=60).status_code == 401
        # Each of the three came back to the stream: the resumable streams' metric.
        assert _resumed(client) - resumed_before == 3

    numbers = [e.data["sequence_number"] for e in rest]
    assert numbers == list(range(last + 1, len(events)))
    assert [e.id for e in rest] == [f"{response_id}:{n + 1}" for n in numbers]
    assert rest[-1].name == "response.incomplete"  # the output limit, with ignore_eos
    # Nothing lost, nothing repeated: the same text as an uncut run of the same request.
    resumed = seen + [e.data for e in rest]
    assert [e["type"] for e in resumed] == [e.name for e in events]
    assert text_of(resumed) == text_of([e.data for e in events])
    final = rest[-1].data["response"]
    assert final["usage"]["output_tokens"] == TOKENS
    assert final["output"][0]["content"][0]["text"] == text_of(resumed)

    # The SDK's own call for it.
    client_sdk = openai.OpenAI(base_url=keyed.api, api_key="key-a", max_retries=0)
    replayed = client_sdk.responses.retrieve(
        response_id, stream=True, starting_after=last, timeout=60
    )
    assert [e.model_dump(mode="json", exclude_unset=True) for e in replayed] == [
        e.data for e in rest
    ]
    # And the stored response is the streamed one.
    assert (
        client_sdk.responses.retrieve(response_id).model_dump(mode="json", exclude_unset=True)[
            "output"
        ]
        == (final["output"])
    )


def test_streams_not_kept_are_told_apart(keyed: RunningServer) -> None:
    with httpx.Client(base_url=keyed.url, timeout=60, headers=_auth("key-a")) as client:
        # Stored, not resumable: the response is there, its events are not.
        body = {k: v for k, v in _body(2).items() if k != "stream_options"}
        plain = client.post(RESPONSES, json=body)
        assert "x-stream-url" not in plain.headers
        plain_id = parse_lines(plain.text)[0]["response"]["id"]
        refused = client.get(f"{RESPONSES}/{plain_id}?stream=true")
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["param"] == "stream"
        # Resumable, not stored: resumed by its stream URL, not by a response id.
        unstored = client.post(RESPONSES, json=_body(2, store=False))
        url = unstored.headers["x-stream-url"]
        unstored_id = parse_events(unstored.text)[0].data["response"]["id"]
        assert url != f"/v1/streams/{unstored_id}"
        assert client.get(url).status_code == 200
        missing = client.get(f"{RESPONSES}/{unstored_id}?stream=true")
        assert missing.status_code == 404, missing.text
        assert missing.json()["error"]["param"] == "response_id"
        # Resumable and stored: after its last event, nothing; past it, a 400 naming
        # starting_after.
        kept = client.post(RESPONSES, json=_body(2))
        kept_events = parse_events(kept.text)
        kept_id = kept_events[0].data["response"]["id"]
        last = kept_events[-1].data["sequence_number"]
        after_last = client.get(f"{RESPONSES}/{kept_id}?stream=true&starting_after={last}")
        assert after_last.status_code == 200, after_last.text
        assert "data:" not in after_last.text
        past = client.get(f"{RESPONSES}/{kept_id}?stream=true&starting_after={last + 1}")
        assert past.status_code == 400, past.text
        assert past.json()["error"]["param"] == "starting_after"
        bad = client.get(f"{RESPONSES}/{kept_id}?stream=true&starting_after=x")
        assert bad.json()["error"]["param"] == "starting_after"
        # The whole stream again, from sequence number 0.
        whole = parse_events(client.get(f"{RESPONSES}/{kept_id}?stream=true").text)
        assert [e.data for e in whole] == [e.data for e in kept_events]
        # An EventSource reconnecting to that URL sends Last-Event-ID: it decides.
        reconnect = {"last-event-id": f"{kept_id}:{len(kept_events) - 1}"}
        tail = client.get(f"{RESPONSES}/{kept_id}?stream=true&starting_after=0", headers=reconnect)
        assert [e.data for e in parse_events(tail.text)] == [kept_events[-1].data]
        # After the window with no reader, the stream is gone: 410, OpenAI-shaped. (Polled
        # past its end, which is refused without attaching a reader, so the window runs.)
        deadline = time.monotonic() + 60
        while (gone := client.get(past.request.url)).status_code == 400:
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert gone.status_code == 410, gone.text
        assert gone.json()["error"]["code"] == "stream_expired"


def _resumed(client: httpx.Client) -> float:
    metrics = client.get("/metrics").text.splitlines()
    return float(
        next(m for m in metrics if m.startswith("sluice_streams_resumed_total")).split()[1]
    )


def parse_lines(text: str) -> list[dict[str, Any]]:
    """The data of a plain (not resumable) stream's events."""
    return [json.loads(line[6:]) for line in text.split("\n") if line.startswith("data: ")]
