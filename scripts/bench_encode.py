"""The wire's cost per token chunk, without engine or socket: an API adapter's encoder
turning one engine Delta into documents, and the SSE transport framing them.

Part of ``scripts/bench`` (``scripts/bench --only encode``); prints microseconds per chunk,
the median of five runs, for each response shape.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.events import Delta, TokenChoice, TokenLogprobs
from stream.adapters.chat import ChatEncoder
from stream.adapters.choices import ChoicesEncoder
from stream.adapters.completions import CompletionEncoder
from stream.adapters.responses import ResponsesEncoder
from stream.transports.sse import frames

TEXT = "Once upon a time, in a small village by the sea, there lived an old fisherman who"


def encode_cost(chunks: int = 100_000) -> None:
    plain = [Delta(" " + word, 1) for word in TEXT.split(" ")]
    entry = TokenChoice(" word", b" word", -0.25)
    scored = [Delta(d.text, 1, logprobs=(TokenLogprobs(entry, (entry,) * 2),)) for d in plain]
    cases: list[tuple[str, type[ChoicesEncoder], list[Delta], bool]] = [
        ("chat", ChatEncoder, plain, False),
        ("completions", CompletionEncoder, plain, False),
        ("chat, logprobs", ChatEncoder, scored, True),
    ]
    print(f"\nencode + SSE frame per token chunk (no engine), {chunks} chunks per run")
    for name, encoder_type, deltas, logprobs in cases:
        encode = encoder_type("bench-model", logprobs=logprobs).encode
        events = (deltas * (chunks // len(deltas) + 1))[:chunks]
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            for event in events:
                frames(encode(event))
            runs.append((time.perf_counter() - started) / len(events))
        print(f"{name:>16}: {statistics.median(runs) * 1e6:6.2f} us (median of 5 runs)")
    runs = []
    for _ in range(5):
        responses = ResponsesEncoder("bench-model", {})
        events = (plain * (chunks // len(plain) + 1))[:chunks]
        started = time.perf_counter()
        for event in events:
            frames(responses.encode(event))
        runs.append((time.perf_counter() - started) / len(events))
    print(f"{'responses':>16}: {statistics.median(runs) * 1e6:6.2f} us (median of 5 runs)")
    print("command: scripts/bench --only encode")


if __name__ == "__main__":
    encode_cost()
