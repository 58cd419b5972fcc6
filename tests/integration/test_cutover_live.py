"""Cutover against the real pipeline: source, Neo4j sink and Qdrant sink as daemons on the local
stack, a live writer at ~200 writes/s, and the store fenced, drained, validated and switched.

What a user must be able to trust: every write the writer saw succeed is in Neo4j and Qdrant; every
write after the fence is refused with the clear message; an abort or a crash changes nothing that
one command cannot put back, and at no instant do the store and the new backend both take writes.

The live writer waits for the store's lock as the backend guide's runtime does (busy timeout 30 s,
STORE.md), and cutovers run with --writer-wait 30s and a --max-pause within it: the product's promise
is that the fence never outlasts what writers wait. How short the pause is, is the bench's business
(bench/cutover_pause.py), never asserted here: this machine is shared and loaded.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from neo4j import GraphDatabase
from qdrant_client import QdrantClient

from replicator.capture.install import install
from replicator.capture.triggers import head_seq
from replicator.cutover import config, cutover, fence, state
from replicator.cutover.targets import Neo4jTarget, QdrantTarget, store_identity
from replicator.demo.daemons import Pipeline, PipelineConfig, free_port
from replicator.demo.demo import LiveWriter, seed_store
from replicator.sinks.settings import Neo4jSettings
from replicator.testing.workload import Workload, hash_vector
from replicator.testing.writer import MemoryWriter
from replicator.transport.settings import KafkaSettings
from replicator.validation.errors import MigrateError
from replicator.validation.validate import validate_store

#: How long the live writer waits for the store's lock (the backend guide's busy timeout).
WRITER_WAIT_MS = 30_000
#: The pause allowed: well within what the writer waits, with room for a loaded machine to drain.
MAX_PAUSE_S = 10.0
#: The live writer's rate: one the sinks sustain (the Qdrant sink embeds with the real model) on a
#: shared 2-core machine, as the demo's. The bench drives 200 writes/s.
WRITES_PER_S = 50


class Running:
    def __init__(self, tmp: Path, kafka: KafkaSettings, graph: Neo4jSettings) -> None:
        tag = uuid.uuid4().hex[:8]
        self.db = tmp / "memory.db"
        self.caxton = tmp / "caxton.yaml"
        self.caxton.write_text(config.sample_config(str(self.db)))
        self.cfg = PipelineConfig(
            db=self.db, workdir=tmp, bootstrap_servers=kafka.bootstrap_servers,
            topic_prefix=f"t{tag}.caxton.memory", neo4j=graph, entity_label=f"Entity_{tag}",
            position_label=f"Position_{tag}", tombstone_label=f"Tombstone_{tag}",
            neo4j_sink=f"neo4j-{tag}", neo4j_group=f"g{tag}-neo4j",
            qdrant_sink=f"qdrant-{tag}", qdrant_group=f"g{tag}-qdrant", source_metrics_port=free_port(),
            neo4j_metrics_port=free_port(), qdrant_metrics_port=free_port(),
        )  # fmt: skip
        self.opts = self.cfg.target_options()
        seed_store(self.db, 50, hash_vector)
        install(self.db)
        self.pipeline = Pipeline(self.cfg)
        writer = MemoryWriter(self.db, busy_timeout_ms=WRITER_WAIT_MS)
        self.writer = LiveWriter(Workload(writer, seed=5, vectorize=hash_vector), rate_per_s=WRITES_PER_S)
        self.writer.workload.counter = 10_000_000

    def targets(self) -> list[Neo4jTarget | QdrantTarget]:
        return [Neo4jTarget(self.opts), QdrantTarget(self.opts)]

    def wait_caught_up(self, timeout_s: float = 120) -> None:
        def caught_up() -> bool:
            """Each sink's watermark is under 2 s behind the store (by seq: a live writer keeps the head
            a few hundred seqs ahead of any sink, so 'seq lag 0' only happens once writes stop)."""
            now_ms = time.time_ns() // 1_000_000
            for target in self.targets():
                try:
                    position = target.position()
                except Exception:  # not up yet
                    return False
                finally:
                    target.close()
                watermark = position.watermark() if position else None
                if watermark is None or now_ms - watermark.ts_ms > 2000:
                    return False
            return True

        assert self.pipeline.wait_for(caught_up, timeout_s), "sinks did not catch up"

    def wait_drained(self, timeout_s: float = 60) -> None:
        """Every sink's watermark has reached the store's head (call once writes stopped)."""
        conn = sqlite3.connect(self.db)
        head = head_seq(conn)
        conn.close()

        def drained() -> bool:
            for target in self.targets():
                try:
                    position = target.position()
                finally:
                    target.close()
                watermark = position.watermark() if position else None
                if watermark is None or watermark.seq < head:
                    return False
            return True

        assert self.pipeline.wait_for(drained, timeout_s), f"sinks did not drain to seq {head}"

    def cleanup(self, graph: Neo4jSettings) -> None:
        self.writer.stop()
        self.pipeline.stop()
        with GraphDatabase.driver(graph.uri, auth=graph.auth()) as driver:
            for label in (self.cfg.entity_label, self.cfg.position_label, self.cfg.tombstone_label):
                driver.execute_query(f"MATCH (n:`{label}`) DETACH DELETE n")


@pytest.fixture
def running(tmp_path: Path, kafka: KafkaSettings, graph: Neo4jSettings) -> Iterator[Running]:
    run = Running(tmp_path, kafka, graph)
    run.pipeline.start()
    run.pipeline.wait_ready()
    try:
        yield run
    finally:
        run.cleanup(graph)


def _validate_full(run: Running) -> list[str]:
    """Every entity and relation of the store, field by field, in both destinations."""
    return validate_store(run.db, run.opts, full=True)


def test_cutover_under_a_live_writer_loses_nothing(running: Running) -> None:
    running.writer.start()
    running.wait_caught_up()
    targets = running.targets()
    plan = cutover.CutoverPlan(db=running.db, config=running.caxton, target="hybrid", max_pause_s=MAX_PAUSE_S,
                               writer_wait_s=WRITER_WAIT_MS / 1000)  # fmt: skip
    report = cutover.run(plan, targets)
    time.sleep(0.5)
    running.writer.stop()
    for target in targets:
        target.close()

    assert report.ok, report.reason
    assert report.pause_s is not None and report.pause_s <= MAX_PAUSE_S
    assert running.writer.acknowledged > 20
    assert running.writer.refused >= 1, "writes after the fence must be refused"
    assert running.writer.refusal is not None and "memory store moved to hybrid" in running.writer.refusal
    assert running.writer.other_errors == []
    assert config.read_backend(running.caxton) == "hybrid"
    # Everything acknowledged is in the store (refused writes never committed); the destinations
    # were drained to the final seq under the fence, so they must equal the store now.
    running.pipeline.stop()
    assert _validate_full(running) == []


def test_a_sink_stopped_before_the_drain_aborts_and_changes_nothing(running: Running) -> None:
    running.wait_caught_up()
    running.pipeline.daemons["neo4j"].stop()
    writer = MemoryWriter(running.db)
    for i in range(5):
        writer.create_entity(f"after-the-sink-stopped {i}", "concept")
    targets = running.targets()
    # The preflight refuses a sink whose position is older than stale_after_s (15 s by default), which
    # a loaded machine can reach between the stop and the second preflight after the full pre-check:
    # then the cutover aborts at preflight, as it should, but this test is about the drain's abort.
    plan = cutover.CutoverPlan(db=running.db, config=running.caxton, target="hybrid", max_pause_s=1, stale_after_s=3600)
    report = cutover.run(plan, targets)
    for target in targets:
        target.close()
    assert not report.ok and report.aborted_at == "drain", report
    assert config.read_backend(running.caxton) == "embedded"
    assert not config.backup_path(running.caxton).exists()
    writer.create_entity("writes go on", "concept")
    assert state.load(running.db).state == "aborted"


def _cut_over_to_neo4j(running: Running) -> None:
    running.wait_caught_up()
    targets = running.targets()
    report = cutover.run(cutover.CutoverPlan(db=running.db, config=running.caxton, target="neo4j"), targets[:1])
    for target in targets:
        target.close()
    assert report.ok, report.reason


def _flags(running: Running) -> list[str]:
    """The cutover's connection flags (the Neo4j password reaches the child through its environment)."""
    o = running.opts
    return ["--bootstrap-servers", o.bootstrap_servers, "--topic-prefix", o.topic_prefix, "--neo4j-uri", o.neo4j.uri,
            "--neo4j-sink", o.neo4j_sink, "--neo4j-group", o.neo4j_group, "--entity-label", o.entity_label,
            "--position-label", o.position_label, "--qdrant-sink", o.qdrant_sink, "--qdrant-group", o.qdrant_group,
            "--qdrant-endpoint", o.qdrant_endpoint or "", "--qdrant-path", str(running.cfg.qdrant_dir)]  # fmt: skip


