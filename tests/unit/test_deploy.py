"""deploy/ checked offline: core kinds against Kubernetes' own schemas (kubernetes-validate),
the custom resources against crd_schemas, and every number that must agree with Sluice's
Config. What the service serves on those paths is checked live in tests/e2e/test_deploy.py."""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from service import Config
from tests.manifests import (
    DEPLOY,
    Manifest,
    config_of,
    container,
    every_manifest,
    knative,
    kubernetes,
    pod_spec,
)
from tests.unit.crd_schemas import KEDA_SCALED_OBJECT, KNATIVE_SERVICE, POD_MONITOR

ROOT = Path(__file__).resolve().parents[2]

#: The oldest Kubernetes the manifests are for (preStop ``sleep`` is on by default from
#: 1.30), and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
CORE_KINDS = {"Deployment", "Service", "PersistentVolumeClaim"}
CUSTOM = {
    ("serving.knative.dev/v1", "Service"): KNATIVE_SERVICE,
    ("keda.sh/v1alpha1", "ScaledObject"): KEDA_SCALED_OBJECT,
    ("monitoring.coreos.com/v1", "PodMonitor"): POD_MONITOR,
}
#: Knative's queue-proxy keeps a terminating pod for this long before the container's
#: SIGTERM (its drain), all within the pod's grace period, which Knative sets to
#: timeoutSeconds.
QUEUE_PROXY_DRAIN = 30
#: Sluice's own closing steps after its grace (service.py): up to 5 s for cancelled
#: sequences to end, then Hypercorn's 10 s graceful_timeout.
CLOSING = 15


def custom_schema(manifest: Manifest) -> dict[str, Any]:
    return CUSTOM[(manifest["apiVersion"], manifest["kind"])]


