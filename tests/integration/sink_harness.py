"""Helpers for tests that run ``python -m replicator sink ...`` as a child process and talk to it over
HTTP (its ``/metrics``, ``/healthz``, ``/position``). Not a test module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from replicator.sinks.settings import NEO4J_PASSWORD_ENV, Neo4jSettings
from replicator.transport.settings import KafkaSettings
from tests.integration.test_neo4j_sink import Isolated, SinkProcess

REPO = Path(__file__).resolve().parents[2]


def start_sink(
    kind: str, kafka: KafkaSettings, prefix: str, group: str, *extra: str, graph: Neo4jSettings | None = None
) -> SinkProcess:
    """``replicator sink <kind>`` with small batches and an HTTP endpoint on a free port. ``graph``'s
    password reaches the child through its environment, never its argv (``ps`` shows argv)."""
    secret = {} if graph is None or graph.password is None else {NEO4J_PASSWORD_ENV: graph.password}
    return SinkProcess(subprocess.Popen(
        [sys.executable, "-m", "replicator", "sink", kind, "--bootstrap-servers", kafka.bootstrap_servers,
         "--topic-prefix", prefix, "--group", group, "--batch-size", "50", "--batch-age-ms", "50",
         "--session-timeout-ms", "6000", "--metrics-port", "0", *extra],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **secret}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    ))  # fmt: skip


def neo4j_flags(iso: Isolated, sink: str) -> list[str]:
    """The Neo4j sink's flags for ``iso`` (its password goes in the environment: start_sink's ``graph``)."""
    g, m = iso.graph, iso.model
    return ["--sink-name", sink, "--uri", g.uri, "--user", g.user,
            "--database", g.database, "--entity-label", m.entity_label, "--tombstone-label", m.tombstone_label,
            "--position-label", m.position_label, "--audit"]  # fmt: skip


def metrics_port(proc: SinkProcess) -> int:
    """The port the child's endpoint took (its ``metrics listening`` log line)."""
    proc.wait_log("metrics listening")
    line = next(line for line in proc.log if "metrics listening" in line)
    return int(json.loads(line)["port"])


def http_get(port: int, path: str) -> tuple[int, bytes]:
    """Status and body of GET 127.0.0.1:port/path (an error status is returned, not raised)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def position_document(port: int) -> dict[str, Any]:
    status, body = http_get(port, "/position")
    assert status == 200, body
    document: dict[str, Any] = json.loads(body)
    return document


def metric(text: str, name: str) -> float:
    """The value of the sample ``name{...}`` in Prometheus text (exactly one line must match)."""
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{")]
    assert len(values) == 1, f"{name}: {values}"
    return values[0]


def committed(kafka: KafkaSettings, group: str, topics: list[str], partitions: int) -> dict[str, int]:
    """The group's committed offsets, read without joining the group."""
    consumer = Consumer(kafka.consumer(group))
    try:
        wanted = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        return {f"{tp.topic}/{tp.partition}": tp.offset for tp in consumer.committed(wanted, timeout=10)}
    finally:
        consumer.close()


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
