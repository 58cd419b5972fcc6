"""The MCP memory servers (mcp-neo4j-memory, mcp-server-qdrant) as real clients of the migrated
stores: their own code, from their PyPI packages, in their own test environments (tests/mcp/).

mcp-neo4j-memory reads every ``:Memory`` node of the database, so the assertions look at the names of
this test's store (unique per run) and never at anyone else's memory nodes.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from neo4j import GraphDatabase

from replicator.capture.install import install
from replicator.capture.triggers import head_seq
from replicator.cutover import config, cutover
from replicator.cutover.targets import Neo4jTarget, QdrantTarget
from replicator.demo.daemons import Pipeline, PipelineConfig, free_port
from replicator.demo.demo import LiveWriter
from replicator.events.values import embedding_text
from replicator.sinks.neo4j.layout import memory_type
from replicator.sinks.neo4j.model import relationship_type
from replicator.sinks.settings import Neo4jSettings
from replicator.testing.workload import Workload
from replicator.testing.writer import MemoryWriter
from replicator.transport.settings import KafkaSettings
from replicator.validation.errors import MigrateError
from replicator.validation.store import StoreReader
from replicator.validation.validate import validate_store
from tests.mcp import run

pytestmark = pytest.mark.integration

#: Types mcp-neo4j-memory refuses as they are (its pattern is ^[A-Za-z_][A-Za-z0-9_]*$): the layout sanitises.
ODD_TYPES = ("user-preference", "depends on", "2fa")


def test_environments_run_the_servers_own_code(graph: Neo4jSettings, tmp_path: Path) -> None:
    [by_name] = run.neo4j_memory(graph, [{"tool": "find_memories_by_name", "args": {"names": ["no such memory"]}}])
    assert by_name == {"ok": {"entities": [], "relations": []}}
    [found] = run.qdrant_search("no_such_collection", ["anything"], path=tmp_path / "qdrant")
    assert found == {"ok": []}


class McpPipeline:
    """A live store replicated with the mcp layout by the real daemons, cut over to Neo4j."""

    def __init__(self, tmp: Path, kafka: KafkaSettings, graph: Neo4jSettings) -> None:
        tag = uuid.uuid4().hex[:8]
        self.db, self.caxton, self.graph = tmp / "memory.db", tmp / "caxton.yaml", graph
        self.caxton.write_text(config.sample_config(str(self.db)))
        self.cfg = PipelineConfig(
            db=self.db, workdir=tmp, bootstrap_servers=kafka.bootstrap_servers, topic_prefix=f"t{tag}.caxton.memory",
            neo4j=graph, entity_label=f"Entity_{tag}", position_label=f"Position_{tag}",
            tombstone_label=f"Tombstone_{tag}", layout="mcp", neo4j_sink=f"neo4j-{tag}", neo4j_group=f"g{tag}-neo4j",
            qdrant_sink=f"qdrant-{tag}", qdrant_group=f"g{tag}-qdrant", source_metrics_port=free_port(),
            neo4j_metrics_port=free_port(), qdrant_metrics_port=free_port(),
        )  # fmt: skip
        self.opts = self.cfg.target_options()
        # No store vectors: the Qdrant sink embeds with the real model, which the MCP server's queries use too.
        # Names carry the seed: unique to this run, whatever other memory nodes the database holds.
        workload = Workload(MemoryWriter.create(self.db), seed=int(tag[:7], 16), vectorize=None)
        for _ in range(30):
            workload.create()
        for _ in range(30):
            workload.step()
        odd = [workload.writer.create_entity(f"odd {t} {tag}", t, [f"typed {t}"]) for t in ODD_TYPES]
        workload.writer.create_relation(odd[0], odd[1], "depends on")
        install(self.db)
        self.pipeline = Pipeline(self.cfg)
        self.writer = LiveWriter(Workload(MemoryWriter(self.db, busy_timeout_ms=30_000), seed=int(tag[:7], 16) + 1,
                                          vectorize=None), rate_per_s=20)  # fmt: skip
        self.writer.workload.counter = 10_000_000
        self.agent_names: list[str] = []

    def cut_over_live(self) -> None:
        """Writer running, sinks caught up, then the cutover to Neo4j while it writes."""
        self.writer.start()
        target = Neo4jTarget(self.opts)
        try:
            assert self.pipeline.wait_for(lambda: _caught_up(target), 120), "the Neo4j sink did not catch up"
            plan = cutover.CutoverPlan(db=self.db, config=self.caxton, target="neo4j", max_pause_s=10,
                                       writer_wait_s=30)  # fmt: skip
            report = cutover.run(plan, [target])
        finally:
            target.close()
            time.sleep(0.3)
            self.writer.stop()
        assert report.ok, report.reason
        assert self.writer.acknowledged > 0

    def wait_qdrant_drained(self) -> None:
        """The Qdrant sink (still running after a cutover to Neo4j) has applied up to the store's head."""
        with StoreReader(self.db) as store:
            head = head_seq(store.conn)
        target = QdrantTarget(self.opts)

        def drained() -> bool:
            try:
                position = target.position()
            except MigrateError:
                return False
            watermark = position.watermark() if position else None
            return watermark is not None and watermark.seq >= head

        try:
            assert self.pipeline.wait_for(drained, 180), f"the Qdrant sink did not reach seq {head}"
        finally:
            target.close()

    def cleanup(self) -> None:
        self.writer.stop()
        self.pipeline.stop()
        with GraphDatabase.driver(self.graph.uri, auth=self.graph.auth()) as driver:
            for label in (self.cfg.entity_label, self.cfg.position_label, self.cfg.tombstone_label):
                driver.execute_query(f"MATCH (n:`{label}`) DETACH DELETE n")
            driver.execute_query("MATCH (n:Memory) WHERE n.name IN $names DETACH DELETE n", names=self.agent_names)


