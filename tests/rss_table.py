"""Peak memory per test file: with SEGMENTER_RSS_TABLE=<path> set, each test process appends one row per test file
to <path>: the process's peak RSS when the file's last test ended, the test that raised the peak most, and the
peak of the subprocesses it waited for; and to <path>.tests one line per test (nodeid, seconds, peak after it,
xdist worker, resident MB when it started).
Run one file per process (benchmarks/rss_table.sh) for a per-file peak.

A row (tab-separated, a header once): file, tests, seconds, peak_mb, children_peak_mb, top_test, top_test_raise_mb,
slowest_test, slowest_s."""

import os
import resource
import time
from collections import defaultdict

import pytest

from tests.memory import resident_mb

HEADER = "file\ttests\tseconds\tpeak_mb\tchildren_peak_mb\ttop_test\ttop_test_raise_mb\tslowest_test\tslowest_s\n"


def _peak_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux: kB


class RssTable:
    def __init__(self, path: str):
        self.path = path
        self.tests = []  # one line per test: nodeid, seconds, process peak RSS after it (MB), to <path>.tests
        self.files = defaultdict(
            lambda: {"tests": 0, "seconds": 0.0, "peak": 0.0, "children": 0.0, "top": ("", 0.0), "slowest": ("", 0.0)}
        )

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        before, t, start_rss = _peak_mb(resource.RUSAGE_SELF), time.time(), resident_mb()
        yield
        row = self.files[item.location[0]]
        row["tests"] += 1
        row["seconds"] += time.time() - t
        if time.time() - t > row["slowest"][1]:
            row["slowest"] = (item.name, time.time() - t)
        row["peak"] = _peak_mb(resource.RUSAGE_SELF)
        row["children"] = _peak_mb(resource.RUSAGE_CHILDREN)
        if row["peak"] - before > row["top"][1]:
            row["top"] = (item.name, row["peak"] - before)
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        self.tests.append(f"{item.nodeid}\t{time.time() - t:.1f}\t{row['peak']:.0f}\t{worker}\t{start_rss:.0f}\n")

    def pytest_sessionfinish(self, session):
        if not self.files:
            return
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with open(self.path + ".tests", "a") as f:
            f.writelines(self.tests)
        new = not os.path.exists(self.path)
        with open(self.path, "a") as f:
            if new:
                f.write(HEADER)
            for name, r in self.files.items():
                f.write(
                    f"{name}\t{r['tests']}\t{r['seconds']:.1f}\t{r['peak']:.0f}\t{r['children']:.0f}\t{r['top'][0]}\t"
                    f"{r['top'][1]:.0f}\t{r['slowest'][0]}\t{r['slowest'][1]:.1f}\n"
                )


def pytest_configure(config):
    path = os.environ.get("SEGMENTER_RSS_TABLE")
    if path:
        config.pluginmanager.register(RssTable(path), "segmenter-rss-table")


def summary(path: str, top: int = 10) -> str:
    """Per process (xdist worker, or `main`): its tests, seconds and peak RSS; then the tests that raised a process's
    peak most. Reads the <path>.tests lines the plugin wrote."""
    per, raises, last = {}, [], {}
    with open(path + ".tests") as f:
        for line in f:
            nodeid, seconds, peak, *rest = line.rstrip("\n").split("\t")
            worker = rest[0] if rest else "main"
            start = rest[1] if len(rest) > 1 else "?"
            n, s, p = per.get(worker, (0, 0.0, 0.0))
            per[worker] = (n + 1, s + float(seconds), max(p, float(peak)))
            raises.append((float(peak) - last.get(worker, float(peak)), worker, start, nodeid))
            last[worker] = float(peak)
    lines = ["process  tests  seconds  peak_mb"]
    lines += [f"{w:<8} {n:>5} {s:>8.0f} {p:>8.0f}" for w, (n, s, p) in sorted(per.items())]
    lines += ["", "largest raises of a process's peak (MB; the process's resident MB when the test started):"]
    lines += [f"{r:>6.0f}  {w}  {s:>5}  {nodeid}" for r, w, s, nodeid in sorted(raises, reverse=True)[:top] if r > 0]
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(summary(sys.argv[1]))
