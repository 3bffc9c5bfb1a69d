"""Runs every benchmark and writes docs/benchmarks.md from the results.

``python -m bench`` (``make bench``) runs the full set in about fourteen minutes on two cores and
writes the page and ``bench/results/*.json``. ``python -m bench --quick`` runs one tiny case
of each kind and writes nothing; ``make bench-smoke`` runs it through
``bench/smoke.py``, which checks that every part reported. Parts whose optional
packages (psutil, celery with kombu's SQS transport) are missing are skipped with a note.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from bench import (
    aws_costs,
    celery_peer,
    concurrency,
    fairness,
    hostile_speed,
    http_load,
    local_throughput,
    memory,
    model_pipeline,
    offline_speed,
    scale_out,
    sse_fanout,
    tracing_cost,
)
from bench.common import RESULTS, environment, optional_module, save
from bench.report import render
from harness.processes import ROOT

FINDINGS = ROOT / "bench" / "findings.md"

T = TypeVar("T")


def isolated(entry: Callable[[list[str]], T], argv: list[str]) -> T:
    """Run one part's ``main(argv)`` in a fresh interpreter and return its result.

    Parts measure CPU per job and rates in-process; a fresh process for each keeps one
    part's garbage, threads and caches from weighing on the next.
    """
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(entry, argv).result()


def run_all(quick: bool) -> dict[str, Any]:
    """Every part in turn; each prints its own lines as it goes."""
    jobs, repeats = (50, 1) if quick else (2000, 3)
    dry = ["--dry"] if quick else []
    q = ["--quick"] if quick else []
    throughput_argv = ["--jobs", str(jobs), "--repeats", str(repeats), *dry]
    results: dict[str, Any] = {
        "throughput": isolated(local_throughput.main, throughput_argv),
        "offline": isolated(offline_speed.main, ["--repeats", str(repeats), *q]),
        "concurrency": isolated(concurrency.main, q),
        "idle": isolated(aws_costs.main, q),
        "memory": isolated(memory.main, q),
        "http": isolated(http_load.main, q),
    }
    needed = ("celery", "pycurl", "psutil")
    if all(optional_module(name) is not None for name in needed):
        results["celery"] = isolated(celery_peer.main, q)
    else:
        print("celery peer: skipped, celery[sqs] (with pycurl) or psutil is not installed")
    results["scale_out"] = isolated(scale_out.main, q)
    results["sse"] = isolated(sse_fanout.main, q)
    results["fairness"] = isolated(fairness.main, q)
    results["tracing"] = isolated(tracing_cost.main, q)
    results["pipeline"] = isolated(model_pipeline.main, q)
    results["hostile"] = isolated(hostile_speed.main, q)
    sized = results["memory"]
    results["lambda"] = aws_costs.lambda_on_paper(
        sized["peak_rss_mb"] if sized else None, sized["jobs"] if sized else 256
    )
    return results


SAVED = {
    "throughput": "local_throughput",
    "offline": "offline_speed",
    "concurrency": "concurrency",
    "idle": "aws_idle",
    "memory": "memory",
    "http": "http",
    "celery": "celery_peer",
    "scale_out": "scale_out",
    "sse": "sse_fanout",
    "fairness": "fairness",
    "tracing": "tracing_cost",
    "hostile": "hostile_speed",
    "pipeline": "model_pipeline",
    "lambda": "lambda_on_paper",
}
"""Result key → file under bench/results/."""


def load_saved() -> tuple[dict[str, Any], dict[str, Any], float]:
    """The last full run's results, environment and duration, from bench/results/."""
    results: dict[str, Any] = {}
    for key, name in SAVED.items():
        path = RESULTS / f"{name}.json"
        if path.exists():
            payload = json.loads(path.read_text())
            payload.pop("environment", None)
            results[key] = payload
    run = json.loads((RESULTS / "run.json").read_text())
    return results, run["environment"], float(run["elapsed_s"])


def write_page(results: dict[str, Any], env: dict[str, Any], elapsed: float) -> None:
    """docs/benchmarks.md from the results and bench/findings.md."""
    findings = FINDINGS.read_text() if FINDINGS.exists() else ""
    (ROOT / "docs" / "benchmarks.md").write_text(render(env, elapsed, results, findings))
    print("wrote docs/benchmarks.md")


def main() -> None:
    """Run everything; ``--quick`` runs one tiny case of each (``make bench-smoke``)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny cases, no docs written")
    parser.add_argument(
        "--render", action="store_true", help="only rebuild the page from bench/results/"
    )
    args = parser.parse_args()
    if args.render:
        write_page(*load_saved())
        return
    start = time.perf_counter()
    results = run_all(args.quick)
    elapsed = time.perf_counter() - start
    print(f"benchmarks done in {elapsed:.0f} s")
    if not args.quick:
        save("lambda_on_paper", results["lambda"])
        save("run", {"elapsed_s": elapsed})
        write_page(results, environment(), elapsed)


if __name__ == "__main__":
    main()
