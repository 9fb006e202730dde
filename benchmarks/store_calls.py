"""What a worker's store calls cost: a heartbeat, an epoch row, a claim, on a SQLite file (the file looked at before
each transaction: read-only, deleted) and on a PostgreSQL server (pooled, pre-pinged connections), each through the
retry wrapper that waits out outages.

    python benchmarks/store_calls.py [--calls 300] [--postgres]

--postgres starts a throw-away server with tests/pgserver.py (PostgreSQL's server binaries must be installed).
A worker beats every 5 s and writes two or three rows per epoch, so these costs are what it adds per epoch.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pacebench.plan.spec import RunSpec, TrainConfig
from pacebench.store import Claimant, EpochRecord, Store


def per_call_ms(call: Callable[[int], object], calls: int) -> float:
    """Median of 5 rounds of `calls` calls, in ms per call."""
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for i in range(calls):
            call(i)
        rounds.append((time.perf_counter() - start) / calls * 1e3)
    return statistics.median(rounds)


def measure(url: str, calls: int) -> dict[str, float]:
    store = Store(url)
    specs = [
        RunSpec(
            suite="demo", dataset="digits", method="baseline", seed=s, train=TrainConfig(epochs=3), backbone="vit_demo"
        )
        for s in range(5 * calls + 1)
    ]
    store.enqueue(specs)
    who = Claimant(3600.0, host="bench", pid=1)
    run = store.claim_next(who)
    assert run is not None and run.claim is not None
    return {
        "beat": per_call_ms(lambda i: store.beat(run.id, run.claim), calls),
        "epoch row": per_call_ms(lambda i: store.write_epoch(run.id, run.claim, EpochRecord(epoch=i, loss=1.0)), calls),
        "claim": per_call_ms(lambda i: store.claim_next(who), calls),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        results["SQLite"] = measure(f"sqlite:///{folder}/r.db", args.calls)
    if args.postgres:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        import pgserver  # lazy: only with --postgres

        bin_dir = pgserver.find_bin()
        if bin_dir is None:
            raise SystemExit("no PostgreSQL server binaries found (set PG_BIN)")
        server = pgserver.start(bin_dir)
        try:
            results["PostgreSQL"] = measure(server.create_database("bench"), args.calls)
        finally:
            server.stop()
    for name, values in results.items():
        print(f"{name}: " + ", ".join(f"{call} {ms:.2f} ms" for call, ms in values.items()))


if __name__ == "__main__":
    main()
