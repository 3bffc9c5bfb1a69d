"""The model analyzer against its own limit, on a fake model paced like qwen-plus.

The real :class:`~service.analysis.llm.LlmAnalyzer` (client, limiter, checkpoints in a
local blob store) runs with the default settings on 三国演义 and Alice against
``python -m harness.fake_llm``, which answers after a time to first token plus its output
tokens at a steady speed, and refuses with DashScope's 429s past a requests or tokens per
minute budget. Each novel's wall time is set against its lower bound::

    bound = max(critical path, total tokens / TPM, requests / RPM)

where the critical path is the slowest pass A reply plus the slowest pass B reply (pass B
starts once pass A is complete), and TPM and RPM are the lower of our limiter's settings
and the provider's limits. The goal is wall <= 1.25 x bound with no 429 storm.

**Time is scaled** by ``TIME_SCALE``: the fake's time to first token is divided by it, its
tokens per second and the budget window (``minute_s``) too, and the analyzer's limiter and
backoff run on a clock that many times faster (``LlmLimiter(clock=..., sleep=...)``), with
its request timeout divided alike. Every rate and duration is then the real one, seen
faster; the figures below are converted back to real seconds. What does not scale (our own
CPU time: planning, prompts, JSON, HTTP) weighs ``TIME_SCALE`` times more than it would, so
the ratio measured is, if anything, pessimistic.

The run also sets the cost estimate (:mod:`service.analysis.llm_estimate`) against what
the run really spent (goal: within ±15%), and the input tokens against the novel's own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.common import save
from bench.offline_speed import CORPUS, NOVELS
from harness.fake_llm import qwen_like_tokens
from harness.processes import ROOT, free_port, stop_process, wait_until_healthy
from service.analysis.llm import AnalyzerOptions, LlmAnalyzer
from service.analysis.llm_client import ClientConfig, LlmClient
from service.analysis.llm_estimate import estimate_cost
from service.analysis.llm_limits import LlmLimiter
from service.backends.local_blobs import LocalBlobStore
from service.logs import configure_logging
from service.ports import NovelText
from service.settings import Settings, load_settings
from service.text import load_novel_bytes

# qwen-plus on Model Studio (Beijing), as the fake models it. Limits: the rate-limit page's
# qwen-plus row, 15,000 requests and 1,200,000 tokens a minute. Pace: a prompt of 15-20k
# tokens answers its first token in about a second and then streams some 50 tokens/s,
# as qwen-plus does in public measurements of its speed.
TTFT_S = 1.0
TOKENS_PER_S = 50.0
PROVIDER_RPM = 15_000
PROVIDER_TPM = 1_200_000
TIME_SCALE = 5.0
QUICK_SCALE = 20.0
GOAL_RATIO = 1.25
ESTIMATE_TOLERANCE = 0.15
QUICK_CHARS = 20_000
# More refusals than this share of the requests is a storm.
STORM_SHARE = 0.1


@contextmanager
def fake_model(log_path: Path, scale: float) -> Iterator[str]:
    """``harness.fake_llm`` on a free port, paced and limited like qwen-plus, time scaled."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "harness.fake_llm",
        "--port",
        str(port),
        "--ttft-s",
        str(TTFT_S / scale),
        "--tokens-per-s",
        str(TOKENS_PER_S * scale),
        "--rpm",
        str(PROVIDER_RPM),
        "--tpm",
        str(PROVIDER_TPM),
        "--minute-s",
        str(60.0 / scale),
        "--follow-panel-density",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process)
        yield url
    finally:
        stop_process(process)


def _stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/stats", timeout=30) as response:
        result: dict[str, Any] = json.load(response)
    return result


def analyzer_for(settings: Settings, base_url: str, blobs: Path, scale: float) -> LlmAnalyzer:
    """The analyzer ``LlmAnalyzer.from_settings`` builds, on a clock ``scale`` times faster."""

    def clock() -> float:
        return time.monotonic() * scale

    async def sleep(seconds: float) -> None:
        await asyncio.sleep(seconds / scale)

    config = ClientConfig.from_settings(settings)
    config = replace(config, base_url=base_url + "/v1", timeout_s=config.timeout_s / scale)
    limiter = LlmLimiter(
        concurrency=settings.llm_process_concurrency,
        requests_per_minute=settings.llm_requests_per_minute,
        tokens_per_minute=settings.llm_tokens_per_minute,
        clock=clock,
        sleep=sleep,
    )
    client = LlmClient(config, limiter, sleep=sleep)
    return LlmAnalyzer(client, LocalBlobStore(blobs), AnalyzerOptions.from_settings(settings))


async def _ignore(fraction: float, stage: str) -> None:
    return None


async def _analyze(analyzer: LlmAnalyzer, title: str, text: str) -> tuple[dict[str, int], float]:
    started = time.perf_counter()
    try:
        board = await analyzer.analyze(NovelText("bench", title, text, "bench-job"), _ignore)
    finally:
        await analyzer.aclose()
    return dict(board.meta.usage), time.perf_counter() - started


def bound(
    served: list[dict[str, Any]], tokens: int, requests: int, settings: Settings
) -> dict[str, float]:
    """The lower bound's three terms in real seconds (``served`` in real seconds too)."""
    slowest = {
        kind: max((s["seconds"] for s in served if s["kind"] == kind), default=0.0)
        for kind in ("cast", "storyboard")
    }
    tpm = min(v for v in (settings.llm_tokens_per_minute, PROVIDER_TPM) if v)
    rpm = min(v for v in (settings.llm_requests_per_minute, PROVIDER_RPM) if v)
    return {
        "critical_path_s": slowest["cast"] + slowest["storyboard"],
        "tokens_s": tokens / tpm * 60,
        "requests_s": requests / rpm * 60,
    }


