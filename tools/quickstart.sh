#!/usr/bin/env bash
# Installs everything (pinned CPU stack) and runs the main job on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -r requirements.txt
python -m pip install -q --no-deps -e .
python tools/demo_forward.py "$@"
