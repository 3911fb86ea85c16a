"""Benchmarks: `python tools/benchmark.py [args]` times every path (segmenter/bench/paths.py, table + JSON);
`python tools/benchmark.py <topic> [args]` runs segmenter/bench/<topic>.py (e.g. `profile`). `--help` after a
topic lists its arguments."""

from segmenter.bench import run

if __name__ == "__main__":
    run()
