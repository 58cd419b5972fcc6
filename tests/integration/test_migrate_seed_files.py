"""``replicator migrate --config <the seed guide's file>`` (issue 12), live, from each of the guide's four
files exactly as they are (tests/fixtures/seed/, copied byte for byte), against the real Kafka, Neo4j
and Qdrant local mode while a writer writes, to a completed cutover with the destinations equal to the
store.

The files name no unique topic prefix, groups, labels or ports, and their addresses are the guide's
(``bolt://neo4j-new:7687``, database ``caxton_memory``, user ``caxton``): the test makes the run its own
with ``REPLICATOR_*`` variables, the documented precedence (flag > variable > file). The guide's Qdrant
is a server (``url: http://localhost:6333``), which does not exist here: ``REPLICATOR_QDRANT_PATH``
replaces it with local mode. ``migration-config.yaml`` says ``strategy: blue-green``; this test is about
the live path, so it passes ``--strategy live``; the blue-green path is walked from it as it says (and
from hybrid-migration.yaml by test_migrate_blue_green.py). Reverse replication after a switch to Neo4j is turned off
(``REPLICATOR_CUTOVER_REVERSE=false``): it would leave ``reverse run`` behind this test and has its own
tests (test_reverse_rollback.py).

Every key of each file is honoured, warned about or refused by name: the run prints exactly the
warnings docs/config.md documents for that file, each naming its key.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import neo4j
import pytest

from replicator.cutover.config import read_backend, sample_config
from replicator.demo.daemons import free_ports
from replicator.demo.demo import LiveWriter, seed_store
from replicator.migration import history
from replicator.sinks.settings import Neo4jSettings
from replicator.testing.workload import Workload, hash_vector
from replicator.testing.writer import MemoryWriter
from replicator.transport.settings import KafkaSettings

SEED = Path(__file__).parents[1] / "fixtures" / "seed"
DOCS = Path(__file__).parents[2] / "docs" / "config.md"
#: file -> (cutover target, extra flags)
CASES = {
    "migration-config.yaml": ("neo4j", ["--strategy", "live"]),
    "neo4j-migration.yaml": ("neo4j", []),
    "qdrant-migration.yaml": ("qdrant", []),
    "hybrid-migration.yaml": ("hybrid", []),
}
#: Variables of the environment that would change what the run does (set by a developer's shell).
FOREIGN = ("REPLICATOR_CONFIG", "REPLICATOR_SINK_GROUP", "REPLICATOR_METRICS_PORT", "REPLICATOR_QDRANT_URL",
           "REPLICATOR_SOURCE_DB", "REPLICATOR_STORE", "REPLICATOR_ALLOW_INLINE_SECRETS")  # fmt: skip


def _environment(where: Path, kafka: KafkaSettings, graph: Neo4jSettings, tag: str) -> dict[str, str]:
    source, sink_neo4j, sink_qdrant = free_ports(3)
    own = {
        "REPLICATOR_KAFKA_BOOTSTRAP": kafka.bootstrap_servers,
        "REPLICATOR_TOPIC_PREFIX": f"t{tag}.caxton.memory",
        "REPLICATOR_NEO4J_URI": graph.uri,
        "REPLICATOR_NEO4J_USER": graph.user,
        "REPLICATOR_NEO4J_DATABASE": graph.database,
        "REPLICATOR_NEO4J_PASSWORD": graph.password or "",
        "NEO4J_PASSWORD": graph.password or "",  # migration-config.yaml's ${NEO4J_PASSWORD}
        "REPLICATOR_NEO4J_GROUP": f"g{tag}-neo4j",
        "REPLICATOR_NEO4J_ENTITY_LABEL": f"Entity_{tag}",
        "REPLICATOR_NEO4J_POSITION_LABEL": f"Position_{tag}",
        "REPLICATOR_NEO4J_TOMBSTONE_LABEL": f"Tombstone_{tag}",
        "REPLICATOR_QDRANT_PATH": str(where / "qdrant"),  # the guide's Qdrant server does not exist here
        "REPLICATOR_QDRANT_GROUP": f"g{tag}-qdrant",
        "REPLICATOR_SOURCE_METRICS_PORT": str(source),
        "REPLICATOR_NEO4J_METRICS_PORT": str(sink_neo4j),
        "REPLICATOR_QDRANT_METRICS_PORT": str(sink_qdrant),
        "REPLICATOR_CUTOVER_MAX_PAUSE": "10s",
        "REPLICATOR_CUTOVER_REVERSE": "false",
        "HF_HUB_OFFLINE": "1",
    }
    return {**{k: v for k, v in os.environ.items() if k not in FOREIGN}, **own}


def _deployment(tmp: Path, name: str) -> Path:
    """A deployment as the guide shows it: ./data/memory.db (40 entities), caxton.yaml, the guide's file."""
    (tmp / "data").mkdir()
    seed_store(tmp / "data" / "memory.db", 40, hash_vector).writer.close()
    (tmp / "caxton.yaml").write_text(sample_config("./data/memory.db"))
    shutil.copyfile(SEED / name, tmp / name)
    return tmp


