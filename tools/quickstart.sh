#!/usr/bin/env bash
# Installs everything (pinned CPU stack), trains the quickstart Segmenter on the procedural shapes dataset and
# evaluates it with slice + flip. Extra arguments go to tools/train.py (e.g. --iters 300 for a smoke run).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -r requirements.txt
python -m pip install -q --no-deps -e .
CFG=configs/quickstart/segmenter_tiny_shapes_64.yml
OUT="${QUICKSTART_DIR:-output/quickstart}"
start=$(date +%s)
python tools/train.py --config "$CFG" --save_dir "$OUT" --save_interval 500 --log_iters 50 --do_eval --use_vdl "$@"
python tools/val.py --config "$CFG" --model_path "$OUT/iter_$(ls "$OUT" | sed -n 's/^iter_\([0-9]*\)$/\1/p' | sort -n | tail -1)" \
    --is_slide --aug_eval --flip_horizontal
echo "quickstart: train + eval took $(( $(date +%s) - start )) s; curves in $OUT/curves.png, VisualDL: visualdl --logdir $OUT/vdl"
