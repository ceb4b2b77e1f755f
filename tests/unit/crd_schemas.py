"""JSON schemas (draft 2020-12) of the custom resources under deploy/, written for Sluice.

Only the fields the manifests use, or could plausibly use, are described, with the types,
ranges and allowed values of the published references:

- Knative Serving ``serving.knative.dev/v1`` ``Service``: the CRD's RevisionSpec (a PodSpec
  plus ``containerConcurrency``, ``timeoutSeconds``, ``responseStartTimeoutSeconds``,
  ``idleTimeoutSeconds``) narrowed as Knative's admission webhook narrows it with the
  default ``config-features`` and ``config-defaults``: the pod and container fields it
  allows, one port named ``h2c``, ``http1`` or nothing and not one of the queue-proxy's
  ports, probe rules (no ``failureThreshold``/``timeoutSeconds`` without ``periodSeconds``,
  a probe port can only name the container's port), the volume kinds it allows (a
  PersistentVolumeClaim needs ``kubernetes.podspec-persistent-volume-claim``: see
  deploy/README.md), reserved variable names, ``containerConcurrency`` up to
  ``container-concurrency-max-limit`` (1000) and ``timeoutSeconds`` up to
  ``max-revision-timeout-seconds`` (600), and the ``autoscaling.knative.dev/*``
  annotations with their value ranges.
- KEDA ``keda.sh/v1alpha1`` ``ScaledObject`` with the ``prometheus`` trigger.
- Prometheus Operator ``monitoring.coreos.com/v1`` ``PodMonitor``.

Core Kubernetes kinds are checked with kubernetes-validate instead (the pod spec inside the
Knative Service too), so container and probe fields are typed loosely here.
"""

from __future__ import annotations

from typing import Any

__all__ = ["KEDA_SCALED_OBJECT", "KNATIVE_SERVICE", "POD_MONITOR", "RESERVED_PORTS"]

Schema = dict[str, Any]

_DRAFT = "https://json-schema.org/draft/2020-12/schema"

#: Go's time.ParseDuration, as Knative parses its duration annotations.
_GO_DURATION = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"
#: The Prometheus Operator's Duration type.
_PROM_DURATION = (
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
_UINT_TEXT = r"^[0-9]+$"
_NUMBER_TEXT = r"^-?[0-9]+(\.[0-9]+)?$"

_STRING_MAP: Schema = {"type": "object", "additionalProperties": {"type": "string"}}
_INT32: Schema = {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}

_METADATA: Schema = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"},
        "namespace": {"type": "string"},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
    },
}

# -- Knative Serving ------------------------------------------------------------------

#: The queue-proxy's and Knative's own ports: a user container may not listen on them.
RESERVED_PORTS = (8012, 8013, 8022, 9090, 9091, 8008)

_AUTOSCALING = "autoscaling.knative.dev/"
_ANNOTATIONS: dict[str, Schema] = {
    _AUTOSCALING + "class": {
        "enum": ["kpa.autoscaling.knative.dev", "hpa.autoscaling.knative.dev"]
    },
    _AUTOSCALING + "metric": {"enum": ["concurrency", "rps", "cpu", "memory"]},
    _AUTOSCALING + "min-scale": {"type": "string", "pattern": _UINT_TEXT},
    _AUTOSCALING + "max-scale": {"type": "string", "pattern": _UINT_TEXT},
    _AUTOSCALING + "initial-scale": {"type": "string", "pattern": _UINT_TEXT},
    _AUTOSCALING + "activation-scale": {"type": "string", "pattern": r"^([2-9]|[1-9][0-9]+)$"},
    _AUTOSCALING + "target": {"type": "string", "pattern": _NUMBER_TEXT},
    _AUTOSCALING + "target-utilization-percentage": {
        "type": "string",
        "pattern": r"^(100(\.0+)?|[1-9][0-9]?(\.[0-9]+)?)$",
    },
    # Non-negative, or -1: the activator always stays in the request path.
    _AUTOSCALING + "target-burst-capacity": {
        "type": "string",
        "pattern": r"^(-1|[0-9]+(\.[0-9]+)?)$",
    },
    _AUTOSCALING + "window": {"type": "string", "pattern": _GO_DURATION},
    _AUTOSCALING + "scale-down-delay": {"type": "string", "pattern": _GO_DURATION},
    _AUTOSCALING + "scale-to-zero-pod-retention-period": {
        "type": "string",
        "pattern": _GO_DURATION,
    },
    _AUTOSCALING + "panic-window-percentage": {"type": "string", "pattern": _NUMBER_TEXT},
    _AUTOSCALING + "panic-threshold-percentage": {"type": "string", "pattern": _NUMBER_TEXT},
    _AUTOSCALING + "metric-aggregation-algorithm": {
        "enum": ["linear", "weighted-exponential", "weightedExponential"]
    },
}

