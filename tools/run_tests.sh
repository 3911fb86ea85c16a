#!/usr/bin/env bash
# Installs everything (pinned CPU stack), runs ruff (lint, format check) and the whole test suite: the README's
# test command.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in -h|--help)
    echo "usage: bash tools/run_tests.sh [PYTEST_ARGS ...]"
    echo "  installs requirements.txt, MMSeg/mmpretrain and this package (-e .[demo]) into the active Python,"
    echo "  Debian's chromium for the demo tier where missing, then runs ruff and pytest on tests/ and parity_tests/;"
    echo "  PYTEST_ARGS go to pytest (e.g. -m \"not slow\" for the fast tier, -x, -k NAME)."
    exit 0;;
esac
python -m pip install -q -r requirements.txt
python -m pip install -q --no-deps mmsegmentation==1.2.2 mmpretrain==1.2.0  # their deps are in requirements.txt
python -m pip install -q -e ".[demo]"  # the demo extra: selenium, for the demo tier (deps already met above)
# The demo tier (pytest -m demo: the demo page in headless Chromium) needs Debian's chromium and its driver
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo -n"
    if command -v apt-get >/dev/null && { $sudo apt-get update -qq && \
            $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }; then
        echo "installed chromium and chromium-driver for the demo tier"
    else
        echo "note: could not install chromium/chromium-driver (apt-get as root); the demo tier will be skipped" >&2
    fi
fi
python -m ruff check .            # lint (ruff.toml)
python -m ruff format --check .   # formatting
python -m pytest -q tests parity_tests "$@"
