#!/usr/bin/env bash
# Peak memory of the test processes (tests/rss_table.py).
#   bash benchmarks/rss_table.sh --suite [out.tsv] [pytest args]  the suite as CI runs it (pytest.ini: 2 xdist workers);
#                                                           prints each worker's tests, seconds and peak RSS
#   bash benchmarks/rss_table.sh [out.tsv] [pytest args]          each test file in its own single pytest process (-n 0);
#                                                           the per-file table, largest peak first
# Default out: output/rss_table.tsv; one line per test (nodeid, seconds, peak after it, worker) in out.tsv.tests.
set -euo pipefail
cd "$(dirname "$0")/.."
suite=0
if [ "${1:-}" = "--suite" ]; then suite=1; shift; fi
out="${1:-output/rss_table.tsv}"
shift || true
mkdir -p "$(dirname "$out")"
rm -f "$out" "$out.tests" "$out.rows" "$out.rows.tests"
if [ "$suite" = 1 ]; then
    SEGMENTER_RSS_TABLE="$out" python -m pytest -q "$@" > "$out.log" || echo "FAILED: see $out.log" >&2
    python -m tests.rss_table "$out"
    exit 0
fi
for f in tests/test_*.py parity_tests/test_*.py; do
    SEGMENTER_RSS_TABLE="$out.rows" python -m pytest -q -n 0 "$f" "$@" > /dev/null || echo "FAILED: $f" >&2
done
{ head -1 "$out.rows"; tail -n +2 "$out.rows" | grep -v '^file' | sort -t$'\t' -k4,4nr; } > "$out"
mv "$out.rows.tests" "$out.tests"
rm -f "$out.rows"
column -t -s$'\t' "$out" | head -15
