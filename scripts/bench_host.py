"""The engine's host time per decode step: everything outside ``llama_decode`` (building the
batch, sampling each sequence, detokenizing, stop matching, handing the step's events to the
event loop), at 1, 8 and 32 decoding sequences.

Part of ``scripts/bench`` (``scripts/bench --only host``). The engine runs in process on the
embedded model with one llama.cpp thread; a second thread plays the event loop, so each
step's events cross threads through ``call_soon_threadsafe`` as in the service. The figure
that matters is host microseconds per step (CPU time of the engine thread, so that other
load on a shared machine does not inflate it): on a GPU, where a small model's decode step takes
about a millisecond, it is what the Python loop adds to every step.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.engine import Engine, EngineOptions
from model.events import Event, Finished, SequenceSink
from model.llama import LlamaModel
from model.params import GenerationRequest, SamplingParams

PROMPT = "{n}. Once upon a time, in a small village by the sea, there lived an old fisherman who"


class _Sink:
    def __init__(self, done: threading.Semaphore) -> None:
        self._done = done
        self.accepting = True
        self.gone = False

    def put(self, event: Event) -> None:
        if isinstance(event, Finished):
            self._done.release()


def _loop_thread() -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    return loop


def host_time(
    path: Path, counts: Sequence[int] = (1, 8, 32), tokens: int = 128, runs: int = 3
) -> None:
    # 0 on a CPU; scripts/bench-gpu sets SLUICE_BENCH_NGL=999 to offload every layer.
    model = LlamaModel(path, n_gpu_layers=int(os.environ.get("SLUICE_BENCH_NGL", "0")))
    loop = _loop_thread()

    def deliver(events: Sequence[tuple[SequenceSink, Event]]) -> None:
        for sink, event in events:
            assert isinstance(sink, _Sink)
            sink.put(event)

    def dispatch(events: Sequence[tuple[SequenceSink, Event]]) -> None:
        loop.call_soon_threadsafe(deliver, events)

    print(
        f"\nengine host time per decode step ({tokens} tokens per sequence, in process, "
        f"1 llama.cpp thread, median of {runs} runs)"
    )
    header = f"{'sequences':>10}{'sampling':>10}{'host CPU us/step':>18}"
    print(f"{header}{'decode ms/step':>16}{'share':>8}")
    for sampling_name, sampling in (
        ("greedy", SamplingParams(temperature=0)),
        ("default", SamplingParams()),
    ):
        for count in counts:
            host: list[float] = []
            decode: list[float] = []
            for run in range(runs):
                engine = Engine(
                    model,
                    EngineOptions(
                        slots=count, ctx_size=1024, kv_size=max(4096, count * 512), threads=1
                    ),
                    dispatch,
                )
                engine.start()
                done = threading.Semaphore(0)
                for n in range(count):
                    text = PROMPT.format(n=n + run * 1000)
                    prompt = tuple(model.tokenize(text, add_special=True, parse_special=False))
                    request = GenerationRequest(
                        prompt, sampling, max_tokens=tokens, ignore_eos=True
                    )
                    engine.submit(request, _Sink(done))
                for _ in range(count):
                    done.acquire()
                stats = engine.stats()
                engine.close()
                host.append(stats.host_seconds / stats.steps)
                decode.append(stats.decode_seconds / stats.steps)
            h, d = statistics.median(host), statistics.median(decode)
            print(
                f"{count:>10}{sampling_name:>10}{h * 1e6:>18.0f}{d * 1e3:>16.2f}{h / (h + d):>8.1%}"
            )
    loop.call_soon_threadsafe(loop.stop)
    model.close()
