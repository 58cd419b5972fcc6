"""Reverse replication against a PRIVATE Neo4j running the changelog plugin (its own temp dir and free
Bolt port, started the way `replicator stack up` starts it): what the plugin captures, in commit
order, across a Neo4j restart; and `replicator reverse run` applying it to a store that refuses the
runtime's writes, killed with SIGKILL several times and with Neo4j restarted under a Cypher writer,
after which the store equals the graph field by field. The shared stack is never touched."""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import neo4j
import pytest

from replicator.capture.install import install
from replicator.capture.triggers import head_seq
from replicator.cutover import fence, state
from replicator.embedding import entity_text, load_model
from replicator.reverse import process
from replicator.reverse.apply import read_position
from replicator.reverse.aside import parked_rows
from replicator.reverse.changelog import CHANGE_LABEL, Changelog
from replicator.sinks.neo4j.applier import SINK_METADATA
from replicator.sinks.neo4j.model import GraphModel, relationship_type
from replicator.sinks.neo4j.reader import GraphReader
from replicator.testing.cypher_writer import CypherWriter
from replicator.testing.writer import MemoryWriter
from replicator.validation.diff import compare_entities, compare_relations
from replicator.validation.model import Snapshot, vectors_equal
from replicator.validation.store import StoreReader
from tests.integration.private_neo4j import PrivateNeo4j

pytestmark = pytest.mark.integration

SEED_VECTOR = [1.0] + [0.0] * 383  # not what the model computes for any text


@dataclass
class Graph:
    server: PrivateNeo4j
    driver: neo4j.Driver
    model: GraphModel

    def q(self, cypher: str, **params: object) -> list[neo4j.Record]:
        return list(self.driver.execute_query(cypher, parameters_=params).records)

    @property
    def label(self) -> str:
        return self.model.entity_label

    def changelog(self) -> Changelog:
        return Changelog.for_driver(self.driver, "neo4j", self.label)


@pytest.fixture
def graph(private_neo4j: PrivateNeo4j) -> Iterator[Graph]:
    h = uuid.uuid4().hex[:8]
    g = private_neo4j.graph
    driver = neo4j.GraphDatabase.driver(g.uri, auth=g.auth(), notifications_min_severity="OFF")
    yield Graph(private_neo4j, driver, GraphModel(f"Entity_{h}", f"Tomb_{h}", f"Pos_{h}"))
    driver.close()


def _restart(graph: Graph) -> None:
    graph.server.stop()
    graph.server.start()


def test_the_plugin_captures_every_kind_of_change_in_commit_order_across_a_restart(graph: Graph) -> None:
    log = graph.changelog()
    log.enable("store-1", next_entity_id=100, next_relation_id=50)
    lab = graph.label
    graph.q(f"CREATE (:{lab} {{name: 'a', entity_type: 't', observations: ['x']}}), "
            f"(:{lab} {{name: 'b', entity_type: 't', observations: []}})")  # fmt: skip
    both = f"MATCH (a:{lab} {{name: 'a'}}), (b:{lab} {{name: 'b'}})"
    graph.q(f"{both} CREATE (a)-[:KNOWS {{relation_type: 'knows'}}]->(b)")
    graph.q(f"MATCH (a:{lab} {{name: 'a'}}) SET a.observations = a.observations + 'y', a.confidence = 0.5")
    graph.q(f"MATCH (a:{lab} {{name: 'a'}}) SET a.observations = [o IN a.observations WHERE o <> 'x'], a.name = 'a2'")
    graph.q(f"MATCH (:{lab})-[r:KNOWS]->(:{lab}) SET r.strength = 0.25")
    graph.q(f"MATCH (:{lab})-[r:KNOWS]->(:{lab}) DELETE r")
    graph.q("CREATE (:Unrelated {name: 'not ours'})")
    _restart(graph)  # the changelog, the head and the counters are the database's: they survive
    graph.q(f"MATCH (b:{lab} {{name: 'b'}}) DETACH DELETE b")
    rows = log.read(0, limit=100)
    got = [(c.seq, c.kind, c.op, c.id, c.props.get("name"), c.props.get("observations"), c.props.get("confidence"),
            c.props.get("strength")) for c in rows]  # fmt: skip
    assert got == [
        (1, "entity", "u", 100, "a", ["x"], None, None),
        (1, "entity", "u", 101, "b", [], None, None),
        (2, "relation", "u", 50, None, None, None, None),
        (3, "entity", "u", 100, "a", ["x", "y"], 0.5, None),
        (4, "entity", "u", 100, "a2", ["y"], 0.5, None),
        (5, "relation", "u", 50, None, None, None, 0.25),
        (6, "relation", "d", 50, None, None, None, None),
        (7, "entity", "d", 101, None, None, None, None),
    ]
    assert (rows[2].from_id, rows[2].to_id, rows[2].rel_type) == (100, 101, "KNOWS")
    assert [r["id"] for r in graph.q(f"MATCH (n:{lab}) RETURN n.id AS id")] == [100], "ids assigned in Neo4j"
    head = log.head()
    assert head is not None and head.seq == 7


