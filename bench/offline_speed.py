"""How long the offline analyzer takes on the whole corpus novels, against its 2 s goal.

Each novel is analyzed once more than ``--repeats`` in the same process. The first run
pays for what the analyzer loads lazily once per process (jieba's dictionary, compiled
patterns), as a one-shot ``storyboard analyze`` or a fresh worker does; ``python -m bench``
runs this part in a fresh interpreter, so the first run on the first novel is a cold start.
The later runs show the steady cost per novel. The goal (under 2 s for 三国演义 on two
cores) is judged on the slower of the first run and the median, so that neither a cold
start nor a steady cost over 2 s passes.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from bench.common import median, save
from harness.processes import ROOT
from service.analysis.offline import OfflineAnalyzer
from service.ports import NovelText
from service.text import load_novel_bytes

CORPUS = ROOT.parent / "shared" / "corpus"
GOAL_S = 2.0
GOAL_NOVEL = "三国演义"
NOVELS = {"三国演义": "sanguo-yanyi.gb18030.txt", "Alice": "alice-in-wonderland.txt"}


async def _ignore(fraction: float, stage: str) -> None:
    return None


async def measure(name: str, path: Path, repeats: int, limit: int | None) -> dict[str, Any]:
    """Analyze one novel ``repeats`` + 1 times; the first run is reported apart."""
    text = load_novel_bytes(await asyncio.to_thread(path.read_bytes))
    if limit is not None:
        text = text[:limit]
    times, storyboard = [], None
    for _ in range(repeats + 1):
        start = time.perf_counter()
        storyboard = await OfflineAnalyzer().analyze(NovelText("bench", name, text), _ignore)
        times.append(time.perf_counter() - start)
    assert storyboard is not None
    summary = storyboard.summary()
    return {
        "name": name,
        "chars": len(text),
        "chapters": summary.chapters,
        "scenes": summary.scenes,
        "panels": summary.panels,
        "first_s": times[0],
        "runs_s": times[1:],
        "median_s": median(times[1:]),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry: prints and saves the result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="only the first 20,000 characters")
    args = parser.parse_args(argv)
    limit = 20_000 if args.quick else None
    rows = [
        asyncio.run(measure(name, CORPUS / file, args.repeats, limit))
        for name, file in NOVELS.items()
        if (CORPUS / file).exists()
    ]
    result = {"novels": rows}
    if not args.quick:
        save("offline_speed", result)
    for row in rows:
        print(
            f"offline analyzer, {row['name']}: first run {row['first_s']:.2f} s, then "
            f"{row['median_s']:.2f} s (median) for {row['chars']} chars"
        )
    return result


def judged_s(row: dict[str, Any]) -> float:
    """The figure the goal is judged on: the slower of the first run and the median
    (results saved before first runs were kept apart have only the median)."""
    return max(float(row.get("first_s", row["median_s"])), float(row["median_s"]))


if __name__ == "__main__":
    main()
