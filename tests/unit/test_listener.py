"""stream.listener: the descriptor limit and the rate-limited accept error lines."""

from __future__ import annotations

import logging
import resource

from stream.listener import AcceptErrorFilter, raise_descriptor_limit


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, message, None, None)


def test_the_soft_descriptor_limit_is_raised_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(soft, 256)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        now = raise_descriptor_limit()
        assert now == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert now > lowered or hard == lowered
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_accept_errors_pass_once_per_interval_with_a_count_of_the_rest() -> None:
    accept_errors = AcceptErrorFilter(interval=3600)
    passed = [accept_errors.filter(record("socket.accept() out of system resource"))]
    for _ in range(1000):
        passed.append(accept_errors.filter(record("socket.accept() out of system resource")))
    assert passed.count(True) == 1
    assert all(accept_errors.filter(record(f"another error {i}")) for i in range(10))


def test_the_line_after_an_interval_counts_the_held_back_ones() -> None:
    accept_errors = AcceptErrorFilter(interval=0.0)
    first = record("socket.accept() out of system resource")
    assert accept_errors.filter(first)
    accept_errors._interval = 3600
    assert not accept_errors.filter(record("socket.accept() out of system resource"))
    accept_errors._interval = 0.0
    last = record("socket.accept() out of system resource")
    assert accept_errors.filter(last)
    assert "1 more such lines held back" in last.getMessage()
