"""The source against the real broker: snapshot + stream under a concurrent writer, kill -9 restarts,
and a 30 s outage of a PRIVATE broker (own dir, free ports; the shared one is never stopped). Each is
checked by rebuilding the store from the topics (read_committed), comparing field by field, and by
matching the stream's seqs with every seq the triggers produced: no seq is published twice, none
that was not produced, and every change is covered by an event of its row at its seq or later (the
source coalesces the changes of one row in a page into one event at the highest seq: docs/capture.md).

How the expected seqs are known honestly: the test adds its own trigger on the changelog that copies
every inserted (seq, table, row id) into ``_test_seq_audit`` inside the writer's transaction; the
source deletes published changelog rows, the audit keeps them all.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import sqlite3
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from replicator.capture.install import install
from replicator.capture.triggers import CHANGELOG, changelog_rows
from replicator.demo.daemons import Daemon, free_port
from replicator.observe.endpoint import scrape
from replicator.source.daemon import SourceDaemon
from replicator.source.metrics import read_snapshot_progress, snapshot_progress
from replicator.source.settings import SourceSettings
from replicator.testing.replay import Replay, replay
from replicator.testing.writer import MemoryWriter
from replicator.transport.kafka import delete_topic
from replicator.transport.settings import KafkaSettings
from replicator.transport.topics import positions_topic

DIM = 8  # short vectors keep the workload light; the source carries any BLOB as is


@pytest.fixture
def prefix(kafka: KafkaSettings) -> Iterator[str]:
    name = f"t{uuid.uuid4().hex[:8]}.caxton.memory"
    yield name
    for suffix in ("entities", "relations", "embeddings"):
        delete_topic(kafka, f"{name}.{suffix}")
    delete_topic(kafka, positions_topic(name))


def make_store(path: Path, prepopulate: int = 20, seed: int = 1) -> Path:
    writer = MemoryWriter.create(path)
    rng = random.Random(seed)
    ids = [
        writer.create_entity(f"pre{i}", "concept", [f"o{i}"], embedding=[rng.random() for _ in range(DIM)])
        for i in range(prepopulate)
    ]
    for i in range(prepopulate):
        writer.create_relation(ids[i], ids[(i + 1) % len(ids)], "relates_to")
    install(path)
    writer.conn.executescript(
        f"""CREATE TABLE IF NOT EXISTS _test_seq_audit (seq INTEGER PRIMARY KEY, tbl TEXT, row_id INTEGER);
        CREATE TRIGGER IF NOT EXISTS _test_audit AFTER INSERT ON {CHANGELOG}
        BEGIN INSERT INTO _test_seq_audit VALUES (NEW.seq, NEW.tbl, NEW.row_id); END;"""
    )
    writer.close()
    return path


class Workload(threading.Thread):
    """Random memory-tool calls, each its own transaction, until stopped; records commit latencies."""

    def __init__(self, path: Path, seed: int, pause_s: float = 0.002) -> None:
        super().__init__(daemon=True)
        self.path, self.rng, self.pause_s = path, random.Random(seed), pause_s
        self.stop = threading.Event()
        self.latencies: list[float] = []
        self.ops = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        writer = MemoryWriter(self.path)
        try:
            while not self.stop.is_set():
                t0 = time.perf_counter()
                self._one(writer)
                self.latencies.append(time.perf_counter() - t0)
                self.ops += 1
                time.sleep(self.pause_s)
        except BaseException as exc:
            self.error = exc
        finally:
            writer.close()

    def _one(self, w: MemoryWriter) -> None:
        rng = self.rng
        ids = [int(r[0]) for r in w.conn.execute("SELECT id FROM entities")]
        rels = [int(r[0]) for r in w.conn.execute("SELECT id FROM relations")]
        op = rng.random()
        if op < 0.25 or len(ids) < 5:
            vector = [rng.uniform(-1, 1) for _ in range(DIM)] if rng.random() < 0.7 else None
            w.create_entity(f"e{uuid.uuid4().hex[:10]}", rng.choice(["person", "pattern"]), ["first"],
                            confidence=rng.random(), embedding=vector)  # fmt: skip
        elif op < 0.40:
            w.add_observations(rng.choice(ids), [f"obs {rng.randint(0, 999)}"])
        elif op < 0.47:
            target = rng.choice(ids)
            w.set_observations(target, w.observations(target)[1:])
        elif op < 0.55:
            w.rename(rng.choice(ids), f"renamed{uuid.uuid4().hex[:10]}")
        elif op < 0.62:
            w.set_embedding(rng.choice(ids), [rng.uniform(-1, 1) for _ in range(DIM)])
        elif op < 0.78:
            # (from, to, type) may exist already: the real writer refuses it too.
            with contextlib.suppress(sqlite3.IntegrityError):
                w.create_relation(rng.choice(ids), rng.choice(ids), rng.choice(["knows", "depends on", "uses"]))
        elif op < 0.85 and rels:
            w.set_relation_strength(rng.choice(rels), rng.random())
        elif op < 0.93 and rels:
            w.delete_relation(rng.choice(rels))
        else:
            w.delete_entity(rng.choice(ids))  # cascades to relations and the embedding


def store_rows(path: Path) -> dict[str, dict[int, dict[str, Any]]]:
    """The store's rows read directly (independently of the source's converter)."""
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        entities = {
            r["id"]: {**dict(r), "observations": json.loads(r["observations"])}
            for r in conn.execute("SELECT * FROM entities")
        }
        relations = {r["id"]: dict(r) for r in conn.execute("SELECT * FROM relations")}
        embeddings = {
            r["entity_id"]: {"entity_id": r["entity_id"], "vector": r["embedding"],
                             "model_version": r["model_version"], "created_at": r["created_at"]}
            for r in conn.execute("SELECT * FROM embeddings")
        }  # fmt: skip
    finally:
        conn.close()
    return {"entities": entities, "relations": relations, "embeddings": embeddings}


def _same(a: object, b: object) -> bool:
    # Exact, floats included: the triggers and the snapshot render a REAL with 17 significant digits.
    return a == b


def assert_equal_state(path: Path, got: Replay) -> None:
    want = store_rows(path)
    for table, rows in want.items():
        live = got.live(table)
        assert sorted(live) == sorted(rows), f"{table}: ids differ"
        for key, row in rows.items():
            for column, value in row.items():
                assert _same(live[key][column], value), f"{table} {key} {column}: {live[key][column]!r} != {value!r}"


def audited_changes(path: Path) -> list[tuple[int, str, int]]:
    conn = sqlite3.connect(path)
    try:
        return [(int(r[0]), str(r[1]), int(r[2])) for r in conn.execute("SELECT * FROM _test_seq_audit ORDER BY seq")]
    finally:
        conn.close()


def assert_exactly_once(path: Path, got: Replay) -> None:
    """Every change after the first snapshot read W is covered exactly once: by an event of its row at
    its seq or later (coalesced), no seq published twice, none that the triggers did not produce."""
    first_w = min(got.snapshot_seqs)
    expected = [c for c in audited_changes(path) if c[0] > first_w]
    assert got.last_markers == 1
    repeated = {s: n for s, n in got.stream_seqs.items() if n != 1}
    assert not repeated, f"seqs published more than once: {sorted(repeated)[:10]}"
    unexpected = set(got.stream_seqs) - {seq for seq, _, _ in expected}
    assert not unexpected, f"unexpected {sorted(unexpected)[:10]}"
    missing = [c for c in expected if not any(s >= c[0] for s in got.key_seqs.get((c[1], c[2]), []))]
    assert not missing, f"changes no event covers: {missing[:10]}"
    conn = sqlite3.connect(path)
    try:  # published rows are deleted from the changelog
        assert changelog_rows(conn) == 0
    finally:
        conn.close()


def settings_for(db: Path, prefix: str, kafka: KafkaSettings, **overrides: Any) -> SourceSettings:
    return SourceSettings(db=db, bootstrap_servers=kafka.bootstrap_servers, topic_prefix=prefix, **overrides)


def run_in_thread(daemon: SourceDaemon) -> threading.Thread:
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    return thread


def test_stream_under_a_concurrent_writer_is_exact(tmp_path: Path, kafka: KafkaSettings, prefix: str) -> None:
    db = make_store(tmp_path / "memory.db")
    daemon = SourceDaemon(settings_for(db, prefix, kafka, metrics_port=0), progress=False)
    thread = run_in_thread(daemon)
    workload = Workload(db, seed=7)
    workload.start()
    time.sleep(4)
    assert daemon.server is not None
    import urllib.request  # noqa: PLC0415

    with urllib.request.urlopen(f"http://127.0.0.1:{daemon.server.port}/healthz", timeout=5) as resp:
        assert resp.status == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{daemon.server.port}/metrics", timeout=5) as resp:
        body = resp.read().decode()
    assert 'replicator_source_events_published_total{op="c",table="entities"}' in body
    workload.stop.set()
    workload.join()
    assert workload.error is None and workload.ops > 100
    daemon.request_stop()
    thread.join(30)
    assert not thread.is_alive()

    got = replay(kafka, prefix)
    assert_exactly_once(db, got)
    assert_equal_state(db, got)
    assert got.heartbeats > 0 and len(got.heartbeat_seq) == 9  # 3 topics x 3 partitions
    assert min(got.heartbeat_seq.values()) == daemon.committed_seq


def test_snapshot_of_a_populated_store_hands_over_exactly(tmp_path: Path, kafka: KafkaSettings, prefix: str) -> None:
    db = make_store(tmp_path / "memory.db", prepopulate=1500)  # 4500 rows in three tables
    workload = Workload(db, seed=11, pause_s=0.001)
    workload.start()
    time.sleep(0.3)
    daemon = SourceDaemon(settings_for(db, prefix, kafka, snapshot_chunk_rows=250), progress=False)
    thread = run_in_thread(daemon)
    time.sleep(4)
    workload.stop.set()
    workload.join()
    assert workload.error is None
    daemon.request_stop()
    thread.join(30)

    got = replay(kafka, prefix)
    assert got.snapshot_events >= 4500
    assert_exactly_once(db, got)
    assert_equal_state(db, got)


def _source(db: Path, prefix: str, kafka: KafkaSettings, config: Path, log: Path) -> Daemon:
    """``replicator source run`` as its own process, logging to ``log`` (appended across restarts)."""
    argv = ["source", "run", "--db", str(db), "--topic-prefix", prefix, "--config", str(config),
            "--bootstrap-servers", kafka.bootstrap_servers]  # fmt: skip
    return Daemon("source", argv, log)


def test_kill_9_at_random_points_then_restart_is_exactly_once(
    tmp_path: Path, kafka: KafkaSettings, prefix: str
) -> None:
    db = make_store(tmp_path / "memory.db", prepopulate=600)
    config = tmp_path / "source.yaml"
    config.write_text("source:\n  snapshot_chunk_rows: 100\n  batch_rows: 40\n")
    log = tmp_path / "source.log"
    workload = Workload(db, seed=3)
    workload.start()
    rng = random.Random(5)
    source = _source(db, prefix, kafka, config, log)
    try:
        for _ in range(4):
            source.start()
            time.sleep(rng.uniform(1.5, 4.0))  # the first kill lands during start-up or the snapshot
            source.kill()
    finally:
        workload.stop.set()
        workload.join()
    assert workload.error is None
    source.start()
    time.sleep(5)
    assert source.stop(60) == 0, log.read_text()[-3000:]

    got = replay(kafka, prefix)
    assert_exactly_once(db, got)
    assert_equal_state(db, got)


def _snapshot_rows_published(port: int) -> float:
    return scrape(port, "replicator_source_snapshot_rows_total") or 0.0  # None: not listening yet


def _published_before_the_restart(port: int) -> int | None:
    """Rows the source's snapshot progress counts as done less the rows this run published (one read
    of /metrics, so both are of the same moment); None until it serves them."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    progress = snapshot_progress(text)
    ours = re.search(r"^replicator_source_snapshot_rows_total ([0-9.e+]+)$", text, re.M)
    return None if progress is None or ours is None else progress.done - int(float(ours.group(1)))