_REVISION_METADATA: Schema = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "labels": _STRING_MAP,
        "annotations": {
            **_STRING_MAP,
            "properties": _ANNOTATIONS,
            # A misspelt autoscaling key would be ignored silently by Knative: refuse it.
            "propertyNames": {
                "anyOf": [
                    {"enum": sorted(_ANNOTATIONS)},
                    {"not": {"pattern": r"^autoscaling\.knative\.dev/"}},
                ]
            },
        },
    },
    "additionalProperties": False,
}

_HTTP_GET: Schema = {
    "type": "object",
    "required": ["path"],
    "properties": {
        "path": {"type": "string", "pattern": "^/"},
        # Only the container's own port, by name or number, or nothing (Knative fills it).
        "port": {"type": ["integer", "string"]},
        "scheme": {"enum": ["HTTP", "HTTPS"]},
        "httpHeaders": {"type": "array"},
    },
    "additionalProperties": False,
}

_PROBE: Schema = {
    "type": "object",
    "properties": {
        "httpGet": _HTTP_GET,
        "tcpSocket": {"type": "object"},
        "grpc": {"type": "object"},
        "exec": {"type": "object"},
        "initialDelaySeconds": _INT32,
        "periodSeconds": _INT32,
        "timeoutSeconds": _INT32,
        "successThreshold": {"type": "integer", "minimum": 1},
        "failureThreshold": _INT32,
    },
    "additionalProperties": False,
    "oneOf": [
        {"required": ["httpGet"]},
        {"required": ["tcpSocket"]},
        {"required": ["grpc"]},
        {"required": ["exec"]},
    ],
    # Without periodSeconds Knative probes aggressively itself, and refuses the two
    # fields that would tune the kubelet's probe.
    "anyOf": [
        {"required": ["periodSeconds"], "properties": {"periodSeconds": {"minimum": 1}}},
        {"not": {"anyOf": [{"required": ["failureThreshold"]}, {"required": ["timeoutSeconds"]}]}},
    ],
}

_CONTAINER_PORT: Schema = {
    "type": "object",
    "required": ["containerPort"],
    "properties": {
        "name": {"enum": ["h2c", "http1", ""]},
        "containerPort": {
            "type": "integer",
            "minimum": 1,
            "maximum": 65535,
            "not": {"enum": list(RESERVED_PORTS)},
        },
        "protocol": {"const": "TCP"},
    },
    "additionalProperties": False,
}

_ENV_VAR: Schema = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {
            "type": "string",
            "not": {"enum": ["PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"]},
        },
        "value": {"type": "string"},
        "valueFrom": {
            "type": "object",
            "properties": {
                "secretKeyRef": {"type": "object"},
                "configMapKeyRef": {"type": "object"},
            },
            "additionalProperties": False,
            "minProperties": 1,
            "maxProperties": 1,
        },
    },
    "additionalProperties": False,
    "not": {"required": ["value", "valueFrom"]},
}

_CONTAINER: Schema = {
    "type": "object",
    "required": ["image"],
    "properties": {
        "name": {"type": "string"},
        "image": {"type": "string", "minLength": 1},
        "imagePullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
        "command": {"type": "array", "items": {"type": "string"}},
        "args": {"type": "array", "items": {"type": "string"}},
        "workingDir": {"type": "string"},
        "env": {"type": "array", "items": _ENV_VAR},
        "envFrom": {"type": "array"},
        "ports": {"type": "array", "items": _CONTAINER_PORT, "maxItems": 1},
        "readinessProbe": _PROBE,
        "livenessProbe": _PROBE,
        "startupProbe": _PROBE,
        "resources": {"type": "object"},
        "securityContext": {"type": "object"},
        "volumeMounts": {"type": "array"},
        "terminationMessagePath": {"type": "string"},
        "terminationMessagePolicy": {"enum": ["File", "FallbackToLogsOnError"]},
    },
    # Knative refuses lifecycle hooks, stdin/tty and volumeDevices.
    "additionalProperties": False,
}

