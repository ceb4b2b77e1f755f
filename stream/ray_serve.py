"""Sluice on Ray Serve: many replicas of the ASGI app behind Ray's HTTP proxy.

``python -m stream.ray_serve --replicas 2 [service flags]`` starts (or joins, with
``--address``) a Ray cluster and serves one Sluice per replica, each with its own model,
engine and slots, on ``--host``/``--port``. Replica options come from the service's own
:class:`~service.Config`: a replica takes at most ``slots + max_queue`` requests at once
(Ray's proxy holds the rest), and the autoscaler aims below ``slots`` per replica.
Needs the ``ray`` extra (``pip install 'sluice[ray]'``).

Deviations from Sluice served by Hypercorn (also listed in the README, "Scaling out"):

- Ray's proxy speaks HTTP/1.1 only (no h2c), and TLS is the proxy's (``--certfile`` is
  refused).
- A client that leaves reaches the replica as the cancellation of its request task rather
  than an ``http.disconnect`` message; the response's ``finally`` closes the channel, so the
  engine drops the sequence at its next decode step all the same.
- Ray's proxy buffers what a client does not read: its sequence never pauses, and
  ``--stall-timeout`` does not apply. Requests beyond ``slots + max_queue`` per replica wait
  in the proxy instead of getting Sluice's 429.
- A replica counts as started only once its model is loaded (Ray routes to a replica as soon
  as its ASGI startup completes), so a replica never answers 503 ``model_not_ready``.
- Streams still running when Ray's graceful shutdown of a replica runs out are cut by Ray,
  without Sluice's closing error frame.
- Every response names the replica that produced it in ``X-Sluice-Replica`` (Ray's
  ``deployment#id``, as in Ray's logs and dashboard).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from ray.serve import Application

    from service import Config
    from stream.app import Sluice

__all__ = ["REPLICA_HEADER", "Scaling", "application", "deployment_options", "main"]

_log = logging.getLogger("sluice.ray")

#: Response header naming the replica that answered.
REPLICA_HEADER = "x-sluice-replica"
_DEPLOYMENT = "sluice"


def _build_app(config: Config) -> Sluice:
    # The one place that builds the service's ASGI app.
    from service import create_app

    return create_app(config)


@dataclass(frozen=True)
class Scaling:
    """How many replicas, and what each one holds.

    ``min_replicas``/``max_replicas`` (either one) turn Ray's autoscaler on, starting from
    ``replicas``; otherwise exactly ``replicas`` run. ``gpus_per_replica`` None means one GPU
    when llama.cpp was built with GPU support and ``Config.gpu_layers`` is not 0, else none.
    Delays are seconds.
    """

    replicas: int = 1
    min_replicas: int | None = None
    max_replicas: int | None = None
    gpus_per_replica: float | None = None
    cpus_per_replica: float | None = None
    downscale_delay: float = 600.0
    upscale_delay: float = 30.0

    @property
    def autoscaling(self) -> bool:
        return self.min_replicas is not None or self.max_replicas is not None


def _target_ongoing_requests(slots: int) -> float:
    # Three quarters of the slots: a new replica starts before requests queue for a slot.
    return max(0.75 * slots, 0.5)


def deployment_options(config: Config, scaling: Scaling) -> dict[str, Any]:
    """Ray Serve deployment options (``serve.deployment(**options)``) for one Sluice replica.

    Raises ValueError for replica counts Ray would refuse.
    """
    if scaling.replicas < 0 or (not scaling.autoscaling and scaling.replicas == 0):
        raise ValueError(f"replicas must be at least 1 (got {scaling.replicas})")
    options: dict[str, Any] = {
        # Beyond this Ray's proxy holds requests (and sends them to whichever replica has
        # room) instead of letting a replica's own queue answer 429.
        "max_ongoing_requests": config.slots + config.max_queue,
        "ray_actor_options": {
            "num_cpus": scaling.cpus_per_replica
            if scaling.cpus_per_replica is not None
            else config.threads or 1,
            "num_gpus": _gpus(config, scaling),
        },
        # Ray waits this long for a stopping replica's requests before it kills it.
        "graceful_shutdown_timeout_s": config.shutdown_grace,
    }
    if not scaling.autoscaling:
        options["num_replicas"] = scaling.replicas
        return options
    low = scaling.min_replicas if scaling.min_replicas is not None else 1
    high = scaling.max_replicas if scaling.max_replicas is not None else max(scaling.replicas, 1)
    if not 0 <= low <= high or high < 1:
        raise ValueError(f"need 0 <= min-replicas <= max-replicas, max >= 1 (got {low}, {high})")
    if not low <= scaling.replicas <= high:
        raise ValueError(
            f"replicas ({scaling.replicas}) must lie between min-replicas ({low}) "
            f"and max-replicas ({high})"
        )
    options["autoscaling_config"] = {
        "min_replicas": low,
        "initial_replicas": scaling.replicas,
        "max_replicas": high,
        "target_ongoing_requests": _target_ongoing_requests(config.slots),
        "upscale_delay_s": scaling.upscale_delay,
        "downscale_delay_s": scaling.downscale_delay,
    }
    return options


def _gpus(config: Config, scaling: Scaling) -> float:
    if scaling.gpus_per_replica is not None:
        return scaling.gpus_per_replica
    if config.gpu_layers == 0:
        return 0
    import llama_cpp

    return 1 if llama_cpp.llama_supports_gpu_offload() else 0


class ReplicaApp:
    """The service's ASGI app as one Ray Serve replica runs it.

    Lifespan startup completes only when the model is loaded (or reports failure), and
    every response carries :data:`REPLICA_HEADER`.
    """

    def __init__(self, app: Sluice, replica: str) -> None:
        self._app = app
        self._replica = replica.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._app(scope, receive, self._started_when_loaded(send))
            return

        async def send_named(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Ray's proxy adds X-Request-Id itself (the caller's, as Sluice would): one
                # copy, not two.
                headers = [(k, v) for k, v in message["headers"] if k.lower() != b"x-request-id"]
                message["headers"] = [*headers, (REPLICA_HEADER.encode(), self._replica)]
            await send(message)

        await self._app(scope, receive, send_named)

    def _started_when_loaded(self, send: Send) -> Send:
        app = self._app

        async def send_when_loaded(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                # Sluice loads on its own thread and reports readiness on /ready; Ray has
                # no readiness probe, only the end of startup, so wait for the load here.
                while app.registry.state == "loading":  # noqa: ASYNC110
                    await anyio.sleep(0.05)
                if app.registry.state != "ready":
                    message = {
                        "type": "lifespan.startup.failed",
                        "message": "the model failed to load (see the replica's log)",
                    }
            await send(message)

        return send_when_loaded


def _replica_name() -> str:
    from ray import serve

    context = serve.get_replica_context()
    return f"{context.deployment}#{context.replica_tag}"


class SluiceReplica:
    """A Ray Serve replica serving one Sluice (the ASGI ingress is bound at deploy time)."""


def application(config: Config, scaling: Scaling) -> Application:
    """The Ray Serve application: ``serve.run(application(config, scaling))``."""
    from ray import serve

    def build() -> ASGIApp:
        # Runs in each replica: one app, one model, one engine per replica.
        return ReplicaApp(_build_app(config), _replica_name())

    ingress = serve.ingress(build)(SluiceReplica)
    deployment = serve.deployment(name=_DEPLOYMENT, **deployment_options(config, scaling))(ingress)
    return deployment.bind()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stream.ray_serve",
        description="Serve Sluice on Ray Serve; the service's own flags and SLUICE_* "
        "variables work too (--help lists them after these).",
        add_help=False,
    )
    add = parser.add_argument
    add("--replicas", type=int, default=1, help="replicas to start with (default 1)")
    add("--min-replicas", type=int, help="autoscale down to this many (0: scale to zero)")
    add("--max-replicas", type=int, help="autoscale up to this many")
    add("--gpus-per-replica", type=float, help="GPUs each replica holds (default: auto)")
    add("--cpus-per-replica", type=float, help="CPUs each replica holds (default: --threads or 1)")
    add("--downscale-delay", type=float, default=600.0, help="seconds before scaling down")
    add("--upscale-delay", type=float, default=30.0, help="seconds before scaling up")
    add("--address", help="Ray cluster to join (default: RAY_ADDRESS, else a local one)")
    add("--app-name", default=_DEPLOYMENT, help="Ray Serve application name")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Deploy, then serve until SIGINT or SIGTERM; exit 2 on bad flags."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if "-h" in args or "--help" in args:
        parser.print_help()
        print()
    ray_args, service_args = parser.parse_known_args(args)
    from service import Config

    config = Config.from_args(service_args)
    scaling = Scaling(
        replicas=ray_args.replicas,
        min_replicas=ray_args.min_replicas,
        max_replicas=ray_args.max_replicas,
        gpus_per_replica=ray_args.gpus_per_replica,
        cpus_per_replica=ray_args.cpus_per_replica,
        downscale_delay=ray_args.downscale_delay,
        upscale_delay=ray_args.upscale_delay,
    )
    if config.certfile or config.keyfile:
        # Ray's proxy, not Sluice, terminates connections here.
        parser.error("--certfile/--keyfile do not apply: give Ray's proxy its TLS options")
    try:
        app = application(config, scaling)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    import ray
    from ray import serve

    ray.init(address=ray_args.address, include_dashboard=False)
    # After ray.init, which installs a SIGTERM handler that exits at once and leaves Ray's
    # agent processes behind: stop the way Ctrl-C does, deleting the app (its replicas
    # drain for up to --shutdown-grace) before Ray shuts down.
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": config.host, "port": config.port})
        try:
            serve.run(app, name=ray_args.app_name, route_prefix="/")
        except RuntimeError as exc:
            # Replicas that never start (a model that does not load) end the deployment.
            print(f"sluice: error: {exc}", file=sys.stderr)
            return 1
        _log.info("serving on http://%s:%d", config.host, config.port)
        _report_replicas(ray_args.app_name, stop)
    finally:
        serve.delete(ray_args.app_name)
        ray.shutdown()
    return 0


def _report_replicas(app_name: str, stop: threading.Event) -> None:
    """Log the number of running replicas whenever it changes, until ``stop``."""
    from ray import serve

    running: int | None = None
    while not stop.wait(1.0):
        status = serve.status().applications.get(app_name)
        if status is None:
            continue
        deployment = status.deployments.get(_DEPLOYMENT)
        states = deployment.replica_states if deployment else {}
        now = sum(count for state, count in states.items() if state == "RUNNING")
        if now != running:
            running = now
            _log.info("replicas running: %d", now)


if __name__ == "__main__":
    sys.exit(main())
