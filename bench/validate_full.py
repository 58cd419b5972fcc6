"""The full comparison of a large store (issue 14, item 4): ``replicator validate --full`` per target.

Builds a store with raw sqlite3 (bench/migration.py's ``build_store``: ``--entities`` entities, as
many with a stored vector, ``--relations`` relations), loads it into Neo4j (a label unique to the
run, on the local stack) and a Qdrant local-mode directory with ``replicator import --backend``
(the sinks' own writers), then times ``replicator validate --full --no-search`` for each target in
its own process: seconds, peak RSS (``ru_maxrss`` from ``wait4``), exit code, the load average.
The comparison must report VALID (exit 0). The label is removed afterwards (``--keep`` keeps it and
the directory, and ``--dir`` reuses an earlier load).

``--tree`` runs ``validate`` from another checkout (its ``replicator`` package), for a before/after.

Usage: .venv/bin/python -m bench.validate_full [--entities 20000] [--relations 200000]
       [--dir DIR] [--label L] [--tree DIR] [--out bench/results/validate_full.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.migration import build_store, timed
from replicator.demo.demo import local_stack_neo4j

REPLICATOR = [sys.executable, "-m", "replicator"]


def load(workdir: Path, label: str, env: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    """Build the store and import it into both destinations (skipped when ``workdir`` has them)."""
    db, qdrant = workdir / "memory.db", workdir / "qdrant"
    if db.exists() and (workdir / "loaded").exists():
        return {"reused": str(workdir)}
    db.unlink(missing_ok=True)
    out: dict[str, Any] = {"store": build_store(db, args.entities, args.relations, args.entities)}
    backup = workdir / "backup.json"
    out["export"] = timed([*REPLICATOR, "export", "--db", str(db), "--with-embeddings", "-o", str(backup)])
    out["import_neo4j"] = timed(
        [*REPLICATOR, "import", "--backend", "neo4j", "-i", str(backup), "--entity-label", label, "--batch-size",
         "5000"], env)  # fmt: skip
    out["import_qdrant"] = timed(
        [*REPLICATOR, "import", "--backend", "qdrant", "-i", str(backup), "--qdrant-path", str(qdrant),
         "--collection", "bench", "--batch-size", "5000"], env)  # fmt: skip
    (workdir / "loaded").write_text("1")
    return out


def drop_label(label: str) -> None:
    import neo4j  # noqa: PLC0415 - only for clean-up

    settings = local_stack_neo4j()
    with neo4j.GraphDatabase.driver(settings.uri, auth=settings.auth()) as driver, driver.session() as session:
        # CALL ... IN TRANSACTIONS runs only in an implicit (auto-commit) transaction: session.run
        session.run(f"MATCH (n:`{label}`) CALL (n) {{ DETACH DELETE n }} IN TRANSACTIONS OF 5000 ROWS").consume()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=20_000, help="entities, each with a stored vector")
    parser.add_argument("--relations", type=int, default=200_000)
    parser.add_argument("--dir", type=Path, help="work in (and keep) this directory; reuses an earlier load")
    parser.add_argument("--label", default=f"ValFull_{os.getpid()}", help="Neo4j entity label")
    parser.add_argument("--tree", type=Path, help="run validate from this checkout (e.g. the code before)")
    parser.add_argument("--keep", action="store_true", help="keep the Neo4j label")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "validate_full.json")
    args = parser.parse_args()
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="validate_full_"))
    workdir.mkdir(parents=True, exist_ok=True)
    env = {"REPLICATOR_NEO4J_PASSWORD": local_stack_neo4j().password or ""}
    result: dict[str, Any] = {"command": " ".join(sys.argv), "when": time.strftime("%Y-%m-%d %H:%M UTC"),
                              "code": str(args.tree or "this tree")}  # fmt: skip
    result["load"] = load(workdir, args.label, env, args)
    db = str(workdir / "memory.db")
    checks = {
        "neo4j": ["--target", "neo4j", "--entity-label", args.label],
        "qdrant": ["--target", "qdrant", "--qdrant-path", str(workdir / "qdrant"), "--collection", "bench"],
    }
    for target, flags in checks.items():
        before = os.getloadavg()[0]
        tree = {} if args.tree is None else {"PYTHONPATH": str(args.tree)}  # from its directory: its package wins
        run = timed([*REPLICATOR, "validate", "--db", db, "--full", "--no-search", *flags], {**env, **tree}, args.tree)
        result[f"validate_full_{target}"] = {**run, "load_average_1m": [round(before, 1), round(os.getloadavg()[0], 1)]}
        print(target, run["seconds"], "s", run["peak_rss_mb"], "MB", "exit", run["exit"], flush=True)
    if not args.keep and args.dir is None:
        drop_label(args.label)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