_VOLUME_SOURCES = ("secret", "configMap", "projected", "emptyDir", "persistentVolumeClaim")
_VOLUME: Schema = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}, **{k: {"type": "object"} for k in _VOLUME_SOURCES}},
    "additionalProperties": False,
    "oneOf": [{"required": [k]} for k in _VOLUME_SOURCES],
}

_REVISION_SPEC: Schema = {
    "type": "object",
    "required": ["containers"],
    "properties": {
        "containers": {"type": "array", "items": _CONTAINER, "minItems": 1},
        "volumes": {"type": "array", "items": _VOLUME},
        "serviceAccountName": {"type": "string"},
        "imagePullSecrets": {"type": "array"},
        "enableServiceLinks": {"type": "boolean"},
        "automountServiceAccountToken": {"const": False},
        "containerConcurrency": {"type": "integer", "minimum": 0, "maximum": 1000},
        "timeoutSeconds": {"type": "integer", "minimum": 0, "maximum": 600},
        "responseStartTimeoutSeconds": {"type": "integer", "minimum": 0},
        "idleTimeoutSeconds": {"type": "integer", "minimum": 0},
    },
    # Everything else in a PodSpec (nodeSelector, tolerations, affinity, ...) sits behind a
    # feature flag that is off by default, and terminationGracePeriodSeconds is Knative's.
    "additionalProperties": False,
}

KNATIVE_SERVICE: Schema = {
    "$schema": _DRAFT,
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "serving.knative.dev/v1"},
        "kind": {"const": "Service"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "required": ["template"],
            "properties": {
                "template": {
                    "type": "object",
                    "required": ["spec"],
                    "properties": {"metadata": _REVISION_METADATA, "spec": _REVISION_SPEC},
                    "additionalProperties": False,
                },
                "traffic": {"type": "array"},
            },
            "additionalProperties": False,
        },
    },
}

# -- KEDA -----------------------------------------------------------------------------

_PROMETHEUS_TRIGGER: Schema = {
    "if": {"properties": {"type": {"const": "prometheus"}}},
    "then": {
        "properties": {
            "metadata": {
                "required": ["serverAddress", "query", "threshold"],
                "properties": {
                    "serverAddress": {"type": "string", "pattern": "^https?://"},
                    "query": {"type": "string", "minLength": 1},
                    "threshold": {"type": "string", "pattern": _NUMBER_TEXT},
                    "activationThreshold": {"type": "string", "pattern": _NUMBER_TEXT},
                    "ignoreNullValues": {"enum": ["true", "false"]},
                    "unsafeSsl": {"enum": ["true", "false"]},
                },
            }
        }
    },
}

KEDA_SCALED_OBJECT: Schema = {
    "$schema": _DRAFT,
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string"},
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                    "additionalProperties": False,
                },
                "pollingInterval": _INT32,
                "cooldownPeriod": _INT32,
                "initialCooldownPeriod": _INT32,
                "idleReplicaCount": _INT32,
                "minReplicaCount": _INT32,
                "maxReplicaCount": _INT32,
                "fallback": {"type": "object"},
                "advanced": {"type": "object"},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metadata": _STRING_MAP,
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                            "authenticationRef": {"type": "object"},
                        },
                        "additionalProperties": False,
                        **_PROMETHEUS_TRIGGER,
                    },
                },
            },
            "additionalProperties": False,
        },
    },
}

# -- Prometheus Operator --------------------------------------------------------------

_LABEL_SELECTOR: Schema = {
    "type": "object",
    "properties": {"matchLabels": _STRING_MAP, "matchExpressions": {"type": "array"}},
    "additionalProperties": False,
}

POD_MONITOR: Schema = {
    "$schema": _DRAFT,
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PodMonitor"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "required": ["selector"],
            "properties": {
                "selector": _LABEL_SELECTOR,
                "namespaceSelector": {"type": "object"},
                "jobLabel": {"type": "string"},
                "podMetricsEndpoints": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
                            "interval": {"type": "string", "pattern": _PROM_DURATION},
                            "scrapeTimeout": {"type": "string", "pattern": _PROM_DURATION},
                            "honorLabels": {"type": "boolean"},
                            "relabelings": {"type": "array"},
                            "metricRelabelings": {"type": "array"},
                        },
                        "additionalProperties": False,
                    },
                },
            },
            "additionalProperties": False,
        },
    },
}
