"""Request ids and JSON log lines."""

from __future__ import annotations

import json
import logging

from stream.access import JSONLogFormatter, request_id


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
