"""The in-process stream store: positions, owners, the detach window, the byte bounds."""

from __future__ import annotations

import anyio
import pytest
from prometheus_client import CollectorRegistry

from stream.errors import Gone, InvalidRequest, NotFound
from stream.resume import MemoryStreamStore, owner_of

pytestmark = pytest.mark.anyio


def _store(
    window: float = 60.0, per_stream: int = 1 << 20, total: int = 1 << 26
) -> tuple[MemoryStreamStore, CollectorRegistry]:
    registry = CollectorRegistry()
    store = MemoryStreamStore(window=window, per_stream=per_stream, total=total, registry=registry)
    return store, registry


def _value(registry: CollectorRegistry, name: str) -> float:
    value = registry.get_sample_value(name)
    assert value is not None, name
    return value


async def test_a_reader_gets_exactly_the_frames_after_its_position() -> None:
    store, registry = _store()
    stream = store.open(None, lambda: None)
    first = store.attach(stream, None, 0)
    for n in range(1, 6):
        assert await store.append(stream, n, b"e%d;" % n, last=n == 5)
    assert await first.next(1.0) == (5, b"e1;e2;e3;e4;e5;")
    with pytest.raises(anyio.EndOfStream):
        await first.next(1.0)
    first.close()
    again = store.attach(stream, None, 3)
    assert await again.next(1.0) == (5, b"e4;e5;")
    with pytest.raises(anyio.EndOfStream):
        await again.next(1.0)
    assert _value(registry, "sluice_streams_resumed_total") == 1
    # The first reader read everything: leaving then is no detachment.
    assert _value(registry, "sluice_streams_detached_total") == 0
    assert _value(registry, "sluice_stream_buffer_bytes") == len(b"e1;e2;e3;e4;e5;")


async def test_a_waiting_reader_gets_none_on_silence_then_the_live_tail() -> None:
    store, _ = _store()
    stream = store.open(None, lambda: None)
    reader = store.attach(stream, None, 0)
    assert await reader.next(0.05) is None  # a heartbeat's turn

    async def late() -> None:
        await anyio.sleep(0.05)
        await store.append(stream, 1, b"x")

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(late)
        with anyio.fail_after(10):
            assert await reader.next(30.0) == (1, b"x")


async def test_unknown_other_owner_and_bad_positions_are_refused() -> None:
    store, _ = _store()
    with pytest.raises(NotFound):
        store.attach("nope", None, 0)
    owner = owner_of("key-a")
    assert owner is not None
    assert "key-a" not in owner  # a digest, never the key
    stream = store.open(owner, lambda: None)
    store.attach(stream, owner, 0).close()
    for other in (owner_of("key-b"), None):
        with pytest.raises(NotFound):
            store.attach(stream, other, 0)
    await store.append(stream, 1, b"x")
    with pytest.raises(InvalidRequest):
        store.attach(stream, owner, 2)
    with pytest.raises(ValueError, match="event 3 appended after 1"):
        await store.append(stream, 3, b"y")


async def test_a_new_reader_ends_the_previous_one() -> None:
    store, _ = _store()
    stream = store.open(None, lambda: None)
    old = store.attach(stream, None, 0)
    store.attach(stream, None, 0)
    with pytest.raises(anyio.EndOfStream):
        await old.next(1.0)


async def test_no_reader_for_the_window_cancels_and_expires_with_410() -> None:
    store, registry = _store(window=0.2)
    cancelled: list[bool] = []
    async with store.running():
        stream = store.open(None, lambda: cancelled.append(True))
        reader = store.attach(stream, None, 0)
        await store.append(stream, 1, b"x")
        reader.close()
        assert _value(registry, "sluice_streams_detached_total") == 1
        with anyio.fail_after(10):
            while not cancelled:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        with pytest.raises(Gone):
            store.attach(stream, None, 0)
        # A pump still generating learns that it should stop.
        assert not await store.append(stream, 2, b"y")
    assert _value(registry, "sluice_streams_expired_total") == 1
    assert _value(registry, "sluice_stream_buffer_bytes") == 0


async def test_an_attached_reader_keeps_the_stream_past_the_window() -> None:
    store, _ = _store(window=0.1)
    async with store.running():
        stream = store.open(None, lambda: None)
        reader = store.attach(stream, None, 0)
        await anyio.sleep(0.5)
        await store.append(stream, 1, b"x", last=True)
        assert await reader.next(1.0) == (1, b"x")


async def test_a_full_buffer_waits_for_the_reader_and_drops_only_sent_frames() -> None:
    store, _ = _store(per_stream=10)
    stream = store.open(None, lambda: None)
    reader = store.attach(stream, None, 0)
    assert await store.append(stream, 1, b"aaaaa")
    assert await store.append(stream, 2, b"bbbbb")
    # Ten unread bytes: the pump waits (its sequence pauses) until the reader sends them.
    with anyio.move_on_after(0.3) as waited:
        await store.append(stream, 3, b"ccccc")
    assert waited.cancelled_caught
    assert await reader.next(1.0) == (2, b"aaaaabbbbb")
    reader.sent(2)
    with anyio.fail_after(10):
        assert await store.append(stream, 3, b"ccccc")
    # Event 1 was sent and dropped to make room: resuming before it is too late.
    with pytest.raises(Gone):
        store.attach(stream, None, 0)
    resumed = store.attach(stream, None, 1)
    assert await resumed.next(1.0) == (3, b"bbbbbccccc")
    # The final frame never waits, so a stream can always end.
    assert await store.append(stream, 4, b"[DONE]", last=True)


async def test_the_total_bound_pauses_every_pump_over_it() -> None:
    store, _ = _store(total=8)
    one = store.open(None, lambda: None)
    two = store.open(None, lambda: None)
    store.attach(one, None, 0)
    await store.append(one, 1, b"12345678")
    with anyio.move_on_after(0.3) as waited:
        await store.append(two, 1, b"x")
    assert waited.cancelled_caught
