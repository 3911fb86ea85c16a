"""How fast each front door answers `--help` and a mistyped option: every tool in tools/ in a fresh process, the
median over --repeats of the wall time and of the CPU time the process used (user + system: what the wall time is
on idle cores for this single-threaded start, whatever else the machine runs), and the load average beside them.

    python tools/benchmark.py startup [--repeats 5] [--json startup.json]
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import List, Optional

from benchmarks import ROOT

TOOLS_DIR = os.path.join(ROOT, "tools")


def timed(argv: List[str]) -> tuple:
    """(wall seconds, CPU seconds, exit status) of one `python argv...` run in its own process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run(
        [sys.executable, *argv], cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, timeout=300
    )
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, r.returncode


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(prog="tools/benchmark.py startup", description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="runs per tool and argument; the median is reported")
    ap.add_argument("--json", default=None, help="also write the rows as JSON here (default: none)")
    a = ap.parse_args(argv)
    tools = sorted(f[:-3] for f in os.listdir(TOOLS_DIR) if f.endswith(".py"))
    rows = []
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"{'tool':10} {'arguments':14} {'wall s':>7} {'CPU s':>6}")
    for tool in tools:
        for args in (["--help"], ["--bogus_flag"]):
            runs = [timed([os.path.join(TOOLS_DIR, f"{tool}.py"), *args]) for _ in range(a.repeats)]
            wall, cpu = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
            rows.append({"tool": tool, "args": " ".join(args), "wall_s": wall, "cpu_s": cpu, "exit": runs[0][2]})
            print(f"{tool:10} {' '.join(args):14} {wall:7.2f} {cpu:6.2f}")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"load_average": os.getloadavg()[0], "rows": rows}, f, indent=1)
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
