#!/usr/bin/env bash
# Installs everything (pinned CPU stack), trains the quickstart Segmenter on the procedural shapes dataset and
# evaluates it with slice + flip. Extra arguments go to tools/train.py (e.g. --iters 300 for a smoke run).
# Its figures (time, mIoU per row and class) are written to $OUT/quickstart.json: docs/training.md quotes the
# committed copy, docs/benchmarks/quickstart.json, and tests/test_docs.py checks that the page says what it holds.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in -h|--help)
    echo "usage: bash tools/quickstart.sh [TRAIN_ARGS ...]"
    echo "  installs requirements.txt and this package (-e .) into the active Python, trains"
    echo "  configs/quickstart/segmenter_tiny_shapes_64.yml, evaluates its last checkpoint with slice + flip and"
    echo "  writes the figures to \$QUICKSTART_DIR/quickstart.json (default output/quickstart); TRAIN_ARGS go to"
    echo "  tools/train.py (e.g. --iters 300 for a smoke run; python tools/train.py --help lists them)."
    exit 0;;
esac
python -m pip install -q -r requirements.txt
python -m pip install -q --no-deps -e .
CFG=configs/quickstart/segmenter_tiny_shapes_64.yml
OUT="${QUICKSTART_DIR:-output/quickstart}"
start=$(date +%s)
python tools/train.py --config "$CFG" --save_dir "$OUT" --save_interval 500 --log_iters 50 --do_eval --use_vdl "$@"
trained=$(date +%s)
LAST="$OUT/iter_$(ls "$OUT" | sed -n 's/^iter_\([0-9]*\)$/\1/p' | sort -n | tail -1)"
python tools/val.py --config "$CFG" --model_path "$LAST" --is_slide --aug_eval --flip_horizontal \
    --json "$OUT/metrics.json"
end=$(date +%s)
python - "$OUT" "$LAST" $(( trained - start )) $(( end - trained )) <<'PY'
import json, os, subprocess, sys
out, last, train_s, eval_s = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rows = json.load(open(os.path.join(out, "metrics.json")))["rows"]
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
load = os.getloadavg()[0]
fig = {"commit": commit or None, "checkpoint": os.path.basename(last), "train_s": train_s, "eval_s": eval_s,
       "load_average_at_end": round(load, 2), "rows": rows}
json.dump(fig, open(os.path.join(out, "quickstart.json"), "w"), indent=1)
PY
echo "quickstart: train + eval took $(( end - start )) s; figures in $OUT/quickstart.json, curves in $OUT/curves.png, VisualDL: visualdl --logdir $OUT/vdl"
