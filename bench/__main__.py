"""Runs every benchmark and writes docs/benchmarks.md from the results."""

from __future__ import annotations

import argparse
from typing import Any

from bench import local_throughput, offline_speed
from bench.common import ROOT, environment


def render(env: dict[str, Any], throughput: dict[str, Any], offline: dict[str, Any]) -> str:
    """The markdown page."""
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    lines = [
        "# Benchmarks",
        "",
        f"Measured with `make bench` on {env['date']}: {env['cores']} cores, "
        f"Python {env['python']}, {versions}. Raw figures: `bench/results/*.json`.",
        "",
        "## Embedded backend throughput",
        "",
        f"{throughput['jobs']} jobs with a no-op analyzer, one process at concurrency "
        f"{throughput['concurrency']}, median of {len(throughput['runs'])} runs. Each job is "
        "a send, a share of a batched receive, a start, progress and completion write, "
        "a storyboard write and a share of a batched delete.",
        "",
        "| phase | jobs/s |",
        "|---|---|",
        f"| submit (job record + send) | {throughput['median_submit_per_s']:.0f} |",
        f"| drain (receive → complete → delete) | {throughput['median_drain_per_s']:.0f} |",
        "",
        "## Offline analyzer",
        "",
        "| novel | characters | chapters | scenes | panels | seconds (median) |",
        "|---|---|---|---|---|---|",
    ]
    for row in offline["novels"]:
        lines.append(
            f"| {row['name']} | {row['chars']} | {row['chapters']} | {row['scenes']} | "
            f"{row['panels']} | {row['median_s']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run everything; ``--quick`` runs one tiny case of each (used by the test suite)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny cases, no docs written")
    args = parser.parse_args()
    jobs, repeats = (50, 1) if args.quick else (2000, 3)
    dry = ["--dry"] if args.quick else []
    throughput = local_throughput.main(["--jobs", str(jobs), "--repeats", str(repeats), *dry])
    offline = offline_speed.main(["--repeats", str(repeats)] + (["--quick"] if args.quick else []))
    if not args.quick:
        page = render(environment(), throughput, offline)
        (ROOT / "docs" / "benchmarks.md").write_text(page)
        print("wrote docs/benchmarks.md")


if __name__ == "__main__":
    main()
