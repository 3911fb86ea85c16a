"""Progress of a loop over images: a tqdm bar on a terminal, else (a log file, a pipe) a line every N items with
the rate and ETA, as PaddleSeg logs, so a log holds readable lines instead of one ever-growing bar."""

import sys
import time
from typing import Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")


def every_for(total: int) -> int:
    """Items between two log lines: about ten lines per loop, at least one item, at most 100."""
    return max(1, min(100, -(-total // 10)))


def clock(seconds: float) -> str:
    """Seconds as [H:]MM:SS."""
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


def progress(
    items: Iterable[T], total: int, desc: str, unit: str = "img", enabled: bool = True, every: Optional[int] = None
) -> Iterator[T]:
    """Yield items, showing progress on a terminal (tqdm) or as `[desc] i/total ... ETA` lines on stdout."""
    if not enabled:
        yield from items
        return
    if sys.stdout.isatty():
        from tqdm import tqdm

        yield from tqdm(items, total=total, desc=desc, unit=unit)
        return
    every = every or every_for(total)
    t0 = time.time()
    for i, item in enumerate(items, 1):
        yield item
        if i % every == 0 or i == total:
            cost = (time.time() - t0) / i
            print(f"[{desc}] {i}/{total} {unit} {cost:.3f}s/{unit} ETA {clock(cost * (total - i))}", flush=True)
