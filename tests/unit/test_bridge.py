"""Unit tests for stream.bridge: a channel's flow control, and the engine -> loop hand-off."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from typing import Any, TypeVar

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.events import Delta, Event, Finished, SequenceSink, Usage
from stream.bridge import Channel, LoopDispatch

C = TypeVar("C", bound=Channel)

WATCHDOG = 5.0
CAPACITY = 4


class Wakes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def delta(i: int) -> Delta:
    return Delta(f"t{i}", 1)


def finished(tokens: int = 0) -> Finished:
    return Finished("stop", Usage(prompt_tokens=3, completion_tokens=tokens))


class Channels:
    """Opens channels and closes them all after the test, as the service always does."""

    def __init__(self) -> None:
        self.opened: list[Channel] = []

    def new(self, capacity: int = CAPACITY, wake: Callable[[], None] | None = None) -> Channel:
        return self.keep(Channel(capacity, wake or Wakes()))

    def keep(self, channel: C) -> C:
        self.opened.append(channel)
        return channel


@pytest.fixture
def channels() -> Iterator[Channels]:
    made = Channels()
    yield made
    for channel in made.opened:
        channel.close()


async def receive_all(channel: Channel, patience: float = WATCHDOG) -> list[Event]:
    events: list[Event] = []
    with anyio.fail_after(patience):
        while True:
            try:
                events.append(await channel.receive())
            except anyio.EndOfStream:
                return events


# --- Channel: flow control ------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_full_buffer_stops_accepting_and_parks_the_rest(channels: Channels) -> None:
    wakes = Wakes()
    channel = channels.new(CAPACITY, wakes)
    sent = [delta(i) for i in range(CAPACITY)]
    for event in sent:
        channel.put(event)
    assert channel.accepting  # full, but nothing refused yet

    extra = [delta(i) for i in range(CAPACITY, CAPACITY + 3)]
    for event in extra:
        channel.put(event)
        assert not channel.accepting
    channel.put(finished(len(sent) + len(extra)))

    assert not channel.gone
    assert wakes.count == 0
    events = await receive_all(channel)
    assert events == [*sent, *extra, finished(len(sent) + len(extra))]
    assert channel.accepting


@pytest.mark.anyio
async def test_accepting_resumes_once_drained_to_half_and_wakes_once(channels: Channels) -> None:
    wakes = Wakes()
    channel = channels.new(CAPACITY, wakes)
    for i in range(CAPACITY + 2):  # two parked
        channel.put(delta(i))
    assert not channel.accepting

    states: list[tuple[bool, int]] = []
    with anyio.fail_after(WATCHDOG):
        for i in range(CAPACITY + 2):
            assert await channel.receive() == delta(i)
            states.append((channel.accepting, wakes.count))

    # Parked events move up first; then the buffer drains to half (2 of 4) and it resumes.
    assert states == [(False, 0), (False, 0), (False, 0), (True, 1), (True, 1), (True, 1)]


@pytest.mark.anyio
async def test_events_put_while_paused_keep_their_order(channels: Channels) -> None:
    wakes = Wakes()
    channel = channels.new(CAPACITY, wakes)
    for i in range(CAPACITY + 1):
        channel.put(delta(i))
    received = [await channel.receive(), await channel.receive()]
    # A step already in flight when the engine read ``accepting``: it still arrives, in order.
    channel.put(delta(CAPACITY + 1))
    channel.put(finished())
    received += await receive_all(channel)
    assert received == [*(delta(i) for i in range(CAPACITY + 2)), finished()]


@pytest.mark.anyio
async def test_finished_ends_the_stream(channels: Channels) -> None:
    channel = channels.new(CAPACITY, Wakes())
    channel.put(delta(0))
    channel.put(finished(1))
    with anyio.fail_after(WATCHDOG):
        assert await channel.receive() == delta(0)
        assert await channel.receive() == finished(1)
        with pytest.raises(anyio.EndOfStream):
            await channel.receive()


@pytest.mark.anyio
async def test_finished_while_parked_still_ends_the_stream(channels: Channels) -> None:
    channel = channels.new(2, Wakes())
    for i in range(3):
        channel.put(delta(i))
    channel.put(finished(3))
    assert not channel.accepting
    with anyio.fail_after(WATCHDOG):
        assert [await channel.receive() for _ in range(4)] == [
            delta(0),
            delta(1),
            delta(2),
            finished(3),
        ]
        with pytest.raises(anyio.EndOfStream):
            await channel.receive()


@pytest.mark.anyio
async def test_drain_returns_every_event_up_to_the_final_one(channels: Channels) -> None:
    channel = channels.new(2, Wakes())
    for i in range(5):
        channel.put(delta(i))
    channel.put(finished(5))
    with anyio.fail_after(WATCHDOG):
        assert await channel.drain() == [*(delta(i) for i in range(5)), finished(5)]


@pytest.mark.anyio
async def test_a_waiting_reader_gets_an_event_put_later(channels: Channels) -> None:
    channel = channels.new(CAPACITY, Wakes())
    got: list[Event] = []

    async def read() -> None:
        got.append(await channel.receive())

    with anyio.fail_after(WATCHDOG):
        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            await anyio.sleep(0.01)
            channel.put(delta(7))
    assert got == [delta(7)]


@pytest.mark.anyio
async def test_close_marks_gone_wakes_the_engine_and_drops_later_puts(channels: Channels) -> None:
    wakes = Wakes()
    channel = channels.new(CAPACITY, wakes)
    for i in range(CAPACITY + 2):
        channel.put(delta(i))
    channel.close()
    assert channel.gone
    assert wakes.count == 1

    channel.put(delta(99))  # a step already in flight: silently dropped
    channel.put(finished())
    assert channel.gone

    channel.close()
    assert wakes.count == 1  # closing twice wakes once


@pytest.mark.anyio
async def test_a_reader_blocked_in_receive_is_released_by_close(channels: Channels) -> None:
    channel = channels.new(CAPACITY, Wakes())

    async def close_soon() -> None:
        await anyio.sleep(0.01)
        channel.close()

    with anyio.fail_after(WATCHDOG):
        async with anyio.create_task_group() as tg:
            tg.start_soon(close_soon)
            with pytest.raises((anyio.ClosedResourceError, anyio.EndOfStream)):
                await channel.receive()


def test_put_after_the_reader_closed_its_end_marks_gone(channels: Channels) -> None:
    wakes = Wakes()
    channel = channels.new(CAPACITY, wakes)
    channel.put(delta(0))
    assert not channel.gone
    # The race the bridge tolerates: the reader's end closes between the engine's step and
    # the loop callback, without going through ``Channel.close``.
    channel._recv.close()
    channel.put(delta(1))
    assert channel.gone
    channel.put(delta(2))
    assert channel.gone
    channel._send.close()


# Model of the flow control: what a reader sees and when the engine may resume.
_OPS = st.lists(st.sampled_from(["put", "receive"]), max_size=40)


async def replay(capacity: int, ops: list[str]) -> None:
    """Apply ``ops`` to a channel and check it against a model of its flow control."""
    wakes = Wakes()
    put = received = 0
    paused = False
    resumes = 0
    # Everything the model receives is already buffered, so a short wait means a lost event
    # (and keeps a failing example from waiting out the watchdog at every shrink).
    patience = 0.5
    with closing(Channel(capacity, wakes)) as channel:
        for op in ops:
            if op == "put":
                channel.put(delta(put))
                put += 1
                paused = paused or put - received > capacity
            elif put > received:
                with anyio.fail_after(patience):
                    assert await channel.receive() == delta(received)
                received += 1
                if paused and put - received <= capacity - capacity // 2:
                    paused = False
                    resumes += 1
            assert channel.accepting is not paused
            assert wakes.count == resumes
            assert not channel.gone
        channel.put(finished(put))
        rest = await receive_all(channel, patience)
    assert rest == [*(delta(i) for i in range(received, put)), finished(put)]


@settings(max_examples=60, deadline=None)
@given(capacity=st.integers(1, 6), ops=_OPS)
def test_flow_control_never_loses_or_reorders_and_resumes_at_half(
    capacity: int, ops: list[str]
) -> None:
    anyio.run(replay, capacity, ops)


# --- LoopDispatch ------------------------------------------------------------------------------


class RecordingChannel(Channel):
    """Records the thread each event is put on."""

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity, Wakes())
        self.threads: set[int] = set()

    def put(self, event: Event) -> None:
        self.threads.add(threading.get_ident())
        super().put(event)


class OtherSink:
    accepting = True
    gone = False


def count_threadsafe_calls(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> list[Any]:
    calls: list[Any] = []
    original: Callable[..., Any] = loop.call_soon_threadsafe

    def counting(callback: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        calls.append((callback, args))
        return original(callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_soon_threadsafe", counting)
    return calls


def from_thread(target: Callable[[], None]) -> None:
    """Run ``target`` on a fake engine thread; re-raise what it raised."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="fake-engine")
    thread.start()
    thread.join(WATCHDOG)
    assert not thread.is_alive()
    if errors:
        raise errors[0]


