"""Where Sluice's cold start goes: exec to the first streamed token, and its parts.

Part of ``scripts/bench`` (``scripts/bench --only cold``). Two measurements, median of runs:

* the service as deployed (``python service.py``): exec to the listening socket accepting,
  to ``/ready`` answering 200, and to the first streamed token when asked as early as the
  port opens;
* its parts, each timed in a fresh interpreter doing what the service does in order:
  interpreter start, imports of the service (web stack, no llama.cpp), importing llama.cpp
  (the native library), reading the model, allocating the KV pool (the context), compiling
  and checking the chat template, and the first decode of a short prompt.
"""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_PARTS = r"""
import json, sys, time
stamps = {"exec": float(sys.argv[1])}
start = time.time()
stamps["interpreter"] = start - stamps.pop("exec")
sys.path.insert(0, sys.argv[2])
t = time.perf_counter()
import service  # noqa: F401
stamps["imports (service, web stack)"] = time.perf_counter() - t
t = time.perf_counter()
from model.llama import Batch, LlamaContext, LlamaModel
from model.engine import Engine
stamps["import llama.cpp"] = time.perf_counter() - t
from model.source import resolve_model
from model.served import DEFAULT_KV_CELLS
t = time.perf_counter()
model = LlamaModel(resolve_model(None).path)
stamps["model read"] = time.perf_counter() - t
t = time.perf_counter()
cells = int(sys.argv[4]) or DEFAULT_KV_CELLS
ctx = LlamaContext(model, n_ctx=cells, n_seq=8, n_batch=512, n_threads=int(sys.argv[3]))
stamps["KV pool (context)"] = time.perf_counter() - t
t = time.perf_counter()
from model.prompt import ChatPrompt
from model.template import load_chat_template
bos, eos = model.token_text(model.bos), model.token_text(model.eos)
template = load_chat_template(model.chat_template, bos_token=bos, eos_token=eos)
prompt = ChatPrompt(model, template)
prompt.check()
stamps["template compile + check"] = time.perf_counter() - t
t = time.perf_counter()
tokens = prompt.tokens([{"role": "user", "content": "Hello there"}])
batch = Batch(512)
for i, token in enumerate(tokens):
    batch.add(token, i, 0, i == len(tokens) - 1)
assert ctx.decode(batch) == 0
stamps["first decode"] = time.perf_counter() - t
print(json.dumps(stamps))
"""


def _parts(threads: int, cells: int = 0) -> dict[str, float]:
    exec_at = time.time()
    out = subprocess.run(
        [sys.executable, "-c", _PARTS, repr(exec_at), str(ROOT), str(threads), str(cells)],
        capture_output=True,
        check=True,
        cwd=ROOT,
    ).stdout
    stamps: dict[str, float] = json.loads(out.splitlines()[-1])
    return stamps


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _get(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".encode())
        return sock.recv(4096)


def _service(threads: int) -> tuple[float, float]:
    """Seconds from exec to the socket accepting and to /ready answering 200."""
    port = _free_port()
    launched = time.perf_counter()
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "service.py"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--threads",
            str(threads),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    bound = None
    try:
        while True:
            try:
                answer = _get(port, "/ready")
            except OSError:
                time.sleep(0.002)
                continue
            if bound is None:
                bound = time.perf_counter() - launched
            if b" 200 " in answer:
                return bound, time.perf_counter() - launched
            time.sleep(0.002)
    finally:
        process.terminate()
        process.wait()


def cold_breakdown(threads: int, runs: int = 5) -> None:
    print(f"\ncold start breakdown (median of {runs}, {threads} thread(s))")
    service = [_service(threads) for _ in range(runs)]
    bound, ready = (statistics.median(s[i] for s in service) for i in (0, 1))
    print(f"  {'exec -> socket accepting (probes)':<32}{bound:>8.3f} s")
    print(f"  {'exec -> /ready 200':<32}{ready:>8.3f} s")
    parts = [_parts(threads) for _ in range(runs)]
    total = 0.0
    for key in parts[0]:
        value = statistics.median(p[key] for p in parts)
        total += value
        print(f"  {key:<32}{value:>8.3f} s")
    print(f"  {'sum of parts':<32}{total:>8.3f} s")
