"""The Neo4j sink end to end against the real Kafka broker and Neo4j server: produced events (the
stand-in source) -> runner -> graph, compared with the simulated store's final state."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import neo4j
import pytest
from confluent_kafka import Consumer

from replicator.events.avro import ENTITY_CHANGE, codec, encode_key
from replicator.position import SinkPosition
from replicator.sinks.neo4j.applier import read_position, run_read, supports_dynamic_types
from replicator.sinks.neo4j.destination import Neo4jDestination
from replicator.sinks.neo4j.model import GraphModel, relationship_type
from replicator.sinks.runner import SinkRunner
from replicator.sinks.runner_settings import SinkRunnerSettings
from replicator.sinks.settings import Neo4jSettings
from replicator.testing.fake_source import SimulatedStore, TransactionalPublisher
from replicator.transport.kafka import delete_topic
from replicator.transport.settings import KafkaSettings

REPO = Path(__file__).resolve().parents[2]
HOSTILE = "x`]->() DETACH DELETE n //"


@dataclass
class Isolated:
    kafka: KafkaSettings
    graph: Neo4jSettings
    prefix: str
    model: GraphModel
    driver: neo4j.Driver
    publisher: TransactionalPublisher

    def settings(self, group: str, **overrides: Any) -> SinkRunnerSettings:
        return SinkRunnerSettings(
            group=group, kafka=self.kafka, topic_prefix=self.prefix, batch_max_events=200, batch_max_age_ms=50,
            session_timeout_ms=6000, backoff_max_s=1.0, **overrides,
        )  # fmt: skip

    def destination(self, sink: str, graph: Neo4jSettings | None = None) -> Neo4jDestination:
        return Neo4jDestination(sink, graph or self.graph, self.model)

    def state(self) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]], int]:
        """The graph by key (entities, relations, placeholders), read while no sink writes."""
        entities, relations, placeholders, doubled = self._read()
        assert not doubled, f"relation ids held by two relationships: {doubled}"
        return entities, relations, placeholders

    def _read(self) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]], int, list[int]]:
        """The graph by key, and the relation ids seen on more than one relationship."""
        ent = f"`{self.model.entity_label}`"
        nodes = run_read(self.driver, self.graph.database, f"MATCH (n:{ent}) RETURN n")
        entities = {
            n["n"]["id"]: {k: n["n"].get(k) for k in ("name", "entity_type", "observations")}
            for n in nodes if not n["n"].get("_placeholder")
        }  # fmt: skip
        placeholders = sum(1 for n in nodes if n["n"].get("_placeholder"))
        rels = run_read(
            self.driver, self.graph.database,
            f"MATCH (a:{ent})-[r]->(b:{ent}) RETURN a.id AS a, b.id AS b, type(r) AS t, r.relation_type AS rt, "
            "r.strength AS s, r.id AS id",
        )  # fmt: skip
        relations = {
            r["id"]: {"from": r["a"], "to": r["b"], "relation_type": r["rt"], "strength": r["s"]} for r in rels
        }
        seen = Counter(r["id"] for r in rels)
        return entities, relations, placeholders, sorted(i for i, n in seen.items() if n > 1)

    def wait_equal(self, store: SimulatedStore, timeout_s: float = 40.0) -> None:
        """Until the graph equals the store. While a sink writes, one read may see a relationship it
        replaced and its replacement both (Neo4j reads at read committed: a statement's rows need not
        come from one instant), so a doubled relation id fails only if the last read still has it."""
        want_e, want_r = store.expected_graph()
        deadline = time.monotonic() + timeout_s
        got: Any = None
        doubled: list[int] = []
        while time.monotonic() < deadline:
            *got, doubled = self._read()
            if not doubled and tuple(got) == (want_e, want_r, 0):
                return
            time.sleep(0.3)
        assert not doubled, f"relation ids held by two relationships: {doubled}"
        entities, relations, placeholders = got
        differ = {
            "entities": {k: (entities.get(k), want_e.get(k)) for k in entities.keys() | want_e.keys()
                         if entities.get(k) != want_e.get(k)},
            "relations": {k: (relations.get(k), want_r.get(k)) for k in relations.keys() | want_r.keys()
                          if relations.get(k) != want_r.get(k)},
            "placeholders": placeholders,
        }  # fmt: skip
        assert tuple(got) == (want_e, want_r, 0), f"(graph, store) by key: {differ}"

    def applied_lists(self) -> list[list[int]]:
        ent = f"`{self.model.entity_label}`"
        rows = run_read(self.driver, self.graph.database, f"MATCH (n:{ent}) RETURN n._applied AS a")
        rows += run_read(self.driver, self.graph.database, f"MATCH (:{ent})-[r]->() RETURN r._applied AS a")
        return [list(r["a"] or []) for r in rows]


@pytest.fixture
def iso(kafka: KafkaSettings, graph: Neo4jSettings) -> Iterator[Isolated]:
    h = uuid.uuid4().hex[:8]
    prefix = f"t{h}.caxton.memory"
    model = GraphModel(f"Entity_{h}", f"Tomb_{h}", f"Pos_{h}", audit=True)
    driver = neo4j.GraphDatabase.driver(graph.uri, auth=graph.auth(), notifications_min_severity="OFF")
    yield Isolated(kafka, graph, prefix, model, driver, TransactionalPublisher(kafka, prefix, 3))
    with driver.session() as session:
        for label in (model.entity_label, model.tombstone_label, model.position_label):
            query = f"MATCH (n:`{label}`) CALL {{ WITH n DETACH DELETE n }} IN TRANSACTIONS OF 5000 ROWS"
            session.run(query).consume()
    records, _, _ = driver.execute_query("SHOW CONSTRAINTS YIELD name, labelsOrTypes RETURN name, labelsOrTypes")
    for r in records:
        if set(r["labelsOrTypes"] or []) & {model.entity_label, model.tombstone_label, model.position_label}:
            driver.execute_query(f"DROP CONSTRAINT `{r['name']}` IF EXISTS")
    records, _, _ = driver.execute_query("SHOW INDEXES YIELD name, labelsOrTypes, owningConstraint RETURN *")
    for r in records:
        labels = {model.entity_label, model.tombstone_label, model.position_label}
        if r["owningConstraint"] is None and set(r["labelsOrTypes"] or []) & labels:
            driver.execute_query(f"DROP INDEX `{r['name']}` IF EXISTS")
    driver.close()
    for suffix in ("entities", "relations", "dlq"):
        delete_topic(kafka, f"{prefix}.{suffix}")


class Running:
    """A runner on a thread, stopped (flush + commit) by ``stop``."""

    def __init__(self, runner: SinkRunner) -> None:
        self.runner = runner
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.runner.run()
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.runner.request_stop()
        self.thread.join(30)
        assert not self.thread.is_alive()
        assert self.error is None, self.error


def _workload(store: SimulatedStore, rng: random.Random, steps: int) -> list[list[Any]]:
    """Transactions of mixed changes, including hostile and unicode relation types."""
    types = ["depends on", "works-at", "知る", HOSTILE, "2nd", ""]
    txs: list[list[Any]] = []
    for _ in range(steps):
        msgs: list[Any] = []
        for _ in range(rng.randint(1, 6)):
            roll = rng.random()
            if roll < 0.35 or len(store.entities) < 3:
                _, m = store.create_entity(f"e{store.seq}-{rng.random():.6f}", rng.choice(["person", "org"]))
            elif roll < 0.55:
                a, b = rng.sample(sorted(store.entities), 2)
                _, m = store.create_relation(a, b, rng.choice(types))
            elif roll < 0.7:
                m = store.update_entity(rng.choice(sorted(store.entities)), name=f"renamed{store.seq}")
            elif roll < 0.8 and store.relations:
                m = store.update_relation(rng.choice(sorted(store.relations)), strength=rng.random())
            elif roll < 0.9 and store.relations:
                m = store.delete_relation(rng.choice(sorted(store.relations)))
            else:
                m = store.delete_entity(rng.choice(sorted(store.entities)))
            msgs += m
        txs.append(msgs + store.heartbeats(3))
    return txs


def test_deliver_twice_and_full_replay_give_the_source_state(iso: Isolated) -> None:
    store = SimulatedStore()
    for tx in _workload(store, random.Random(1), 40):
        iso.publisher.publish(tx, copies=2)
    first = Running(SinkRunner(iso.settings(f"g{uuid.uuid4().hex[:6]}", sink="main"), iso.destination("main")))
    iso.wait_equal(store)
    first.stop()
    before = iso.state()
    # A full replay: another group and sink name, from offset 0, over the same graph. The first sink's
    # tombstones are collected (its watermark passed them), so the replay may re-create a deleted row
    # for a while; it deletes it again when it reaches its delete: equal by its watermark.
    replay = Running(SinkRunner(iso.settings(f"g{uuid.uuid4().hex[:6]}", sink="replay"), iso.destination("replay")))
    deadline = time.monotonic() + 30
    while (pos := read_position(iso.driver, "replay", model=iso.model)) is None or (
        (mark := pos.watermark()) is None or mark.seq < store.seq
    ):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    replay.stop()

    assert iso.state() == before
    assert all(a == sorted(set(a)) for a in iso.applied_lists()), "a seq was applied twice"
    pos = read_position(iso.driver, "main", model=iso.model)
    assert pos is not None and pos.watermark() is not None and pos.watermark().seq == store.seq  # type: ignore[union-attr]
    ent = f"`{iso.model.entity_label}`"
    query = f"MATCH (:{ent})-[r]->() WHERE r.relation_type = $t RETURN count(r) AS c, collect(type(r)) AS types"
    hostile = run_read(iso.driver, "neo4j", query, t=HOSTILE)
    assert set(hostile[0]["types"]) <= {"X_DETACH_DELETE_N_"}
    assert hostile[0]["c"] == sum(1 for r in store.relations.values() if r["relation_type"] == HOSTILE)


def test_relations_before_entities_and_deletes_before_creates_converge(iso: Isolated) -> None:
    store = SimulatedStore()
    a, ma = store.create_entity("alice")
    b, mb = store.create_entity("bob")
    c, mc = store.create_entity("carol")
    _, r1 = store.create_relation(a, b, "depends on")
    _, r2 = store.create_relation(b, c, HOSTILE)
    rename = store.update_entity(a, name="alice2")
    dead = store.delete_entity(c)  # cascades r2's delete, then c's
    # Per key the order is Kafka's; across topics anything goes. r1 arrives before its endpoints
    # (placeholders); r2's create arrives after carol was deleted (tombstoned): nothing resurrects.
    iso.publisher.publish(r1)
    iso.publisher.publish(ma + mb + mc + rename + dead[2:])
    iso.publisher.publish(r2)
    iso.publisher.publish(dead[:2])
    iso.publisher.publish(store.heartbeats(3))
    running = Running(SinkRunner(iso.settings("g" + uuid.uuid4().hex[:6]), iso.destination("s")))
    iso.wait_equal(store)
    # carol's tombstone stopped r2's create; once the watermark passed it nothing older can come, and
    # the tombstones are collected.
    tombstones = f"MATCH (t:`{iso.model.tombstone_label}`) RETURN count(t) AS n"
    deadline = time.monotonic() + 20
    while run_read(iso.driver, "neo4j", tombstones)[0]["n"] and time.monotonic() < deadline:
        time.sleep(0.2)
    running.stop()
    assert run_read(iso.driver, "neo4j", tombstones)[0]["n"] == 0
    assert iso.state()[:2] == store.expected_graph()


def test_poison_events_go_to_the_dlq_and_the_rest_applies(iso: Isolated) -> None:
    store = SimulatedStore()
    _, m1 = store.create_entity("before-poison")
    iso.publisher.publish(m1)
    iso.publisher.publish_raw("entities", encode_key(999), b"not avro at all")
    # Valid Avro that breaks the envelope: a create without an `after` image.
    source = {"connector": "c", "version": "t", "store": store.store_id, "table": "entities", "seq": 2,
              "snapshot": "false", "ts_ms": 1}  # fmt: skip
    bad = codec(ENTITY_CHANGE).encode({"op": "c", "before": None, "after": None, "source": source, "ts_ms": 1})
    iso.publisher.publish_raw("entities", encode_key(998), bad)
    store.seq += 1
    _, m2 = store.create_entity("after-poison")
    iso.publisher.publish(m2 + store.heartbeats(3))
    running = Running(SinkRunner(iso.settings("g" + uuid.uuid4().hex[:6]), iso.destination("s")))
    iso.wait_equal(store)
    running.stop()
    assert running.runner.metrics.dead_letters._value.get() == 2

    consumer = Consumer({**iso.kafka.consumer("dlq" + uuid.uuid4().hex), "isolation.level": "read_committed"})
    consumer.subscribe([f"{iso.prefix}.dlq"])
    got: list[dict[str, str]] = []
    deadline = time.monotonic() + 20
    while len(got) < 2 and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append({str(k): bytes(v or b"").decode() for k, v in msg.headers() or []})  # type: ignore[str-unpack, arg-type]
    consumer.close()
    reasons = sorted(h["dlq.reason"] for h in got)
    assert len(got) == 2
    assert reasons[0].startswith("event 0 of the batch") or "image" in " ".join(reasons)
    assert any(r.startswith("undecodable") for r in reasons)
    assert {h["dlq.topic"] for h in got} == {f"{iso.prefix}.entities"}
    assert all(h["dlq.sink"] == "s" and h["dlq.offset"].isdigit() and h["dlq.ts_ms"].isdigit() for h in got)


class SinkProcess:
    """`python -m replicator sink neo4j` as a child; its JSON log lines are collected."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line.decode(errors="replace"))

    def wait_log(self, text: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(text in line for line in self.log):
            assert time.monotonic() < deadline, "".join(self.log)[-2000:]
            time.sleep(0.05)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> int:
        """SIGTERM once the handler is installed; returns the exit code."""
        self.wait_log("sink started")
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        self._reader.join(5)
        return code


def _sink_process(iso: Isolated, group: str, sink: str) -> SinkProcess:
    m = iso.model
    return SinkProcess(subprocess.Popen(
        [sys.executable, "-m", "replicator", "sink", "neo4j", "--bootstrap-servers", iso.kafka.bootstrap_servers,
         "--topic-prefix", iso.prefix, "--group", group, "--sink-name", sink, "--uri", iso.graph.uri,
         "--user", iso.graph.user, "--database", iso.graph.database,
         "--entity-label", m.entity_label, "--tombstone-label", m.tombstone_label,
         "--position-label", m.position_label, "--audit", "--batch-size", "50", "--batch-age-ms", "50",
         "--session-timeout-ms", "6000"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **_password(iso.graph)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    ))  # fmt: skip


def _password(graph: Neo4jSettings) -> dict[str, str]:
    """The sink's password, for its environment (never its argv: ``ps`` shows argv)."""
    return {} if graph.password is None else {"REPLICATOR_NEO4J_PASSWORD": graph.password}


def _publish_in_background(iso: Isolated, txs: list[list[Any]]) -> threading.Thread:
    def go() -> None:
        for tx in txs:
            iso.publisher.publish(tx)
            time.sleep(0.01)

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread


def test_kill_9_under_load_then_restart_applies_everything_once(iso: Isolated) -> None:
    store = SimulatedStore()
    rng = random.Random(7)
    txs = _workload(store, rng, 150)
    group = "g" + uuid.uuid4().hex[:6]
    producer = _publish_in_background(iso, txs)
    for _ in range(3):
        proc = _sink_process(iso, group, "s")
        proc.wait_log("partitions assigned")
        time.sleep(rng.uniform(0.5, 3.0))  # applying under load when killed
        proc.kill()
    producer.join(60)
    final = _sink_process(iso, group, "s")
    try:
        iso.wait_equal(store, timeout_s=60)
    finally:
        code = final.terminate()
    assert code == 0, "".join(final.log)[-2000:]
    assert any("sink stopped cleanly" in line for line in final.log)
    assert all(a == sorted(set(a)) for a in iso.applied_lists()), "a seq was applied twice"


def test_two_instances_one_killed_rebalance_converges(iso: Isolated) -> None:
    store = SimulatedStore()
    txs = _workload(store, random.Random(11), 120)
    group = "g" + uuid.uuid4().hex[:6]
    one, two = _sink_process(iso, group, "s"), _sink_process(iso, group, "s")
    producer = _publish_in_background(iso, txs)
    one.wait_log("partitions assigned")
    two.wait_log("partitions assigned")
    time.sleep(2)
    one.kill()
    producer.join(60)
    try:
        iso.wait_equal(store, timeout_s=60)
    finally:
        code = two.terminate()
    assert code == 0, "".join(two.log)[-2000:]
    assert all(a == sorted(set(a)) for a in iso.applied_lists()), "a seq was applied twice"


def test_start_creates_constraints_for_the_configured_label(iso: Isolated) -> None:
    dest = iso.destination("s")
    dest.start()
    found = run_read(iso.driver, "neo4j", "SHOW CONSTRAINTS YIELD labelsOrTypes RETURN labelsOrTypes")
    dest.close()
    assert [iso.model.entity_label] in [r["labelsOrTypes"] for r in found]


class _PerTypeDestination(Neo4jDestination):
    def start(self) -> SinkPosition | None:  # as on a server before 5.26: one relation upsert per type
        stored, self._dynamic_types = super().start(), False
        return stored


@pytest.mark.parametrize("dynamic", [True, False], ids=["types-as-parameters", "statement-per-type"])
def test_relationship_types_are_the_mapped_ones_either_way(iso: Isolated, dynamic: bool) -> None:
    assert supports_dynamic_types(iso.driver, "neo4j"), "the local stack runs Neo4j 5.26"
    store, cls = SimulatedStore(), (Neo4jDestination if dynamic else _PerTypeDestination)
    for tx in _workload(store, random.Random(7), 25):
        iso.publisher.publish(tx)
    running = Running(SinkRunner(iso.settings(f"g{uuid.uuid4().hex[:6]}", sink="s"), cls("s", iso.graph, iso.model)))
    iso.wait_equal(store)
    running.stop()
    ent = iso.model.entity_label
    rows = run_read(iso.driver, "neo4j", f"MATCH (:`{ent}`)-[r]->() RETURN type(r) AS t, r.relation_type AS rt")
    assert rows and all(r["t"] == relationship_type(r["rt"]) for r in rows)
    assert {r["t"] for r in rows} == {relationship_type(r["relation_type"]) for r in store.relations.values()}
