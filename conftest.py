"""Puts this checkout first on sys.path, so tests import the tree they live in; loads the peak-RSS table plugin
(tests/rss_table.py, on when SEGMENTER_RSS_TABLE names a file)."""

pytest_plugins = ["tests.rss_table"]
