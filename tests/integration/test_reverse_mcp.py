"""Reverse replication of the MCP layout (docs/reverse.md, docs/layouts.md) against a PRIVATE Neo4j running
the changelog plugin, after a real live cutover with ``--layout mcp`` by the real source and sinks: an
agent writes through mcp-neo4j-memory's own tools (``:Memory`` nodes without the Caxton label or id,
observations as list items, relationships named by their type, DETACH DELETE) and through Cypher, then
``replicator rollback``; the store must equal the graph field by field, as the mcp layout's reader
reads it back. The shared stack's Neo4j is never touched (Kafka is shared, isolated by topic prefix)."""

from __future__ import annotations

import contextlib
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
from typing import Any

import neo4j
import pytest

from replicator.capture.triggers import head_seq
from replicator.cutover import config, state
from replicator.cutover.targets import Neo4jTarget
from replicator.reverse import process
from replicator.reverse.changelog import Changelog
from replicator.sinks.neo4j.model import GraphModel, relationship_type
from replicator.sinks.neo4j.reader import GraphReader
from replicator.testing.cypher_writer import McpCypherWriter
from replicator.testing.mcp_agent import McpAgent
from replicator.testing.paced import Writers
from replicator.testing.writer import MemoryWriter
from replicator.transport.settings import KafkaSettings
from replicator.validation.diff import compare_entities, compare_relations
from replicator.validation.model import Snapshot
from replicator.validation.store import StoreReader
from tests.integration.private_neo4j import PrivateNeo4j
from tests.integration.test_mcp_servers import McpPipeline, _caught_up
from tests.integration.test_reverse import Graph, _wait_caught_up
from tests.mcp import run

pytestmark = pytest.mark.integration


