"""The Ray Serve deployment's pieces without a cluster: replica options from Config, the
replica's ASGI wrapper (startup waits for the model; every answer names its replica) and
the CLI's flags. tests/e2e/test_ray_serve.py runs it on a real local cluster."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.types import Message

from service import Config, create_app
from stream.ray_serve import REPLICA_HEADER, ReplicaApp, Scaling, deployment_options, main


def test_a_replica_takes_its_slots_and_queue_and_aims_below_its_slots() -> None:
    config = Config(slots=6, max_queue=10, threads=3, shutdown_grace=20)
    options = deployment_options(config, Scaling(replicas=1, min_replicas=0, max_replicas=4))
    assert options["max_ongoing_requests"] == 16
    assert options["ray_actor_options"] == {"num_cpus": 3, "num_gpus": 0}
    assert options["graceful_shutdown_timeout_s"] == 20
    autoscaling = options["autoscaling_config"]
    assert (autoscaling["min_replicas"], autoscaling["initial_replicas"]) == (0, 1)
    assert autoscaling["max_replicas"] == 4
    assert 0 < autoscaling["target_ongoing_requests"] < config.slots
    assert "num_replicas" not in options


@pytest.mark.parametrize("slots", [1, 2, 4, 8, 64])
def test_target_is_below_the_slots_for_any_slot_count(slots: int) -> None:
    options = deployment_options(Config(slots=slots), Scaling(min_replicas=0))
    assert 0 < options["autoscaling_config"]["target_ongoing_requests"] < slots


def test_fixed_replicas_and_explicit_resources() -> None:
    options = deployment_options(
        Config(threads=0), Scaling(replicas=3, gpus_per_replica=1, cpus_per_replica=4)
    )
    assert options["num_replicas"] == 3
    assert "autoscaling_config" not in options
    assert options["ray_actor_options"] == {"num_cpus": 4, "num_gpus": 1}


def test_no_gpu_is_asked_for_a_cpu_only_model() -> None:
    options = deployment_options(Config(gpu_layers=0), Scaling())
    assert options["ray_actor_options"]["num_gpus"] == 0


@pytest.mark.parametrize(
    "scaling",
    [
        Scaling(replicas=0),
        Scaling(replicas=-1, min_replicas=0),
        Scaling(replicas=1, min_replicas=3, max_replicas=2),
        Scaling(replicas=5, min_replicas=0, max_replicas=2),
        Scaling(replicas=0, min_replicas=0, max_replicas=0),
    ],
)
def test_impossible_replica_counts_are_refused(scaling: Scaling) -> None:
    with pytest.raises(ValueError, match="replicas"):
        deployment_options(Config(), scaling)


def test_cli_refuses_bad_counts_before_starting_ray(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--replicas", "3", "--max-replicas", "2"])
    assert exited.value.code == 2
    assert "replicas (3) must lie between" in capsys.readouterr().err


def test_cli_help_lists_its_flags_and_the_services(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "--replicas" in out
    assert "--min-replicas" in out
    assert "--slots" in out


# -- the replica's ASGI app -----------------------------------------------------------


async def start(app: ReplicaApp, sent: list[Message], seen: Callable[[Message], None]) -> None:
    """Run ``app``'s lifespan until it reports startup, then shut it down."""
    shutdown = anyio.Event()
    incoming = [{"type": "lifespan.startup"}]

    async def receive() -> Message:
        if incoming:
            return incoming.pop(0)
        await shutdown.wait()
        return {"type": "lifespan.shutdown"}

    async def send(message: Message) -> None:
        seen(message)
        sent.append(message)
        if message["type"].startswith("lifespan.startup"):
            shutdown.set()

    with anyio.fail_after(60):
        await app({"type": "lifespan"}, receive, send)


@pytest.mark.anyio
async def test_startup_completes_only_once_the_model_is_loaded() -> None:
    sluice = create_app(Config(slots=1, threads=1))
    loaded_at_startup: list[bool] = []

    def seen(message: Message) -> None:
        if message["type"] == "lifespan.startup.complete":
            loaded_at_startup.append(sluice.registry.state == "ready")

    sent: list[Message] = []
    await start(ReplicaApp(sluice, "sluice#one"), sent, seen)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert loaded_at_startup == [True]


@pytest.mark.anyio
async def test_a_model_that_fails_to_load_fails_the_startup(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + os.urandom(4096))
    sent: list[Message] = []
    await start(
        ReplicaApp(create_app(Config(model=str(broken))), "sluice#one"), sent, lambda _: None
    )
    assert sent[0]["type"] == "lifespan.startup.failed"
    assert "failed to load" in sent[0]["message"]


@pytest.mark.anyio
async def test_every_answer_names_its_replica_once_with_one_request_id() -> None:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    headers = [(b"x-request-id", b"from-the-proxy")]
    scope: dict[str, Any] = {"type": "http", "method": "GET", "path": "/ready", "headers": headers}
    with anyio.fail_after(5):
        await ReplicaApp(create_app(Config()), "sluice#abc")(scope, receive, send)
    names = [k.decode() for k, _ in sent[0]["headers"]]
    # Ray's proxy adds the request id (the caller's) to the answer itself.
    assert "x-request-id" not in names
    assert dict(sent[0]["headers"])[REPLICA_HEADER.encode()] == b"sluice#abc"
    assert sent[0]["status"] == 503  # still loading: the header is on every answer


@pytest.mark.ray
def test_ray_accepts_the_application() -> None:
    from stream.ray_serve import application

    app = application(Config(slots=2, threads=1), Scaling(replicas=2, min_replicas=0))
    assert type(app).__name__ == "Application"


def test_cli_refuses_tls_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--certfile", "cert.pem", "--keyfile", "key.pem"])
    assert exited.value.code == 2
    assert "--certfile" in capsys.readouterr().err
