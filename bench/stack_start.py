"""Wall time of `replicator stack up` on a first run, a cached run and a restart.

first:   empty Maven repository and empty jar cache (everything downloaded from Maven Central),
         empty data directory (KRaft format, Neo4j store creation)
cached:  jars cached, new data directory
restart: jars cached, existing data

Runs a throwaway stack on free ports beside any running one, and stops it after each run.
Usage: .venv/bin/python bench/stack_start.py [--out bench/results/stack_start.json]
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

from replicator.migrate.daemons import free_ports


def _replicator(args: list[str], env: dict[str, str]) -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "replicator", *args], check=True, env=env, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "stack_start.json")
    out = parser.parse_args().out
    with tempfile.TemporaryDirectory(prefix="stack-bench-") as tmp:
        base = Path(tmp)
        env = {**os.environ, "MAVEN_OPTS": f"-Dmaven.repo.local={base / 'm2'}"}
        kafka, controller, bolt = free_ports(3)
        ports = ["--kafka-port", str(kafka), "--kafka-controller-port", str(controller), "--bolt-port", str(bolt)]
        results = {}
        for run, root in (("first", "a"), ("cached", "b"), ("restart", "b")):
            up = ["stack", "up", "--dir", str(base / root), "--cache", str(base / "cache"), *ports]
            results[run] = round(_replicator(up, env), 1)
            _replicator(["stack", "down", "--dir", str(base / root)], env)
            print(f"{run:<8} stack up: {results[run]:.1f}s", flush=True)
    record = {
        "command": ".venv/bin/python bench/stack_start.py",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "stack_up_seconds": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
