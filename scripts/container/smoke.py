"""Smoke test of a running Sluice container, standard library only (runs on the host's python3).

    python3 scripts/container/smoke.py http://127.0.0.1:PORT [--model-name NAME] [--wait 180]

Waits for /ready (the model loaded), checks /health and /v1/models, then streams a chat
completion and checks its SSE frames: content arrives, a finish_reason, then ``data: [DONE]``.
Exits 0 when all of that holds, 1 with the reason otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any


def get_json(url: str, timeout: float = 10) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def wait_ready(base: str, deadline: float) -> dict[str, Any]:
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            status, body = get_json(f"{base}/ready", timeout=5)
            if status == 200:
                return dict(body)
            last = f"{status} {body}"
        except (OSError, ValueError) as exc:  # not listening yet, connection reset, ...
            last = repr(exc)
        time.sleep(1)
    raise SystemExit(f"smoke: /ready did not answer 200 in time (last: {last})")


def stream_chat(base: str) -> tuple[str, str | None, int]:
    """Stream one chat completion; return (text, finish_reason, frames)."""
    body = {
        "messages": [{"role": "user", "content": "Name three colours of the rainbow."}],
        "stream": True,
        "max_tokens": 32,
        "temperature": 0,
        "seed": 1,
    }
    request = urllib.request.Request(
        f"{base}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "accept": "text/event-stream"},
    )
    text, finish, frames, done = "", None, 0, False
    with urllib.request.urlopen(request, timeout=120) as resp:
        kind = resp.headers.get("content-type", "")
        if not kind.startswith("text/event-stream"):
            raise SystemExit(f"smoke: stream answered with content-type {kind!r}")
        for raw in resp:
            line = raw.decode().rstrip("\r\n")
            if not line.startswith("data:"):
                continue  # blank separators and ": keep-alive" comments
            data = line[len("data:") :].strip()
            if done:
                raise SystemExit(f"smoke: a frame after [DONE]: {data!r}")
            if data == "[DONE]":
                done = True
                continue
            chunk = json.loads(data)
            if "error" in chunk:
                raise SystemExit(f"smoke: error frame: {chunk['error']}")
            frames += 1
            for choice in chunk.get("choices", []):
                text += choice.get("delta", {}).get("content") or ""
                finish = choice.get("finish_reason") or finish
    if not done:
        raise SystemExit("smoke: the stream ended without data: [DONE]")
    return text, finish, frames


def main() -> int:
    parser = argparse.ArgumentParser(description="Smoke test of a running Sluice container.")
    parser.add_argument("base", help="e.g. http://127.0.0.1:8000")
    parser.add_argument("--model-name", help="the id /v1/models must list")
    parser.add_argument("--wait", type=float, default=180, help="seconds to wait for /ready")
    args = parser.parse_args()
    base = args.base.rstrip("/")

    started = time.monotonic()
    ready = wait_ready(base, started + args.wait)
    print(f"smoke: ready after {time.monotonic() - started:.1f}s: {json.dumps(ready)}")

    status, health = get_json(f"{base}/health")
    if status != 200:
        raise SystemExit(f"smoke: /health answered {status} {health}")
    status, models = get_json(f"{base}/v1/models")
    ids = [m.get("id") for m in models.get("data", [])] if status == 200 else []
    if status != 200 or not ids or (args.model_name and args.model_name not in ids):
        raise SystemExit(f"smoke: /v1/models answered {status} {models}")
    print(f"smoke: /health ok, /v1/models {ids}")

    t = time.monotonic()
    text, finish, frames = stream_chat(base)
    if not text.strip():
        raise SystemExit(f"smoke: the stream carried no content ({frames} frames)")
    if finish not in ("stop", "length"):
        raise SystemExit(f"smoke: finish_reason {finish!r}")
    print(
        f"smoke: streamed {frames} frames in {time.monotonic() - t:.1f}s, "
        f"finish_reason {finish}, then [DONE]: {text.strip()!r}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