def _caught_up(target: Neo4jTarget) -> bool:
    try:
        position = target.position()
    except Exception:  # not up yet
        return False
    watermark = position.watermark() if position else None
    return watermark is not None and time.time_ns() // 1_000_000 - watermark.ts_ms < 2000


@pytest.fixture
def mcp_pipeline(tmp_path: Path, kafka: KafkaSettings, graph: Neo4jSettings) -> Iterator[McpPipeline]:
    made = McpPipeline(tmp_path, kafka, graph)
    made.pipeline.start()
    made.pipeline.wait_ready()
    try:
        yield made
    finally:
        made.cleanup()


def _ok(answer: dict[str, Any]) -> Any:
    assert "error" not in answer, answer["error"]
    return answer["ok"]


def _rollback(p: McpPipeline, layout: str) -> subprocess.CompletedProcess[str]:
    o = p.opts
    argv = [sys.executable, "-m", "replicator", "rollback", "--db", str(p.db), "--neo4j-uri", o.neo4j.uri,
            "--neo4j-sink", o.neo4j_sink, "--neo4j-group", o.neo4j_group, "--entity-label", o.entity_label,
            "--position-label", o.position_label, "--layout", layout, "--qdrant-sink", o.qdrant_sink,
            "--qdrant-group", o.qdrant_group, "--qdrant-endpoint", o.qdrant_endpoint or "",
            "--qdrant-path", str(p.cfg.qdrant_dir)]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, check=False, env=os.environ.copy())


