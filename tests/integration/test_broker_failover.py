"""Kafka durability beyond one broker, against a PRIVATE three-broker stack started by this module
(`replicator stack up --dir TMP --brokers 3` on free ports; the shared stack is never touched): the
whole pipeline (source, Neo4j sink, Qdrant sink as daemons) under a live writer, and the leader of a
change partition killed with SIGKILL.

Judged as the other end-to-end tests judge: every seq the triggers produced is read back from the
topics exactly once (read_committed, ``_test_seq_audit``), the topics fold into the store field by
field, Neo4j and Qdrant equal the store in full, and no Neo4j node or relationship applied a seq
twice. "Carry on" means: the same three processes, while the broker is still dead, publish and apply
what the writer wrote after the kill.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]
from neo4j import GraphDatabase

from replicator.capture.install import install
from replicator.capture.triggers import CHANGELOG, head_seq
from replicator.cutover.targets import Neo4jTarget, QdrantTarget
from replicator.demo.daemons import Pipeline, PipelineConfig, free_port
from replicator.demo.demo import LiveWriter, seed_store
from replicator.errors import ConfigError
from replicator.observe.endpoint import scrape
from replicator.sinks.settings import Neo4jSettings
from replicator.stack import control
from replicator.stack.process import free_port_range
from replicator.stack.settings import StackSettings
from replicator.testing.replay import replay
from replicator.testing.workload import Workload, hash_vector
from replicator.testing.writer import MemoryWriter
from replicator.transport import kafka as transport
from replicator.transport.settings import KafkaSettings, Replication
from replicator.validation.validate import validate_store
from tests.integration.test_source_exactly_once import assert_equal_state, assert_exactly_once

REPO = Path(__file__).resolve().parents[2]


def _stack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "replicator", "stack", *args], cwd=REPO, capture_output=True,
                          text=True, check=False, timeout=600)  # fmt: skip


@pytest.fixture(scope="module")
def brokers3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StackSettings, list[str]]]:
    """A private stack of three Kafka nodes (modest heaps) and a Neo4j; the `up` flags come along so
    that a test can run `up` again to restart a node."""
    base = free_port_range("127.0.0.1", 7)  # 3 client ports, 3 controller ports, Bolt
    root = tmp_path_factory.mktemp("brokers3") / "stack"
    flags = ["--dir", str(root), "--brokers", "3", "--kafka-port", str(base), "--bolt-port", str(base + 6),
             "--kafka-heap-mb", "384"]  # fmt: skip
    settings = StackSettings(root=root, brokers=3, kafka_port=base, bolt_port=base + 6, kafka_heap_mb=384)
    try:
        up = _stack("up", *flags)
        assert up.returncode == 0, up.stdout + up.stderr
        yield settings, flags
        down = _stack("down", "--dir", str(root))  # every node and Neo4j, found from stack.json
        assert down.returncode == 0, down.stdout + down.stderr
        assert sorted(line.split(":")[0] for line in down.stdout.splitlines() if ": stopped (pid" in line) == [
            "kafka-1", "kafka-2", "kafka-3", "neo4j"
        ], down.stdout  # fmt: skip
        assert _stack("status", "--dir", str(root)).returncode == 1
    finally:
        control.down(settings, lambda _line: None)  # whatever a failure above left running


def _leader(kafka: KafkaSettings, topic: str, partition: int) -> int:
    meta = AdminClient(kafka.common()).list_topics(topic, timeout=10)
    return int(meta.topics[topic].partitions[partition].leader)


def _watermarks(cfg: PipelineConfig) -> list[int]:
    """Each sink's watermark seq (-1 while it has none or does not answer)."""
    marks = []
    for target in (Neo4jTarget(cfg.target_options()), QdrantTarget(cfg.target_options())):
        try:
            position = target.position()
            mark = position.watermark() if position else None
            marks.append(mark.seq if mark else -1)
        except Exception:  # a sink not answering yet: no watermark
            marks.append(-1)
        finally:
            target.close()
    return marks


