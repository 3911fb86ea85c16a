#!/usr/bin/env bash
# Runs each test file in its own pytest process and writes the peak-RSS table (tests/rss_table.py) to $1
# (default output/rss_table.tsv), largest peak first: the numbers docs/development.md quotes; per test to $1.tests.
# Extra arguments go to pytest (e.g. -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-output/rss_table.tsv}"
shift || true
rm -f "$out.rows" "$out.rows.tests"
for f in tests/test_*.py parity_tests/test_*.py; do
    SEGMENTER_RSS_TABLE="$out.rows" python -m pytest -q "$f" "$@" > /dev/null || echo "FAILED: $f" >&2
done
{ head -1 "$out.rows"; tail -n +2 "$out.rows" | grep -v '^file' | sort -t$'\t' -k4,4nr; } > "$out"
mv "$out.rows.tests" "$out.tests"  # one line per test: nodeid, seconds, peak RSS after it
rm -f "$out.rows"
column -t -s$'\t' "$out" | head -15
