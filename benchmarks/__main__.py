"""`python -m benchmarks [topic] [args]`: the same dispatcher as tools/benchmark.py."""

import sys

from benchmarks import run

sys.exit(run())
