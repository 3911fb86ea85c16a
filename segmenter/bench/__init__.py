"""Benchmarks and profiles, one topic per module, each with `main(argv=None)`.

`python tools/benchmark.py [args]` runs `paths` (every inference/training path timed against the matmul floor);
`python tools/benchmark.py <topic> [args]` runs `segmenter.bench.<topic>.main(args)`, e.g. `profile`.
"""

import importlib
import pkgutil
import sys
from typing import List, Optional

DEFAULT_TOPIC = "paths"


def topics() -> List[str]:
    """The modules of this package, each a topic `tools/benchmark.py <topic>` runs."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__))


def run(argv: Optional[List[str]] = None) -> None:
    """Dispatch `[topic] [args]`: a first argument naming a module here selects it, anything else goes to `paths`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    topic = DEFAULT_TOPIC
    if argv and not argv[0].startswith("-"):
        if argv[0] not in topics():
            raise SystemExit(
                f"error: tools/benchmark.py: unknown topic {argv[0]!r}; choose one of {', '.join(topics())} "
                f"(or give only options, for {DEFAULT_TOPIC})"
            )
        topic = argv.pop(0)
    importlib.import_module(f"segmenter.bench.{topic}").main(argv)