def _clean(graph: Neo4jSettings, tag: str) -> None:
    with neo4j.GraphDatabase.driver(graph.uri, auth=graph.auth()) as driver:
        for label in (f"Entity_{tag}", f"Position_{tag}", f"Tombstone_{tag}"):
            driver.execute_query(f"MATCH (n:`{label}`) DETACH DELETE n", database_=graph.database)


def _replicator(where: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "replicator", *args], cwd=where, capture_output=True, text=True,
                          timeout=900, check=False, env=env)  # fmt: skip


def _documented_warnings(name: str) -> set[str]:
    """The keys docs/config.md says a run from the guide's file ``name`` warns about."""
    (row,) = [line for line in DOCS.read_text().splitlines() if line.startswith(f"| `{name}` | ")]
    return set(re.findall(r"`(migration\.[\w.]+)`", row))


def _warned_keys(stderr: str, name: str) -> set[str]:
    """The seed keys the run's warnings name (``warning: <file>: <key> (<our key>) ...``)."""
    return {m.group(1) for m in re.finditer(rf"^warning: {re.escape(name)}: (migration\.[\w.]+)", stderr, re.M)}


@pytest.mark.parametrize("name", list(CASES))
def test_live_migrate_from_the_seed_guides_file_as_it_is(
    name: str, tmp_path: Path, kafka: KafkaSettings, graph: Neo4jSettings
) -> None:
    target, flags = CASES[name]
    documented = _documented_warnings(name)
    assert documented
    tag = uuid.uuid4().hex[:8]
    where = _deployment(tmp_path, name)
    env = _environment(where, kafka, graph, tag)
    db = where / "data" / "memory.db"
    writer = LiveWriter(Workload(MemoryWriter(db, busy_timeout_ms=30_000), seed=7, vectorize=hash_vector), 20)
    writer.workload.counter = 10_000_000
    try:
        writer.start()
        done = _replicator(where, env, "migrate", "--config", name, "--caxton-config", "caxton.yaml", "--yes", *flags)
        writer.stop()
        assert done.returncode == 0, (done.stdout, done.stderr[-3000:])
        assert (where / name).read_bytes() == (SEED / name).read_bytes()  # the guide's file, unchanged
        assert f"(live to {target}): done" in done.stdout
        assert "head seq" in done.stderr  # the lag was shown while the sinks caught up
        assert re.search(r"^  source snapshot rows +\d+ / \d+ +\d+\.\d%$", done.stderr, re.M), done.stderr[-3000:]
        assert _warned_keys(done.stderr, name) == documented, done.stderr
        assert read_backend(where / "caxton.yaml") == target
        assert writer.acknowledged > 0 and writer.refused > 0, (writer.acknowledged, writer.refused)
        assert not writer.other_errors, writer.other_errors[:3]
        (migration,) = history.load_all(db).values()
        assert (migration.state, migration.strategy, migration.target) == ("done", "live", target)
        equal = _replicator(where, env, "validate", "--config", name, "--target", target, "--full", "--no-search")
        assert equal.returncode == 0, (equal.stdout, equal.stderr[-2000:])
    finally:
        writer.stop()
        _clean(graph, tag)


def test_blue_green_from_migration_config_yaml_as_its_strategy_says(
    tmp_path: Path, kafka: KafkaSettings, graph: Neo4jSettings
) -> None:
    """The guide's migration-config.yaml says ``strategy: blue-green``: driven as it says, with no flag
    but the caxton.yaml to switch (the store stops taking writes, is exported, imported, validated)."""
    name = "migration-config.yaml"
    tag = uuid.uuid4().hex[:8]
    where = _deployment(tmp_path, name)
    env = _environment(where, kafka, graph, tag)
    try:
        done = _replicator(where, env, "migrate", "--config", name, "--caxton-config", "caxton.yaml")
        assert done.returncode == 0, (done.stdout, done.stderr[-3000:])
        assert (where / name).read_bytes() == (SEED / name).read_bytes()
        assert "(blue-green to neo4j): done" in done.stdout and "VALID" in done.stdout, done.stdout
        assert re.search(r"^  neo4j entities +(\d+) / \1 +100\.0%$", done.stderr, re.M), done.stderr[-3000:]
        assert _warned_keys(done.stderr, name) == _documented_warnings(name), done.stderr
        assert read_backend(where / "caxton.yaml") == "neo4j"
        (migration,) = history.load_all(where / "data" / "memory.db").values()
        assert (migration.state, migration.strategy) == ("done", "blue-green")
    finally:
        _clean(graph, tag)
