"""Rollback with reverse replication against a PRIVATE Neo4j running the changelog plugin (helpers and
the plugin's own tests: test_reverse.py): `replicator rollback` under an agent writing to Neo4j through
Cypher at ~50 writes/s, alone and after a real live cutover by the real source and sinks. Each prints
its write pause (run with -s). The shared stack is never touched."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import neo4j
import pytest

from replicator.cutover import config, state
from replicator.reverse.aside import parked_rows
from replicator.sinks.neo4j.model import GraphModel
from replicator.sinks.neo4j.reader import GraphReader
from replicator.testing.cypher_writer import CypherWriter
from replicator.testing.writer import MemoryWriter
from replicator.transport.settings import KafkaSettings
from replicator.validation.diff import compare_entities, compare_relations
from replicator.validation.store import StoreReader
from tests.integration.private_neo4j import PrivateNeo4j
from tests.integration.test_cutover_live import Running, _flags
from tests.integration.test_reverse import Graph, _cli, _reverse, _seed_store, _wait_caught_up

pytestmark = pytest.mark.integration


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (an exited process whose parent, here init, has not reaped it yet does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.fixture
def graph(private_neo4j: PrivateNeo4j) -> Iterator[Graph]:
    h = os.urandom(4).hex()
    g = private_neo4j.graph
    driver = neo4j.GraphDatabase.driver(g.uri, auth=g.auth(), notifications_min_severity="OFF")
    yield Graph(private_neo4j, driver, GraphModel(f"Entity_{h}", f"Tomb_{h}", f"Pos_{h}"))
    driver.close()


def test_rollback_under_a_cypher_writer_fences_neo4j_drains_and_loses_nothing(graph: Graph, tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    _seed_store(db, graph)
    cfg = tmp_path / "caxton.yaml"
    cfg.write_text(config.sample_config(str(db)))
    config.switch_backend(cfg, "neo4j")
    state.save(db, state.load(db), config=str(cfg))
    proc = _reverse(db, graph)
    writer = CypherWriter(graph)
    try:
        assert graph.changelog().head() is not None
        writer.thread.start()
        deadline = time.monotonic() + 120
        while writer.done < 150 and time.monotonic() < deadline:
            time.sleep(0.2)
        before = writer.done
        out = _cli(graph, "rollback", "--db", str(db), "--neo4j-uri", graph.server.graph.uri,
                   "--entity-label", graph.label, "--max-pause", "15s")  # fmt: skip
        time.sleep(1)
        writer.stopping.set()
        writer.thread.join()
        # The rollback turned capture off: `reverse run` has nothing left to apply, and ends by itself.
        ended = proc.wait(timeout=30)
        log = db.with_name(db.name + ".reverse.log").read_text()
        assert ended == 0 and f"Neo4j label {graph.label} is no longer captured" in log, log[-2000:]
    finally:
        writer.stopping.set()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    assert before > 100 and "Neo4j fenced at changelog seq" in out and "write pause" in out, out
    assert writer.refused > 0, "the writer kept writing to Neo4j after the rollback's fence"
    assert "memory store moved back to embedded" in writer.refusal
    assert 'backend: "embedded"' in cfg.read_text() and state.load(db).state == "rolled_back"
    with StoreReader(db) as store, GraphReader(graph.model, graph.q) as dest:
        mine, theirs = store.read(embeddings=True), dest.read()
    problems = compare_entities("neo4j", mine, theirs) + compare_relations("neo4j", mine, theirs)
    assert problems == [], "\n".join(str(p) for p in problems[:20])
    MemoryWriter(db).create_entity("the runtime writes to the store again", "person")
    pause = next(line for line in out.splitlines() if line.startswith("write pause"))
    print(f"rollback: {pause}; {writer.done} Cypher writes, {writer.refused} refused after the fence")


def test_entities_with_one_name_refuse_the_rollback_until_fixed_in_neo4j(graph: Graph, tmp_path: Path) -> None:
    """Neo4j takes three entities with one name (a CREATE the driver retried across a restart does
    this); the store's UNIQUE name holds only the first. `status` names the others, `rollback`
    refuses to go back without them and changes nothing. The operator renames the second (its
    change applies) and deletes the first (the third is tried again and applies); then the rollback
    loses nothing."""
    db = tmp_path / "memory.db"
    _seed_store(db, graph)
    proc = _reverse(db, graph)
    flags = ("--db", str(db), "--neo4j-uri", graph.server.graph.uri, "--entity-label", graph.label)
    try:
        for fact in ("first", "second", "third"):
            graph.q(f"CREATE (:{graph.label} {{name: 'twin', entity_type: 'note', observations: [$o]}})", o=fact)
        _wait_caught_up(db, graph)
        shown = _cli(graph, "status", *flags)
        assert "SET ASIDE: 2 change(s) Neo4j took are not in the store" in shown, shown
        assert "UNIQUE constraint failed: entities.name" in shown, shown
        refused = _cli_fails(graph, "rollback", *flags, "--max-pause", "15s")
        assert "2 change(s) Neo4j took are set aside" in refused and "nothing was fenced" in refused, refused
        assert "rename or merge one of the two, or delete one" in refused and "Traceback" not in refused, refused
        assert state.load(db).state == "cut_over" and graph.changelog().capturing()
        (_, _, second, _), (_, _, third, _) = parked_rows(sqlite3.connect(db), graph.label)
        graph.q(f"MATCH (n:{graph.label} {{id: $id}}) SET n.name = 'twin 2'", id=second)
        graph.q(f"MATCH (n:{graph.label} {{name: 'twin'}}) WHERE n.id <> $id DETACH DELETE n", id=third)
        _wait_caught_up(db, graph)
        assert "SET ASIDE" not in _cli(graph, "status", *flags)
        out = _cli(graph, "rollback", *flags, "--max-pause", "15s")
        assert "Neo4j fenced at changelog seq" in out and proc.wait(timeout=30) == 0, out
        log = db.with_name(db.name + ".reverse.log").read_text()
        assert f"entity {third}, set aside before" in log, log[-2000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    with StoreReader(db) as store, GraphReader(graph.model, graph.q) as dest:
        mine, theirs = store.read(embeddings=False), dest.read()
    assert compare_entities("neo4j", mine, theirs) + compare_relations("neo4j", mine, theirs) == []
    twins = sorted((e.name, e.observations) for e in mine.entities.values() if e.name.startswith("twin"))
    assert twins == [("twin", ("third",)), ("twin 2", ("second",))]


def _cli_fails(graph: Graph, *args: str) -> str:
    """`replicator ARGS` that must refuse (exit 2, the CLI's code for a named error, not a crash): its stderr."""
    env = {**os.environ, "REPLICATOR_NEO4J_PASSWORD": graph.server.graph.password or ""}
    cmd = [sys.executable, "-m", "replicator", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    return proc.stderr


def test_live_cutover_starts_the_reverse_process_and_rollback_under_a_cypher_writer_loses_nothing(
    private_neo4j: PrivateNeo4j, kafka: KafkaSettings, tmp_path: Path
) -> None:
    """The whole path: a live store replicated by the real source and sinks into the private Neo4j,
    `replicator cutover` (which turns capture on before its switch and starts `reverse run`), an agent
    writing to Neo4j through Cypher, then `replicator rollback` under that writer."""
    run = Running(tmp_path, kafka, private_neo4j.graph)
    run.pipeline.start()
    run.pipeline.wait_ready()
    g = Graph(private_neo4j, neo4j.GraphDatabase.driver(private_neo4j.graph.uri, auth=private_neo4j.graph.auth()),
              GraphModel(run.cfg.entity_label, run.cfg.tombstone_label, run.cfg.position_label))  # fmt: skip
    reverse_pid = None
    writer = CypherWriter(g)
    try:
        run.wait_caught_up()
        out = _cli(g, "cutover", "--db", str(run.db), "--caxton-config", str(run.caxton), "--target", "neo4j",
                   "--max-pause", "10s", "--max-lag", "1000000", *_flags(run), stderr=True)  # fmt: skip
        reverse_pid = int(out.split("started (pid ")[1].split(",")[0])
        log = run.db.with_name(run.db.name + ".reverse.log")
        deadline = time.monotonic() + 300  # the model loads first: slow on a loaded machine
        while "reverse: applying" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        writer.thread.start()  # the source and sinks keep running, as in production
        deadline = time.monotonic() + 120
        while writer.done < 150 and time.monotonic() < deadline:
            time.sleep(0.2)
        rolled = _cli(g, "rollback", "--db", str(run.db), *_flags(run), "--max-pause", "15s", log=log)
        writer.stopping.set()
        writer.thread.join()
        assert "Neo4j fenced at changelog seq" in rolled and writer.refused > 0, rolled
        assert config.read_backend(run.caxton) == "embedded"
        with StoreReader(run.db) as store, GraphReader(g.model, g.q) as dest:
            mine, theirs = store.read(embeddings=False), dest.read()
        problems = compare_entities("neo4j", mine, theirs) + compare_relations("neo4j", mine, theirs)
        assert problems == [], "\n".join(str(p) for p in problems[:20])
        pause = next(line for line in rolled.splitlines() if line.startswith("write pause"))
        print(f"live rollback: {pause}; {writer.done} Cypher writes, {writer.refused} refused after the fence")
        deadline = time.monotonic() + 30  # the cutover's `reverse run` ends by itself after the rollback
        while _running(reverse_pid):
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        assert f"Neo4j label {g.label} is no longer captured" in log.read_text()
        reverse_pid = None
        # Forward replication resumes from the store's position: the sink's writes pass Neo4j's fence.
        MemoryWriter(run.db).create_entity("the runtime writes to the store again", "person")
        assert run.pipeline.wait_for(lambda: bool(g.q(
            f"MATCH (n:{g.label} {{name: 'the runtime writes to the store again'}}) RETURN n")), 120)  # fmt: skip
    finally:
        writer.stopping.set()
        if reverse_pid is not None:
            os.killpg(reverse_pid, signal.SIGTERM)
        g.changelog().disable()  # the rollback's fence refuses everyone but the forward sink, cleanup too
        run.cleanup(private_neo4j.graph)
        g.driver.close()