def test_mcp_neo4j_memory_reads_the_cut_over_graph_and_rollback_names_its_writes(mcp_pipeline: McpPipeline) -> None:
    p = mcp_pipeline
    p.cut_over_live()
    p.wait_qdrant_drained()
    p.pipeline.stop()  # local mode: the sink's client must let go of the storage before anyone reads it
    with StoreReader(p.db) as store, store.transaction():
        snap = store.read(None)
    names = {e.name for e in snap.entities.values()}
    assert len(names) == len(snap.entities)  # the workload's names are unique
    by_id = {e.id: e.name for e in snap.entities.values()}
    triples = {(by_id[r.from_entity_id], by_id[r.to_entity_id], relationship_type(r.relation_type))
               for r in snap.relations.values()}  # fmt: skip
    some = sorted(snap.entities.values(), key=lambda e: e.id)
    [graph, found, searched] = run.neo4j_memory(p.graph, [
        {"tool": "read_graph"},
        {"tool": "find_memories_by_name", "args": {"names": sorted(names)}},
        {"tool": "search_memories", "args": {"query": f'"{some[-1].name}"'}},
    ])  # fmt: skip
    ours = [e for e in _ok(graph)["entities"] if e["name"] in names]
    assert len(ours) == len(snap.entities)
    assert {(r["source"], r["target"], r["relationType"]) for r in _ok(graph)["relations"]
            if r["source"] in names and r["target"] in names} == triples  # fmt: skip
    assert {e["name"] for e in _ok(found)["entities"]} == names
    assert some[-1].name in {e["name"] for e in _ok(searched)["entities"]}
    # Every type as the layout sanitises it (the live writer may have renamed or deleted an odd one).
    assert {e["name"]: e["type"] for e in ours} == {e.name: memory_type(e.entity_type) for e in some}

    _search_finds_each_entity_by_its_own_text(p)

    # A layout other than the one the sink wrote is an error naming both, not "everything differs".
    with pytest.raises(MigrateError, match="holds the mcp layout, not caxton"):
        validate_store(p.db, dataclasses.replace(p.opts, layout="caxton"), targets=("neo4j",), full=True, search=False)
    assert validate_store(p.db, p.opts, targets=("neo4j",), full=True, search=False) == []

    # An agent writes through the server after the cutover: rollback's check names every write.
    first, second, third = some[0], some[1], some[2]
    new = f"learned after the cutover {uuid.uuid4().hex[:6]}"
    p.agent_names.append(new)
    answers = run.neo4j_memory(p.graph, [
        {"tool": "add_observations", "args": {"observations": [{"entityName": first.name,
                                                                "observations": ["told by an agent"]}]}},
        {"tool": "create_entities", "args": {"entities": [{"name": new, "type": "concept", "observations": ["x"]}]}},
        {"tool": "create_relations", "args": {"relations": [{"source": first.name, "target": second.name,
                                                             "relationType": "MET_AFTER_CUTOVER"}]}},
        {"tool": "delete_entities", "args": {"names": [third.name]}},
    ])  # fmt: skip
    for answer in answers:
        _ok(answer)
    refused = _rollback(p, "mcp")
    assert refused.returncode == 2, refused.stderr
    for expected in (
        f"neo4j entity {first.id}: different (observations)",
        f"memory node {new!r}",
        "-[MET_AFTER_CUTOVER]->",
        f"neo4j entity {third.id}: missing",
        "--discard-new-writes",
    ):
        assert expected in refused.stderr, refused.stderr
    wrong = _rollback(p, "caxton")
    assert wrong.returncode == 2 and "holds the mcp layout, not caxton" in wrong.stderr, wrong.stderr
    assert config.read_backend(p.caxton) == "neo4j"  # nothing changed


def _search_finds_each_entity_by_its_own_text(p: McpPipeline) -> None:
    """mcp-server-qdrant's QdrantConnector.search against the migrated collection (local mode)."""
    with StoreReader(p.db) as store, store.transaction():
        entities = sorted(store.read(None).entities.values(), key=lambda e: e.id)
    chosen = [entities[0], entities[len(entities) // 2], entities[-1]]
    texts = [embedding_text(e.name, e.entity_type, e.observations) for e in chosen]
    answers = run.qdrant_search(p.cfg.collection, texts, path=p.cfg.qdrant_dir)
    for entity, text, answer in zip(chosen, texts, answers, strict=True):
        [first, *_] = _ok(answer)
        assert first["content"] == text and first["metadata"]["entity_id"] == entity.id, (entity, first)
    with pytest.raises(MigrateError, match="holds the mcp layout, not caxton"):
        validate_store(p.db, dataclasses.replace(p.opts, qdrant=dataclasses.replace(p.opts.qdrant, layout="caxton")),
                       targets=("qdrant",), full=True, search=False)  # fmt: skip
    # Full, with validation's search consistency (queries through the named vector).
    problems = validate_store(p.db, dataclasses.replace(p.opts, qdrant_endpoint=None), targets=("qdrant",),
                              full=True, search=True)  # fmt: skip
    assert problems == []
