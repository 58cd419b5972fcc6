"""A Neo4j sink whose own user's password is changed (or expires) under load, its connections closed
(issue 17, item 1). Seen in the field: the same event dead-lettered ~970 times, then RecursionError.

The sink runs as `python -m replicator sink neo4j` as a dedicated user of the shared Neo4j (never the
`neo4j` user), with a live source publishing throughout. Required: nothing dead-lettered, no offset
committed, /healthz 503 naming the cause, one log line about it; then, once the password is back,
the sink resumes by itself and the graph ends equal to the store with no seq applied twice."""

from __future__ import annotations

import dataclasses
import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import neo4j
import pytest
from confluent_kafka import Consumer

from replicator.sinks.settings import Neo4jSettings
from replicator.testing.fake_source import SimulatedStore
from replicator.transport.settings import KafkaSettings
from tests.integration import test_neo4j_sink
from tests.integration.sink_harness import committed, http_get, metric, metrics_port, neo4j_flags, start_sink, wait_for
from tests.integration.test_neo4j_sink import Isolated, SinkProcess, _workload

iso = test_neo4j_sink.iso  # the fixture: unique prefix and labels; cleans up
RECHECK_S = 1.0
FAULT_S = 8.0  # several re-checks under the fault


@dataclasses.dataclass
class SinkUser:
    """A Neo4j user made for one test (Community: every user may write every database)."""

    admin: neo4j.Driver
    name: str
    password: str

    def run(self, query: str, **params: object) -> list[neo4j.Record]:
        records, _, _ = self.admin.execute_query(query, params, database_="system")
        return records

    def set_password(self, password: str) -> None:
        self.run(f"ALTER USER {self.name} SET PASSWORD $pw CHANGE NOT REQUIRED", pw=password)

    def expire(self) -> None:
        self.run(f"ALTER USER {self.name} SET PASSWORD CHANGE REQUIRED")

    def renew(self) -> None:
        self.run(f"ALTER USER {self.name} SET PASSWORD CHANGE NOT REQUIRED")

    def close_connections(self) -> int:
        """Close every Bolt connection of this user (as a restart of the server would)."""
        found, _, _ = self.admin.execute_query(
            "CALL dbms.listConnections() YIELD connectionId, username WHERE username = $u "
            "RETURN collect(connectionId) AS ids",
            u=self.name,
        )
        ids = list(found[0]["ids"])
        if ids:
            self.admin.execute_query("CALL dbms.killConnections($ids)", ids=ids)
        return len(ids)


@pytest.fixture
def sink_user(graph: Neo4jSettings) -> Iterator[SinkUser]:
    admin = neo4j.GraphDatabase.driver(graph.uri, auth=graph.auth(), notifications_min_severity="OFF")
    user = SinkUser(admin, f"sink_{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}")
    user.run(f"CREATE USER {user.name} SET PASSWORD $pw CHANGE NOT REQUIRED", pw=user.password)
    try:
        yield user
    finally:
        user.run(f"DROP USER {user.name} IF EXISTS")
        admin.close()


def dead_letters(kafka: KafkaSettings, prefix: str) -> int:
    """Messages in the prefix's dead-letter topic, read from the start."""
    consumer = Consumer({**kafka.consumer("dlq" + uuid.uuid4().hex), "isolation.level": "read_committed"})
    try:
        consumer.subscribe([f"{prefix}.dlq"])
        count, quiet_since = 0, time.monotonic()
        while time.monotonic() - quiet_since < 3.0:
            msg = consumer.poll(0.3)
            if msg is not None and msg.error() is None:
                count, quiet_since = count + 1, time.monotonic()
        return count
    finally:
        consumer.close()


