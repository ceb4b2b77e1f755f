"""What deploy/ relies on, against the real server configured as the manifests configure it:
the probe and metrics paths answer (without an API key), the metrics the autoscaler reads
exist, and readiness stays false while the model loads.

The rest of what Knative relies on is tested where the behaviour lives: readiness false
during drain and SIGTERM ending within the grace (test_production.py), h2c with prior
knowledge (test_streaming.py), a full queue answering 429 at once (test_concurrency.py).
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.manifests import Manifest, config_of, container, knative, kubernetes, sluice_env

from .server import RunningServer, free_port, running_server

ROOT = Path(__file__).resolve().parents[2]
KEY = "deploy-test-key"


def overrides(manifest: Manifest) -> dict[str, Any]:
    config = config_of(manifest, api_keys=KEY)
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in ("host", "port")}


def probe_path(manifest: Manifest, probe: str) -> str:
    path: str = container(manifest)[probe]["httpGet"]["path"]
    return path


@pytest.mark.parametrize("manifest", [knative(), kubernetes("Deployment")], ids=["knative", "k8s"])
def test_probes_and_metrics_answer_without_a_key(manifest: Manifest) -> None:
    metrics_path = kubernetes("PodMonitor")["spec"]["podMetricsEndpoints"][0]["path"]
    with running_server(**overrides(manifest)) as srv, httpx.Client(base_url=srv.url) as client:
        ready = client.get(probe_path(manifest, "readinessProbe"))
        live = client.get(probe_path(manifest, "livenessProbe"))
        scraped = client.get(metrics_path)
        refused = client.get("/v1/models")
        allowed = client.get("/v1/models", headers={"authorization": f"Bearer {KEY}"})
    assert (ready.status_code, ready.json()["status"]) == (200, "ready")
    assert ready.json()["engine"]["slots"] == config_of(manifest).slots
    assert (live.status_code, live.json()["status"]) == (200, "ok")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    # The key from the Secret does guard the API.
    assert (refused.status_code, allowed.status_code) == (401, 200)


def test_autoscaler_metrics_exist_as_gauges(server: RunningServer) -> None:
    query = kubernetes("ScaledObject")["spec"]["triggers"][0]["metadata"]["query"]
    wanted = set(re.findall(r"\bsluice_\w+", query))
    assert wanted
    text = httpx.get(server.url + "/metrics").text
    kinds = {family.name: family.type for family in text_string_to_metric_families(text)}
    assert {name: kinds.get(name) for name in wanted} == dict.fromkeys(wanted, "gauge")


def test_readiness_is_false_while_the_model_loads() -> None:
    # As the Knative manifest runs it (its SLUICE_* values, a key for the Secret's): from the
    # first answer, /ready says "loading" (503) while /health says the process is fine,
    # until the model is in; then ready, and never loading again.
    manifest = knative()
    port = free_port()
    env = {**os.environ, **sluice_env(manifest), "SLUICE_API_KEYS": KEY}
    env.update(
        {"SLUICE_HOST": "127.0.0.1", "SLUICE_PORT": str(port), "SLUICE_LOG_LEVEL": "warning"}
    )
    process = subprocess.Popen(
        [sys.executable, "service.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seen: list[tuple[int, str, bool, int]] = []
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        with httpx.Client(base_url=url, timeout=10) as client:
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    ready = client.get("/ready")
                    health = client.get("/health")
                except httpx.TransportError:
                    time.sleep(0.005)
                    continue
                retry = "retry-after" in ready.headers
                seen.append((ready.status_code, ready.json()["status"], retry, health.status_code))
                if ready.status_code == 200:
                    break
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert seen, "the service never answered"
    assert seen[-1] == (200, "ready", False, 200)
    loading = seen[:-1]
    # Loading takes far longer than one poll: it is always seen.
    assert loading
    assert set(loading) == {(503, "loading", True, 200)}
