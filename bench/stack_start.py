"""Wall time of `replicator stack up` on a first run, a cached run and a restart.

first:   empty Maven repository and empty jar cache (everything downloaded from Maven Central),
         empty data directory (KRaft format, Neo4j store creation)
cached:  jars cached, new data directory
restart: jars cached, existing data

Runs a throwaway stack on free ports beside any running one, and stops it after each run.
``--brokers 3`` times a three-broker stack (results in stack_start_brokers3.json); ``--runs`` picks
the cases (the first run downloads every jar again, whatever the broker count).
Usage: .venv/bin/python bench/stack_start.py [--brokers N] [--runs first,cached,restart] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from replicator.stack.process import free_port_range

ALL_RUNS = "first,cached,restart"


def _replicator(args: list[str], env: dict[str, str]) -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "replicator", *args], check=True, env=env, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def _time_runs(brokers: int, runs: list[str]) -> dict[str, float]:
    """Seconds of `stack up` for each of ``runs``, on a throwaway stack stopped after each."""
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="stack-bench-") as tmp:
        base = Path(tmp)
        env = {**os.environ, "MAVEN_OPTS": f"-Dmaven.repo.local={base / 'm2'}"}
        first = free_port_range("127.0.0.1", 2 * brokers + 1)  # clients, controllers, Bolt
        ports = ["--brokers", str(brokers), "--kafka-port", str(first), "--bolt-port", str(first + 2 * brokers)]
        cache = ["--cache", str(base / "cache")] if "first" in runs else []  # else: the shared jar cache
        for run, root in (("first", "a"), ("cached", "b"), ("restart", "b")):
            if run in runs:
                results[run] = round(_replicator(["stack", "up", "--dir", str(base / root), *cache, *ports], env), 1)
                _replicator(["stack", "down", "--dir", str(base / root)], env)
                print(f"{run:<8} stack up: {results[run]:.1f}s", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", type=int, default=1)
    parser.add_argument("--runs", default=ALL_RUNS, help=f"comma-separated, of {ALL_RUNS}")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    name = "stack_start.json" if args.brokers == 1 else f"stack_start_brokers{args.brokers}.json"
    out = args.out or Path(__file__).parent / "results" / name
    results = _time_runs(args.brokers, args.runs.split(","))
    flags = (["--brokers", str(args.brokers)] if args.brokers > 1 else []) + (
        ["--runs", args.runs] if args.runs != ALL_RUNS else []
    )
    record = {
        "command": " ".join([".venv/bin/python bench/stack_start.py", *flags]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "brokers": args.brokers,
        "stack_up_seconds": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