def _observe_the_fault(proc: SinkProcess, port: int, user: SinkUser, group_offsets: Callable[[], object]) -> object:
    """While the fault lasts: the sink stays up, answers 503 naming the cause, commits nothing,
    dead-letters nothing, and says so in one log line. Returns the frozen committed offsets."""
    wait_for(lambda: b"Neo.ClientError.Security." in http_get(port, "/healthz")[1], 30, "/healthz to name the fault")
    assert user.name.encode() in http_get(port, "/healthz")[1]
    time.sleep(1)  # an asynchronous commit of the last batch before the fault may still land
    frozen = group_offsets()
    deadline = time.monotonic() + FAULT_S
    while time.monotonic() < deadline:
        time.sleep(0.5)
        assert proc.proc.poll() is None, "".join(proc.log)[-3000:]
        assert http_get(port, "/healthz")[0] == 503
    assert group_offsets() == frozen, "offsets committed while Neo4j refused the sink"
    text = http_get(port, "/metrics")[1].decode()
    assert metric(text, "replicator_sink_dead_letters_total") == 0
    assert metric(text, "replicator_sink_fatal") == 1
    lines = [json.loads(line) for line in proc.log if line.startswith("{")]
    stopped = [line for line in lines if line["level"] == "error" and line["logger"] == "replicator.sink"]
    assert len(stopped) == 1, "".join(proc.log)[-3000:]  # once, not once per re-check
    assert "Neo.ClientError.Security." in stopped[0]["error"] and stopped[0]["hint"]
    return frozen


@pytest.mark.parametrize("fault", ["password changed", "password expired"])
def test_a_password_fault_under_load_stops_the_sink_then_it_resumes_exactly_once(
    iso: Isolated, sink_user: SinkUser, fault: str
) -> None:
    store, rng, done, published = SimulatedStore(), random.Random(23), threading.Event(), [0]

    def produce() -> None:  # the source keeps writing through the whole fault
        while not done.is_set():
            iso.publisher.publish(_workload(store, rng, 1)[0])
            published[0] += 1
            time.sleep(0.05)

    as_user = dataclasses.replace(iso, graph=Neo4jSettings(iso.graph.uri, sink_user.name, sink_user.password))
    group, topics = "g" + uuid.uuid4().hex[:6], [f"{iso.prefix}.entities", f"{iso.prefix}.relations"]
    proc = start_sink(
        "neo4j",
        iso.kafka,
        iso.prefix,
        group,
        *neo4j_flags(as_user, "s"),
        "--recheck-s",
        str(RECHECK_S),
        graph=as_user.graph,
    )
    producer = threading.Thread(target=produce, daemon=True)
    try:
        port = metrics_port(proc)
        producer.start()
        wait_for(lambda: sum(committed(iso.kafka, group, topics, 3).values()) > 0, 30, "a first commit")
        if fault == "password changed":
            sink_user.set_password("changed-" + uuid.uuid4().hex)
        else:
            sink_user.expire()
        assert sink_user.close_connections() > 0, "the sink held no connection to close"
        before = published[0]
        frozen = _observe_the_fault(proc, port, sink_user, lambda: committed(iso.kafka, group, topics, 3))
        assert published[0] > before + 20, "the source did not keep writing during the fault"

        if fault == "password changed":  # the operator sets it back (or restarts the sink with the new one)
            sink_user.set_password(sink_user.password)
        else:
            sink_user.renew()
        done.set()
        producer.join(30)
        try:
            iso.wait_equal(store, timeout_s=90)
        except AssertionError:
            print("".join(proc.log)[-6000:], http_get(port, "/healthz"))  # why it did not resume, in the report
            raise
        wait_for(lambda: http_get(port, "/healthz")[0] == 200, 20, "/healthz to recover")
        after = committed(iso.kafka, group, topics, 3)
        assert after != frozen
        assert all(a == sorted(set(a)) for a in iso.applied_lists()), "a seq was applied twice"
        assert any("resuming from its stored position" in line for line in proc.log)
    finally:
        done.set()
        code = proc.terminate() if proc.proc.poll() is None else proc.proc.returncode
    assert code == 0, "".join(proc.log)[-3000:]
    assert dead_letters(iso.kafka, iso.prefix) == 0