def test_the_forward_sinks_writes_are_not_captured_and_keep_new_ids_above_theirs(graph: Graph) -> None:
    log = graph.changelog()
    log.enable("store-1", next_entity_id=1, next_relation_id=1)  # enabled before the store's last rows arrive
    lab = graph.label

    def sink_work(tx: neo4j.ManagedTransaction) -> None:
        tx.run(f"CREATE (a:{lab} {{id: 500, name: 's1', entity_type: 't', observations: []}}), "
               f"(b:{lab} {{id: 501, name: 's2', entity_type: 't', observations: []}}), "
               "(a)-[:KNOWS {id: 70, relation_type: 'KNOWS'}]->(b)").consume()  # fmt: skip

    with graph.driver.session() as session:
        session.execute_write(neo4j.unit_of_work(metadata=SINK_METADATA)(sink_work))
    head = log.head()
    assert head is not None and head.seq == 0 and log.read(0) == [], "the forward sink's rows were captured"
    graph.q(
        f"MATCH (a:{lab} {{id: 500}}), (b:{lab} {{id: 501}}) "
        f"CREATE (:{lab} {{name: 'runtime', entity_type: 't'}}), (b)-[:LIKES {{relation_type: 'LIKES'}}]->(a)"
    )
    assert [(c.kind, c.id) for c in log.read(0)] == [("entity", 502), ("relation", 71)]


def test_concurrent_transactions_get_seqs_in_commit_order(graph: Graph) -> None:
    log = graph.changelog()
    log.enable("store-1", 1, 1)
    graph.q(f"CREATE (:{graph.label} {{name: 'counter', entity_type: 'c', observations: [], n: 0}})")

    def bump() -> None:
        for _ in range(25):
            graph.q(f"MATCH (c:{graph.label} {{name: 'counter'}}) SET c.n = c.n + 1")

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = log.read(0, limit=1000)
    assert [c.seq for c in rows] == list(range(1, 102))
    assert [c.props["n"] for c in rows] == list(range(101)), "a later commit got an earlier seq"


def _seed_store(db: Path, graph: Graph, entities: int = 30) -> None:
    """A store cut over to ``graph``: the same rows in both, capture installed, the store refusing writes."""
    writer = MemoryWriter.create(db)
    ids = [writer.create_entity(f"e{i}", "thing", [f"fact {i}"], embedding=SEED_VECTOR) for i in range(entities)]
    for a, b in itertools.pairwise(ids):
        writer.create_relation(a, b, "next to")
    writer.close()
    install(db)
    with StoreReader(db) as reader:
        snap = reader.read(embeddings=False)
    for e in snap.entities.values():
        props = {k: v for k, v in e.to_row_image().items() if v is not None}
        props["observations"] = json.loads(props["observations"])
        graph.q(f"CREATE (n:{graph.label}) SET n = $p", p=props)
    for r in snap.relations.values():
        props = {k: v for k, v in r.to_row_image().items() if v is not None and "entity" not in k}
        graph.q(f"MATCH (a:{graph.label} {{id: $a}}), (b:{graph.label} {{id: $b}}) "
                f"CREATE (a)-[r:{relationship_type(r.relation_type)}]->(b) SET r = $p",
                a=r.from_entity_id, b=r.to_entity_id, p=props)  # fmt: skip
    fence.acquire(db, timeout_s=1).refuse_writes_and_release(fence.refusal_message("neo4j", "now"))
    state.save(db, state.MigrationState(), state="cut_over", target="neo4j", final_seq=head_seq(sqlite3.connect(db)))


def _assert_embeddings(snap: Snapshot) -> None:
    """Every entity has an embedding: the seed's where its text is the seed's, else the model's of its text."""
    assert set(snap.embeddings) == set(snap.entities)
    recomputed = []
    for key, e in snap.entities.items():
        seeded = (e.name, e.entity_type, e.observations) == (f"e{key - 1}", "thing", (f"fact {key - 1}",))
        assert vectors_equal(snap.embeddings[key].vector, tuple(SEED_VECTOR)) == seeded, (key, e)
        recomputed += [] if seeded else [key]
    model = load_model()
    sample = random.sample(recomputed, min(5, len(recomputed)))
    texts = [entity_text(str(snap.entities[k].name), str(snap.entities[k].entity_type),
                         [str(o) for o in snap.entities[k].observations]) for k in sample]  # fmt: skip
    for key, vector in zip(sample, model.encode(texts, normalize_embeddings=True), strict=True):
        assert vectors_equal(snap.embeddings[key].vector, tuple(float(x) for x in vector)), key


