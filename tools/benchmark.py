"""Benchmarks: `python tools/benchmark.py [args]` times every path (benchmarks/paths.py, table + JSON);
`python tools/benchmark.py <topic> [args]` runs benchmarks/<topic>.py (e.g. `profile`). `--help` after a topic
lists its arguments. The benchmarks live beside the package (benchmarks/), not in it: run this from a checkout."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout holding benchmarks/
SEGMENTER_PARSE_FIRST = True  # Paddle loads after the arguments are parsed: see segmenter/__init__.py

from benchmarks import run  # noqa: E402

if __name__ == "__main__":
    sys.exit(run())
