#!/usr/bin/env bash
# Installs everything (pinned CPU stack), runs ruff (lint, format check) and the whole test suite: the README's
# test command.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -r requirements.txt
python -m pip install -q --no-deps mmsegmentation==1.2.2 mmpretrain==1.2.0  # their deps are in requirements.txt
python -m pip install -q --no-deps -e .
python -m ruff check .            # lint (ruff.toml)
python -m ruff format --check .   # formatting
python -m pytest -q tests parity_tests "$@"
