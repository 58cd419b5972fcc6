"""``replicator migrate`` with the seed guide's blue-green strategy (issue 12, item 3), from the seed's
``hybrid-migration.yaml`` as it is (its Neo4j address pointed at the local stack; its Qdrant server,
which does not exist here, replaced by local mode with ``--qdrant-path``), against the real Neo4j (a
unique label) and Qdrant local mode: the store refuses writes, is exported, imported into both,
validated, caxton.yaml switched; a crash in the middle of the import resumes on the rerun; the
migration id has a history that ``migration-status`` and ``status --migration-id`` show."""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import neo4j
import pytest

from replicator.capture.install import install
from replicator.cutover.config import read_backend, sample_config
from replicator.guide.backends import sink_name
from replicator.migration import history
from replicator.sinks.neo4j.model import GraphModel
from replicator.sinks.settings import Neo4jSettings
from replicator.testing.writer import MemoryWriter

SEED = Path(__file__).parents[1] / "fixtures" / "seed"
ENTITIES = 60


@pytest.fixture
def label(graph: Neo4jSettings) -> Iterator[str]:
    name = f"Entity_{uuid.uuid4().hex[:10]}"
    yield name
    model = GraphModel(entity_label=name)
    with neo4j.GraphDatabase.driver(graph.uri, auth=graph.auth()) as driver:
        driver.execute_query(f"MATCH (n:`{name}`) DETACH DELETE n", database_=graph.database)
        for query, params in [
            (f"MATCH (t:`{model.tombstone_label}` {{ns: $ns}}) DELETE t", {"ns": name}),
            (f"MATCH (p:`{model.position_label}`) WHERE p.namespace = $ns OR p.owner = $ns DELETE p", {"ns": name}),
            (f"MATCH (p:`{model.position_label}` {{sink: $s}}) DELETE p", {"s": sink_name(name)}),
        ]:
            driver.execute_query(query, params, database_=graph.database)


def _vector(i: int) -> list[float]:
    """Distinct directions (search consistency compares rankings: equal vectors would tie)."""
    rng = random.Random(i)
    return [rng.uniform(-1, 1) for _ in range(384)]


def _workdir(tmp_path: Path, graph: Neo4jSettings) -> Path:
    """A deployment as the guide shows it: ./data/memory.db, caxton.yaml, the seed's file."""
    (tmp_path / "data").mkdir()
    writer = MemoryWriter.create(tmp_path / "data" / "memory.db")
    try:
        ids = [writer.create_entity(f"e{i}", "concept", [f"fact {i}"], embedding=_vector(i))
               for i in range(ENTITIES)]  # fmt: skip
        for a, b in itertools.pairwise(ids):
            writer.create_relation(a, b, "next to")
    finally:
        writer.close()
    install(tmp_path / "data" / "memory.db")
    (tmp_path / "caxton.yaml").write_text(sample_config("./data/memory.db"))
    seed = (SEED / "hybrid-migration.yaml").read_text().replace("bolt://localhost:7687", graph.uri)
    (tmp_path / "hybrid-migration.yaml").write_text(seed.replace('username: "caxton"', f'username: "{graph.user}"'))
    return tmp_path


def _migrate(where: Path, label: str, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    args = ["migrate", "--config", "hybrid-migration.yaml", "--caxton-config", "caxton.yaml", "--strategy",
            "blue-green", "--entity-label", label, "--qdrant-path", "qdrant", "--batch-size", "10", *extra]  # fmt: skip
    environ = {**os.environ, **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "replicator", *args], cwd=where, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environ)  # fmt: skip


def _done(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def _refuses_writes(db: Path) -> bool:
    conn = sqlite3.connect(db)
    try:
        conn.execute("UPDATE entities SET confidence = 0.1 WHERE id = (SELECT min(id) FROM entities)")
        conn.commit()
    except sqlite3.DatabaseError as exc:
        return "moved to" in str(exc)
    finally:
        conn.close()
    return False


def test_blue_green_from_the_seeds_hybrid_file(tmp_path: Path, graph: Neo4jSettings, label: str) -> None:
    where = _workdir(tmp_path, graph)
    code, out, err = _done(_migrate(where, label))
    assert code == 0, (out, err)
    assert "(blue-green to hybrid): done" in out
    assert read_backend(where / "caxton.yaml") == "hybrid"
    assert _refuses_writes(where / "data" / "memory.db")
    assert "VALID" in out
    (migration,) = history.load_all(where / "data" / "memory.db").values()
    assert migration.state == "done"
    assert [s["step"] for s in migration.steps] == ["preflight", "fence", "export", "import", "validate", "switch",
                                                   "done"]  # fmt: skip
    args = ["migration-status", "--db", "data/memory.db", "--migration-id", migration.id]
    status = subprocess.run([sys.executable, "-m", "replicator", *args], cwd=where, capture_output=True, text=True,
                            check=False)  # fmt: skip
    assert status.returncode == 0 and f"migration {migration.id} (blue-green to hybrid): done" in status.stdout


def _replicator(where: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "replicator", *args], cwd=where, capture_output=True, text=True,
                          check=False, timeout=120, env={**os.environ, **(env or {})})  # fmt: skip