class CutOver:
    """An McpPipeline on the private Neo4j, cut over live by `replicator cutover --layout mcp` (which turns
    capture on and starts `replicator reverse run`)."""

    def __init__(self, p: McpPipeline, server: PrivateNeo4j) -> None:
        self.p, self.server = p, server
        o = p.opts
        self.model = GraphModel(o.entity_label, p.cfg.tombstone_label, o.position_label, layout="mcp")
        self.driver = neo4j.GraphDatabase.driver(p.graph.uri, auth=p.graph.auth(), notifications_min_severity="OFF")
        self.reverse_pid: int | None = None
        self.flags = [
            "--bootstrap-servers", o.bootstrap_servers, "--topic-prefix", o.topic_prefix, "--neo4j-uri", o.neo4j.uri,
            "--neo4j-sink", o.neo4j_sink, "--neo4j-group", o.neo4j_group, "--entity-label", o.entity_label,
            "--position-label", o.position_label, "--layout", "mcp", "--qdrant-sink", o.qdrant_sink,
            "--qdrant-group", o.qdrant_group, "--qdrant-endpoint", o.qdrant_endpoint or "",
            "--qdrant-path", str(p.cfg.qdrant_dir),
        ]  # fmt: skip

    def q(self, cypher: str, **params: object) -> list[neo4j.Record]:
        return list(self.driver.execute_query(cypher, parameters_=params).records)

    def cli(self, *args: str, retry_stale: bool = False) -> str:
        env = {**os.environ, "REPLICATOR_NEO4J_PASSWORD": self.p.graph.password or ""}
        for _ in range(3):
            proc = subprocess.run([sys.executable, "-m", "replicator", *args], env=env, capture_output=True,
                                  text=True, check=False)  # fmt: skip
            # The cutover's preflight refuses a sink that wrote no position for 15 s, changing nothing. On
            # this shared 2-core machine (load 20 and more) a sink can starve that long: an operator runs
            # the cutover again, and so does the test, at most twice more.
            if not (retry_stale and "ABORTED at preflight" in proc.stdout and "last wrote its position" in proc.stdout):
                break
            self.wait_fresh()
        log = self.p.db.with_name(self.p.db.name + ".reverse.log")
        tail = log.read_text()[-3000:] if log.exists() else ""
        assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n--- reverse log:\n{tail}"
        return proc.stdout + proc.stderr

    def cut_over(self) -> None:
        """The Neo4j sink has applied the seeded store, then a live writer writes and the cutover runs
        while it writes (draining what the sink has not applied yet, within the writer's lock wait);
        waits until the reverse process it started applies."""
        conn = sqlite3.connect(self.p.db)
        seeded = head_seq(conn)
        conn.close()
        self._wait_neo4j_applied(seeded)
        self.p.writer.start()
        try:
            self.wait_fresh()
            out = self.cli("cutover", "--db", str(self.p.db), "--caxton-config", str(self.p.caxton), "--target",
                           "neo4j", "--max-pause", "25s", "--writer-wait", "30s", "--max-lag", "1000000",
                           *self.flags, retry_stale=True)  # fmt: skip
        finally:
            self.p.writer.stop()
        self.reverse_pid = int(out.split("started (pid ")[1].split(",")[0])
        log = self.p.db.with_name(self.p.db.name + ".reverse.log")
        deadline = time.monotonic() + 300  # the model loads first: slow on a loaded machine
        while "reverse: applying" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)

    def wait_fresh(self) -> None:
        """The Neo4j sink is near live (the cutover's preflight refuses a sink that has not written for a while)."""
        target = Neo4jTarget(self.p.opts)
        try:
            assert self.p.pipeline.wait_for(lambda: _caught_up(target), 300), "the Neo4j sink did not catch up"
        finally:
            target.close()

    def _wait_neo4j_applied(self, seq: int, timeout_s: float = 300) -> None:
        """The Neo4j sink's watermark has reached ``seq`` (the snapshot and the seed applied)."""
        target = Neo4jTarget(self.p.opts)

        def applied() -> bool:
            try:
                position = target.position()
            except Exception:  # not up yet
                return False
            watermark = position.watermark() if position else None
            return watermark is not None and watermark.seq >= seq

        try:
            assert self.p.pipeline.wait_for(applied, timeout_s), f"the Neo4j sink did not reach seq {seq}"
        finally:
            target.close()

    def rollback(self) -> str:
        return self.cli("rollback", "--db", str(self.p.db), *self.flags, "--max-pause", "15s")

    def snapshots(self) -> tuple[Snapshot, Snapshot]:
        """The store and the graph (as the mcp layout's reader reads it), field by field."""
        with StoreReader(self.p.db) as store, GraphReader(self.model, self.q) as dest:
            return store.read(embeddings=False), dest.read()

    def close(self) -> None:
        if self.reverse_pid is not None:
            # After a rollback `reverse run` ends by itself (capture off): only a live one is stopped.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.reverse_pid, signal.SIGTERM)
        # The rollback's fence refuses every writer but the forward sink, the cleanup too: capture off first.
        Changelog.for_driver(self.driver, "neo4j", self.model.entity_label).disable()
        self.driver.close()


@pytest.fixture
def cut(tmp_path: Path, kafka: KafkaSettings, private_neo4j: PrivateNeo4j) -> Iterator[CutOver]:
    p = McpPipeline(tmp_path, kafka, private_neo4j.graph)
    p.pipeline.start("source", "neo4j")  # a cutover to Neo4j alone: no Qdrant sink (the model's CPU) needed
    p.pipeline.wait_ready()
    made = CutOver(p, private_neo4j)
    try:
        made.cut_over()
        yield made
    finally:
        made.close()
        p.cleanup()


def _ok(answer: dict[str, Any]) -> Any:
    assert "error" not in answer, answer["error"]
    return answer["ok"]