def measure(name: str, text: str, settings: Settings, scale: float) -> dict[str, Any]:
    """One novel through the analyzer on a fresh fake; every figure in real seconds."""
    with (
        tempfile.TemporaryDirectory() as scratch,
        fake_model(Path(scratch) / "fake.log", scale) as url,
    ):
        analyzer = analyzer_for(settings, url, Path(scratch) / "blobs", scale)
        usage, wall = asyncio.run(_analyze(analyzer, name, text))
        stats = _stats(url)
    served = [{**s, "seconds": s["seconds"] * scale} for s in stats["served"]]
    answered = len(served)
    tokens = usage["inputTokens"] + usage["outputTokens"]
    terms = bound(served, tokens, answered, settings)
    lower = max(terms.values())
    estimate = estimate_cost(text, name, settings)
    novel_tokens = qwen_like_tokens(text)
    return {
        "name": name,
        "chars": len(text),
        "chunks": estimate.chunks,
        "requests": usage["requests"],
        "received": stats["requests"],
        "retries": stats["requests"] - answered,
        "throttled": stats["throttled"],
        "repairs": answered - estimate.requests,
        "input_tokens": usage["inputTokens"],
        "output_tokens": usage["outputTokens"],
        "novel_tokens": novel_tokens,
        "input_per_novel_token": usage["inputTokens"] / novel_tokens,
        "passes": _passes(served),
        "peak_in_flight": stats["peak_in_flight"],
        "wall_s": wall * scale,
        **terms,
        "bound_s": lower,
        "ratio": wall * scale / lower,
        "estimate": _compared(
            estimate.requests, estimate.input_tokens, estimate.output_tokens, usage, settings
        ),
    }


def _passes(served: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Tokens and the slowest reply of each pass, as the fake served them."""
    passes = {}
    for name, kind in (("a", "cast"), ("b", "storyboard")):
        mine = [s for s in served if s["kind"] == kind]
        passes[name] = {
            "input_tokens": sum(s["input_tokens"] for s in mine),
            "output_tokens": sum(s["output_tokens"] for s in mine),
            "slowest_s": max((s["seconds"] for s in mine), default=0.0),
        }
    return passes


def _compared(
    requests: int, input_tokens: int, output_tokens: int, usage: dict[str, int], settings: Settings
) -> dict[str, Any]:
    """Estimate against actual, each as estimate / actual - 1."""

    def price(inp: int, out: int) -> float:
        return (
            inp * settings.llm_input_price_per_million + out * settings.llm_output_price_per_million
        ) / 1e6

    actual_price = price(usage["inputTokens"], usage["outputTokens"])
    estimated_price = price(input_tokens, output_tokens)
    pairs = {
        "requests": (requests, usage["requests"]),
        "input_tokens": (input_tokens, usage["inputTokens"]),
        "output_tokens": (output_tokens, usage["outputTokens"]),
        "price": (estimated_price, actual_price),
    }
    return {
        "currency": settings.llm_price_currency,
        **{key: {"estimate": e, "actual": a, "error": e / a - 1} for key, (e, a) in pairs.items()},
    }


def _settings() -> Settings:
    # The defaults, with a base URL so that no API key is needed; the URL is replaced.
    return load_settings(llm_base_url="http://127.0.0.1:9/v1", analyzer="llm")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry: prints and saves the result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help=f"only {QUICK_CHARS:,} characters")
    parser.add_argument(
        "--scale", type=float, help=f"time scale (default {TIME_SCALE:g}, {QUICK_SCALE:g} quick)"
    )
    args = parser.parse_args(argv)
    scale = args.scale or (QUICK_SCALE if args.quick else TIME_SCALE)
    settings = _settings()
    # The analyzer runs in this process: only its warnings, not a line per request.
    configure_logging("warning", "json")
    rows = []
    for name, file in NOVELS.items():
        path = CORPUS / file
        if not path.exists():
            print(f"model pipeline, {name}: skipped, {file} is not in the shared corpus")
            continue
        text = load_novel_bytes(path.read_bytes())
        rows.append(measure(name, text[:QUICK_CHARS] if args.quick else text, settings, scale))
        _print(rows[-1])
    result = {
        "settings": _pipeline_settings(settings),
        "fake": {
            "ttft_s": TTFT_S,
            "tokens_per_s": TOKENS_PER_S,
            "provider_rpm": PROVIDER_RPM,
            "provider_tpm": PROVIDER_TPM,
            "time_scale": scale,
        },
        "novels": rows,
    }
    if not args.quick:
        save("model_pipeline", result)
    return result


def _pipeline_settings(settings: Settings) -> dict[str, Any]:
    names = (
        "llm_model",
        "llm_job_concurrency",
        "llm_process_concurrency",
        "llm_requests_per_minute",
        "llm_tokens_per_minute",
        "llm_max_output_tokens",
        "llm_timeout_s",
        "llm_input_price_per_million",
        "llm_output_price_per_million",
        "llm_price_currency",
    )
    return {name: getattr(settings, name) for name in names}


def _print(row: dict[str, Any]) -> None:
    print(
        f"model pipeline, {row['name']}: {row['requests']} requests ({row['retries']} retries), "
        f"{row['input_tokens']:,} in / {row['output_tokens']:,} out tokens, "
        f"wall {row['wall_s']:.0f} s vs bound {row['bound_s']:.0f} s "
        f"(x{row['ratio']:.2f}), estimate price {row['estimate']['price']['error']:+.0%}"
    )


def storm(row: dict[str, Any]) -> bool:
    """Whether the run met a 429 storm: more refusals than ``STORM_SHARE`` of the requests."""
    refused = sum(int(n) for n in row["throttled"].values())
    return refused > STORM_SHARE * int(row["requests"])


if __name__ == "__main__":
    main()