def _killed_in_the_import(where: Path, label: str) -> history.Migration:
    """Run migrate and SIGKILL it after 3 batches of the import."""
    pause = {"REPLICATOR_MIGRATE_PAUSE_AFTER": "3", "REPLICATOR_MIGRATE_PAUSE_FILE": str(where / "paused")}
    proc = _migrate(where, label, env=pause)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (where / "paused").exists():
        time.sleep(0.1)
    assert (where / "paused").exists(), _done(proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    (killed,) = history.load_all(where / "data" / "memory.db").values()
    return killed


def test_a_migration_killed_during_the_import_resumes_on_the_rerun(
    tmp_path: Path, graph: Neo4jSettings, label: str
) -> None:
    where = _workdir(tmp_path, graph)
    db = where / "data" / "memory.db"
    killed = _killed_in_the_import(where, label)
    assert killed.state == "running" and killed.last_step == "import" and not killed.alive()
    status = _replicator(where, "status", "--db", "data/memory.db", "--migration-id", killed.id)
    assert status.returncode == 0, status.stderr
    assert f"migration {killed.id} (blue-green to hybrid): interrupted at step import" in status.stdout
    assert "interrupted at step 3 (drain)" in status.stdout  # the cutover's record of the store: rollback resolves
    assert _refuses_writes(db)  # the crash leaves the store fenced, caxton.yaml untouched
    assert read_backend(where / "caxton.yaml") == "embedded"
    code, out, err = _done(_migrate(where, label))
    assert code == 0, (out, err)
    assert f"resuming migration {killed.id}" in err
    assert "resumed after" in out
    assert read_backend(where / "caxton.yaml") == "hybrid"
    assert json.loads(json.dumps([m.state for m in history.load_all(db).values()])) == ["done"]


def test_rollback_by_migration_id_gives_the_store_back(tmp_path: Path, graph: Neo4jSettings, label: str) -> None:
    where = _workdir(tmp_path, graph)
    db = where / "data" / "memory.db"
    killed = _killed_in_the_import(where, label)
    unknown = _replicator(where, "rollback", "--db", "data/memory.db", "--migration-id", "12345", "--reason", "x")
    assert unknown.returncode == 2 and "no migration '12345'" in unknown.stderr, unknown.stderr
    done = _replicator(where, "rollback", "--db", "data/memory.db", "--migration-id", killed.id,
                       "--reason", "validation_failed")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not _refuses_writes(db)
    (after,) = history.load_all(db).values()
    assert (after.state, after.reason) == ("rolled_back", "validation_failed")


def test_a_wrong_password_a_missing_variable_and_a_wrong_key_stop_it_before_anything_starts(
    tmp_path: Path, graph: Neo4jSettings, label: str
) -> None:
    where = _workdir(tmp_path, graph)
    db = where / "data" / "memory.db"
    wrong = _replicator(where, "migrate", "--config", "hybrid-migration.yaml", "--caxton-config", "caxton.yaml",
                        "--strategy", "blue-green", "--entity-label", label, "--qdrant-path", "qdrant",
                        env={"REPLICATOR_NEO4J_PASSWORD": "not-the-password"})  # fmt: skip
    assert wrong.returncode == 2 and "Unauthorized" in wrong.stderr and graph.uri in wrong.stderr, wrong.stderr
    seed = (SEED / "migration-config.yaml").read_text().replace("bolt://neo4j-new:7687", graph.uri)
    (where / "migration-config.yaml").write_text(seed)
    environ = {k: v for k, v in os.environ.items() if k not in ("NEO4J_PASSWORD", "REPLICATOR_NEO4J_PASSWORD")}
    missing = subprocess.run([sys.executable, "-m", "replicator", "migrate", "--config", "migration-config.yaml",
                              "--caxton-config", "caxton.yaml"], cwd=where, capture_output=True, text=True,
                             check=False, env=environ)  # fmt: skip
    assert missing.returncode == 2 and "NEO4J_PASSWORD is not set" in missing.stderr, missing.stderr
    (where / "typo.yaml").write_text(seed.replace("sample_queries", "sample_querys"))
    typo = _replicator(where, "migrate", "--config", "typo.yaml", "--caxton-config", "caxton.yaml",
                       env={"NEO4J_PASSWORD": "x"})  # fmt: skip
    assert typo.returncode == 2 and "sample_querys" in typo.stderr, typo.stderr
    assert not history.history_path(db).exists()  # nothing recorded
    assert not _refuses_writes(db) and read_backend(where / "caxton.yaml") == "embedded"
