"""Benchmarks, profiles and reproductions of third-party faults: the workshop beside the `segmenter` package, never
installed with it. One topic per module, each with `main(argv=None)`.

`python tools/benchmark.py [args]` (or `python -m benchmarks [args]`) runs `paths` (every inference/training path
timed against the matmul floor); `python tools/benchmark.py <topic> [args]` runs `benchmarks.<topic>.main(args)`,
e.g. `profile`. Run from a checkout: the topics import `segmenter` and, some of them, `parity_tests`.
"""

import importlib
import os
import pkgutil
import sys
from typing import List, Optional

DEFAULT_TOPIC = "paths"
# Topics whose main parses its arguments before anything imports Paddle, so that `tools/benchmark.py [topic] --help`
# answers at once (segmenter/__init__.py); every other topic imports segmenter at its top expecting the components
# registered, which run() then does first.
PARSE_FIRST = ("paths", "forward", "startup")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout: segmenter/, benchmarks/, tests/


def topics() -> List[str]:
    """The modules of this package, each a topic `tools/benchmark.py <topic>` runs."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def run(argv: Optional[List[str]] = None) -> None:
    """Dispatch `[topic] [args]`: a first argument naming a module here selects it, anything else goes to `paths`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    topic = DEFAULT_TOPIC
    if argv and not argv[0].startswith("-"):
        if argv[0] not in topics():
            print(
                f"error: tools/benchmark.py: unknown topic {argv[0]!r}; choose one of {', '.join(topics())} "
                f"(or give only options, for {DEFAULT_TOPIC})",
                file=sys.stderr,
            )
            raise SystemExit(2)
        topic = argv.pop(0)
    if topic not in PARSE_FIRST:
        from segmenter.engine.registry import register

        register()
    return importlib.import_module(f"benchmarks.{topic}").main(argv)
