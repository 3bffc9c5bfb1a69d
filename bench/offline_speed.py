"""How long the offline analyzer takes on the whole corpus novels."""

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
NOVELS = {"三国演义": "sanguo-yanyi.gb18030.txt", "Alice": "alice-in-wonderland.txt"}


async def _ignore(fraction: float, stage: str) -> None:
    return None


async def measure(name: str, path: Path, repeats: int, limit: int | None) -> dict[str, Any]:
    """Analyze one novel ``repeats`` times."""
    text = load_novel_bytes(await asyncio.to_thread(path.read_bytes))
    if limit is not None:
        text = text[:limit]
    times, storyboard = [], None
    for _ in range(repeats):
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
        "runs_s": times,
        "median_s": median(times),
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
        print(f"offline analyzer, {row['name']}: {row['median_s']:.2f} s for {row['chars']} chars")
    return result


if __name__ == "__main__":
    main()
