"""Renders docs/benchmarks.md from one run's results."""

from __future__ import annotations

from typing import Any

from bench.model_pipeline import ESTIMATE_TOLERANCE, storm
from bench.model_pipeline import GOAL_RATIO as PIPELINE_RATIO
from bench.offline_speed import GOAL_NOVEL, GOAL_S, judged_s
from bench.summary import Targets, summary

GOAL_RATIO = 0.9
GOAL_SQS_PER_JOB = 1.3
GOAL_DYNAMO_WRITES = 4
GOAL_IDLE_RECEIVES = 180
GOAL_RSS_MB = 150
GOAL_AWS_REQUESTS = 7
GOAL_CPU_VS_PEER = 0.5
GOAL_AWS_RSS_MIB = 75


def _f(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def header(env: dict[str, Any], elapsed_s: float, results: dict[str, Any]) -> list[str]:
    """Title, the plain-words summary, and what the figures were measured on."""
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    targets = Targets(sqs_per_job=GOAL_SQS_PER_JOB, dynamodb_writes=GOAL_DYNAMO_WRITES)
    return [
        "# Benchmarks",
        "",
        *summary(env, elapsed_s, results, goals(results), targets),
        "## How these were measured",
        "",
        f"Measured with `make bench` (`python -m bench`, {elapsed_s / 60:.1f} minutes) on "
        f"{env['date']}: one machine with **{env['cores']} cores**, {env['platform']}, "
        f"Python {env['python']}, {versions}. Every ratio below compares figures measured in "
        "this same run. Raw figures: `bench/results/*.json`; the method of each part is in "
        "the docstring of its module under `bench/`.",
        "",
        "Everything runs on loopback on the same two cores: the service, the load it is "
        "given, and for the AWS figures the moto server standing in for SQS, DynamoDB and S3.",
        "",
    ]


def _case(rows: list[dict[str, Any]], backend: str, latency: float, c: int) -> dict[str, Any]:
    for row in rows:
        if row["backend"] == backend and row["latency_s"] == latency and row["concurrency"] == c:
            return row
    return {}


def _ratio(row: dict[str, Any]) -> float:
    steady = row.get("steady_ratio")
    return float(steady if steady is not None else row["makespan_ratio"])


def _saturation_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The moto case the per-job cost goal is read from: L=1 s, C=64 (a backlog, moto-bound)."""
    return _case(rows, "aws", 1.0, 64) or next(r for r in rows if r["backend"] == "aws")


def goals(results: dict[str, Any]) -> list[str]:
    """The goals, each with the figure it is judged on."""
    lines = ["## Goals at a glance", "", "| goal | measured | |", "|---|---|---|"]
    rows = results["concurrency"]["cases"]
    for backend in ("local", "aws"):
        mine = [r for r in rows if r["backend"] == backend]
        if not mine:
            continue
        passing = [r for r in mine if _ratio(r) >= GOAL_RATIO]
        label = "embedded" if backend == "local" else "moto"
        worst = min(mine, key=_ratio)
        lines.append(
            f"| ≥ {GOAL_RATIO} of C/L ({label}) | {len(passing)} of {len(mine)} cases; lowest "
            f"{_ratio(worst):.2f} at L={worst['latency_s']:g} s, C={worst['concurrency']} | "
            f"{_met(len(passing) == len(mine))} |"
        )
    aws = [r for r in rows if r["backend"] == "aws"]
    if aws:
        sat = _saturation_row(aws)["requests"]
        sqs = sat["sqs_job_requests_per_job"]
        writes = sat["dynamodb_job_writes_per_job"]
        lines.append(
            f"| ≤ {GOAL_SQS_PER_JOB} SQS requests per job at saturation | {sqs:.2f} "
            f"(moto, L=1 s, C=64) | {_met(sqs <= GOAL_SQS_PER_JOB)} |"
        )
        lines.append(
            f"| ≤ {GOAL_DYNAMO_WRITES} DynamoDB writes per job besides the storyboard pointer | "
            f"{writes:.2f} | {_met(writes <= GOAL_DYNAMO_WRITES)} |"
        )
    idle = results.get("idle")
    if idle:
        per_hour = idle["main_receives_per_hour"]
        lines.append(
            f"| ≤ {GOAL_IDLE_RECEIVES} receives per idle hour per replica | {per_hour:.0f} "
            f"(+ {idle['dlq_receives_per_hour_expected']:.0f}/h on the DLQ) | "
            f"{_met(per_hour <= GOAL_IDLE_RECEIVES)} |"
        )
    memory = results.get("memory")
    if memory:
        lines.append(
            f"| ≤ {GOAL_RSS_MB} MB RSS with 256 jobs in flight | {memory['peak_rss_mb']:.0f} MB | "
            f"{_met(memory['peak_rss_mb'] <= GOAL_RSS_MB)} |"
        )
    lines += _fairness_goal(results)
    lines += _offline_goal(results)
    lines += _hostile_goal(results)
    lines += _pipeline_goals(results)
    if aws:
        total = total_requests(_saturation_row(aws)["requests"])
        lines.append(
            f"| ≤ {GOAL_AWS_REQUESTS} AWS requests per job (SQS + DynamoDB + S3, moto, L=1 s, "
            f"C=64) | {total:.2f} | {_met(total <= GOAL_AWS_REQUESTS)} |"
        )
    lines += _peer_goals(results)
    return [*lines, ""]


def total_requests(requests: dict[str, Any]) -> float:
    """SQS (job queue) + DynamoDB (writes and reads) + S3 requests per job."""
    dynamo = sum(requests["dynamodb_writes_per_job"].values()) + requests["dynamodb_reads_per_job"]
    return float(requests["sqs_job_requests_per_job"] + dynamo + requests["s3_requests_per_job"])


def peer_rows(config: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Our worker's row and the like-for-like Celery row (the seed's work) of one config."""
    ours = next((r for r in config["rows"] if r.get("work") == "storyboard"), None)
    seed = next((r for r in config["rows"] if r.get("work") == "seed"), None)
    return ours, seed


def _peer_goals(results: dict[str, Any]) -> list[str]:
    """The cost goals judged against Celery doing the same work in the same run."""
    lines: list[str] = []
    for config in (results.get("celery") or {}).get("configs", []):
        ours, seed = peer_rows(config)
        where = f"L={config['latency_s']:g} s, C={config['concurrency']}"
        if ours is None or seed is None:
            continue
        mine, theirs = ours.get("worker_cpu_ms_per_job"), seed.get("worker_cpu_ms_per_job")
        if mine is not None and theirs:
            ratio = mine / theirs
            lines.append(
                f"| worker CPU per job ≤ {GOAL_CPU_VS_PEER} × Celery doing the same work "
                f"({where}) | {mine:.1f} vs {theirs:.1f} ms = {ratio:.2f}× | "
                f"{_met(ratio <= GOAL_CPU_VS_PEER)} |"
            )
        if config["latency_s"] == 1.0 and config["concurrency"] == 64:
            rss = ours["peak_rss_mb"]
            lines.append(
                f"| worker peak RSS ≤ {GOAL_AWS_RSS_MIB} MiB on the AWS path ({where}) | "
                f"{rss:.0f} MiB (Celery doing the same work: {seed['peak_rss_mb']:.0f} MiB) | "
                f"{_met(rss <= GOAL_AWS_RSS_MIB)} |"
            )
    return lines


def _fairness_goal(results: dict[str, Any]) -> list[str]:
    rows = (results.get("fairness") or {}).get("rows") or []
    fair = next((r for r in rows if r["order"] == "fair"), None)
    if fair is None:
        return []
    p95 = fair["quiet"]["p95_s"]
    return [
        f"| quiet users' p95 wait behind one user's backlog ≤ 2 × L | {p95:.2f} s "
        f"(L = {fair['goal_s'] / 2:g} s; {fair['fifo_estimate_s']:.1f} s expected first in, "
        f"first out) | {_met(p95 <= fair['goal_s'])} |"
    ]


def _offline_goal(results: dict[str, Any]) -> list[str]:
    rows = results.get("offline", {}).get("novels", [])
    row = next((r for r in rows if r["name"] == GOAL_NOVEL), None)
    if row is None:
        return []
    first = f"first run {row['first_s']:.2f} s, " if "first_s" in row else ""
    return [
        f"| < {GOAL_S:g} s for the offline analyzer on {GOAL_NOVEL} | {first}median "
        f"{row['median_s']:.2f} s ({row['chars']} chars) | {_met(judged_s(row) < GOAL_S)} |"
    ]


def _hostile_goal(results: dict[str, Any]) -> list[str]:
    h = results.get("hostile")
    if not h or not h.get("reference"):
        return []
    worst = next(row for row in h["rows"] if row["name"] == h["worst"])
    ratio = worst["s_per_mchar"] / h["reference"]["s_per_mchar"]
    return [
        f"| worst crafted text ≤ {h['goal_ratio']:g} × {GOAL_NOVEL}'s time per character | "
        f"{ratio:.2f} × ({worst['name']}: {worst['s_per_mchar']:.2f} vs "
        f"{h['reference']['s_per_mchar']:.2f} s per million characters) | "
        f"{_met(ratio <= h['goal_ratio'])} |"
    ]


def _pipeline_goals(results: dict[str, Any]) -> list[str]:
    rows = (results.get("pipeline") or {}).get("novels") or []
    if not rows:
        return []
    ratios = "; ".join(f"{r['name']} ×{r['ratio']:.2f}, {r['retries']} retries" for r in rows)
    fast = all(r["ratio"] <= PIPELINE_RATIO and not storm(r) for r in rows)
    errors = "; ".join(
        f"{r['name']} price {r['estimate']['price']['error']:+.0%}, tokens {_tokens_error(r):+.0%}"
        for r in rows
    )
    close = all(
        abs(r["estimate"]["price"]["error"]) <= ESTIMATE_TOLERANCE
        and abs(_tokens_error(r)) <= ESTIMATE_TOLERANCE
        for r in rows
    )
    return [
        f"| model pipeline wall time ≤ {PIPELINE_RATIO} × its lower bound, no 429 storm "
        f"(fake qwen-plus) | {ratios} | {_met(fast)} |",
        f"| cost estimate within ±{ESTIMATE_TOLERANCE:.0%} of what the run spent | {errors} | "
        f"{_met(close)} |",
    ]


def _tokens_error(row: dict[str, Any]) -> float:
    e = row["estimate"]
    estimated = e["input_tokens"]["estimate"] + e["output_tokens"]["estimate"]
    actual = e["input_tokens"]["actual"] + e["output_tokens"]["actual"]
    return float(estimated / actual - 1)


def concurrency(results: dict[str, Any]) -> list[str]:
    """Throughput against C/L."""
    rows = results["concurrency"]["cases"]
    lines = [
        "## 1. Concurrency efficiency",
        "",
        "One consumer at concurrency C, analyzer `SleepAnalyzer(L)`, a backlog of N jobs "
        "submitted beforehand through the producer. **Steady** is `(N − C) / (t_N − t_C)`, "
        "with `t_k` the time the k-th job was acknowledged: from the end of the first wave "
        "to the last completion, so ramp-up and tail are left out and both ends fall on a "
        "wave's last job. **Makespan** is the ideal `ceil(N/C)·L` over the time from "
        "consumer start to the last completion (ramp-up and tail included). The ratio "
        "column is steady / (C/L), or the makespan ratio where N = C. *Slot cycle* is C "
        "divided by the steady rate: how long a slot takes per job, against L; *handler* is "
        "the job's own time from its start write to its completion write.",
        "",
    ]
    for backend, title in (("local", "Embedded backend (SQLite)"), ("aws", "AWS path on moto")):
        mine = [r for r in rows if r["backend"] == backend]
        if not mine:
            continue
        moto = backend == "aws"
        lines += [
            f"### {title}",
            "",
            "| L | C | N | C/L jobs/s | steady jobs/s | ratio | makespan ratio | peak in flight "
            "| slot cycle ms | handler ms | service CPU ms/job |"
            + (" moto CPU ms/job |" if moto else ""),
            "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if moto else ""),
        ]
        for r in mine:
            lines.append(
                f"| {r['latency_s']:g} s | {r['concurrency']} | {r['jobs']} | "
                f"{r['limit_per_s']:.0f} | {_f(r['steady_per_s'], 1)} | **{_ratio(r):.2f}** | "
                f"{r['makespan_ratio']:.2f} | {r['peak_in_flight']} | {r['slot_cycle_ms']:.0f} | "
                f"{r['handler_ms']:.0f} | {r['service_cpu_ms_per_job']:.1f} |"
                + (f" {r['moto_cpu_ms_per_job']:.0f} |" if moto else "")
            )
        lines.append("")
    return lines


def aws_costs(results: dict[str, Any]) -> list[str]:
    """Requests per job on moto, idle polling, and the Lambda design on paper."""
    rows = [r for r in results["concurrency"]["cases"] if r["backend"] == "aws"]
    if not rows:
        return []
    lines = [
        "## 2. Cost per job in AWS requests",
        "",
        "Counted by the moto server itself (`bench/moto_counting.py` wraps its WSGI app and "
        "classifies every request by service, operation and queue or record kind), from the "
        "first submission to the last completion of each moto case above, divided by N. "
        "The novel's upload is not counted. *Job writes* are DynamoDB writes to the job's "
        "own record alone (create, start, progress, a completion made on its own); *pointer "
        "writes* are `UpdateItem`s on the novel; a transaction writing both is counted once, "
        "in its own column.",
        "",
        "| L | C | SQS send | receive | delete | visibility | **SQS total** | DynamoDB job "
        "writes | pointer writes | completion + pointer transactions | DynamoDB reads | S3 | "
        "**all AWS** |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        q = r["requests"]
        sqs = q["sqs_per_job"]
        writes = q["dynamodb_writes_per_job"]
        pointer = writes.get("NOVEL", 0.0)
        transactions = writes.get("JOB+NOVEL", 0.0)
        lines.append(
            f"| {r['latency_s']:g} s | {r['concurrency']} | {sqs['send']:.2f} | "
            f"{sqs['receive']:.2f} | {sqs['delete']:.2f} | {sqs['visibility']:.2f} | "
            f"**{q['sqs_job_requests_per_job']:.2f}** | {writes.get('JOB', 0.0):.2f} | "
            f"{pointer:.2f} | {transactions:.2f} | {q['dynamodb_reads_per_job']:.2f} | "
            f"{q['s3_requests_per_job']:.2f} | **{total_requests(q):.2f}** |"
        )
    lines += [
        "",
        "A job's own writes are its creation (`PutItem`) and its start (`UpdateItem`); its "
        "completion and the novel's pointer are one `TransactWriteItems` (the *transactions* "
        "column), which falls back to separate writes when it is cancelled (when jobs of the "
        "one novel used here finish together, an older one's pointer is refused and its job "
        "completes with one `UpdateItem`). The worker reads no novel record: a job carries "
        "its novel's title and text key. A transaction costs two write units per item on "
        "DynamoDB, so it saves requests, not write capacity.",
        "",
    ]
    idle = results.get("idle")
    if idle:
        others = ", ".join(f"{k} {v}" for k, v in idle["other_requests"].items()) or "none"
        lines += [
            "**Idle.** One `storyboard worker` with empty queues, "
            f"`STORYBOARD_RECEIVE_WAIT_S={idle['receive_wait_s']:g}`, "
            f"`STORYBOARD_DLQ_POLL_S={idle['dlq_poll_s']:g}`, counted for "
            f"{idle['idle_s']:.0f} s after start-up: **{idle['main_receives']} ReceiveMessage "
            f"on the job queue** ({idle['main_receives_per_hour']:.0f} per hour; one long poll "
            f"every {idle['receive_wait_s']:g} s is "
            f"{idle['main_receives_per_hour_expected']:.0f}/h) and {idle['dlq_receives']} on "
            f"the dead-letter queue, whose consumer polls once per "
            f"{idle['dlq_poll_s']:g} s + a {idle['receive_wait_s']:g} s wait: "
            f"{idle['dlq_receives_per_hour_expected']:.1f}/h. Other requests in the window: "
            f"{others}.",
            "",
        ]
    paper = results.get("lambda")
    if paper:
        sat = _saturation_row(rows)["requests"]
        lo, hi = paper["idle_receives_per_hour"]
        lines += [
            "**The seed's Lambda design, on paper** (`shared/seed/lambda-async-processing-"
            "note.zh.md`: API function → SQS → worker function with `BatchSize: 1`, "
            "`MemorySize: 2048`, `updateJob` at 10/30/50/90/100 %):",
            "",
            "| per job | seed Lambda design | this service (moto, L=1 s, C=64) |",
            "|---|---|---|",
            f"| SQS requests | {paper['sqs_requests_per_job']} (send; the event source "
            "mapping's receive; its delete after success) | "
            f"{sat['sqs_job_requests_per_job']:.2f} |",
            f"| DynamoDB writes besides the storyboard | "
            f"{paper['dynamodb_writes_besides_storyboard']} (create + five `updateJob`) | "
            f"{sat['dynamodb_job_writes_per_job']:.2f} |",
            f"| idle ReceiveMessage per hour | {lo:.0f}–{hi:.0f} (the mapping keeps 2–5 "
            "concurrent long polls open, per the AWS Lambda docs on SQS scaling) | "
            + (f"{idle['main_receives_per_hour']:.0f} per replica |" if idle else "– |"),
        ]
        if "service_gb_s_per_job" in paper:
            lines.append(
                f"| memory held while a {paper['model_wait_s']:.0f} s model call waits | "
                f"{paper['memory_gib']:g} GiB × {paper['model_wait_s']:.0f} s = "
                f"**{paper['gb_s_per_job']:.0f} GB-s** (billed) | "
                f"{paper['service_rss_mb']:.0f} MB / {paper['service_concurrency']} jobs × "
                f"{paper['model_wait_s']:.0f} s = **{paper['service_gb_s_per_job']:.3f} GB-s**, "
                f"{paper['ratio']:.0f}× less |"
            )
        lines.append("")
    return lines


def memory(results: dict[str, Any]) -> list[str]:
    """Peak RSS."""
    m = results.get("memory")
    if not m:
        return ["## 3. Memory", "", "Skipped: psutil is not installed.", ""]
    return [
        "## 3. Memory",
        "",
        f"One `storyboard serve` process, embedded backend, `STORYBOARD_WORKER_CONCURRENCY="
        f"{m['jobs']}`, sleep analyzer at {m['latency_s']:g} s; {m['jobs']} submissions over "
        f"HTTP; the process's own gauge reached **{m['in_flight_reached']} jobs in flight** "
        f"{m['seconds_to_all_running']:.1f} s after the first submission. psutil sampled its "
        f"RSS (children included) {m['samples']} times.",
        "",
        "| state | RSS |",
        "|---|---|",
        f"| idle after start-up | {m['idle_rss_mb']:.0f} MB |",
        f"| peak, {m['in_flight_reached']} jobs in flight | **{m['peak_rss_mb']:.0f} MB** |",
        "",
        "The AWS path's worker (aiobotocore with the SQS, DynamoDB and S3 models loaded) is "
        "measured in part 5.",
        "",
    ]


def http(results: dict[str, Any]) -> list[str]:
    """Submissions per second."""
    h = results.get("http")
    if not h:
        return []
    lines = [
        "## 4. HTTP submissions",
        "",
        f"An aiohttp client in the bench process, {h['service']['connections']} keep-alive "
        "connections sending `POST /v1/novels/{id}/analyze` back to back (bounded in count "
        "and time, after 100 warm-up requests), first at a `storyboard serve` process on the "
        "embedded backend (each request: authentication, a job record and a queue message; "
        "the worker holds 32 sleeping jobs), then at `bench/hello_server.py`, a bare aiohttp "
        "route answering a constant 202, as the ceiling of this framework on this machine. "
        "Client and server share the two cores.",
        "",
        "| target | requests | req/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|",
    ]
    for name, label in (("service", "storyboard serve"), ("hello", "bare aiohttp (ceiling)")):
        r = h[name]
        lines.append(
            f"| {label} | {r['requests']} | **{r['per_s']:.0f}** | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['errors']} |"
        )
    lines += ["", f"The service reaches {h['ratio']:.2f} of the ceiling.", ""]
    return lines


def celery(results: dict[str, Any]) -> list[str]:
    """The peer."""
    peer = results.get("celery")
    lines = ["## 5. Peer: Celery 5 on SQS", ""]
    if not peer:
        return [*lines, "Not run.", ""]
    lines += [
        "Both sides on the same moto server in the same run, with the same L, C and N, each on "
        "queues, a table and a bucket of its own. **Celery doing the seed's work** "
        "(`bench.seed_job` in `bench/celery_app.py`) is the seed's worker as a Celery user "
        "would write it: boto3, `updateJob` at 10/30/50/90/100 %, the novel's text read from "
        "S3, a sleep of L for the model, the storyboard written to S3 and the novel pointed "
        "at it; its job record is put and its task sent as the seed's API function does. It "
        "runs with `--pool threads`, `acks_late`, prefetch multiplier 1 and kombu's "
        "`polling_interval` 0. **Celery sleeping** only sleeps L: not the same work, kept as "
        "the floor of Celery's own cost. storyboard: `storyboard worker`, "
        "`STORYBOARD_ANALYZER=sleep`. Throughput over the makespan includes each worker's "
        "start-up; *steady* is `(N − C)/(t_N − t_C)`. RSS is the peak of the worker process "
        "plus all its children; *worker CPU* is its process tree's CPU from its first "
        "completion to its last, per job. Requests are counted by the moto server.",
        "",
    ]
    for config in peer.get("configs", []):
        lines += [
            f"**L = {config['latency_s']:g} s, C = {config['concurrency']}, "
            f"N = {config['jobs']}** (C/L = {config['concurrency'] / config['latency_s']:.1f} "
            "jobs/s)",
            "",
            "| worker | jobs/s (makespan) | steady jobs/s | peak RSS MiB | worker CPU ms/job | "
            "AWS req/job | SQS req/job | SQS by op per job | moto CPU ms/job |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in config["rows"]:
            q = r["requests"]
            ops = ", ".join(f"{k} {v:.2f}" for k, v in q["sqs_per_job"].items() if v)
            lines.append(
                f"| {r['system']} | {r['per_s']:.1f} | {_f(r['steady_per_s'], 1)} | "
                f"**{r['peak_rss_mb']:.0f}** | {_f(r.get('worker_cpu_ms_per_job'), 1)} | "
                f"{total_requests(q):.2f} | {q['sqs_job_requests_per_job']:.2f} | {ops} | "
                f"{r['moto_cpu_ms_per_job']:.0f} |"
            )
        if config.get("celery"):
            lines.append(f"\nCelery: {config['celery']}.")
        lines.append("")
    return lines


def scale_out(results: dict[str, Any]) -> list[str]:
    """Processes."""
    s = results.get("scale_out")
    if not s:
        return []
    conc = s["concurrency"]
    lines = [
        "## 6. Scale-out",
        "",
        f"k `storyboard worker` processes started together on one backlog, each at L = "
        f"{s['latency_s']:g} s with C = {conc['local']} (embedded, one data directory) or "
        f"C = {conc['aws']} (moto, one queue/table/bucket). Throughput is the change in "
        "the workers' summed `acked` counters over a steady window after every slot has "
        "cycled once; *cores* is CPU seconds per second over the same window.",
        "",
        "| backend | workers | jobs/s | × one worker | worker cores | moto cores |",
        "|---|---|---|---|---|---|",
    ]
    base: dict[str, float] = {}
    for r in s["rows"]:
        base.setdefault(r["backend"], r["per_s"])
        scale = r["per_s"] / base[r["backend"]] if base[r["backend"]] else 0.0
        dry = " (backlog ran dry)" if r["backlog_left"] <= 0 else ""
        lines.append(
            f"| {'embedded' if r['backend'] == 'local' else 'moto'} | {r['processes']} | "
            f"**{r['per_s']:.1f}**{dry} | {scale:.2f} | {r['worker_cores']:.2f} | "
            f"{_f(r['moto_cores'])} |"
        )
    return [*lines, ""]


def _poll_cycle_s(row: dict[str, Any]) -> float | None:
    """Seconds from one watch-hub poll to the next, from the hub's own poll counter."""
    polls = float(row["hub_polls_per_s"])
    return 1 / polls if polls else None


def _sse_limits(rows: list[dict[str, Any]], poll_s: float) -> list[str]:
    """What bounds the figures, with this run's numbers."""
    few, many = rows[0], rows[-1]
    cycle_few, cycle_many = _poll_cycle_s(few) or 0.0, _poll_cycle_s(many) or 0.0
    per_read_ms = 1000 * (cycle_many - poll_s) / max(many["expected_reads_per_s"], 1)
    step_s = few["latency_s"] / few["steps"]
    return [
        "**What limits these figures.**",
        "",
        f"* *The replica:* little. {few['open_rss_mb'] - few['idle_rss_mb']:.0f} MB for "
        f"{few['streams']} streams, {few['cores']['replica']:.2f} of a core to send "
        f"{few['events_per_s']:.0f} events/s.",
        "* *The delay is the polling.* A write waits for the next poll (half a cycle on "
        "average, a whole one at worst), then for that poll's reads; the clock starts when "
        "the worker stamps the write, so its UpdateItem round trip counts too. With "
        f"{few['jobs']} jobs watched the cycle is {cycle_few:.2f} s ({poll_s:g} s + one read).",
        f"* *Reads in a row.* `get_many` reads its ⌈jobs/100⌉ batches one after another: "
        f"with {many['jobs']} jobs a poll is {many['expected_reads_per_s']} round trips, "
        f"~{per_read_ms:.0f} ms each here, a {cycle_many:.1f} s cycle, "
        f"{many['batch_get_per_s']:.1f} reads/s instead of {many['expected_reads_per_s']} and a "
        f"p50 of {many['delay_p50_ms'] / 1000:.1f} s. Reading the batches concurrently would "
        "make a poll one round trip long (proposed, not done: the hub is not the bench's).",
        "* *The tail is moto's queue.* The bench's moto answers DynamoDB one request at a "
        "time (`harness.aws.SerialDynamoDB`, for atomic conditional writes), ~10 ms of CPU "
        f"per UpdateItem. The {few['concurrency']} jobs started within {few['ramp_s']:.1f} s "
        f"of each other, so their writes come in bursts every {step_s:.1f} s; the writes "
        "and the hub's reads queue behind each other there. DynamoDB has no such queue.",
        "* *Events below writes × streams* where two writes fall in one cycle: a stream "
        "sends only the newest state, and its delay counts from the newest write.",
        "* *Who reads.* The replica's reads in the window are the hub's BatchGetItems (a "
        "stream reads its job once, when it opens); any GetItems are the worker's.",
        "",
        "The bench's moto server answers BatchGetItem with `json.dumps` rather than moto's "
        "generic response serializer (`patch_moto_batch_get_serializer` in "
        "`bench/moto_counting.py`; the body is the same): that serializer spends ~2 ms of CPU "
        "per item returned, ~220 ms per 100-key read, and would otherwise set every figure "
        "here.",
        "",
    ]


def _sse_resources(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| streams (jobs × streams each) | replica RSS idle | with the streams open | peak "
        "| replica CPU cores | worker / moto / clients cores |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        c = r["cores"]
        lines.append(
            f"| {r['streams']} ({r['jobs']} × {r['per_job']}) | {r['idle_rss_mb']:.0f} MB | "
            f"{r['open_rss_mb']:.0f} MB | **{r['peak_rss_mb']:.0f} MB** | "
            f"**{c['replica']:.2f}** | {c['worker']:.2f} / {c['moto']:.2f} / "
            f"{c['clients']:.2f} |"
        )
    return [*lines, ""]


def _sse_reads_and_delays(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| streams (jobs × streams each) | job writes/s | events/s at the clients | "
        "DynamoDB reads/s (BatchGetItem + GetItem) | expected ⌈jobs/100⌉/s | "
        "watch-hub poll cycle | delay p50 | p90 | p99 | max |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cycle = _poll_cycle_s(r)
        lines.append(
            f"| {r['streams']} ({r['jobs']} × {r['per_job']}) | {r['writes_per_s']:.0f} | "
            f"{r['events_per_s']:.0f} | **{r['reads_per_s']:.1f}** "
            f"({r['batch_get_per_s']:.1f} + {r['get_item_per_s']:.1f}) | "
            f"{r['expected_reads_per_s']} | {_f(cycle, 2)} s | **{r['delay_p50_ms']:.0f} ms** | "
            f"{r['delay_p90_ms']:.0f} ms | **{r['delay_p99_ms']:.0f} ms** | "
            f"{r['delay_max_ms']:.0f} ms |"
        )
    lines += [
        "",
        "The BatchGetItems are the watch hub's; the GetItems are the running jobs' own cancel "
        "checks, one per running job every `STORYBOARD_CANCEL_CHECK_S` (3 s), whoever watches.",
    ]
    return [*lines, ""]


def sse_fanout(results: dict[str, Any]) -> list[str]:
    """Open event streams on one replica."""
    s = results.get("sse")
    if not s:
        return []
    rows = s["rows"]
    first = rows[0]
    loads = ", ".join(f"{r['load_average']:.1f}" for r in rows)
    return [
        "## 7. Event-stream fan-out",
        "",
        f"Measured on its own (`python -m bench.sse_fanout`, {s['elapsed_s'] / 60:.1f} minutes) "
        f"on {s['date']}, on the same machine as the parts above. "
        "1,000 open `GET /v1/jobs/{id}/events` streams on one replica, `storyboard api` (the "
        "API half of `storyboard serve`) on the AWS path, counting moto in its own process. "
        f"The jobs run in a separate `storyboard worker` at concurrency "
        f"{first['concurrency']}, sleep analyzer L = {first['latency_s']:g} s in "
        f"{first['steps']} progress steps (`STORYBOARD_SLEEP_ANALYZER_STEPS`), so the "
        "replica's CPU is the streams' alone; where there are more jobs than that, the rest "
        "stay queued and are watched all the same. The clients (aiohttp, reading lines) are "
        "one asyncio process of their own. Once every stream has had its first event and "
        f"every slot of the worker is busy, a {first['window_s']:g} s window: CPU is user + "
        "system seconds per second (psutil); reads are counted by moto; an event's *delay* is "
        "its receive time at the client minus the job view's `updatedAt`, the time of the "
        "write (same clock), for every event but each stream's first. The watch hub polls "
        f"every {s['poll_s']:g} s after the previous poll ends, so the *poll cycle* (from its "
        "own `storyboard_watch_polls` counter) is that plus the poll's duration.",
        "",
        *_sse_resources(rows),
        *_sse_reads_and_delays(rows),
        f"Load average (1 min) at the end of each window: {loads}. The machine is shared "
        "with other work, and every moto round trip stretches with its load.",
        "",
        *_sse_limits(rows, float(s["poll_s"])),
    ]


def fairness(results: dict[str, Any]) -> list[str]:
    """Quiet users' waits behind one user's backlog, first-in-first-out against fair."""
    f = results.get("fairness")
    if not f:
        return []
    case = f["case"]
    lines = [
        "## 8. Fair sharing between users",
        "",
        f"Measured on its own (`python -m bench.fairness`, {f['elapsed_s'] / 60:.1f} minutes) on "
        f"{f['date']}. One `storyboard serve` on the embedded backend at concurrency "
        f"{case['concurrency']}, sleep analyzer L = {case['latency_s']:g} s. User A submits "
        f"{case['busy_jobs']} jobs over HTTP; {case['quiet_delay_s']:g} s after A's first, "
        f"users B, C and D submit {case['quiet_jobs']} each. A job's wait is its `startedAt` "
        "minus its `createdAt`; A's makespan runs from A's first submission to A's last "
        "completion. Each order runs in a fresh data directory (`STORYBOARD_QUEUE_ORDER`).",
        "",
        "| order | quiet users' wait p50 / p95 / max | A's wait p50 / p95 / max | A's makespan |",
        "|---|---|---|---|",
    ]
    for row in f["rows"]:
        q, b = row["quiet"], row["busy"]
        lines.append(
            f"| {row['order']} | {q['p50_s']:.2f} / {q['p95_s']:.2f} / {q['max_s']:.2f} s | "
            f"{b['p50_s']:.1f} / {b['p95_s']:.1f} / {b['max_s']:.1f} s | "
            f"{row['busy_makespan_s']:.1f} s |"
        )
    fair = next(r for r in f["rows"] if r["order"] == "fair")
    met = fair["quiet"]["p95_s"] <= fair["goal_s"]
    lines += [
        "",
        f"Goal: the quiet users' p95 wait under the fair order at most 2 × L = "
        f"{fair['goal_s']:g} s, against about N × L / C = {fair['fifo_estimate_s']:.1f} s "
        f"first in, first out: {_met(met)}. A's makespan barely moves between the orders: "
        "fairness changes who waits, not how much work there is. Its floor is N × L / C = "
        f"{fair['fifo_estimate_s']:.1f} s; the rest is the submissions themselves and a "
        "machine shared with other work.",
        "",
    ]
    return lines


def tracing(results: dict[str, Any]) -> list[str]:
    """CPU per job and jobs per second with OpenTelemetry off and on."""
    t = results.get("tracing")
    if not t:
        return []
    rows = {row["mode"]: row for row in t["rows"]}
    off, on = rows["off"], rows["on"]
    lines = [
        "## 9. The cost of tracing",
        "",
        f"Measured on its own (`python -m bench.tracing_cost`, {t['elapsed_s'] / 60:.1f} "
        f"minutes) on {t['date']}. The embedded backend's job path in one process: "
        f"{t['jobs']} jobs submitted through the producer, then drained by one consumer at "
        f"concurrency {t['concurrency']} with a no-op analyzer, median of {t['repeats']} runs "
        "of each mode, the modes alternating. Off is the default (no `OTEL_*` variable: no "
        "SDK, no exporter, no span objects). On is what the runtime builds when `OTEL_*` is "
        "set: the SDK's batch span processor and its OTLP/HTTP exporter, sending to a "
        "loopback receiver in another process that decodes every export. CPU is the "
        "process's own, the exporter's thread and the final flush included.",
        "",
        "| tracing | submit jobs/s | submit CPU ms/job | drain jobs/s | drain CPU ms/job |",
        "|---|---|---|---|---|",
    ]
    for row in (off, on):
        lines.append(
            f"| {row['mode']} | {row['submit_per_s']:.0f} | {row['submit_cpu_ms_per_job']:.2f} | "
            f"{row['drain_per_s']:.0f} | {row['drain_cpu_ms_per_job']:.2f} |"
        )
    cpu_off = off["submit_cpu_ms_per_job"] + off["drain_cpu_ms_per_job"]
    cpu_on = on["submit_cpu_ms_per_job"] + on["drain_cpu_ms_per_job"]
    per_span = (cpu_on - cpu_off) / t["spans_per_job"] if t["spans_per_job"] else None
    slower_submit = (1 - on["submit_per_s"] / off["submit_per_s"]) * 100
    slower_drain = (1 - on["drain_per_s"] / off["drain_per_s"]) * 100
    lines += [
        "",
        f"On, the receiver got {t['spans_exported']} spans, {t['spans_per_job']:.2f} a job "
        f"(`send` and `process`; fewer than 2 would mean the batch processor dropped some), "
        f"about {t['otlp_bytes_per_span']:.0f} bytes each on the wire. A job costs "
        f"{cpu_on - cpu_off:.2f} ms more CPU in all ({cpu_off:.2f} → {cpu_on:.2f} ms, "
        f"{(cpu_on / cpu_off - 1) * 100:+.0f} %), about {_f(per_span)} ms a span made and "
        f"exported, and the rates fall by {slower_submit:.0f} % (submit) and "
        f"{slower_drain:.0f} % (drain): "
        "the exporter's thread encodes and sends while the event loop waits for the "
        "interpreter lock. That is the worst case, jobs that do nothing. A real job's model "
        "calls take seconds, and each model request, AWS call (on the AWS backend) and HTTP "
        "request adds one span of about that cost; a sampler "
        "(`OTEL_TRACES_SAMPLER=parentbased_traceidratio`) cuts it for the jobs not sampled.",
        "",
    ]
    return lines


def hostile(results: dict[str, Any]) -> list[str]:
    """The offline analyzer on crafted texts, per million characters."""
    h = results.get("hostile")
    if not h:
        return []
    small, large = (f"{n / 1_000_000:g} M" for n in h["sizes"])
    lines = [
        "## 11. Crafted texts against the offline analyzer",
        "",
        f"Measured on its own (`python -m bench.hostile_speed`, {h['elapsed_s'] / 60:.1f} "
        "minutes). Each text of `harness/hostile_texts.py` repeats what the heuristics look "
        "for (speech tags, open quotation marks, chapter headings, names) or gives them "
        f"nothing to split on, and is analyzed at {small} and {large} characters in one "
        "process, in CPU seconds. *Growth* is the cost per character at the larger size "
        "over the smaller: 1 for linear work, 4 for quadratic. The test suite checks the same "
        "texts, and generated ones, for linear growth by counting work rather than timing "
        "it (`tests/test_hostile_texts.py`).",
        "",
        f"| text | s per million chars at {large} | growth |",
        "|---|---|---|",
    ]
    ref = h.get("reference")
    if ref:
        lines.append(f"| {ref['name']} (for comparison) | {ref['s_per_mchar']:.2f} | – |")
    for row in sorted(h["rows"], key=lambda r: -r["s_per_mchar"]):
        lines.append(f"| {row['name']} | {row['s_per_mchar']:.2f} | {row['growth']:.2f} |")
    if h.get("worst_at_limit_s") is not None:
        lines += [
            "",
            f"The worst, {h['worst']}, at the upload limit of {h['limit_chars']:,} characters "
            f"took {h['worst_at_limit_s']:.1f} s of CPU, against the offline job deadline of "
            f"{h.get('deadline_s', 600):g} s (`STORYBOARD_JOB_TIMEOUT_S`): a job past it is "
            "stopped and fails with `job_timeout`.",
        ]
    stop = h.get("stop")
    if stop:
        lines += [
            "",
            f"Cancelled a quarter of the way into that analysis, in the service's process pool "
            f"(as a cancel, a deadline or the shutdown does), the call returned in "
            f"{stop['returned_s'] * 1000:.0f} ms and its process was reaped in "
            f"{stop['gone_s'] * 1000:.0f} ms. A cancel through the API is noticed by the "
            "attempt's watch within `STORYBOARD_CANCEL_CHECK_S` (3 s) first.",
        ]
    return [*lines, ""]


def model_pipeline(results: dict[str, Any]) -> list[str]:
    """The model analyzer on a fake qwen-plus: wall time against its bound, tokens, estimate."""
    p = results.get("pipeline")
    if not p or not p.get("novels"):
        return []
    fake, settings = p["fake"], p["settings"]
    lines = [
        "## 10. The model pipeline against its own limit",
        "",
        "`python -m bench.model_pipeline`: the real model analyzer (client, limiter, "
        "checkpoints in a local blob store) with the default settings, on each corpus novel, "
        "against `python -m harness.fake_llm` in its own process. The fake models qwen-plus "
        f"on Model Studio's Beijing endpoint: first token after {fake['ttft_s']:g} s, then "
        f"{fake['tokens_per_s']:g} output tokens/s; DashScope's 429 "
        "(`Throttling.RateQuota`, `Throttling.AllocationQuota`) past "
        f"{fake['provider_rpm']:,} requests or {fake['provider_tpm']:,} tokens in a sliding "
        "minute (the rate-limit page's qwen-plus row). It writes about one panel per 750 "
        "characters, as the prompt asks, and counts tokens roughly as a Qwen tokenizer "
        f"does. Our side ran at {settings['llm_job_concurrency']} requests per job, "
        f"{settings['llm_process_concurrency']} per process, "
        f"{settings['llm_requests_per_minute']:,} requests and "
        f"{settings['llm_tokens_per_minute']:,} tokens a minute.",
        "",
        f"Time is scaled by {fake['time_scale']:g}: the fake's pace and budget window and our "
        "limiter's clock, backoff and timeout all run that many times faster, and every "
        "figure is given back in real seconds. Our own CPU time does not scale, so it weighs "
        f"{fake['time_scale']:g} times more here than it would: the ratios are, if anything, "
        "pessimistic. The lower bound is the largest of the critical path (the slowest pass "
        "A reply plus the slowest pass B reply, since pass B starts once pass A is done), "
        "total tokens ÷ TPM and requests ÷ RPM, with the lower of our limit and the "
        "provider's.",
        "",
        "| novel | chunks | requests | retries (429s) | input tokens | output tokens | wall s | "
        "critical path s | tokens ÷ TPM s | requests ÷ RPM s | wall ÷ bound | "
        f"≤ {PIPELINE_RATIO} |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in p["novels"]:
        refused = sum(r["throttled"].values())
        lines.append(
            f"| {r['name']} | {r['chunks']} | {r['requests']} | {r['retries']} ({refused}) | "
            f"{r['input_tokens']:,} | {r['output_tokens']:,} | {r['wall_s']:.0f} | "
            f"{r['critical_path_s']:.0f} | {r['tokens_s']:.0f} | {r['requests_s']:.1f} | "
            f"{r['ratio']:.2f} | {_met(r['ratio'] <= PIPELINE_RATIO and not storm(r))} |"
        )
    lines += [
        "",
        "Each request is latency-bound: a pass B reply streams for a minute or more while the "
        "token budget has room for every chunk at once. At the earlier default of 4 requests "
        "per job (16 per process) this part measured 7.3 × the bound on 三国演义 and 2.1 × on "
        "Alice, before the change; the defaults are now 32 and 64, and the timeout 300 s, above"
        " a full 8,192-token reply at 50 tokens/s. The limiter's bucket still holds a whole "
        "minute's allowance, so a process starting cold may send that much at once; a provider "
        "enforcing the per-second limits DashScope reserves the right to (RPM ÷ 60, TPM ÷ 60) "
        "would answer some of it with 429s, which the client waits out. The fake enforces the "
        "per-minute limits only.",
        "",
        *_token_use(p["novels"]),
        *_estimate_table(p["novels"]),
    ]
    return lines


def _token_use(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "**Token use.** Both passes read the whole text, so a novel costs about twice its own "
        "tokens in input:",
        "",
        "| novel | the novel's tokens | input tokens | × the novel | pass A input | "
        "pass A output | pass A's slowest reply s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a = r["passes"]["a"]
        lines.append(
            f"| {r['name']} | {r['novel_tokens']:,} | {r['input_tokens']:,} | "
            f"{r['input_per_novel_token']:.2f} | {a['input_tokens']:,} | "
            f"{a['output_tokens']:,} | {a['slowest_s']:.0f} |"
        )
    first = rows[0]
    a = first["passes"]["a"]
    share = a["input_tokens"] / first["input_tokens"]
    lines += [
        "",
        f"A cheaper first pass would save up to pass A's share: {share:.0%} of the input "
        f"tokens on {first['name']} ({a['input_tokens']:,}), its output, and its slowest "
        f"reply ({a['slowest_s']:.0f} s) off the critical path. Seeding the cast from the "
        "offline analyzer would do that. It is not offered as a setting: pass B's prompts "
        "would change, since the character list would carry the offline analyzer's names "
        "and no appearance notes, and the story so far comes from pass A's summary of the "
        "previous chunk, which the offline analyzer does not write.",
        "",
    ]
    return lines


def _estimate_table(rows: list[dict[str, Any]]) -> list[str]:
    currency = rows[0]["estimate"]["currency"]
    lines = [
        "**The estimate against the run.** `storyboard analyze FILE --estimate` (and `POST "
        "/v1/novels/{novelId}/estimate`) on the same text, against what the run spent "
        f"(price in {currency} at the shipped qwen-plus prices):",
        "",
        "| novel | requests | input tokens | output tokens | price | "
        f"within ±{ESTIMATE_TOLERANCE:.0%} |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        e = r["estimate"]
        cells = [
            f"{e[k]['estimate']:,} / {e[k]['actual']:,} ({e[k]['error']:+.0%})"
            for k in ("requests", "input_tokens", "output_tokens")
        ]
        price = e["price"]
        ok = (
            abs(price["error"]) <= ESTIMATE_TOLERANCE
            and abs(_tokens_error(r)) <= ESTIMATE_TOLERANCE
        )
        lines.append(
            f"| {r['name']} | {' | '.join(cells)} | {price['estimate']:.3f} / "
            f"{price['actual']:.3f} ({price['error']:+.0%}) | {_met(ok)} |"
        )
    lines += [
        "",
        "Estimate / actual. The goal is judged on the price and on all tokens together. "
        "Input is planned from the real prompts; output from the panels the prompt asks for "
        "at 160 tokens each and 600 tokens a cast reply, so it is the model's verbosity that "
        "decides how close it comes, and the fake's replies stand in for the model's here. "
        "Repairs and retries are not estimated.",
        "",
    ]
    return lines


def legacy(results: dict[str, Any]) -> list[str]:
    """The earlier sections: embedded drain rate and the offline analyzer."""
    t, o = results["throughput"], results["offline"]
    lines = [
        "## Embedded backend throughput (no-op analyzer)",
        "",
        f"{t['jobs']} jobs with a no-op analyzer, one process at concurrency "
        f"{t['concurrency']}, median of {len(t['runs'])} runs. Each job is "
        "a send, a share of a batched receive, a start, progress and completion write, "
        "a storyboard write and a share of a batched delete.",
        "",
        "| phase | jobs/s |",
        "|---|---|",
        f"| submit (job record + send) | {t['median_submit_per_s']:.0f} |",
        f"| drain (receive → complete → delete) | {t['median_drain_per_s']:.0f} |",
        "",
        "## Offline analyzer",
        "",
        "Each corpus novel analyzed in one process: the *first run* pays for what the "
        "analyzer loads once per process (jieba's dictionary), as a one-shot `storyboard "
        "analyze` does; the *median* is of the runs after it. The goal is under "
        f"{GOAL_S:g} s for {GOAL_NOVEL} on these two cores, judged on the slower of the two.",
        "",
        "| novel | characters | chapters | scenes | panels | first run s | median s | "
        f"< {GOAL_S:g} s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in o["novels"]:
        first = f"{row['first_s']:.2f}" if "first_s" in row else "–"
        lines.append(
            f"| {row['name']} | {row['chars']} | {row['chapters']} | {row['scenes']} | "
            f"{row['panels']} | {first} | {row['median_s']:.2f} | "
            f"{_met(judged_s(row) < GOAL_S)} |"
        )
    return [*lines, ""]


def render(env: dict[str, Any], elapsed_s: float, results: dict[str, Any], findings: str) -> str:
    """The whole page; ``findings`` is the hand-written analysis appended after the data."""
    lines = header(env, elapsed_s, results) + goals(results)
    sections = (
        concurrency,
        aws_costs,
        memory,
        http,
        celery,
        scale_out,
        sse_fanout,
        fairness,
        tracing,
        model_pipeline,
        hostile,
        legacy,
    )
    for section in sections:
        lines += section(results)
    return "\n".join(lines) + "\n" + findings
