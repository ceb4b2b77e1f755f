"""The manifests under deploy/, read as data, and what they say about the container."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from service import Config

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
KNATIVE = DEPLOY / "knative" / "service.yaml"
KUBERNETES = DEPLOY / "kubernetes"

Manifest = dict[str, Any]


def documents(path: Path) -> list[Manifest]:
    with path.open(encoding="utf-8") as text:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def every_manifest() -> dict[Path, Manifest]:
    """Each YAML document under deploy/ (one per file), by file."""
    found: dict[Path, Manifest] = {}
    for path in sorted(DEPLOY.rglob("*.yaml")):
        docs = documents(path)
        assert len(docs) == 1, f"{path}: one resource per file, found {len(docs)}"
        found[path] = docs[0]
    return found


def kubernetes(kind: str) -> Manifest:
    """The one resource of ``kind`` under deploy/kubernetes."""
    matches = [
        m for p, m in every_manifest().items() if p.parent == KUBERNETES and m["kind"] == kind
    ]
    assert len(matches) == 1, f"expected one {kind} under deploy/kubernetes, found {len(matches)}"
    return matches[0]


def knative() -> Manifest:
    return documents(KNATIVE)[0]


def pod_spec(manifest: Manifest) -> dict[str, Any]:
    spec: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return spec


def container(manifest: Manifest) -> dict[str, Any]:
    containers = pod_spec(manifest)["containers"]
    assert len(containers) == 1
    only: dict[str, Any] = containers[0]
    return only


def sluice_env(manifest: Manifest) -> dict[str, str]:
    """The container's ``SLUICE_*`` variables with literal values (Secret refs left out)."""
    env = container(manifest).get("env", [])
    return {e["name"]: e["value"] for e in env if e["name"].startswith("SLUICE_") and "value" in e}


def env_names(manifest: Manifest) -> list[str]:
    return [e["name"] for e in container(manifest).get("env", [])]


def config_of(manifest: Manifest, **overrides: Any) -> Config:
    """The Config the container runs with: its ``SLUICE_*`` literals, then ``overrides``."""
    config = Config.from_env(sluice_env(manifest))
    return dataclasses.replace(config, **overrides)
