"""Puts this checkout first on sys.path, so tests import the tree they live in; loads the peak-RSS table plugin
(tests/rss_table.py, on when SEGMENTER_RSS_TABLE names a file) and the memory hand-back between tests
(tests/memory.py); gives each pytest-xdist worker its share of the cores."""

import os

pytest_plugins = ["tests.memory", "tests.rss_table"]  # memory first: rss_table imports it, and a plugin is
# rewritten for assertions only when pytest imports it first


def pytest_configure(config):
    """pytest.ini runs the suite in 2 xdist workers (`-n 2`): each gets cores // workers math threads (Paddle and
    PyTorch read OMP_NUM_THREADS at import, which comes later, at collection), unless the user set
    OMP_NUM_THREADS. Two workers of one thread each on 2 cores ran the suite 9 % faster than two of two threads."""
    workers = getattr(config, "workerinput", {}).get("workercount")
    if workers and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // int(workers)))