def _agent_writes(cut: CutOver, tag: str) -> dict[str, Any]:
    """Writes through every tool of mcp-neo4j-memory and through Cypher, on chosen entities; returns them."""
    with StoreReader(cut.p.db) as store:
        before = store.read(embeddings=False)
    live = sorted(before.entities.values(), key=lambda e: e.id)
    by_id = {e.id: e for e in live}
    kept = next(r for r in before.relations.values())  # a migrated relationship the agent deletes by its type
    busy = {kept.from_entity_id, kept.to_entity_id}
    a, b, c, d, e, f = [x for x in live if x.id not in busy][:6]
    new1, new2, via_cypher = f"mcp new one {tag}", f"mcp new two {tag}", f"cypher new {tag}"
    answers = run.neo4j_memory(cut.p.graph, [
        {"tool": "create_entities", "args": {"entities": [
            {"name": new1, "type": "concept", "observations": ["first", "second"]},
            {"name": new2, "type": "person", "observations": []},
            {"name": b.name, "type": "revised_kind", "observations": ["replaced by the agent"]},
        ]}},
        {"tool": "add_observations", "args": {"observations": [
            {"entityName": a.name, "observations": ["told by an agent"]},
            {"entityName": new2, "observations": ["later fact"]},
        ]}},
        {"tool": "delete_observations", "args": {"deletions": [{"entityName": new1, "observations": ["first"]}]}},
        {"tool": "create_relations", "args": {"relations": [
            {"source": new1, "target": a.name, "relationType": "KNOWS_ABOUT"},
            {"source": a.name, "target": new2, "relationType": "MET"},
            {"source": c.name, "target": new1, "relationType": "MET"},
        ]}},
        {"tool": "delete_relations", "args": {"relations": [
            {"source": c.name, "target": new1, "relationType": "MET"},
            {"source": by_id[kept.from_entity_id].name, "target": by_id[kept.to_entity_id].name,
             "relationType": relationship_type(kept.relation_type)},
        ]}},
        {"tool": "delete_entities", "args": {"names": [d.name]}},
    ])  # fmt: skip
    for answer in answers:
        _ok(answer)
    lab = cut.model.entity_label
    cut.q("CREATE (:Memory {name: $n, type: 'note', observations: ['via cypher']})", n=via_cypher)
    cut.q("MATCH (x:Memory {name: $x}), (y:Memory {name: $y}) CREATE (x)-[:MENTIONS]->(y)", x=via_cypher, y=new2)
    cut.q(f"MATCH (n:{lab} {{id: $id}}) SET n.name = n.name + ' renamed', n.observations = n.observations + 'more'",
          id=e.id)  # fmt: skip
    cut.q(f"MATCH (n:{lab} {{id: $id}}) DETACH DELETE n", id=f.id)
    return {"a": a, "b": b, "c": c, "d": d, "e": e, "f": f, "kept": kept, "new1": new1, "new2": new2,
            "via_cypher": via_cypher}  # fmt: skip


#: The agents writing during the rollback (issue 15: >= 50 writes/s combined, Cypher and mcp-neo4j-memory):
#: Cypher threads and mcp-neo4j-memory sessions (each serial over its stdio), writes/s each.
CYPHER_THREADS, CYPHER_RATE, MCP_AGENTS, MCP_RATE = 2, 20.0, 4, 10.0