def test_kill_9_mid_snapshot_resumes_from_the_cursor(tmp_path: Path, kafka: KafkaSettings, prefix: str) -> None:
    """A snapshot killed half way resumes after its last committed chunk: no row is snapshotted twice,
    none is missed, and the stream still starts exactly after the first snapshot read."""
    db = make_store(tmp_path / "memory.db", prepopulate=2000)  # 6000 rows in three tables
    port = free_port()
    config = tmp_path / "source.yaml"  # small chunks: the snapshot is ~300 transactions long
    config.write_text(f"source:\n  snapshot_chunk_rows: 20\n  batch_rows: 40\n  metrics_port: {port}\n")
    log = tmp_path / "source.log"
    workload = Workload(db, seed=17, pause_s=0.01)
    workload.start()
    source = _source(db, prefix, kafka, config, log)
    try:
        source.start()
        deadline = time.monotonic() + 60
        while (published := _snapshot_rows_published(port)) < 1000:
            assert source.alive() and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.02)
        source.kill()
        assert published < 5000, "the snapshot ended before the kill: nothing to resume"
        source.start()
        deadline = time.monotonic() + 60
        while (before := _published_before_the_restart(port)) is None:
            assert source.alive() and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.02)
        deadline = time.monotonic() + 60
        while "event=snapshot_done" not in log.read_text():
            assert source.alive() and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        time.sleep(1)
        progress = read_snapshot_progress(port)
    finally:
        workload.stop.set()
        workload.join()
    assert workload.error is None
    time.sleep(1)
    assert source.stop(60) == 0, log.read_text()[-3000:]

    text = log.read_text()
    assert text.count("event=snapshot_resuming") == 1 and "table=" in text.split("event=snapshot_resuming")[1]
    got = replay(kafka, prefix)
    twice = [key for key, n in got.snapshot_keys.items() if n > 1]
    assert not twice, f"rows snapshotted again after the restart: {twice[:10]}"
    assert got.snapshot_events >= 6000 - workload.ops  # the prepopulated rows, less what the writer deleted
    assert len(got.snapshot_seqs) == 2  # the first read W, the resumed read W2
    # its progress counts what the killed run published (less what the writer deleted meanwhile)
    assert before >= 1000 - workload.ops, (before, workload.ops)
    assert progress is not None and progress.done == progress.total, progress
    assert_exactly_once(db, got)
    assert_equal_state(db, got)
