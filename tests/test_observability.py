"""The dashboard and alerting rules in deploy/observability/, checked against the real tools
and a live process.

``promtool`` (Debian's ``prometheus`` package; ``.ci/run`` installs it) checks the rules and
runs their unit tests; ``kubectl kustomize`` renders the PrometheusRule the production overlay
ships; and every metric name the dashboard and the rules use must be on the ``/metrics`` page
of a running ``storyboard serve``, except the CloudWatch ones, listed in ``EXTERNAL`` and
produced by the exporter configuration beside them.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from harness.processes import ROOT, http_get, running_service, service_env

HERE = ROOT / "deploy" / "observability"
RULES = HERE / "alerts.rules.yml"
RULE_TESTS = HERE / "alerts.test.yml"
DASHBOARD = HERE / "dashboard.json"
EXPORTER = HERE / "cloudwatch-exporter.yml"
GENERATOR = HERE / "rules.py"
PRODUCTION = ROOT / "deploy" / "k8s" / "overlays" / "production"
RUNBOOK = ROOT / "docs" / "operations.md"

EXTERNAL = frozenset(
    {
        "aws_sqs_approximate_age_of_oldest_message_maximum",
        "aws_sqs_approximate_age_of_oldest_message_in_quiet_groups_maximum",
    }
)
"""Metrics from CloudWatch (through cloudwatch_exporter), not from the service: only
CloudWatch knows the age of a queue's oldest message."""

SEVERITIES = frozenset({"warning", "critical"})
DATASOURCE = "${datasource}"

Manifest = dict[str, Any]


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def promtool() -> str:
    """The promtool executable; absent only outside CI, where ``.ci/run`` installs it."""
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed (apt-get install prometheus; .ci/run does)")
    return found


def _rules() -> list[Manifest]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _alerts() -> dict[str, Manifest]:
    return {rule["alert"]: rule for rule in _rules() if "alert" in rule}


def _dashboard() -> Manifest:
    dashboard: Manifest = json.loads(DASHBOARD.read_text())
    return dashboard


def _panels() -> list[Manifest]:
    return [p for p in _dashboard()["panels"] if p["type"] != "row"]


# --------------------------------------------------------------------------- PromQL names

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_VARIABLE = re.compile(r"\$\{?\w+\}?")
_IDENTIFIER = re.compile(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "inf", "nan"}
)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (or a Grafana query) selects.

    Label matchers, ranges, grouping clauses, strings and Grafana variables are removed
    first; what is left that is neither a keyword nor a function call is a metric name.
    """
    label_values = re.fullmatch(r"\s*label_values\(\s*([a-zA-Z_:][\w:]*)\s*,\s*\w+\s*\)\s*", expr)
    if label_values:
        return {label_values.group(1)}
    text = _VARIABLE.sub("", expr)
    text = _STRING.sub('""', text)
    for pattern in (_MATCHERS, _RANGES, _GROUPING):
        text = pattern.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        if text[match.end() :].lstrip().startswith("("):
            continue
        if match.group(0).lower() not in _KEYWORDS:
            names.add(match.group(0))
    return names


def test_metric_names_are_read_out_of_promql() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, route) (rate(http_seconds_bucket{job=~"$job",'
        ' route!="/x"}[$__rate_interval]))) / on (job) group_left (pod) up offset 5m'
        " > bool 1e3 and sum(errors_total) without (code) unless absent(gone)"
    )
    assert metric_names(expr) == {"http_seconds_bucket", "up", "errors_total", "gone"}
    assert metric_names("label_values(storyboard_queue_messages, job)") == {
        "storyboard_queue_messages"
    }


def dashboard_expressions(dashboard: Manifest) -> Iterator[str]:
    """Every query in a dashboard: panel targets, annotations and query variables."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield target["expr"]
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            yield annotation["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield variable["query"]["query"]


def used_metric_names() -> dict[str, set[str]]:
    """Each metric name the dashboard and the rules use, with where."""
    used: dict[str, set[str]] = {}
    for expr in dashboard_expressions(_dashboard()):
        for name in metric_names(expr):
            used.setdefault(name, set()).add("dashboard.json")
    for rule in _rules():
        for name in metric_names(rule["expr"]):
            used.setdefault(name, set()).add(f"alerts.rules.yml {rule.get('alert')}")
    return used


_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}


