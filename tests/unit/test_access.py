"""Request ids and JSON log lines."""

from __future__ import annotations

import json
import logging

import anyio
import pytest
from starlette.types import Message, Receive, Scope, Send

from stream.access import AccessLog, JSONLogFormatter, request_id
from stream.errors import ClientGone
from stream.metrics import Metrics


def test_a_sane_incoming_request_id_is_kept() -> None:
    assert request_id("trace-42") == "trace-42"


def test_odd_request_ids_are_replaced() -> None:
    for incoming in (None, "", "x" * 129, "bad\nid", "nön-ascii"):
        made = request_id(incoming)
        assert made != incoming
        assert len(made) == 32
        int(made, 16)


def test_json_log_lines_carry_the_request_fields() -> None:
    record = logging.LogRecord(
        "sluice.access", logging.INFO, __file__, 1, "GET %s %s", ("/", 200), None
    )
    record.request_id = "r1"
    record.status = 200
    line = json.loads(JSONLogFormatter().format(record))
    assert line["message"] == "GET / 200"
    assert line["request_id"] == "r1"
    assert line["status"] == 200
    assert line["level"] == "info"
    assert line["logger"] == "sluice.access"
    assert "path" not in line


def test_json_log_lines_escape_newlines() -> None:
    record = logging.LogRecord("sluice", logging.ERROR, __file__, 1, "two\nlines", None, None)
    text = JSONLogFormatter().format(record)
    assert "\n" not in text
    assert json.loads(text)["message"] == "two\nlines"


def _send_collector() -> tuple[list[Message], Send]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    return sent, send


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


SCOPE: Scope = {"type": "http", "method": "GET", "path": "/x", "headers": []}


@pytest.mark.anyio
async def test_an_exception_escaping_the_app_is_an_openai_500_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    metrics = Metrics(lambda: None)
    sent, send = _send_collector()
    with anyio.fail_after(5):
        await AccessLog(broken, metrics, lambda path: path)(dict(SCOPE), _receive, send)
    assert sent[0]["status"] == 500
    headers = dict(sent[0]["headers"])
    error = json.loads(sent[1]["body"])["error"]
    assert error["type"] == "server_error"
    assert headers[b"x-request-id"].decode() in error["message"]
    assert len([r for r in caplog.records if r.exc_info]) == 1
    assert (
        metrics.registry.get_sample_value("sluice_requests_total", {"route": "/x", "status": "500"})
        == 1
    )


@pytest.mark.anyio
async def test_a_client_gone_is_answered_with_nothing_and_counted_499() -> None:
    async def gone(scope: Scope, receive: Receive, send: Send) -> None:
        raise ClientGone("left")

    metrics = Metrics(lambda: None)
    sent, send = _send_collector()
    with anyio.fail_after(5):
        await AccessLog(gone, metrics, lambda path: path)(dict(SCOPE), _receive, send)
    assert sent == []
    assert (
        metrics.registry.get_sample_value("sluice_requests_total", {"route": "/x", "status": "499"})
        == 1
    )