def _head(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return head_seq(conn)
    finally:
        conn.close()


def _wait(pipeline: Pipeline, predicate: object, timeout_s: float, what: str) -> None:
    """``pipeline.wait_for`` (which also fails at once if a daemon exited), failing with ``what``."""
    assert pipeline.wait_for(predicate, timeout_s), f"timed out after {timeout_s:g}s waiting for {what}"


def _config(tmp: Path, s: StackSettings) -> PipelineConfig:
    tag = uuid.uuid4().hex[:8]
    return PipelineConfig(
        db=tmp / "memory.db", workdir=tmp, bootstrap_servers=s.kafka_bootstrap, topic_prefix=f"b{tag}.caxton.memory",
        neo4j=Neo4jSettings(uri=s.bolt_uri, password=s.neo4j_password), entity_label=f"Entity_{tag}",
        position_label=f"Position_{tag}", tombstone_label=f"Tombstone_{tag}", neo4j_sink=f"neo4j-{tag}",
        neo4j_group=f"g{tag}-neo4j", qdrant_sink=f"qdrant-{tag}", qdrant_group=f"g{tag}-qdrant",
        source_metrics_port=free_port(), neo4j_metrics_port=free_port(), qdrant_metrics_port=free_port(),
    )  # fmt: skip


def _store_with_seq_audit(db: Path) -> Workload:
    """A seeded store with capture installed, plus a trigger copying every changelog (seq, table, row
    id) into ``_test_seq_audit`` (the source deletes published rows; the audit keeps them all), in the
    shape test_source_exactly_once.assert_exactly_once reads (capture v5 coalesces by row)."""
    seed_store(db, 40, hash_vector).writer.close()
    install(db)
    conn = sqlite3.connect(db)
    conn.executescript(
        f"""CREATE TABLE _test_seq_audit (seq INTEGER PRIMARY KEY, tbl TEXT, row_id INTEGER);
        CREATE TRIGGER _test_audit AFTER INSERT ON {CHANGELOG}
        BEGIN INSERT INTO _test_seq_audit VALUES (NEW.seq, NEW.tbl, NEW.row_id); END;"""
    )
    conn.close()
    workload = Workload(MemoryWriter(db), seed=11, vectorize=hash_vector)
    workload.counter = 10_000_000  # names unlike the seed's
    return workload


def _applied_twice(cfg: PipelineConfig) -> list[list[int]]:
    """Neo4j nodes and relationships whose ``_applied`` audit holds a seq twice or out of order."""
    ent = f"`{cfg.entity_label}`"
    with GraphDatabase.driver(cfg.neo4j.uri, auth=cfg.neo4j.auth()) as driver:
        rows = driver.execute_query(f"MATCH (n:{ent}) RETURN n._applied AS a").records
        rows += driver.execute_query(f"MATCH (:{ent})-[r]->() RETURN r._applied AS a").records
    lists = [list(r["a"] or []) for r in rows]
    return [a for a in lists if a != sorted(set(a))]


def _topic_replication(kafka: KafkaSettings, topic: str) -> tuple[set[int], str]:
    admin = AdminClient(kafka.common())
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions.values()
    resource = ConfigResource("topic", topic)
    config = admin.describe_configs([resource])[resource].result(timeout=10)
    return {len(p.replicas) for p in partitions}, config["min.insync.replicas"].value


def _kill_the_leader_and_carry_on(pipeline: Pipeline, s: StackSettings, kafka: KafkaSettings, topic: str) -> int:
    """SIGKILL the broker leading partition 0 of ``topic``; with it dead, both sinks must apply what the
    writer writes after the kill, then again after the source itself is killed and restarted (it
    reconnects with two brokers of three: its topics exist). Returns the dead broker's node id."""
    cfg = pipeline.config
    victim = _leader(kafka, topic, 0)
    status = {st.name: st for st in control.status(s)}
    os.kill(status[f"kafka-{victim}"].pid or 0, signal.SIGKILL)
    killed_at = _head(cfg.db)
    _wait(pipeline, lambda: min(_watermarks(cfg)) > killed_at + 400, 150,
          f"the sinks to apply changes written after kafka-{victim} was killed at seq {killed_at}")  # fmt: skip
    pipeline.daemons["source"].kill()
    pipeline.daemons["source"].start()
    restarted_at = _head(cfg.db)
    _wait(pipeline, lambda: min(_watermarks(cfg)) > restarted_at + 400, 150,
          f"the sinks to apply changes after the source restarted at {restarted_at}, kafka-{victim} dead")  # fmt: skip
    return victim


def test_killing_the_leader_of_a_change_partition_loses_and_repeats_nothing(
    brokers3: tuple[StackSettings, list[str]], tmp_path: Path
) -> None:
    s, flags = brokers3
    kafka = KafkaSettings(s.kafka_bootstrap)
    cfg = _config(tmp_path, s)
    writer = LiveWriter(_store_with_seq_audit(cfg.db), rate_per_s=80)
    pipeline = Pipeline(cfg)
    pipeline.daemons["neo4j"].argv.append("--audit")  # keep each node's applied seqs
    # Explicit, as docker/compose.brokers3.yaml and docs/source.md advise for production: with a broker
    # down the source must still reconnect (its topics exist; only creating one needs three brokers).
    pipeline.daemons["source"].argv += ["--replication-factor", "3", "--min-insync-replicas", "2"]
    topic = f"{cfg.topic_prefix}.entities"
    try:
        pipeline.start()
        pipeline.wait_ready()
        writer.start()
        _wait(pipeline, lambda: min(_watermarks(cfg)) > 0, 120, "both sinks to apply the snapshot")
        # Replicated as the defaults promise on three brokers, before anything is killed.
        assert _topic_replication(kafka, topic) == ({3}, "2")

        victim = _kill_the_leader_and_carry_on(pipeline, s, kafka, topic)
        assert _leader(kafka, topic, 0) != victim
        status = _stack("status", "--dir", str(s.root))
        assert status.returncode == 1 and f"kafka-{victim} stopped" in status.stdout, status.stdout
        assert f"log: {s.root / f'kafka-{victim}' / f'kafka-{victim}.log'}" in status.stdout
        assert status.stdout.count("answering") == 3  # the two other brokers and Neo4j
        assert f"to start what is not running: replicator stack up --dir {s.root} --brokers 3" in status.stdout
        three = KafkaSettings(s.kafka_bootstrap, replication_factor=3)  # existing topics: fine; a new one: refused
        assert transport.ensure_topics(three, {topic: 3}).created == ()
        with pytest.raises(ConfigError, match=r"replication factor 3 needs 3 brokers; .* has 2 up"):
            transport.ensure_topics(three, {f"{cfg.topic_prefix}.new": 1})
        writer.stop()
        head = _head(cfg.db)
        _wait(pipeline, lambda: min(_watermarks(cfg)) >= head, 120, f"the sinks to drain to seq {head}")
        published = scrape(cfg.source_metrics_port, "replicator_source_last_published_seq")
        assert published == head, f"the source published up to {published}, the store's head is {head}"

        again = _stack("up", *flags)  # brings back only the dead node
        assert again.returncode == 0, again.stdout + again.stderr
        assert again.stdout.count("already running") == 3
        assert all(st.answering for st in control.status(s))
        stopped = pipeline.stop()
    finally:
        writer.stop()
        pipeline.stop()
    assert stopped == {"qdrant": 0, "neo4j": 0, "source": 0}, {n: d.tail() for n, d in pipeline.daemons.items()}
    assert writer.acknowledged > 500 and writer.other_errors == []

    got = replay(kafka, cfg.topic_prefix)
    assert_exactly_once(cfg.db, got)  # every seq once in the topics, none other; the changelog is empty
    assert_equal_state(cfg.db, got)
    assert validate_store(cfg.db, cfg.target_options(), full=True, search=False) == []
    assert _applied_twice(cfg) == []


def test_an_existing_topic_with_fewer_replicas_is_named_and_left_alone(
    brokers3: tuple[StackSettings, list[str]],
) -> None:
    kafka = KafkaSettings(brokers3[0].kafka_bootstrap)
    name = f"b{uuid.uuid4().hex[:8]}.caxton.memory.entities"
    made = transport.ensure_topics(KafkaSettings(kafka.bootstrap_servers, replication_factor=1), {name: 3})
    assert made.created == (name,) and made.replication == Replication(1, 1)

    again = transport.ensure_topics(kafka, {name: 3})

    assert again.created == () and again.replication == Replication(3, 2) and again.brokers == 3
    assert again.fewer_replicas == {name: 1}
    assert _topic_replication(kafka, name) == ({1}, "1")  # not altered


def test_a_replication_factor_the_cluster_cannot_give_stops_the_source_naming_it(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    """On the shared one-broker stack: an operator's --replication-factor 3 is an error, not a retry loop."""
    db = tmp_path / "memory.db"
    seed_store(db, 3, hash_vector).writer.close()
    install(db)
    prefix = f"b{uuid.uuid4().hex[:8]}.caxton.memory"
    proc = subprocess.run(
        [sys.executable, "-m", "replicator", "source", "run", "--db", str(db), "--bootstrap-servers",
         kafka.bootstrap_servers, "--topic-prefix", prefix, "--replication-factor", "3"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip

    assert proc.returncode == 2, proc.stderr
    assert "replication factor 3 needs 3 brokers" in proc.stderr and "has 1 up" in proc.stderr
    assert "--replication-factor" in proc.stderr and "Traceback" not in proc.stderr
    topics = AdminClient(kafka.common()).list_topics(timeout=10).topics
    assert not [t for t in topics if t.startswith(prefix)]


def test_another_broker_count_over_a_running_stack_is_refused(brokers3: tuple[StackSettings, list[str]]) -> None:
    s, flags = brokers3
    one = list(flags)
    one[one.index("--brokers") + 1] = "1"

    proc = _stack("up", *one)

    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"already running under {s.root}: kafka-1, kafka-2, kafka-3, neo4j, with --brokers 3" in proc.stderr
    assert "asked for --brokers 1" in proc.stderr and "stack down" in proc.stderr
    assert all(st.answering for st in control.status(s))  # nothing stopped or started
