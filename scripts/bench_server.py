"""Sluice against llama.cpp's own ``llama-server``, built from the llama.cpp that the
installed llama-cpp-python vendors (same model file, threads and parallel sequences).

Part of ``scripts/bench`` (``--vs-llama-server``, or ``--only server``). The binary is built
on demand into ``~/.cache/sluice-bench/`` (the llama-cpp-python sdist from the package index,
``vendor/llama.cpp``, CMake, CPU only; it takes a while on a small machine) and reused after.
Runs alternate between the two servers, each started fresh per round, at each concurrency:
every stream asks ``/v1/completions`` for the same number of greedy tokens
(``ignore_eos``), all streams start at once, and the figures are per-stream decode tok/s,
aggregate tok/s (all tokens over the wall time of the round), time to first token p50 / p95,
and how many streams completed. Cold start is exec to the first streamed token, median of
runs, the two servers alternating.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("SLUICE_BENCH_CACHE", Path.home() / ".cache" / "sluice-bench"))
PROMPT = "{n}. Once upon a time, in a small village by the sea, there lived an old fisherman who"


@dataclass
class Stream:
    ttft: float
    frames: int
    decode_seconds: float
    ok: bool

    @property
    def rate(self) -> float:
        return (self.frames - 1) / self.decode_seconds if self.decode_seconds > 0 else 0.0


def llama_server_binary() -> Path:
    """Build (once) and return ``llama-server`` from the vendored llama.cpp."""
    version = metadata.version("llama_cpp_python")
    flags = os.environ.get("CMAKE_ARGS", "").split()
    # A CUDA build (CMAKE_ARGS=-DGGML_CUDA=on) gets its own directory.
    build = CACHE / f"build-{version}{'-cuda' if '-DGGML_CUDA=on' in flags else ''}"
    binary = build / "bin" / "llama-server"
    if binary.exists():
        return binary
    CACHE.mkdir(parents=True, exist_ok=True)
    source = CACHE / f"llama_cpp_python-{version}"
    if not source.exists():
        pip = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps"]
        subprocess.run([*pip, f"llama-cpp-python=={version}", "-d", str(CACHE)], check=True)
        with tarfile.open(CACHE / f"llama_cpp_python-{version}.tar.gz") as archive:
            archive.extractall(CACHE, filter="data")
    print(f"building llama-server {version} into {build} (minutes)", file=sys.stderr)
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    options = ["-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF"]
    options += ["-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF"]
    options += flags
    vendored = source / "vendor" / "llama.cpp"
    subprocess.run(
        ["cmake", "-S", str(vendored), "-B", str(build), *generator, *options], check=True
    )
    jobs = str(os.cpu_count() or 1)
    subprocess.run(
        ["cmake", "--build", str(build), "--target", "llama-server", "-j", jobs], check=True
    )
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def launch(
    kind: str, model: Path, port: int, threads: int, slots: int, ctx: int
) -> subprocess.Popen[bytes]:
    if kind == "sluice":
        command = [sys.executable, str(ROOT / "service.py"), "--host", "127.0.0.1"]
        command += ["--port", str(port), "--threads", str(threads), "--log-level", "warning"]
        command += ["--model", str(model)]
        if slots:
            command += ["--slots", str(slots)]
    else:
        command = [str(llama_server_binary()), "-m", str(model), "--host", "127.0.0.1"]
        command += ["--port", str(port), "-t", str(threads), "-tb", str(threads), "-c", str(ctx)]
        # Layers on the GPU: none by default (as Sluice on a CPU-only build), all for the
        # GPU bench (scripts/bench-gpu sets SLUICE_BENCH_NGL=999).
        command += ["-ngl", os.environ.get("SLUICE_BENCH_NGL", "0"), "--log-disable"]
        if slots:
            command += ["-np", str(slots)]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stream(port: int, prompt: str, tokens: int, started: float | None = None) -> Stream:
    """One streamed greedy completion over a raw socket; frames with text are timed."""
    body = json.dumps(
        {
            "prompt": prompt,
            "max_tokens": tokens,
            "temperature": 0,
            "ignore_eos": True,
            "stream": True,
        }
    ).encode()
    head = (
        f"POST /v1/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode()
    arrivals: list[float] = []
    buffer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=600) as sock:
        start = time.perf_counter() if started is None else started
        sock.sendall(head + body)
        while b"[DONE]" not in buffer[-64:]:
            data = sock.recv(65536)
            if not data:
                break
            now = time.perf_counter()
            arrivals.extend([now] * (data.count(b'"text":"') - data.count(b'"text":""')))
            buffer += data
    status = buffer.split(b"\r\n", 1)[0]
    ok = b" 200 " in status + b" " and b"[DONE]" in buffer
    if status and not any(code in status + b" " for code in (b" 200 ", b" 503 ")):
        raise RuntimeError(f"the server answered {buffer[:300]!r}")
    if not arrivals:
        return Stream(float("inf"), 0, 0.0, False)
    return Stream(arrivals[0] - start, len(arrivals), arrivals[-1] - arrivals[0], ok)


def wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    path = b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"
    while True:
        if process.poll() is not None:
            raise RuntimeError("the server exited during start-up")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(path)
                if b" 200 " in sock.recv(4096):
                    # Sluice's /health is 200 while loading: its /ready says when it serves.
                    with socket.create_connection(("127.0.0.1", port), timeout=5) as again:
                        again.sendall(path.replace(b"/health", b"/ready"))
                        answer = again.recv(4096)
                    if b" 200 " in answer or b" 404 " in answer:
                        return
        except OSError:
            pass
        time.sleep(0.05)


def cold_start(kind: str, model: Path, threads: int, slots: int, ctx: int) -> float:
    """Seconds from exec to the first streamed token, asking as early as the port answers."""
    port = free_port()
    launched = time.perf_counter()
    process = launch(kind, model, port, threads, slots, ctx)
    try:
        while True:
            try:
                run = stream(port, PROMPT.format(n=0), 2, started=launched)
                if run.ok:
                    return run.ttft
            except OSError:  # not listening yet
                pass
            if process.poll() is not None:
                raise RuntimeError(f"{kind} exited during start-up")
            time.sleep(0.005)
    finally:
        process.terminate()
        process.wait()


def round_of(port: int, streams: int, tokens: int, salt: int) -> tuple[list[Stream], float]:
    results: list[Stream | None] = [None] * streams
    barrier = threading.Barrier(streams + 1)

    def one(i: int) -> None:
        barrier.wait()
        results[i] = stream(port, PROMPT.format(n=salt * 100 + i), tokens)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    return [r or Stream(float("inf"), 0, 0.0, False) for r in results], wall


def compare_servers(
    model: Path,
    threads: int,
    concurrency: tuple[int, ...] = (1, 8, 16),
    tokens: int = 128,
    rounds: int = 2,
    cold_runs: int = 5,
    equal_slots: bool = True,
) -> None:
    """Print the paired comparison (see the module notes)."""
    binary = llama_server_binary()
    ctx = 4096
    print(f"\nSluice vs llama-server ({binary}), {threads} threads, {tokens} tokens per stream")
    colds: dict[str, list[float]] = {"sluice": [], "llama-server": []}
    for _ in range(cold_runs):
        for kind in colds:
            colds[kind].append(cold_start(kind, model, threads, 0, ctx))
    s, r = statistics.median(colds["sluice"]), statistics.median(colds["llama-server"])
    print(
        f"cold start, exec to first streamed token (median of {cold_runs}): sluice "
        f"{s:.2f} s, llama-server {r:.2f} s, ratio {s / r:.2f}"
    )
    settings = [("defaults", 0)]
    if equal_slots:
        settings.append(("equal parallel", max(concurrency)))
    for label, slots in settings:
        print(f"\n{label} (slots / -np: {slots or 'each default'})")
        print(
            f"{'streams':>8}{'server':>14}{'stream tok/s':>14}{'aggregate':>11}"
            f"{'TTFT p50':>10}{'TTFT p95':>10}{'completed':>11}"
        )
        for count in concurrency:
            figures: dict[str, list[tuple[float, float, float, float, int]]] = {
                "sluice": [],
                "llama-server": [],
            }
            for n in range(rounds):
                for kind in figures:
                    port = free_port()
                    process = launch(kind, model, port, threads, slots, ctx * max(1, slots))
                    try:
                        wait_ready(port, process)
                        stream(port, PROMPT.format(n=-1), 4)  # warm up
                        results, wall = round_of(port, count, tokens, n)
                    finally:
                        process.terminate()
                        process.wait()
                    ttfts = sorted(r.ttft for r in results)
                    p95 = ttfts[min(len(ttfts) - 1, round(0.95 * (len(ttfts) - 1)))]
                    figures[kind].append(
                        (
                            statistics.median(r.rate for r in results),
                            sum(r.frames for r in results) / wall,
                            statistics.median(ttfts),
                            p95,
                            sum(r.ok for r in results),
                        )
                    )
            for kind, rows in figures.items():
                med = [statistics.median(row[i] for row in rows) for i in range(4)]
                done = min(row[4] for row in rows)
                print(
                    f"{count:>8}{kind:>14}{med[0]:>14.1f}{med[1]:>11.1f}"
                    f"{med[2] * 1000:>8.0f}ms{med[3] * 1000:>8.0f}ms{done:>8}/{count}"
                )
            s_rows, r_rows = figures["sluice"], figures["llama-server"]
            ratio = [
                statistics.median(a[i] / b[i] for a, b in zip(s_rows, r_rows, strict=True))
                for i in range(4)
            ]
            print(
                f"{count:>8}{'ratio':>14}{ratio[0]:>14.2f}{ratio[1]:>11.2f}"
                f"{ratio[2]:>10.2f}{ratio[3]:>10.2f}"
            )
