"""Run the benchmarks and print the figures: ``python -m bench [--quick] [--only throughput latency ...]``.

Needs a Kafka broker (``KAFKA_BOOTSTRAP_SERVERS``, else ``scripts/kafka-local.sh`` is started) and nginx;
with ``ASSETHOOKS_BENCH_POSTGRES_URL`` the throughput is also measured with the delivery log in PostgreSQL.
Results are also written as JSON to ``.local/bench/<time>/results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from dataclasses import asdict
from pathlib import Path

from bench.harness import QUICK, SCENARIOS, Sizes, machine, run_all

ROOT = Path(__file__).resolve().parents[1]


def broker() -> str:
    """A bootstrap address: the given one, or the local broker (started if needed)."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        return given
    subprocess.run([str(ROOT / "scripts" / "kafka-local.sh"), "start"], check=True)
    return "127.0.0.1:9092"


def main() -> None:
    """Parse the arguments, run, print the table and save the JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: checks the harness, measures nothing"
    )
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, help="run only these scenarios")
    options = parser.parse_args()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = ROOT / ".local" / "bench" / stamp
    work.mkdir(parents=True, exist_ok=True)
    sizes = QUICK if options.quick else Sizes()
    print(f"machine: {machine()}", flush=True)
    postgres = os.environ.get("ASSETHOOKS_BENCH_POSTGRES_URL")
    results = run_all(broker(), work, sizes, set(options.only) if options.only else None, postgres)
    print()
    print(results.table())
    summary = {"machine": machine(), "sizes": asdict(sizes), "figures": [asdict(f) for f in results.figures]}
    (work / "results.json").write_text(json.dumps(summary, indent=2))
    print(f"\nmachine: {machine()}\nsaved: {work / 'results.json'}")


if __name__ == "__main__":
    main()
