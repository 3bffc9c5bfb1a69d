"""The plain-words summary that opens docs/benchmarks.md, written from one run's results.

Each line states a figure from the results and what a reader does with it; a line whose part
did not run is left out. The settings' defaults are read from ``Settings``, so the advice on
what to set names the values the service ships with.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from service.settings import Settings

PRODUCTION_JOB_S = 60
"""A model-bound job's wall time for the worked example: tens of seconds of model calls."""


def _default(name: str) -> Any:
    return Settings.model_fields[name].default


def _row(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def _aws_cases(results: dict[str, Any]) -> list[dict[str, Any]]:
    cases = results.get("concurrency", {}).get("cases", [])
    return [r for r in cases if r["backend"] == "aws"]


def throughput(results: dict[str, Any]) -> str | None:
    """Jobs per second one worker process does."""
    scale = results.get("scale_out")
    drain = results.get("throughput")
    if not scale or not drain:
        return None
    rows = [r for r in scale["rows"] if r["backend"] == "local"]
    one = _row(rows, processes=1)
    if one is None:
        return None
    more = ", ".join(
        f"{r['processes']} give {r['per_s'] / one['per_s']:.2f}×" for r in rows if r is not one
    )
    return (
        f"**One worker process does about {one['per_s']:.0f} jobs/s** on the embedded backend "
        f"with {scale['latency_s']:g} s jobs at concurrency {scale['concurrency']['local']}, "
        f"and {drain['median_drain_per_s']:.0f} jobs/s with a no-op analyzer. More processes "
        f"on the same two cores share one SQLite writer: {more} (part 6)."
    )


def moto_limit(results: dict[str, Any]) -> str | None:
    """Why every AWS-path figure here is the emulator's."""
    cases = [r for r in _aws_cases(results) if r["concurrency"] > 1]
    if not cases:
        return None
    steady = [r["steady_per_s"] for r in cases if r["steady_per_s"] is not None]
    if not steady:
        return None
    moto_ms = statistics.median(r["moto_cpu_ms_per_job"] for r in cases)
    ours_ms = statistics.median(r["service_cpu_ms_per_job"] for r in cases)
    return (
        f"**What limits it in these benchmarks is moto.** On the AWS path the stand-in for SQS, "
        f"DynamoDB and S3 is one Python process spending ~{moto_ms:.0f} ms of CPU per job, so "
        f"the cases above C = 1 ran at {min(steady):.0f}–{max(steady):.0f} jobs/s whatever C/L "
        f"allowed. The worker's own CPU was ~{ours_ms:.0f} ms per job, which would make about "
        f"{1000 / ours_ms:.0f} jobs/s per core against real AWS: an estimate, not a "
        "measurement."
    )


def production_limit() -> str:
    """What bounds a replica once a real model does the work."""
    concurrency = _default("worker_concurrency")
    return (
        "**What limits it in production is the model.** A job waits on the LLM for tens of "
        "seconds, so a replica finishes about concurrency ÷ job time: "
        f"{concurrency} jobs of {PRODUCTION_JOB_S} s each is "
        f"~{concurrency / PRODUCTION_JOB_S:.1f} jobs/s, far below the figures above. Plan for "
        "the model's quota (requests and tokens per minute), not for CPU or memory."
    )


def model_pipeline(results: dict[str, Any]) -> str | None:
    """How close the model analyzer comes to its own limit, and what it spends."""
    rows = (results.get("pipeline") or {}).get("novels") or []
    if not rows:
        return None
    ratios = " and ".join(
        f"{r['name']} in {r['wall_s']:.0f} s ({r['ratio']:.2f} × its lower bound)" for r in rows
    )
    retries = sum(r["retries"] for r in rows)
    costs = ", ".join(
        f"{r['estimate']['currency']} {r['estimate']['price']['actual']:.2f} for {r['name']} "
        f"({r['input_per_novel_token']:.1f}× its own tokens in input; estimate "
        f"{r['estimate']['price']['error']:+.0%})"
        for r in rows
    )
    return (
        f"The model pipeline runs close to its own limit: on a fake paced like qwen-plus, "
        f"the default settings analyzed {ratios}, the bound being the slowest reply of each "
        f"pass or the token budget, with {retries} retries; at the old 4 requests per "
        f"job it was 7.3× on 三国演义. A novel costs about {costs}; `storyboard analyze FILE "
        "--estimate` says so before spending (part 10)."
    )


def memory(results: dict[str, Any]) -> str | None:
    """Resident memory, idle and under load."""
    m = results.get("memory")
    if not m:
        return None
    line = (
        f"**Memory is not the constraint:** {m['idle_rss_mb']:.0f} MB idle and "
        f"{m['peak_rss_mb']:.0f} MB with {m['in_flight_reached']} jobs in flight on the "
        "embedded backend"
    )
    peer = results.get("celery", {}).get("configs") or []
    ours = [
        row for config in peer for row in config["rows"] if row["system"] == "storyboard worker"
    ]
    if ours:
        line += f"; the AWS-path worker peaked at {max(r['peak_rss_mb'] for r in ours):.0f} MB"
    return line + "."


def concurrency_advice(results: dict[str, Any]) -> str | None:
    """What to set, given the figures."""
    m = results.get("memory")
    if not m:
        return None
    return (
        f"**What to set:** `STORYBOARD_WORKER_CONCURRENCY` (default "
        f"{_default('worker_concurrency')}) from the model quota, not from cores or memory: "
        f"{m['in_flight_reached']} sleeping jobs cost {m['peak_rss_mb'] - m['idle_rss_mb']:.0f} "
        "MB over idle (a real job also holds its novel's text). Raise "
        f"`STORYBOARD_LLM_PROCESS_CONCURRENCY` (default {_default('llm_process_concurrency')} "
        "model requests at once per process) with it if the quota allows, keep the "
        "per-minute limits × replicas within the account's quota, and size replicas as arrival "
        "rate × job time ÷ concurrency ([the runbook](operations.md#scale))."
    )


def api_and_idle(results: dict[str, Any]) -> str | None:
    """The HTTP side and the idle cost."""
    h, idle = results.get("http"), results.get("idle")
    if not h or not idle:
        return None
    service = h["service"]
    return (
        f"**The API is not the bottleneck:** one process took {service['per_s']:.0f} "
        f"submissions/s (p99 {service['p99_ms']:.0f} ms), {h['ratio']:.2f} of a bare aiohttp "
        f"route on the same cores. An idle replica makes {idle['main_receives_per_hour']:.0f} "
        "SQS receives an hour."
    )


def event_streams(results: dict[str, Any]) -> str | None:
    """What 1,000 open job event streams cost one replica."""
    fanout = results.get("sse")
    rows = (fanout or {}).get("rows") or []
    if not rows:
        return None
    row = rows[0]
    return (
        f"**Live progress is cheap to serve:** {row['streams']} open event streams on "
        f"{row['jobs']} running jobs cost one replica {row['open_rss_mb'] - row['idle_rss_mb']:.0f}"
        f" MB and {row['cores']['replica']:.2f} of a core, at "
        f"{row['batch_get_per_s']:.1f} DynamoDB batch reads a second (one per 100 watched jobs "
        f"per poll; the running jobs' own "
        f"cancel checks add {row['get_item_per_s']:.0f} reads a second, one per job every 3 s); "
        f"a write reached the "
        f"client in {row['delay_p50_ms'] / 1000:.1f} s at p50 and "
        f"{row['delay_p99_ms'] / 1000:.1f} s at p99, mostly the hub's 1 s poll on moto (part 7)."
    )


def fair_sharing(results: dict[str, Any]) -> str | None:
    """What one user's backlog costs everyone else, fair against first-in-first-out."""
    rows = {r["order"]: r for r in (results.get("fairness") or {}).get("rows") or []}
    if not {"fair", "fifo"} <= rows.keys():
        return None
    fair, fifo = rows["fair"], rows["fifo"]
    return (
        f"**One user's backlog no longer holds up the rest:** behind a user with "
        f"{results['fairness']['case']['busy_jobs']} queued jobs, three other users' jobs "
        f"started within {fair['quiet']['p95_s']:.2f} s at p95 under the fair order, against "
        f"{fifo['quiet']['p95_s']:.1f} s first in, first out; the busy user's own makespan moved "
        f"from {fifo['busy_makespan_s']:.1f} s to {fair['busy_makespan_s']:.1f} s (part 8)."
    )


def provenance(env: dict[str, Any], elapsed_s: float) -> str:
    """Where the figures came from."""
    return (
        f"**Where the figures come from:** `make bench` ({elapsed_s / 60:.0f} min) on "
        f"{env['date']}, one {env['cores']}-core machine that also ran the load and moto, all "
        "on loopback; raw figures in `bench/results/*.json`. Figures on a shared machine move "
        "between runs, so read them as sizes, not to the last digit."
    )


@dataclass(frozen=True)
class Targets:
    """The per-job request goals the gaps line quotes (the goals table holds them all)."""

    sqs_per_job: float
    dynamodb_writes: float


def gaps(results: dict[str, Any], goal_rows: list[str], targets: Targets) -> str | None:
    """The goals missed, from the rendered goals table and the results, and what is not
    measured at all."""
    rows = [row for row in goal_rows if row.startswith("| ") and not row.startswith("| goal ")]
    if not rows:
        return None
    verdicts = [v for row in rows for v in row.rstrip(" |").rsplit(" | ", 1)[-1].split(", ")]
    missed = sum(v.endswith("**missed**") for v in verdicts)
    line = f"**Known gaps:** {missed} of {len(verdicts)} goals are missed (table below)."
    if any(
        "**missed**" in row and ("C/L" in row or "throughput **missed**" in row) for row in rows
    ):
        line += (
            " Those on throughput, against C/L and against Celery, measure moto's one core "
            "rather than the worker."
        )
    saturated = _row(_aws_cases(results), latency_s=1.0, concurrency=64)
    if saturated:
        requests = saturated["requests"]
        sqs = requests["sqs_per_job"]
        if requests["sqs_job_requests_per_job"] > targets.sqs_per_job:
            line += (
                f" SQS requests per job ({requests['sqs_job_requests_per_job']:.2f}, goal ≤ "
                f"{targets.sqs_per_job:g}) miss on receives ({sqs['receive']:.2f} a job): the "
                "consumer asks for as many messages as it has free slots, and under a backlog "
                "slots free one or two at a time."
            )
    line += _cost_against_celery(results)
    return line + " Nothing here is measured against real AWS or with a real model."


def _cost_against_celery(results: dict[str, Any]) -> str:
    """Our worker's CPU and memory per job beside Celery doing the same work."""
    configs = results.get("celery", {}).get("configs") or []
    config = _row(configs, latency_s=1.0, concurrency=64)
    if config is None:
        return ""
    ours = _row(config["rows"], work="storyboard")
    seed = _row(config["rows"], work="seed")
    if ours is None or seed is None or not seed.get("worker_cpu_ms_per_job"):
        return ""
    mine, theirs = ours["worker_cpu_ms_per_job"], seed["worker_cpu_ms_per_job"]
    return (
        f" Against Celery doing the same work (L = 1 s, C = 64) the worker spends "
        f"{mine:.1f} ms of CPU per job to its {theirs:.1f} ms ({mine / theirs:.2f}×, goal "
        "≤ 0.5×) and peaks at "
        f"{ours['peak_rss_mb']:.0f} MiB to its {seed['peak_rss_mb']:.0f} MiB (goal ≤ 75 MiB): "
        "most of the worker's CPU is botocore building, signing and parsing its requests, "
        "and about an eighth the bench's own reads of its /metrics; most of its memory is "
        "the libraries and the three clients' service models, ~84 MiB before the first job "
        "(part 5)."
    )


def summary(
    env: dict[str, Any],
    elapsed_s: float,
    results: dict[str, Any],
    goal_rows: list[str],
    targets: Targets,
) -> list[str]:
    """The page's opening: a heading and five to ten bullets, before any table."""
    bullets = [
        throughput(results),
        moto_limit(results),
        # One bullet: what bounds a replica in production, and how close the model pipeline
        # comes to the bound of its own.
        " ".join(filter(None, (production_limit(), model_pipeline(results)))),
        memory(results),
        concurrency_advice(results),
        api_and_idle(results),
        event_streams(results),
        fair_sharing(results),
        provenance(env, elapsed_s),
        gaps(results, goal_rows, targets),
    ]
    return ["## In short", "", *(f"- {b}" for b in bullets if b), ""]