def test_every_file_is_checked() -> None:
    # Each file is a core kind under deploy/kubernetes (kubernetes-validate) or a custom
    # resource with a schema below.
    for path, manifest in every_manifest().items():
        core = manifest["kind"] in CORE_KINDS and "." not in manifest["apiVersion"]
        assert (core and path.parent.name == "kubernetes") != (
            (manifest["apiVersion"], manifest["kind"]) in CUSTOM
        ), path


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    "path",
    [
        p
        for p, m in every_manifest().items()
        if m["kind"] in CORE_KINDS and p.parent.name == "kubernetes"
    ],
    ids=lambda p: p.name,
)
def test_core_kinds_are_valid_kubernetes(path: Path, version: str) -> None:
    kubernetes_validate.validate(every_manifest()[path], version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_knative_pod_spec_is_valid_kubernetes(version: str) -> None:
    # The Revision spec is a PodSpec plus Knative's own fields; Knative fills a probe's
    # port with the container's.
    spec = copy.deepcopy(pod_spec(knative()))
    for field in ("containerConcurrency", "timeoutSeconds", "responseStartTimeoutSeconds"):
        spec.pop(field, None)
    only = spec["containers"][0]
    for probe in ("readinessProbe", "livenessProbe"):
        only[probe]["httpGet"].setdefault("port", only["ports"][0]["containerPort"])
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sluice"}, "spec": spec}
    kubernetes_validate.validate(pod, version, strict=True)


def test_kubernetes_validate_refuses_a_misspelt_field() -> None:
    # The check above can fail: strict validation knows every field's name.
    broken = copy.deepcopy(kubernetes("Deployment"))
    container(broken)["readinessProbes"] = container(broken).pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


@pytest.mark.parametrize("schema", [KNATIVE_SERVICE, KEDA_SCALED_OBJECT, POD_MONITOR])
def test_schemas_are_valid_json_schemas(schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize(
    "path",
    [p for p, m in every_manifest().items() if (m["apiVersion"], m["kind"]) in CUSTOM],
    ids=lambda p: p.name,
)
def test_custom_resources_match_their_schemas(path: Path) -> None:
    manifest = every_manifest()[path]
    jsonschema.Draft202012Validator(custom_schema(manifest)).validate(manifest)


def _knative_with(change: str) -> Manifest:
    broken = copy.deepcopy(knative())
    spec = pod_spec(broken)
    only = spec["containers"][0]
    annotations = broken["spec"]["template"]["metadata"]["annotations"]
    if change == "port-name":
        only["ports"][0]["name"] = "http"
    elif change == "reserved-port":
        only["ports"][0]["containerPort"] = 8012
    elif change == "annotation-typo":
        annotations["autoscaling.knative.dev/minScale"] = annotations.pop(
            "autoscaling.knative.dev/min-scale"
        )
    elif change == "utilization":
        annotations["autoscaling.knative.dev/target-utilization-percentage"] = "150"
    elif change == "concurrency":
        spec["containerConcurrency"] = 2000
    elif change == "timeout":
        spec["timeoutSeconds"] = 3600
    elif change == "lifecycle":
        only["lifecycle"] = {"preStop": {"sleep": {"seconds": 5}}}
    elif change == "probe-threshold":
        only["readinessProbe"]["failureThreshold"] = 3
    elif change == "grace":
        spec["terminationGracePeriodSeconds"] = 60
    elif change == "reserved-env":
        only["env"].append({"name": "PORT", "value": "8000"})
    return broken


@pytest.mark.parametrize(
    "change",
    [
        "port-name",
        "reserved-port",
        "annotation-typo",
        "utilization",
        "concurrency",
        "timeout",
        "lifecycle",
        "probe-threshold",
        "grace",
        "reserved-env",
    ],
)
def test_knative_schema_refuses_what_knative_refuses(change: str) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_knative_with(change), KNATIVE_SERVICE)


@pytest.mark.parametrize(
    ("schema", "kind", "path", "value"),
    [
        (KEDA_SCALED_OBJECT, "ScaledObject", ("spec", "triggers", 0, "metricType"), "Average"),
        (KEDA_SCALED_OBJECT, "ScaledObject", ("spec", "triggers", 0, "metadata", "threshold"), 3),
        (KEDA_SCALED_OBJECT, "ScaledObject", ("spec", "minReplicas"), 1),
        (POD_MONITOR, "PodMonitor", ("spec", "podMetricsEndpoints", 0, "interval"), "15 seconds"),
        (POD_MONITOR, "PodMonitor", ("spec", "podMetricsEndpoints", 0, "targetPort"), 8000),
    ],
)
def test_custom_schemas_refuse_wrong_fields(
    schema: dict[str, Any], kind: str, path: tuple[str | int, ...], value: Any
) -> None:
    broken: Any = copy.deepcopy(kubernetes(kind))
    target = broken
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


# -- what the manifests say against what Sluice is --------------------------------------

CONFIG_FIELDS = {f.name for f in dataclasses.fields(Config)}


@pytest.mark.parametrize("path", list(every_manifest()), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_sluice_variables_are_config_fields_with_valid_values(path: Path) -> None:
    manifest = every_manifest()[path]
    if "template" not in manifest.get("spec", {}):
        return
    for env in container(manifest).get("env", []):
        name = env["name"]
        if name.startswith("SLUICE_"):
            assert name.removeprefix("SLUICE_").lower() in CONFIG_FIELDS, name
    config_of(manifest)  # every literal value parses as its field's type


@pytest.mark.parametrize("manifest", [knative(), kubernetes("Deployment")], ids=["knative", "k8s"])
def test_container_listens_where_the_manifest_says(manifest: Manifest) -> None:
    config = config_of(manifest)
    (port,) = container(manifest)["ports"]
    assert port["containerPort"] == config.port
    # The image's entry point serves on all addresses.
    assert config.host == "0.0.0.0"


@pytest.mark.parametrize("manifest", [knative(), kubernetes("Deployment")], ids=["knative", "k8s"])
def test_api_keys_come_from_a_secret(manifest: Manifest) -> None:
    env = {e["name"]: e for e in container(manifest)["env"]}
    assert "secretKeyRef" in env["SLUICE_API_KEYS"]["valueFrom"]


@pytest.mark.parametrize("manifest", [knative(), kubernetes("Deployment")], ids=["knative", "k8s"])
def test_hugging_face_cache_is_the_images_on_a_volume(manifest: Manifest) -> None:
    image_env = re.search(r"HF_HOME=(\S+)", (ROOT / "Containerfile").read_text())
    assert image_env is not None
    (mount,) = container(manifest)["volumeMounts"]
    assert mount["mountPath"] == image_env.group(1)
    (volume,) = [v for v in pod_spec(manifest)["volumes"] if v["name"] == mount["name"]]
    claim = volume["persistentVolumeClaim"]["claimName"]
    assert claim == kubernetes("PersistentVolumeClaim")["metadata"]["name"]


@pytest.mark.parametrize("manifest", [knative(), kubernetes("Deployment")], ids=["knative", "k8s"])
def test_one_gpu_per_pod(manifest: Manifest) -> None:
    assert container(manifest)["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_knative_concurrency_matches_slots_and_queue() -> None:
    manifest = knative()
    config = config_of(manifest)
    spec = pod_spec(manifest)
    annotations = manifest["spec"]["template"]["metadata"]["annotations"]
    concurrency = spec["containerConcurrency"]
    # One request per slot: Knative holds the rest where its autoscaler sees them.
    assert concurrency == config.slots
    # What Knative lets through is always admitted, never a 429 (even n > 1 requests).
    assert concurrency <= config.slots + config.max_queue
    # The autoscaler's target lies below the slots: a pod is added before requests wait.
    utilization = float(annotations["autoscaling.knative.dev/target-utilization-percentage"])
    assert 1 <= concurrency * utilization / 100 < config.slots
    assert annotations["autoscaling.knative.dev/min-scale"] == "0"
    assert annotations["autoscaling.knative.dev/target-burst-capacity"] == "-1"


def test_knative_timeouts_cover_sluices() -> None:
    manifest = knative()
    config = config_of(manifest)
    spec = pod_spec(manifest)
    timeout = spec["timeoutSeconds"]
    # A request's deadline passes in Sluice (a clean deadline_exceeded) before Knative's.
    assert config.request_timeout <= config.max_request_timeout < timeout
    # Whole answers send nothing until they are done.
    assert spec["responseStartTimeoutSeconds"] >= config.max_request_timeout
    # No idle limit, or one longer than the silence between heartbeats.
    idle = spec.get("idleTimeoutSeconds", 0)
    assert idle == 0 or idle > config.heartbeat_interval
    # Knative's grace period is timeoutSeconds: the queue-proxy's drain, then Sluice's.
    assert QUEUE_PROXY_DRAIN + config.shutdown_grace + CLOSING < timeout


def test_knative_probes_use_the_container_port() -> None:
    only = container(knative())
    (port,) = only["ports"]
    assert port["name"] == "h2c"
    for probe in ("readinessProbe", "livenessProbe"):
        assert only[probe]["httpGet"].get("port", port["name"]) in (
            port["name"],
            port["containerPort"],
        )


def test_deployment_grace_covers_the_drain() -> None:
    manifest = kubernetes("Deployment")
    config = config_of(manifest)
    pause = container(manifest)["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = pod_spec(manifest)["terminationGracePeriodSeconds"]
    assert pause + config.shutdown_grace + CLOSING < grace


def test_service_podmonitor_and_probes_reach_the_container_port() -> None:
    deployment = kubernetes("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    only = container(deployment)
    (port,) = only["ports"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert only[probe]["httpGet"]["port"] == port["name"]

    service = kubernetes("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [port["name"]]

    monitor = kubernetes("PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == [port["name"]]


def test_keda_scales_the_deployment_below_its_slots() -> None:
    deployment = kubernetes("Deployment")
    config = config_of(deployment)
    scaled = kubernetes("ScaledObject")["spec"]
    target = scaled["scaleTargetRef"]
    assert (target.get("kind", "Deployment"), target["name"]) == (
        "Deployment",
        deployment["metadata"]["name"],
    )
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"]
    (trigger,) = scaled["triggers"]
    assert trigger["metricType"] == "AverageValue"
    assert 1 <= float(trigger["metadata"]["threshold"]) < config.slots