def _reverse(db: Path, graph: Graph) -> subprocess.Popen[bytes]:
    """``replicator reverse run``, once it applies (the model loaded: on a loaded machine that takes a
    while, and a kill before it would kill nothing in the middle). Its log: ``<db>.reverse.log``."""
    g = graph.server.graph
    env = {**os.environ, "REPLICATOR_NEO4J_PASSWORD": g.password or ""}
    cmd = [sys.executable, "-m", "replicator", "reverse", "run", "--db", str(db), "--neo4j-uri", g.uri,
           "--entity-label", graph.label]  # fmt: skip
    log = db.with_name(db.name + ".reverse.log")
    with open(log, "a") as out:
        start = out.tell()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=out, start_new_session=True)
    deadline = time.monotonic() + 300
    while "reverse: applying" not in log.read_text()[start:]:
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[start:]
        time.sleep(0.2)
    return proc


def _wait_caught_up(db: Path, graph: Graph, timeout_s: float = 300) -> None:
    conn = sqlite3.connect(db)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            lag = process.lag(conn, graph.changelog())
            if lag is not None and lag.transactions == 0:
                return
            assert time.monotonic() < deadline, f"reverse lag stays at {lag}"
            time.sleep(0.3)
    finally:
        conn.close()


def test_reverse_run_survives_kill_9_and_a_neo4j_restart_and_the_store_equals_the_graph(
    graph: Graph, tmp_path: Path
) -> None:
    db = tmp_path / "memory.db"
    _seed_store(db, graph)
    forward_head = head_seq(sqlite3.connect(db))
    proc = _reverse(db, graph)
    writer = CypherWriter(graph)
    try:
        assert graph.changelog().head() is not None  # the reverse process enabled capture first
        writer.thread.start()
        for _ in range(3):
            time.sleep(random.uniform(1, 4))
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            proc = _reverse(db, graph)
        time.sleep(2)
        _restart(graph)  # Neo4j goes away under the writer and the reverse process
        time.sleep(4)
        writer.stopping.set()
        writer.thread.join()
        _wait_caught_up(db, graph)
    finally:
        writer.stopping.set()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    assert writer.done > 100, f"the writer made only {writer.done} writes"
    with StoreReader(db) as store, GraphReader(graph.model, graph.q) as dest:
        mine, theirs = store.read(embeddings=True), dest.read()
    problems = compare_entities("neo4j", mine, theirs) + compare_relations("neo4j", mine, theirs)
    conn = sqlite3.connect(db)
    # Set-aside rows first in the message: a row the store refused shows as a difference. Seen twice in
    # CI, "neo4j entity 466: extra" with it parked for "UNIQUE constraint failed: entities.name": a
    # CREATE the driver retried across the restart, now a MERGE (replicator/testing/cypher_writer.py).
    parked = parked_rows(conn, graph.label)
    assert problems == [], "\n".join([f"parked: {parked}", *(str(p) for p in problems[:20])])
    _assert_embeddings(mine)
    assert head_seq(conn) == forward_head, "reverse writes were captured as forward changes"
    assert parked == []
    position = read_position(conn, graph.label)
    head = graph.changelog().head()
    assert position is not None and head is not None and position.seq == head.seq
    left = graph.q(f"MATCH (c:{CHANGE_LABEL} {{ns: $ns}}) RETURN count(c) AS n", ns=graph.label)[0]["n"]
    assert left == 0, "applied changelog rows are pruned"
    with pytest.raises(sqlite3.IntegrityError, match="memory store moved"):
        MemoryWriter(db).create_entity("runtime", "person")
    shown = _cli(graph, "status", "--db", str(db), "--neo4j-uri", graph.server.graph.uri, "--entity-label", graph.label)
    assert f"reverse: OK, lag 0 transactions / 0.0s (applied seq {head.seq} of {head.seq})" in shown


def _cli(graph: Graph, *args: str, stderr: bool = False, log: Path | None = None) -> str:
    env = {**os.environ, "REPLICATOR_NEO4J_PASSWORD": graph.server.graph.password or ""}
    cmd = [sys.executable, "-m", "replicator", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr + (f"\n--- {log}:\n{log.read_text()[-3000:]}" if log else "")
    return proc.stdout + (proc.stderr if stderr else "")
