"""Run the earthkeep CLI under tracemalloc; SIGUSR1 writes a heap snapshot (bench/soak.py --tracemalloc).

    python bench/_traced.py DIR serve --role api,scheduler,worker

Each SIGUSR1 writes ``DIR/snap-NNN.pickle`` (tracemalloc frames: ``EARTHKEEP_TRACE_FRAMES``, default 8)
and appends the traced total to ``DIR/traced.tsv``, so soak can tell Python-heap growth from RSS
growth outside it (SQLite page caches, allocator arenas, native libraries). Bench-only: the
product never imports this.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import tracemalloc
from pathlib import Path


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    tracemalloc.start(int(os.environ.get("EARTHKEEP_TRACE_FRAMES", "8")))
    count = 0

    def dump(_sig: int, _frame: object) -> None:
        nonlocal count
        snap = tracemalloc.take_snapshot()
        snap.dump(str(out / f"snap-{count:03d}.pickle"))
        current, _peak = tracemalloc.get_traced_memory()
        with (out / "traced.tsv").open("a") as f:
            f.write(f"{count}\t{time.time():.1f}\t{current}\n")
        count += 1

    signal.signal(signal.SIGUSR1, dump)
    sys.argv = ["earthkeep", *sys.argv[2:]]
    from earthkeep.cli.main import main as cli

    cli()


if __name__ == "__main__":
    main()
