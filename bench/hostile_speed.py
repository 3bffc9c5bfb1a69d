"""How long the offline analyzer takes on crafted texts, per million characters, against
三国演义 measured the same way.

Each text of :mod:`harness.hostile_texts` is analyzed at two sizes (a quarter of a million
and a million characters; ``--quick``: 5,000 and 20,000) and timed in process CPU
seconds, so another process on the machine weighs on the figure less than on wall time.
The *growth* column is the cost per character at the larger size over that at the
smaller: about 1 for linear work, about 4 for quadratic. 三国演义 is analyzed once first, so
the dictionary and pattern caches are warm for every text alike. The goal: the worst
crafted text costs at most 3× 三国演义 per character. The worst text is then analyzed at the
upload limit (3,000,000 characters by default, not in ``--quick``), against the offline
job deadline (``STORYBOARD_JOB_TIMEOUT_S``, 600 s by default).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from bench.common import save
from bench.offline_speed import CORPUS, GOAL_NOVEL, NOVELS
from harness.hostile_texts import HOSTILE_TEXTS
from service.analysis.cpu_pool import CpuPool
from service.analysis.offline import OfflineAnalyzer, build_storyboard
from service.ports import NovelText
from service.settings import JOB_TIMEOUT_DEFAULTS_S, Settings
from service.text import load_novel_bytes

GOAL_RATIO = 3.0
MILLION = 1_000_000


def cpu_s(text: str) -> float:
    """Process CPU seconds to build one storyboard of ``text``."""
    start = time.process_time()
    build_storyboard(NovelText("bench", "hostile", text))
    return time.process_time() - start


def per_million(seconds: float, chars: int) -> float:
    """Seconds per million characters."""
    return seconds / chars * MILLION


def measure_text(name: str, sizes: tuple[int, int]) -> dict[str, Any]:
    """One crafted text at both sizes."""
    small, large = (per_million(cpu_s(HOSTILE_TEXTS[name](n)), n) for n in sizes)
    return {"name": name, "small_s_per_mchar": small, "s_per_mchar": large, "growth": large / small}


async def _ignore(fraction: float, stage: str) -> None:
    return None


async def stop_latency(text: str, after_s: float) -> dict[str, float]:
    """Cancel an analysis of ``text`` running in the service's process pool ``after_s``
    into it: how long until the call returned, and until its process was reaped."""
    async with CpuPool(1, preload=("service.analysis.offline",), warm=1) as pool:
        analysis = asyncio.create_task(
            OfflineAnalyzer(pool=pool).analyze(NovelText("bench", "hostile", text), _ignore)
        )
        await asyncio.sleep(after_s)
        cancelled = time.perf_counter()
        analysis.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await analysis
        returned = time.perf_counter() - cancelled
        # The cancel killed the pool's one process; closing waits until it is reaped.
        await pool.aclose()
        return {"returned_s": returned, "gone_s": time.perf_counter() - cancelled}


def baseline(path: Path) -> dict[str, Any]:
    """三国演义, timed as the crafted texts are (after a warm-up run)."""
    text = load_novel_bytes(path.read_bytes())
    cpu_s(text)
    return {
        "name": GOAL_NOVEL,
        "chars": len(text),
        "s_per_mchar": per_million(cpu_s(text), len(text)),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry: prints and saves the result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, nothing saved")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    novel = CORPUS / NOVELS[GOAL_NOVEL]
    reference = baseline(novel) if novel.exists() and not args.quick else None
    sizes = (5_000, 20_000) if args.quick else (MILLION // 4, MILLION)
    rows = [measure_text(name, sizes) for name in HOSTILE_TEXTS]
    worst = max(rows, key=lambda row: row["s_per_mchar"])
    limit: int = Settings.model_fields["max_novel_chars"].default
    worst_text = HOSTILE_TEXTS[worst["name"]](sizes[1] if args.quick else limit)
    at_limit = None if args.quick else cpu_s(worst_text)
    # Cancelled while its analysis runs: a quarter of the way into the full-size one.
    stop = asyncio.run(stop_latency(worst_text, 0.05 if args.quick else (at_limit or 4) / 4))
    result = {
        "sizes": list(sizes),
        "reference": reference,
        "rows": rows,
        "worst": worst["name"],
        "limit_chars": limit,
        "worst_at_limit_s": at_limit,
        "deadline_s": JOB_TIMEOUT_DEFAULTS_S["offline"],
        "stop": stop,
        "goal_ratio": GOAL_RATIO,
        "elapsed_s": time.perf_counter() - started,
    }
    if not args.quick:
        save("hostile_speed", result)
    for row in rows:
        print(
            f"hostile text {row['name']}: {row['s_per_mchar']:.2f} s per million chars, "
            f"growth {row['growth']:.2f}"
        )
    print(
        f"hostile texts: a cancel returned in {stop['returned_s'] * 1000:.1f} ms, "
        f"its process gone in {stop['gone_s'] * 1000:.1f} ms"
    )
    if reference:
        print(f"hostile texts: 三国演义 {reference['s_per_mchar']:.2f} s per million chars")
    return result


if __name__ == "__main__":
    main()
