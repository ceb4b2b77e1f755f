"""The service as a process: `scripts/serve`, `python service.py`, Hypercorn's CLI with
`service:app` and `service:create_app()`, bad settings and model input at start, and a model
from an offline Hugging Face cache."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .server import embedded_model, free_port, serving

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def run_service(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "service.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=30)


def chat_once(url: str) -> str:
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    reply = httpx.post(url + "/v1/chat/completions", json=body, timeout=60)
    assert reply.status_code == 200, reply.text
    return str(reply.json()["model"])


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("/no/such/model.gguf", "does not exist"),
        ("README.md", "not a GGUF file"),
        ("owner/repo:Q4_K_M", "offline"),
    ],
)
def test_bad_model_fails_at_start_with_one_line(spec: str, expected: str, tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# not a model\n")
    env = {**os.environ, "HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [PYTHON, str(ROOT / "service.py"), "--model", spec, "--port", str(free_port())],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sluice: error: ")
    assert expected in lines[0]


def test_corrupt_gguf_fails_to_load_and_exits_non_zero(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + os.urandom(4096))
    result = run_service("--model", str(broken), "--port", str(free_port()))
    assert result.returncode == 1
    assert "sluice: error:" in result.stderr
    assert "could not load" in result.stderr


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--batch-size", "-5", "batch_size must be 1 to 65536, not -5"),  # was a segfault
        ("--slots", "0", "slots must be 1 to 256, not 0"),  # served nothing, ever
        ("--threads", "-1", "threads must be 0 to 512, not -1"),
    ],
)
def test_values_llama_cpp_cannot_take_are_a_usage_error(
    flag: str, value: str, message: str
) -> None:
    result = run_service(flag, value, "--port", str(free_port()))
    assert result.returncode == 2
    assert result.stderr.startswith("usage: sluice")
    assert f"sluice: error: {message}" in result.stderr


def test_a_context_past_the_models_training_fails_at_start() -> None:
    # llama.cpp "creates" such a context (nothing is touched yet) and fails later, in use.
    result = run_service("--ctx-size", "100000000", "--port", str(free_port()))
    assert result.returncode == 1
    assert "sluice: error: a context of 100000000 tokens per sequence is more than" in result.stderr
    assert "trained for (8192)" in result.stderr


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}", "failed: RecursionError"),
        ("{{ ''.__class__.__mro__ }}", "failed: SecurityError"),
        ("{{ raise_exception('no') }}", "refuses every sample conversation"),
    ],
)
def test_a_broken_chat_template_stops_the_start_with_one_line(template: str, expected: str) -> None:
    result = run_service("--chat-template", template, "--port", str(free_port()))
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "sluice: error:" in line]
    assert len(errors) == 1, result.stderr
    assert "chat template 'inline'" in errors[0]
    assert expected in errors[0]


def test_scripts_serve_passes_arguments_and_signals(tmp_path: Path) -> None:
    # scripts/serve execs the service, so SIGTERM reaches the server itself.
    with serving([str(ROOT / "scripts" / "serve"), "--served-model-name", "via-serve"]) as (
        url,
        process,
    ):
        assert chat_once(url) == "via-serve"
        assert stop(process) == 0


@pytest.mark.parametrize("target", ["service:app", "service:create_app()"])
def test_hypercorn_cli_with_environment(target: str) -> None:
    port = free_port()
    env = {**os.environ, "SLUICE_SERVED_MODEL_NAME": "from-env", "SLUICE_SLOTS": "2"}
    argv = [PYTHON, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", target]
    process = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(url + "/ready")
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        assert ready.json()["engine"]["slots"] == 2
        assert chat_once(url) == "from-env"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


@pytest.mark.parametrize(
    "argv",
    [
        ["service.py"],
        ["-m", "hypercorn", "--workers", "0", "--bind", "127.0.0.1:0", "service:create_app()"],
    ],
    ids=["service.py", "hypercorn-factory"],
)
def test_a_bad_variable_is_one_line_and_status_2(argv: list[str]) -> None:
    env = {**os.environ, "SLUICE_SLOTS": "four"}
    result = subprocess.run(
        [PYTHON, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert result.stderr == "sluice: error: invalid value for slots: 'four'\n"


def test_hypercorn_cli_refuses_a_bad_model() -> None:
    # In-process (--workers 0): Hypercorn 0.18's worker supervisor drops a worker's exit
    # code, so only this mode can report the failure as a non-zero exit (see README).
    env = {**os.environ, "SLUICE_MODEL": "/no/such/model.gguf"}
    result = subprocess.run(
        [
            PYTHON,
            "-m",
            "hypercorn",
            "--workers",
            "0",
            "--bind",
            f"127.0.0.1:{free_port()}",
            "service:app",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "model file /no/such/model.gguf does not exist" in result.stderr


def make_hub_cache(root: Path, repo: str, files: dict[str, Path]) -> None:
    """A Hugging Face cache as huggingface_hub lays it out: refs, blobs, snapshot links."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    folder = root / "hub" / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    (folder / "blobs").mkdir()
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for i, (name, source) in enumerate(files.items()):
        blob = folder / "blobs" / f"{i:064x}"
        blob.symlink_to(source)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))


def test_model_from_an_offline_hub_cache(tmp_path: Path) -> None:
    gguf = embedded_model().path
    make_hub_cache(
        tmp_path,
        "someone/SmolLM2-GGUF",
        {"smollm2-135m-q4_1.gguf": gguf, "smollm2-135m-q8_0.gguf": gguf},
    )
    env = {**os.environ, "HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    argv = [PYTHON, "service.py", "--model", "someone/SmolLM2-GGUF:Q4_1"]
    with serving(argv, env) as (url, process):
        models = httpx.get(url + "/v1/models").json()["data"]
        assert [m["id"] for m in models] == ["smollm2-135m-q4_1"]
        assert chat_once(url) == "smollm2-135m-q4_1"
        assert stop(process) == 0
