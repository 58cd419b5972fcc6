"""The seed guide's tools against the backends (issue 12, item 4): ``import --backend neo4j|qdrant``
writes an export through the sinks' own destinations (so ``diff`` with the sinks' readers finds it
equal), resumes after a crash, and ``stats --backend`` / ``diff --source embedded:... --destination
neo4j:bolt://...`` take the guide's address forms. Real Neo4j (a unique label) and Qdrant local mode."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import neo4j
import pytest
from click.testing import CliRunner, Result

from replicator.capture.install import install
from replicator.cli import cli
from replicator.guide.backends import load_export, sink_name
from replicator.guide.export import export_document, write_export
from replicator.sinks.batch import Batch
from replicator.sinks.neo4j.destination import Neo4jDestination
from replicator.sinks.neo4j.model import GraphModel
from replicator.sinks.settings import Neo4jSettings
from replicator.testing.writer import MemoryWriter

ENTITIES = 23  # batches of 5: a partial last batch


def _store(db: Path) -> Path:
    writer = MemoryWriter.create(db)
    try:
        ids = [
            writer.create_entity(f"e{i}", "concept", [f"fact {i}", "ünïcode ✓"], confidence=0.5 + i / 100,
                                 metadata={"i": i} if i % 2 else None, embedding=[(i + 1) / 100] * 384)
            for i in range(ENTITIES)
        ]  # fmt: skip
        for a, b in itertools.pairwise(ids):
            writer.create_relation(a, b, "next to", strength=0.25)
    finally:
        writer.close()
    install(db)
    return db


@pytest.fixture
def exported(tmp_path: Path) -> tuple[Path, Path]:
    db = _store(tmp_path / "memory.db")
    out = tmp_path / "backup.json"
    with out.open("w", encoding="utf-8") as f:
        write_export(export_document(db, with_embeddings=True), f)
    return db, out


@pytest.fixture
def label(graph: Neo4jSettings) -> Iterator[str]:
    name = f"Entity_{uuid.uuid4().hex[:10]}"
    yield name
    model = GraphModel(entity_label=name)
    with neo4j.GraphDatabase.driver(graph.uri, auth=graph.auth()) as driver:
        driver.execute_query(f"MATCH (n:`{name}`) DETACH DELETE n", database_=graph.database)
        driver.execute_query(f"MATCH (t:`{model.tombstone_label}` {{ns: $ns}}) DELETE t", ns=name,
                             database_=graph.database)  # fmt: skip
        driver.execute_query(f"MATCH (p:`{model.position_label}`) WHERE p.namespace = $ns OR p.owner = $ns DELETE p",
                             ns=name, database_=graph.database)  # fmt: skip
        driver.execute_query(f"MATCH (p:`{model.position_label}` {{sink: $sink}}) DELETE p", sink=sink_name(name),
                             database_=graph.database)  # fmt: skip


def _run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def _model_flags(label: str) -> list[str]:
    return ["--entity-label", label]


def test_import_into_neo4j_as_the_guide_writes_it(
    exported: tuple[Path, Path], graph: Neo4jSettings, label: str
) -> None:
    db, backup = exported
    result = _run("import", "--backend", "neo4j", "--uri", graph.uri, "--input", str(backup), "--batch-size", "5",
                  *_model_flags(label))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"imported {ENTITIES} entities, {ENTITIES - 1} relations into Neo4j" in result.output
    diff = _run("diff", "--source", f"embedded:{db}", "--destination", f"neo4j:{graph.uri}", *_model_flags(label))
    assert diff.exit_code == 0, diff.output
    assert "0 differences between the store and neo4j" in diff.output
    stats = _run("stats", "--backend", "neo4j", "--uri", graph.uri, "--json", *_model_flags(label))
    assert stats.exit_code == 0, stats.output
    counted = json.loads(stats.output)["neo4j"]
    assert (counted["entities"], counted["relations"]) == (ENTITIES, ENTITIES - 1), counted
    again = _run("import", "--backend", "neo4j", "--uri", graph.uri, "--input", str(backup), *_model_flags(label))
    assert again.exit_code == 0, again.output
    assert "resumed after" in again.output  # the position says it is all there: nothing is rewritten


class _Crash(Exception):
    pass


class _CrashAfter(Neo4jDestination):
    """The real destination, killed after ``left`` batches (a crash between two transactions)."""

    left = 2

    def apply(self, batch: Batch) -> None:
        if self.left == 0:
            raise _Crash
        super().apply(batch)
        self.left -= 1


def test_an_interrupted_import_resumes_after_its_last_batch(
    exported: tuple[Path, Path], graph: Neo4jSettings, label: str
) -> None:
    db, backup = exported
    doc = json.loads(backup.read_text(encoding="utf-8"))
    model = GraphModel(entity_label=label)
    with pytest.raises(_Crash):
        load_export(doc, "neo4j", _CrashAfter(sink_name(label), graph, model), batch_size=5)
    result = load_export(doc, "neo4j", Neo4jDestination(sink_name(label), graph, model), batch_size=5)
    assert result.resumed == {"entities": 10, "relations": 0}
    assert result.rows == {"entities": ENTITIES - 10, "relations": ENTITIES - 1}
    diff = _run("diff", "--source", f"embedded:{db}", "--destination", f"neo4j:{graph.uri}", *_model_flags(label))
    assert diff.exit_code == 0, diff.output


def test_import_into_qdrant_local_mode(exported: tuple[Path, Path], tmp_path: Path) -> None:
    db, backup = exported
    where = tmp_path / "qdrant"
    result = _run("import", "--backend", "qdrant", "--path", str(where), "--collection", "guide_import",
                  "--input", str(backup), "--batch-size", "7")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"imported {ENTITIES} embeddings, {ENTITIES} entities into Qdrant" in result.output
    diff = _run(
        "diff", "--source", f"embedded:{db}", "--destination", f"qdrant:{where}", "--collection", "guide_import"
    )
    assert diff.exit_code == 0, diff.output
    stats = _run("stats", "--backend", "qdrant", "--path", str(where), "--collection", "guide_import", "--json")
    assert stats.exit_code == 0, stats.output
    assert json.loads(stats.output)["qdrant"]["points"] == ENTITIES


def _refused(*args: str, words: list[str]) -> None:
    """The real entry point (what prints a ReplicatorError as one line, exit 2)."""
    done = subprocess.run(
        [sys.executable, "-m", "replicator", *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("address", "words"),
    [
        ("neo4j:localhost:7687", ["--destination", "Bolt URI"]),
        ("mysql:bolt://x", ["--destination", "names no backend"]),
        ("embedded:./other.db", ["--destination", "not a Neo4j or Qdrant address"]),
    ],
)
def test_bad_addresses_are_named(exported: tuple[Path, Path], address: str, words: list[str]) -> None:
    db, _ = exported
    _refused("diff", "--source", f"embedded:{db}", "--destination", address, words=words)


def test_a_wrong_password_and_an_unreachable_server_are_named(
    exported: tuple[Path, Path], graph: Neo4jSettings, label: str, monkeypatch: Any
) -> None:
    _, backup = exported
    args = ["import", "--backend", "neo4j", "--input", str(backup), *_model_flags(label)]
    monkeypatch.setenv("REPLICATOR_NEO4J_PASSWORD", "not-the-password")
    _refused(*args, "--uri", graph.uri, words=[graph.uri, "password"])
    monkeypatch.setenv("REPLICATOR_NEO4J_PASSWORD", graph.password or "")
    _refused(*args, "--uri", "bolt://127.0.0.1:9", words=["127.0.0.1:9"])