def _rollback(running: Running, *extra: str) -> subprocess.CompletedProcess[str]:
    """``replicator rollback`` with the cutover's flags (it compares the destinations with the store first)."""
    return subprocess.run(
        [sys.executable, "-m", "replicator", "rollback", "--db", str(running.db), *_flags(running), *extra],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_rollback_after_cutover_restores_writes(running: Running) -> None:
    _cut_over_to_neo4j(running)
    proc = _rollback(running)
    assert proc.returncode == 0, proc.stderr
    assert config.read_backend(running.caxton) == "embedded"
    MemoryWriter(running.db).create_entity("back on the store", "concept")
    assert state.load(running.db).state == "rolled_back"


def test_rollback_refuses_to_drop_writes_the_new_backend_took(running: Running) -> None:
    _cut_over_to_neo4j(running)
    graph, label = running.opts.neo4j, running.cfg.entity_label
    with GraphDatabase.driver(graph.uri, auth=graph.auth()) as driver:  # the runtime, now on Neo4j, learns things
        driver.execute_query(
            f"CREATE (:`{label}` {{id: 987654, name: 'learned after the cutover', entity_type: 'concept', "
            "observations: ['written to neo4j'], confidence: 1.0, strength: 1.0, version: 1, created_at: 1, "
            "updated_at: 1})"
        )
        driver.execute_query(f"MATCH (n:`{label}`) WITH n ORDER BY n.id LIMIT 1 SET n.observations = ['edited']")

    refused = _rollback(running)
    assert refused.returncode == 2, refused.stderr
    assert "987654" in refused.stderr and "--discard-new-writes" in refused.stderr, refused.stderr
    assert "neo4j entity 987654: extra" in refused.stderr, refused.stderr
    assert "entity 1: different (observations)" in refused.stderr, refused.stderr
    assert config.read_backend(running.caxton) == "neo4j"  # nothing changed
    with pytest.raises(sqlite3.DatabaseError, match="moved to neo4j"):
        MemoryWriter(running.db).create_entity("still refused", "concept")

    discarded = _rollback(running, "--discard-new-writes")  # the operator's explicit choice
    assert discarded.returncode == 0, discarded.stderr
    assert config.read_backend(running.caxton) == "embedded"
    MemoryWriter(running.db).create_entity("back on the store", "concept")


def test_rollback_compares_every_qdrant_point_through_the_running_sink(running: Running) -> None:
    """With --qdrant-endpoint (local mode, the sink holds the directory) rollback's full comparison
    reads every point through the sink: an update made to an existing point after the cutover is
    found, named, and not discarded."""
    running.wait_caught_up()
    targets = running.targets()
    plan = cutover.CutoverPlan(db=running.db, config=running.caxton, target="hybrid", max_pause_s=MAX_PAUSE_S,
                               writer_wait_s=WRITER_WAIT_MS / 1000)  # fmt: skip
    report = cutover.run(plan, targets)
    for target in targets:
        target.close()
    assert report.ok, report.reason

    # The runtime, now on Qdrant, edits an existing point. Local mode lets one process open the
    # directory, so the sink steps aside meanwhile (a server would take both).
    running.pipeline.daemons["qdrant"].stop()
    client = QdrantClient(path=str(running.cfg.qdrant_dir))
    [point], _ = client.scroll(running.cfg.collection, limit=1, with_payload=True)
    client.set_payload(running.cfg.collection, {"observations": ["learned in qdrant after the cutover"]}, [point.id])
    client.close()
    running.pipeline.start("qdrant")
    running.pipeline.wait_ready()
    store_id = store_identity(running.db)

    def serves_the_store() -> bool:
        target = QdrantTarget(running.opts, store_id)
        try:
            return target.position() is not None  # it names the store once a heartbeat is applied
        except MigrateError:
            return False

    assert running.pipeline.wait_for(serves_the_store, 60)

    refused = _rollback(running)
    assert refused.returncode == 2, (refused.stdout, refused.stderr)
    assert f"qdrant entity {point.id}: different (observations)" in refused.stderr, refused.stderr
    assert "--discard-new-writes" in refused.stderr and "Traceback" not in refused.stderr
    assert config.read_backend(running.caxton) == "hybrid" and not _store_takes_writes(running.db)


def _store_takes_writes(db: Path) -> bool:
    conn = sqlite3.connect(db)
    try:
        return not fence.refusal_installed(conn)
    finally:
        conn.close()


def _start_cutover(running: Running, step: str, flag: Path) -> subprocess.Popen[bytes]:
    """``replicator cutover`` in a child that pauses at ``step`` (fault injection). It waits, ready,
    while ``flag`` exists, so that the test can let the sinks catch up with the live writer first
    (the child's start-up alone takes seconds on a loaded machine)."""
    env = {**os.environ, "REPLICATOR_CUTOVER_PAUSE_AT": step, "REPLICATOR_CUTOVER_PAUSE_S": "30"}
    flag.touch()
    return subprocess.Popen(
        [sys.executable, "-m", "replicator", "cutover", "--db", str(running.db), "--caxton-config", str(running.caxton),
         "--target", "hybrid", "--max-pause", f"{MAX_PAUSE_S:g}s", "--writer-wait", f"{WRITER_WAIT_MS}ms",
         "--max-lag", "1000000", "--postpone-flag", str(flag), "--no-reverse", *_flags(running)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


#: Where a crash is injected, and the step ``status`` names for it. The switch step has three: before
#: the refusal commits, after it (caxton.yaml not yet written), and after caxton.yaml is written.
CRASH_POINTS = {
    "preflight": "preflight", "fence": "fence", "drain": "drain", "validate": "validate", "switch": "switch",
    "switch-refusing": "switch", "switch-config-written": "switch",
}  # fmt: skip


def _crash_at(running: Running, point: str, flag: Path) -> None:
    """Run the cutover until it is at ``point`` (the sinks caught up first), then kill -9 it."""
    proc = _start_cutover(running, point, flag)
    deadline = time.monotonic() + 120

    def wait(until: Callable[[], bool]) -> None:
        while time.monotonic() < deadline and not until():
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        assert until(), f"the cutover did not reach {point}"

    wait(lambda: state.load(running.db).step == "preflight")
    running.wait_caught_up()
    # The go. The writer holds its writes until the fence is taken, then writes into it (and waits,
    # as Caxton's writers do): the drain has only what the sinks had not applied yet, not a burst
    # written while a loaded machine schedules the cutover.
    running.writer.pause()
    flag.unlink()
    wanted = CRASH_POINTS[point]
    fenced = state.STEPS[state.STEPS.index("drain") :]
    if wanted in fenced:
        wait(lambda: state.load(running.db).step in fenced)
        running.writer.resume()
    wait(lambda: state.load(running.db).step == wanted)
    if point == "switch-refusing":  # the state says "switch" before the refusal commits
        wait(lambda: not _store_takes_writes(running.db))
    if point == "switch-config-written":
        wait(lambda: config.read_backend(running.caxton) == "hybrid")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    running.writer.resume()


def _rollback_after_crash(running: Running, switched: bool) -> None:
    """``replicator rollback`` resolves the crash; when caxton.yaml was switched it compares first, so
    without a reachable destination it refuses and changes nothing."""
    if switched:
        blind = subprocess.run(
            [sys.executable, "-m", "replicator", "rollback", "--db", str(running.db), "--neo4j-uri",
             "bolt://127.0.0.1:1"], capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert blind.returncode == 2 and "cannot check whether hybrid took writes" in blind.stderr, blind.stderr
        assert config.read_backend(running.caxton) == "hybrid" and not _store_takes_writes(running.db)
        resolve = _rollback(running)
    else:
        resolve = subprocess.run(
            [sys.executable, "-m", "replicator", "rollback", "--db", str(running.db)], capture_output=True,
            text=True, check=False,
        )  # fmt: skip
    assert resolve.returncode == 0, resolve.stderr
    assert "Traceback" not in resolve.stderr
    assert config.read_backend(running.caxton) == "embedded"
    assert _store_takes_writes(running.db)


@pytest.mark.parametrize("point", list(CRASH_POINTS))
def test_kill_9_at_each_step_is_named_and_resolved_by_one_command(running: Running, point: str, tmp_path: Path) -> None:
    running.wait_caught_up()  # preflight wants a watermark from each sink
    running.writer.start()
    _crash_at(running, point, tmp_path / "postpone")

    # Never a split brain: caxton.yaml names the new backend only while the store refuses writes.
    switched = config.read_backend(running.caxton) != "embedded"
    takes_writes = _store_takes_writes(running.db)
    assert not (switched and takes_writes), "caxton.yaml names hybrid while the store takes writes"
    assert switched == (point == "switch-config-written")
    assert takes_writes == (point not in ("switch-refusing", "switch-config-written"))

    status = subprocess.run(
        [sys.executable, "-m", "replicator", "status", "--db", str(running.db), "--json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert status.returncode == 0, (status.returncode, status.stdout, status.stderr)
    described = json.loads(status.stdout)
    assert described["state"] == "cutting_over" and described["step"] == CRASH_POINTS[point]
    assert "interrupted" in described["describe"] and "rollback" in described["resolve"]

    _rollback_after_crash(running, switched)
    time.sleep(0.5)
    running.writer.stop()
    assert running.writer.other_errors == [], running.writer.other_errors[:3]
    if takes_writes:  # the crash came before the refusal: no writer ever saw one
        assert running.writer.refused == 0
    MemoryWriter(running.db).create_entity("still writable", "concept")
    running.wait_drained()
    running.pipeline.stop()
    assert _validate_full(running) == []
