#!/usr/bin/env python3
"""Write the alerting rules as a Prometheus Operator ``PrometheusRule``, or check it is current.

    .venv/bin/python deploy/observability/rules.py           # rewrite the component's file
    .venv/bin/python deploy/observability/rules.py --check   # exit 1 if it differs

``alerts.rules.yml`` (the Prometheus rules file) is the one source. The PrometheusRule in
``deploy/k8s/components/alerts/`` is that file's groups, comments and all, indented under
``spec:``, so that both read the same and a review of one is a review of the other.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RULES = HERE / "alerts.rules.yml"
PROMETHEUS_RULE = ROOT / "deploy" / "k8s" / "components" / "alerts" / "prometheusrule.yaml"

HEADER = """\
# Generated from deploy/observability/alerts.rules.yml by deploy/observability/rules.py:
# edit that file, then run the script. For the Prometheus Operator: the `release` label
# must match the Prometheus resource's ruleSelector, as the ServiceMonitor's does.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: storyboard
  labels:
    app.kubernetes.io/name: storyboard-service
    app.kubernetes.io/part-of: storyboard
    release: prometheus
spec:
"""


def render(rules_text: str) -> str:
    """The PrometheusRule manifest for a rules file: its body from ``groups:`` on, indented.

    The rules file's own header comments (before ``groups:``) are left out; they describe
    that file.
    """
    lines = rules_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("groups:"))
    body = [f"  {line}" if line.strip() else "" for line in lines[start:]]
    return HEADER + "\n".join(body) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrite the PrometheusRule, or with ``--check`` report whether it is current."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 on drift")
    args = parser.parse_args(argv)
    wanted = render(RULES.read_text())
    current = PROMETHEUS_RULE.read_text() if PROMETHEUS_RULE.exists() else ""
    if args.check:
        if current != wanted:
            print(
                f"{PROMETHEUS_RULE.relative_to(ROOT)} differs from {RULES.relative_to(ROOT)}: "
                "run deploy/observability/rules.py",
                file=sys.stderr,
            )
            return 1
        return 0
    PROMETHEUS_RULE.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