def _rollback_under_writers(cut: CutOver, graph: Graph, names: list[str], seed: int) -> str:
    """`replicator rollback` while agents write through Cypher and through mcp-neo4j-memory's tools
    (together at a paced 80 writes/s); every one must see the fence's refusal. Prints the pause and the
    rates the writers achieved (measured by bench/rollback_pause.py, never asserted)."""
    cypher = Writers(*(McpCypherWriter(graph, seed + i, CYPHER_RATE) for i in range(CYPHER_THREADS)))
    agents = Writers(*(McpAgent(run.neo4j_memory_session(cut.p.graph), names, seed + 100 + i, MCP_RATE)
                       for i in range(MCP_AGENTS)))  # fmt: skip
    both = Writers(*cypher.all, *agents.all)
    try:
        both.start()
        for writers in (cypher, agents):
            writers.wait_for(100, 120)
        steady = both.rate()  # before the rollback's own process competes for the CPU
        out = cut.rollback()
        time.sleep(1)
    finally:
        both.stop()
    assert both.failures() == [], both.failures()[:5]
    assert "Neo4j fenced at changelog seq" in out and config.read_backend(cut.p.caxton) == "embedded", out
    for writer in both.all:
        assert writer.done > 0, f"{type(writer).__name__} never wrote"
        assert writer.refused > 0 and "memory store moved back to embedded" in writer.refusal, "wrote past the fence"
    pause = next(line for line in out.splitlines() if line.startswith("write pause"))
    print(f"mcp rollback: {pause}; {cypher.done()} Cypher writes ({CYPHER_THREADS} threads, {cypher.rate():.1f}/s) "
          f"and {agents.done()} mcp-neo4j-memory writes ({MCP_AGENTS} agents, {agents.rate():.1f}/s): "
          f"{both.rate():.1f} writes/s combined ({steady:.1f} before the rollback); {cypher.refused()} and "
          f"{agents.refused()} refused after the fence, {both.lost_races()} lost a race with a delete; "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
    return out


def _assert_equal(cut: CutOver) -> Snapshot:
    """The store equals the graph, field by field, as the mcp layout's reader reads it, and the graph holds
    no memory node or relationship without a Caxton id. Returns the store's snapshot."""
    mine, theirs = cut.snapshots()
    problems = compare_entities("neo4j", mine, theirs) + compare_relations("neo4j", mine, theirs)
    assert problems == [], "\n".join(str(p) for p in problems[:20])
    with GraphReader(cut.model, cut.q) as dest:
        assert dest.foreign_writes() == [], "memory nodes or relationships the store does not have"
    return mine


def test_writes_through_mcp_neo4j_memory_and_cypher_flow_back_and_the_store_equals_the_graph(cut: CutOver) -> None:
    tag = uuid.uuid4().hex[:6]
    w = _agent_writes(cut, tag)
    a, b, d, e, f, kept = (w[k] for k in ("a", "b", "d", "e", "f", "kept"))
    graph = Graph(cut.server, cut.driver, cut.model)
    _wait_caught_up(cut.p.db, graph)
    mine = _assert_equal(cut)
    got = {x.name: x for x in mine.entities.values()}
    assert (got[w["new1"]].entity_type, got[w["new1"]].observations) == ("concept", ("second",))
    assert (got[w["new2"]].entity_type, got[w["new2"]].observations) == ("person", ("later fact",))
    assert (got[w["via_cypher"]].entity_type, got[w["via_cypher"]].observations) == ("note", ("via cypher",))
    assert (got[b.name].entity_type, got[b.name].observations) == ("revised_kind", ("replaced by the agent",))
    assert got[a.name].observations == (*a.observations, "told by an agent")
    assert got[a.name].entity_type == a.entity_type  # the exact text is kept
    assert got[f"{e.name} renamed"].observations == (*e.observations, "more")
    assert d.name not in got and f.id not in mine.entities and kept.id not in mine.relations
    names = {x.id: x.name for x in mine.entities.values()}
    triples = {(names[r.from_entity_id], r.relation_type, names[r.to_entity_id]) for r in mine.relations.values()}
    assert {
        (w["new1"], "KNOWS_ABOUT", a.name),
        (a.name, "MET", w["new2"]),
        (w["via_cypher"], "MENTIONS", w["new2"]),
    } <= triples
    assert (w["c"].name, "MET", w["new1"]) not in triples

    _rollback_under_writers(cut, graph, [a.name, w["c"].name, w["new1"], w["new2"]], seed=int(tag, 16))
    assert state.load(cut.p.db).state == "rolled_back"
    _assert_equal(cut)
    MemoryWriter(cut.p.db).create_entity(f"the runtime writes to the store again {tag}", "person")


def _kill_9(pid: int) -> None:
    """SIGKILL to ``pid``'s session; returns once it is gone (reaped here when it is this process's child)."""
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while state.pid_alive(pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        assert time.monotonic() < deadline, f"pid {pid} outlived SIGKILL"
        time.sleep(0.05)


def _respawn_reverse(cut: CutOver) -> int:
    """A new `replicator reverse run`, as an operator starts one after a crash; returns once it applies."""
    log = cut.p.db.with_name(cut.p.db.name + ".reverse.log")
    started = log.read_text().count("reverse: applying")
    pid, _ = process.spawn(cut.p.db, cut.p.opts.neo4j, cut.model)
    deadline = time.monotonic() + 300  # the model loads first
    while log.read_text().count("reverse: applying") == started:
        assert state.pid_alive(pid) and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    return pid


def test_mcp_agents_writing_through_kill_9_of_reverse_run_and_a_neo4j_restart_lose_nothing(cut: CutOver) -> None:
    """mcp-neo4j-memory agents and a Cypher agent write while `reverse run` is killed (-9) twice and
    restarted, then while the private Neo4j restarts; once the reverse stream caught up, the store
    equals the graph field by field."""
    tag = uuid.uuid4().hex[:6]
    graph = Graph(cut.server, cut.driver, cut.model)
    with StoreReader(cut.p.db) as store:
        names = sorted(e.name for e in store.read(embeddings=False).entities.values())[:10]
    agents = Writers(*(McpAgent(run.neo4j_memory_session(cut.p.graph), names, int(tag, 16) + i, MCP_RATE,
                                prefix=f"agent {tag} {i}") for i in range(2)))  # fmt: skip
    cypher = Writers(McpCypherWriter(graph, int(tag, 16), CYPHER_RATE))
    both = Writers(*agents.all, *cypher.all)
    try:
        both.start()
        agents.wait_for(20, 120)
        for _ in range(2):
            time.sleep(random.uniform(1, 4))
            assert cut.reverse_pid is not None
            _kill_9(cut.reverse_pid)
            cut.reverse_pid = _respawn_reverse(cut)
        time.sleep(2)
        cut.server.stop()  # Neo4j goes away under the agents and the reverse process
        cut.server.start()
        agents.wait_for(agents.done() + 20, 120)  # the agents write again after the restart
    finally:
        both.stop()
    assert both.failures() == [], both.failures()[:5]
    assert agents.done() > 40 and cypher.done() > 0, (agents.done(), cypher.done())
    _wait_caught_up(cut.p.db, graph)
    _assert_equal(cut)
    print(
        f"mcp kill -9 and restart: {agents.done()} mcp-neo4j-memory and {cypher.done()} Cypher writes, "
        f"{both.errors()} while Neo4j was away; load {os.getloadavg()[0]:.1f}"
    )


def test_the_plugin_adopts_new_memory_nodes_only_where_the_layout_asks(private_neo4j: PrivateNeo4j) -> None:
    """A :Memory node created alone (as mcp-neo4j-memory creates one) gets the namespace's label and the
    next id in its own transaction and is captured; the caxton layout adopts nothing; a node with an id
    (another namespace's) is never taken."""
    h = uuid.uuid4().hex[:8]
    g = private_neo4j.graph
    with neo4j.GraphDatabase.driver(g.uri, auth=g.auth(), notifications_min_severity="OFF") as driver:

        def q(cypher: str, **params: object) -> list[neo4j.Record]:
            return list(driver.execute_query(cypher, parameters_=params).records)

        mcp = Changelog.for_driver(driver, "neo4j", f"Mcp_{h}", adopt=("Memory",))
        caxton = Changelog.for_driver(driver, "neo4j", f"Cax_{h}")
        mcp.enable("store-1", next_entity_id=500, next_relation_id=90)
        caxton.enable("store-2", next_entity_id=1, next_relation_id=1)
        try:
            q("CREATE (:Memory {name: $a, type: 'concept', observations: ['x']}), "
              "(:Memory {name: $b, type: 'concept', observations: [], id: 7})", a=f"a{h}", b=f"b{h}")  # fmt: skip
            q("MATCH (x:Memory {name: $a}), (y:Memory {name: $a}) MERGE (x)-[:SELF]->(y)", a=f"a{h}")
            [row] = q(f"MATCH (n:Memory {{name: $a}}) RETURN n:Mcp_{h} AS adopted, n.id AS id", a=f"a{h}")
            assert (row["adopted"], row["id"]) == (True, 500)
            got = [(c.kind, c.op, c.id, c.props.get("type")) for c in mcp.read(0)]
            assert got == [("entity", "u", 500, "concept"), ("relation", "u", 90, None)]
            assert caxton.read(0) == [], "the caxton layout adopted a memory node"
            [other] = q("MATCH (n:Memory {name: $b}) RETURN labels(n) AS l", b=f"b{h}")
            assert sorted(other["l"]) == ["Memory"], "a node with an id was adopted"
        finally:
            mcp.disable()
            caxton.disable()
            q("MATCH (n:Memory) WHERE n.name IN $names DETACH DELETE n", names=[f"a{h}", f"b{h}"])
