"""The seed guide's lifecycle around the move (issue 16): ``assess`` on a live store with its writer
running, ``tune`` against the real Neo4j and a Qdrant local-mode collection, run as an operator runs
them (the ``replicator`` command in a subprocess)."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import neo4j
import pytest
from qdrant_client import QdrantClient, models

from replicator.demo.daemons import free_ports
from replicator.observe.endpoint import scrape
from replicator.sinks.qdrant import layout as qlayout
from replicator.sinks.settings import Neo4jSettings
from replicator.testing.writer import MemoryWriter
from replicator.transport.settings import KafkaSettings


def _replicator(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "replicator", *args], capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def _store(path: Path, entities: int, seed: int = 1) -> MemoryWriter:
    writer = MemoryWriter.create(path)
    rng = random.Random(seed)
    ids = [
        writer.create_entity(f"e{i}", "concept", [f"note {i}"], embedding=[rng.gauss(0, 1) for _ in range(384)])
        for i in range(entities)
    ]
    for i in range(entities):
        writer.create_relation(ids[i], ids[(i + 1) % entities], "relates to")
    return writer


def test_assess_measures_a_live_store_while_its_writer_commits(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    _store(db, 400).close()
    stop, commits, errors = threading.Event(), [0], []

    def write() -> None:
        # A writer with a short busy timeout: a read that held a lock it needs would make it fail.
        conn = sqlite3.connect(db, timeout=0.2, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        while not stop.is_set():
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "INSERT INTO entities (name, entity_type, observations, created_at, updated_at) "
                    "VALUES (?, 't', '[]', 1, 1)",
                    (uuid.uuid4().hex,),
                )
                conn.execute("COMMIT")
                commits[0] += 1
            except sqlite3.Error as exc:
                errors.append(str(exc))
                conn.execute("ROLLBACK")
        conn.close()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        done = _replicator("assess", "--db", str(db), "--queries", "5", "--json")
    finally:
        stop.set()
        writer.join()
    assert done.returncode == 0, done.stderr
    assert errors == [] and commits[0] > 0
    data: dict[str, Any] = json.loads(done.stdout)
    assert 400 <= data["counts"]["entities"] <= 400 + commits[0] and data["counts"]["relations"] == 400
    search = data["search"]
    assert search["queries"] == 5 and search["vectors"] == 400 and 0 < search["p50_ms"] <= search["p95_ms"]
    assert {i["name"] for i in data["indicators"]} == {"entities", "file_bytes", "memory_bytes_estimate",
                                                       "search_p50_ms"}  # fmt: skip
    assert data["verdict"]["backend"] in ("embedded", "qdrant")  # search time depends on this machine
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_assess_keeps_a_history_and_shows_growth_and_the_matrix(tmp_path: Path) -> None:
    db, history = tmp_path / "memory.db", tmp_path / "assess" / "history.jsonl"
    writer = _store(db, 50)
    first = _replicator("assess", "--db", str(db), "--queries", "0", "--history", str(history), "--need", "graph")
    assert first.returncode == 0, first.stderr
    assert "| Complex graph queries | ⚠️ | ✅ | ❌ | ✅ | stated (--need) |" in first.stdout
    assert "Recommendation: neo4j" in first.stdout and "growth" not in first.stdout
    for i in range(25):
        writer.create_entity(f"later{i}", "concept", [])
    writer.close()
    second = _replicator("assess", "--db", str(db), "--queries", "0", "--history", str(history), "--json")
    assert second.returncode == 0, second.stderr
    growth = json.loads(second.stdout)["growth"]
    assert growth["entities"] == 25 and growth["relations"] == 0 and growth["days_to_entity_limit"] > 0
    assert len(history.read_text().splitlines()) == 2


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--db", "{foreign}"], "not a Caxton memory store"),
        (["--db", "{missing}"], "no store at"),
        (["--db", "{store}", "--need", "speed"], "Invalid value for '--need'"),
    ],
)
def test_assess_names_a_mistake_without_a_traceback(tmp_path: Path, args: list[str], said: str) -> None:
    foreign = tmp_path / "other.db"
    sqlite3.connect(foreign).execute("CREATE TABLE t (x)").connection.commit()
    _store(tmp_path / "memory.db", 2).close()
    paths = {"foreign": str(foreign), "missing": str(tmp_path / "nope.db"), "store": str(tmp_path / "memory.db")}
    done = _replicator("assess", *[a.format(**paths) for a in args], "--queries", "0")
    assert done.returncode == 2 and said in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.fixture
def label(graph: Neo4jSettings) -> Iterator[str]:
    name = f"Tune{uuid.uuid4().hex[:8]}"
    yield name
    with neo4j.GraphDatabase.driver(graph.uri, auth=graph.auth()) as driver, driver.session() as session:
        session.run(f"MATCH (n:`{name}`) DETACH DELETE n").consume()
        for record in list(session.run("SHOW INDEXES YIELD name")):
            if str(record["name"]).startswith(f"replicator_{name}_"):
                session.run(f"DROP INDEX `{record['name']}`").consume()


def _indexes(graph: Neo4jSettings, label: str) -> dict[str, str]:
    with neo4j.GraphDatabase.driver(graph.uri, auth=graph.auth()) as driver, driver.session() as session:
        rows = session.run("SHOW INDEXES YIELD name, state")
        return {str(r["name"]): str(r["state"]) for r in rows if str(r["name"]).startswith(f"replicator_{label}_")}


def _tune(
    graph: Neo4jSettings, label: str, *extra: str, password: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {"REPLICATOR_NEO4J_PASSWORD": password if password is not None else str(graph.password)}
    return _replicator("tune", "--neo4j-uri", graph.uri, "--entity-label", label, *extra, env=env)


def test_tune_creates_the_guides_indexes_online_once_and_dry_run_changes_nothing(
    graph: Neo4jSettings, label: str
) -> None:
    with neo4j.GraphDatabase.driver(graph.uri, auth=graph.auth()) as driver, driver.session() as session:
        session.run(
            f"CREATE (a:`{label}` {{id: 1, name: 'a', entity_type: 't', conf: 0.5}})"
            f"-[:DEPENDS_ON {{weight: 0.3}}]->(b:`{label}` {{id: 2, name: 'b', entity_type: 't'}}), "
            f"(b)-[:USES {{weight: 1.0}}]->(a)"
        ).consume()
    custom = ("--confidence-property", "conf", "--strength-property", "weight")
    dry = _tune(graph, label, "--dry-run", *custom)
    assert dry.returncode == 0, dry.stderr
    assert "FOR ()-[r:`USES`]-() ON (r.`weight`)" in dry.stdout and _indexes(graph, label) == {}
    first = _tune(graph, label, *custom, "--json")
    assert first.returncode == 0, first.stderr
    outcomes = {s["name"]: s["outcome"] for s in json.loads(first.stdout)["neo4j"]}
    wanted = {f"replicator_{label}_{w}" for w in ("name", "entity_type", "confidence", "name_type",
                                                  "DEPENDS_ON_strength", "USES_strength")}  # fmt: skip
    assert {n for n, o in outcomes.items() if o == "created"} == wanted and outcomes["statistics"] == "refreshed"
    assert _indexes(graph, label) == dict.fromkeys(wanted, "ONLINE")
    again = _tune(graph, label, *custom, "--json")
    assert {s["outcome"] for s in json.loads(again.stdout)["neo4j"] if s["name"] != "statistics"} == {"present"}


def test_tune_names_a_wrong_password_without_a_traceback(graph: Neo4jSettings, label: str) -> None:
    done = _tune(graph, label, password="not-the-password")
    assert done.returncode == 2 and "tune: Neo4j at" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "password" in done.stderr


def test_tune_says_qdrant_local_mode_has_no_payload_indexes_and_names_a_missing_collection(tmp_path: Path) -> None:
    path = tmp_path / "qdrant"
    client = QdrantClient(path=str(path))
    client.create_collection("mem", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
    client.close()
    done = _replicator("tune", "--no-neo4j", "--qdrant-path", str(path), "--collection", "mem", "--json")
    assert done.returncode == 0, done.stderr
    assert {s["outcome"] for s in json.loads(done.stdout)["qdrant"]} == {"local-mode"}
    missing = _replicator("tune", "--no-neo4j", "--qdrant-path", str(path), "--collection", "other")
    assert missing.returncode == 2 and "no collection 'other'" in missing.stderr, missing.stderr
    nothing = _replicator("tune", "--no-neo4j")
    assert nothing.returncode == 2 and "tune has nothing to do" in nothing.stderr


def _check(
    db: Path, graph: Neo4jSettings, *extra: str, password: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {"REPLICATOR_NEO4J_PASSWORD": password if password is not None else str(graph.password)}
    qdrant = db.parent / "qdrant"
    qdrant.mkdir(exist_ok=True)
    return _replicator("check", "--db", str(db), "--neo4j-uri", graph.uri, "--qdrant-path", str(qdrant), *extra,
                       "--json", env=env)  # fmt: skip


def _statuses(done: subprocess.CompletedProcess[str]) -> dict[str, dict[str, str]]:
    assert "Traceback" not in done.stderr, done.stderr
    return {c["name"]: c for c in json.loads(done.stdout)}


def test_check_passes_a_ready_store_and_names_each_gap_with_its_fix(
    tmp_path: Path, graph: Neo4jSettings, kafka: KafkaSettings
) -> None:
    db, backup = tmp_path / "memory.db", tmp_path / "backup.json"
    writer = _store(db, 30)
    no_backup = _check(db, graph)
    assert no_backup.returncode == 1
    checks = _statuses(no_backup)
    assert checks["backup"]["status"] == "fail" and "replicator export" in checks["backup"]["fix"]
    assert {n: c["status"] for n, c in checks.items() if n != "backup"} == dict.fromkeys(
        ("store schema", "disk", "neo4j", "qdrant", "kafka", "capture overhead"), "pass"
    )
    exported = _replicator("export", "--db", str(db), "--with-embeddings", "-o", str(backup))
    assert exported.returncode == 0, exported.stderr
    ready = _check(db, graph, "--backup", str(backup))
    assert ready.returncode == 0 and {c["status"] for c in _statuses(ready).values()} == {"pass"}, ready.stdout
    writer.create_entity("after the backup", "concept", [])
    writer.close()
    stale = _statuses(_check(db, graph, "--backup", str(backup)))["backup"]
    assert stale["status"] == "warn" and "entities +1" in stale["detail"]
    backup.write_text('{"entities": [')
    broken = _statuses(_check(db, graph, "--backup", str(backup)))["backup"]
    assert broken["status"] == "fail" and "is not valid JSON" in broken["detail"]


def test_check_fails_a_wrong_password_an_absent_broker_and_a_store_without_a_column(
    tmp_path: Path, graph: Neo4jSettings
) -> None:
    db = tmp_path / "memory.db"
    _store(db, 3).close()
    conn = sqlite3.connect(db)
    conn.execute("ALTER TABLE entities DROP COLUMN metadata")
    conn.commit()
    conn.close()
    done = _check(db, graph, "--bootstrap-servers", "127.0.0.1:1", password="not-the-password")
    assert done.returncode == 1
    checks = _statuses(done)
    assert checks["store schema"]["status"] == "fail" and "entities.metadata" in checks["store schema"]["detail"]
    assert checks["neo4j"]["status"] == "fail" and "password" in checks["neo4j"]["fix"]
    assert checks["kafka"]["status"] == "fail" and "127.0.0.1:1" in checks["kafka"]["detail"]


def _migrated(db: Path, graph: Neo4jSettings, label: str, qdrant: Path, layout: str = "caxton") -> None:
    """What the sinks write for the store's rows (design §6), written here directly: entity nodes with
    their id and name, a relationship per relation; a point per embedding with its name, in the Qdrant
    ``layout`` (its vector and payload through the layout's owner)."""
    conn = sqlite3.connect(db)
    entities = conn.execute("SELECT id, name FROM entities").fetchall()
    relations = conn.execute("SELECT from_entity_id, to_entity_id FROM relations").fetchall()
    vectors = conn.execute("SELECT entity_id, embedding FROM embeddings").fetchall()
    conn.close()
    with neo4j.GraphDatabase.driver(graph.uri, auth=graph.auth()) as driver:
        driver.execute_query(f"UNWIND $rows AS r CREATE (:`{label}` {{id: r[0], name: r[1]}})", rows=entities)
        driver.execute_query(
            f"UNWIND $rows AS r MATCH (a:`{label}` {{id: r[0]}}), (b:`{label}` {{id: r[1]}}) "
            "CREATE (a)-[:RELATES_TO]->(b)",
            rows=relations,
        )
    names = dict(entities)
    client = QdrantClient(path=str(qdrant))
    client.create_collection("mem", vectors_config=qlayout.vectors_config(layout))
    client.upsert("mem", [
        models.PointStruct(id=i, vector=qlayout.point_vector(layout, list(struct.unpack("<384f", blob))),
                           payload=qlayout.to_payload(layout, {"id": i, "name": names[i]}, names[i]))
        for i, blob in vectors
    ])  # fmt: skip
    client.close()


@pytest.mark.parametrize("layout", ["caxton", "mcp"])
def test_watch_reads_the_store_and_the_new_backend_alike_and_serves_metrics(
    tmp_path: Path, graph: Neo4jSettings, label: str, layout: str
) -> None:
    db, qdrant = tmp_path / "memory.db", tmp_path / "qdrant"
    _store(db, 40).close()
    _migrated(db, graph, label, qdrant, layout)
    port = free_ports(1)[0]
    args = ["watch", "--db", str(db), "--neo4j-uri", graph.uri, "--entity-label", label, "--qdrant-path", str(qdrant),
            "--collection", "mem", "--layout", layout, "--duration", "20", "--interval", "0.2", "--samples", "5",
            "--metrics-port", str(port), "--json"]  # fmt: skip
    watcher = subprocess.Popen(
        [sys.executable, "-m", "replicator", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "REPLICATOR_NEO4J_PASSWORD": str(graph.password)},
    )  # fmt: skip
    scraped: float | None = None
    deadline = time.monotonic() + 120
    while not scraped and watcher.poll() is None and time.monotonic() < deadline:  # until a read is counted
        scraped = scrape(port, "replicator_watch_read_seconds_count")
        time.sleep(0.2)
    watcher.send_signal(signal.SIGINT)  # Ctrl-C: the report of what it saw, not a traceback
    out, err = watcher.communicate(timeout=60)
    assert "Traceback" not in err, err
    assert scraped is not None and scraped > 0
    report = json.loads(out)
    # Exit 1 is an alert. A latency alert says how fast this machine answered (speed is for bench/, and
    # a first read that compiles its Cypher took 424 ms at load 17): only errors and differences count.
    latency = [a for a in report["alerts"] if " ms (line " in a]
    assert watcher.returncode == (1 if latency else 0), (err, out)
    assert report["alerts"] == latency, report["alerts"]
    rows = {(r["backend"], r["read"]): r for r in report["reads"]}
    assert set(rows) == {
        (b, r)
        for b in ("store", "neo4j", "qdrant")
        for r in ("by_name", "neighbours", "search")
        if not (b == "neo4j" and r == "search") and not (b == "qdrant" and r == "neighbours")
    }
    assert report["rounds"] >= 1 and report["seconds"] < 20
    for row in rows.values():
        assert row["reads"] == report["rounds"] and row["errors"] == 0, row
        assert row["differs_from_store"] == 0, row  # the same data answers the same reads


def test_watch_names_a_destination_that_refuses_it_at_the_start(tmp_path: Path, graph: Neo4jSettings) -> None:
    db = tmp_path / "memory.db"
    _store(db, 3).close()
    done = _replicator("watch", "--db", str(db), "--target", "neo4j", "--neo4j-uri", graph.uri, "--no-search",
                       "--duration", "1", env={"REPLICATOR_NEO4J_PASSWORD": "not-the-password"})  # fmt: skip
    assert done.returncode == 2 and "watch: Neo4j at" in done.stderr and "Traceback" not in done.stderr, done.stderr