def served_names(text: str) -> set[str]:
    """Every sample name a ``/metrics`` page offers, including those of families that have
    no sample yet (a labelled counter nothing has incremented is still declared)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return names


def test_every_metric_used_is_served_by_a_live_process(tmp_path: Path) -> None:
    env = service_env(tmp_path / "data")
    with running_service("serve", env, tmp_path / "serve.log") as service:
        page = http_get(service.url + "/metrics")
    served = served_names(page)
    used = used_metric_names()
    missing = {name: sorted(where) for name, where in used.items() if name not in served | EXTERNAL}
    assert not missing, f"not on /metrics and not listed as external: {missing}"
    # The external list stays honest: each is used, and none is the service's own.
    assert set(used) >= EXTERNAL
    assert not EXTERNAL & served
    # Names the dashboard needs from the service itself, beyond what the rules use.
    assert {"storyboard_worker_capacity", "storyboard_consumer_draining"} <= set(used)


def _exporter_names() -> set[str]:
    """The metric names cloudwatch_exporter makes of its configuration."""
    names = set()
    for metric in yaml.safe_load(EXPORTER.read_text())["metrics"]:
        namespace = metric["aws_namespace"].removeprefix("AWS/").lower()
        snake = re.sub(r"(?<!^)(?=[A-Z])", "_", metric["aws_metric_name"]).lower()
        for statistic in metric["aws_statistics"]:
            names.add(f"aws_{namespace}_{snake}_{statistic.lower()}")
    return names


def test_external_metrics_come_from_the_exporter_configuration() -> None:
    exported = _exporter_names()
    assert exported == set(EXTERNAL)


# --------------------------------------------------------------------------- the rules


def test_promtool_checks_the_rules(promtool: str) -> None:
    done = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in done.stdout


def test_promtool_runs_the_rule_unit_tests(promtool: str) -> None:
    done = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name],
        capture_output=True,
        text=True,
        check=False,
        cwd=HERE,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_fails_a_rule_test_that_expects_the_wrong_thing(
    promtool: str, tmp_path: Path
) -> None:
    """The unit tests can fail: an alert expected where the rules say none fires."""
    tests = yaml.safe_load(RULE_TESTS.read_text())
    tests["rule_files"] = [str(RULES)]
    quiet = next(t for t in tests["tests"] if t["name"].startswith("an empty DLQ"))
    quiet["alert_rule_test"][0]["exp_alerts"] = [{"exp_labels": {"severity": "warning"}}]
    tests["tests"] = [quiet]
    broken = tmp_path / "broken.test.yml"
    broken.write_text(yaml.safe_dump(tests))
    done = subprocess.run(
        [promtool, "test", "rules", str(broken)], capture_output=True, text=True, check=False
    )
    assert done.returncode != 0
    assert "StoryboardDeadLetters" in done.stdout + done.stderr


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    fires: set[str] = set()
    stays_quiet: set[str] = set()
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else stays_quiet).add(case["alertname"])
    assert fires == set(_alerts())
    assert stays_quiet == set(_alerts())


def _runbook_anchors() -> set[str]:
    """GitHub's anchors for the headings of the runbook's Alerts section."""
    text = RUNBOOK.read_text()
    section = text.split("\n## Alerts\n", 1)[1].split("\n## ", 1)[0]
    headings = re.findall(r"^### (.+)$", section, re.M)
    return {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}


def test_every_alert_has_a_wait_a_severity_and_a_runbook_section() -> None:
    anchors = _runbook_anchors()
    for name, alert in _alerts().items():
        assert alert.get("for"), f"{name} has no for:"
        assert alert["labels"]["severity"] in SEVERITIES, name
        annotations = alert["annotations"]
        assert annotations["summary"].strip(), name
        assert annotations["description"].strip(), name
        url = annotations["runbook_url"]
        assert url.startswith("https://"), name
        assert "/operations.md#" in url, name
        anchor = url.rsplit("#", 1)[1]
        assert anchor == name.lower(), f"{name}: runbook_url names #{anchor}"
        assert anchor in anchors, f"{name}: no '### {name}' under ## Alerts in the runbook"
    assert anchors == {name.lower() for name in _alerts()}


# --------------------------------------------------------------------------- the PrometheusRule


@pytest.fixture(scope="module")
def rules_module() -> ModuleType:
    """``deploy/observability/rules.py``, which writes the PrometheusRule."""
    return _load(GENERATOR, "observability_rules")


def test_the_prometheus_rule_is_the_rules_file(rules_module: ModuleType) -> None:
    written = rules_module.PROMETHEUS_RULE.read_text()
    assert written == rules_module.render(RULES.read_text()), "run deploy/observability/rules.py"
    assert yaml.safe_load(written)["spec"] == yaml.safe_load(RULES.read_text())
    assert rules_module.main(["--check"]) == 0


def test_drift_is_reported(rules_module: ModuleType, tmp_path: Path) -> None:
    edited = RULES.read_text().replace("> 0.9", "> 0.8")
    assert edited != RULES.read_text()
    manifest = yaml.safe_load(rules_module.render(edited))
    assert manifest["spec"] != yaml.safe_load(rules_module.PROMETHEUS_RULE.read_text())["spec"]


@pytest.fixture(scope="module")
def validate() -> ModuleType:
    """``deploy/validate.py``, which renders and checks the overlays."""
    return _load(ROOT / "deploy" / "validate.py", "deploy_validate_observability")


def test_production_ships_the_rules_through_kustomize(
    validate: ModuleType, promtool: str, tmp_path: Path
) -> None:
    """The real ``kubectl kustomize`` renders the component into the production overlay, and
    what it renders is a rules file promtool accepts."""
    objects = validate.kustomize(PRODUCTION)
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    assert rule["metadata"]["namespace"] == "storyboard"
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    assert validate.schema_errors([rule], validate.KUBERNETES_VERSION)[0] == []
    rendered = tmp_path / "rendered.rules.yml"
    rendered.write_text(yaml.safe_dump(rule["spec"]))
    done = subprocess.run(
        [promtool, "check", "rules", str(rendered)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rule_schema_catches_a_typo(validate: ModuleType) -> None:
    objects = validate.kustomize(PRODUCTION)
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    first = rule["spec"]["groups"][0]["rules"][0]
    first["expression"] = first.pop("expr")
    problems, _ = validate.schema_errors([rule], validate.KUBERNETES_VERSION)
    assert any("expr" in p for p in problems), problems


# --------------------------------------------------------------------------- the dashboard


def test_the_dashboard_has_a_datasource_variable_and_no_fixed_datasource() -> None:
    dashboard = _dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    sources = [p["datasource"] for p in _panels()]
    sources += [t["datasource"] for p in _panels() for t in p["targets"]]
    sources += [a["datasource"] for a in dashboard["annotations"]["list"] if "expr" in a]
    sources += [v["datasource"] for v in variables.values() if v["type"] == "query"]
    assert sources
    assert all(s == {"type": "prometheus", "uid": DATASOURCE} for s in sources), sources
    assert "__inputs" not in dashboard


def test_the_dashboard_is_importable() -> None:
    """The fields Grafana needs to import it, unique ids, and panels that do not overlap."""
    dashboard = _dashboard()
    assert isinstance(dashboard["schemaVersion"], int)
    assert dashboard["title"]
    assert dashboard["uid"]
    assert dashboard.get("id") is None, "an exported id would clash on import"
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    taken: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["w"] > 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells
    for panel in _panels():
        assert panel["type"] == "timeseries"
        assert panel["description"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs, panel["title"]
        assert len(set(refs)) == len(refs), panel["title"]


PANEL_TOPICS = {
    "queue depth": {"storyboard_queue_messages"},
    "oldest message age": {"aws_sqs_approximate_age_of_oldest_message_maximum"},
    "jobs in flight vs capacity": {"storyboard_jobs_in_flight", "storyboard_worker_capacity"},
    "outcomes by code": {"storyboard_jobs_total"},
    "errors by code": {"storyboard_job_errors_total"},
    "retries and dead letters": {
        "storyboard_consumer_retried_total",
        "storyboard_consumer_dead_lettered_total",
    },
    "tokens per minute vs limit": {
        "storyboard_llm_tokens_total",
        "storyboard_llm_tokens_per_minute_limit",
    },
    "HTTP rate and errors": {"storyboard_http_requests_total"},
    "HTTP latency": {"storyboard_http_request_duration_seconds_bucket"},
    "drain events": {"storyboard_consumer_draining", "storyboard_consumer_released_total"},
}
"""What the dashboard must show, as the metrics one panel has to query together."""


def test_the_dashboard_shows_what_an_operator_needs() -> None:
    per_panel = [
        set().union(*(metric_names(t["expr"]) for t in panel["targets"])) for panel in _panels()
    ]
    for topic, needed in PANEL_TOPICS.items():
        assert any(needed <= names for names in per_panel), f"no panel shows {topic}"
