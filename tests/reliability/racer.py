"""``prunesched ARGS...`` in a process that, inside ``search resume``, waits for its rivals just before taking the search.

    python -m tests.reliability.racer BARRIER RACERS ARGS...

When ``resume`` has read the search and passed its checks, and is about to take ownership
(:meth:`Store.claim`), the racer adds its pid to the folder BARRIER and waits until RACERS
racers are there. So every racer has read the same state and passed the same checks before any
of them claims the search: the window that a read-then-write ownership check leaves open is
open for all of them at once, and only the claim itself can tell them apart.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from prunesched.cli import main as cli
from prunesched.storage import Store
from prunesched.storage.records import FrozenSearch


def main() -> None:
    barrier, racers, *argv = sys.argv[1:]
    claim = Store.claim

    def claim_together(store: Store, seen: FrozenSearch, owner: str) -> bool:
        (Path(barrier) / str(os.getpid())).touch()
        deadline = time.monotonic() + 120
        while len(list(Path(barrier).iterdir())) < int(racers) and time.monotonic() < deadline:
            time.sleep(0.01)
        return claim(store, seen, owner)

    Store.claim = claim_together  # type: ignore[method-assign]
    cli(argv, prog_name="prunesched")


if __name__ == "__main__":
    main()