@pytest.mark.anyio
async def test_dispatch_delivers_a_batch_in_order_with_one_threadsafe_call(
    monkeypatch: pytest.MonkeyPatch, channels: Channels
) -> None:
    loop = asyncio.get_running_loop()
    calls = count_threadsafe_calls(loop, monkeypatch)
    dispatch = LoopDispatch(loop)
    a, b = channels.keep(RecordingChannel(CAPACITY)), channels.keep(RecordingChannel(CAPACITY))
    batch: list[tuple[SequenceSink, Event]] = [
        (a, delta(0)),
        (b, delta(10)),
        (OtherSink(), delta(99)),  # not a channel: ignored
        (a, delta(1)),
        (b, finished(1)),
        (a, delta(2)),
    ]

    from_thread(lambda: dispatch(batch))
    assert len(calls) == 1

    with anyio.fail_after(WATCHDOG):
        assert [await a.receive() for _ in range(3)] == [delta(0), delta(1), delta(2)]
    assert await receive_all(b) == [delta(10), finished(1)]
    assert a.threads == b.threads == {threading.get_ident()}  # put on the loop's thread


@pytest.mark.anyio
async def test_dispatch_makes_one_threadsafe_call_per_batch(
    monkeypatch: pytest.MonkeyPatch, channels: Channels
) -> None:
    loop = asyncio.get_running_loop()
    calls = count_threadsafe_calls(loop, monkeypatch)
    dispatch = LoopDispatch(loop)
    channel = channels.new(16, Wakes())
    batches: list[Sequence[tuple[SequenceSink, Event]]] = [
        [(channel, delta(3 * step + k)) for k in range(3)] for step in range(4)
    ]

    def engine() -> None:
        for batch in batches:
            dispatch(batch)
        dispatch([(channel, finished(12))])

    from_thread(engine)
    assert len(calls) == len(batches) + 1
    assert await receive_all(channel) == [*(delta(i) for i in range(12)), finished(12)]


def test_dispatch_to_a_closed_loop_does_not_raise(channels: Channels) -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    channel = channels.new(CAPACITY, Wakes())
    dispatch = LoopDispatch(loop)
    dispatch([(channel, delta(0))])
    from_thread(lambda: dispatch([(channel, finished())]))
    assert channel.accepting
    assert not channel.gone
