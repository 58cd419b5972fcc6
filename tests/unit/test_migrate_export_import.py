"""Export and import on real SQLite files: round trip, refusals, bad files, one transaction."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from replicator.capture.install import install
from replicator.cli import cli
from replicator.guide.export import export_document
from replicator.guide.importer import import_document, parse_document
from replicator.testing.writer import MemoryWriter
from replicator.validation.errors import MigrateError


def _store(path: Path) -> Path:
    w = MemoryWriter.create(path)
    try:
        ada = w.create_entity("Ada", "person", ["wrote programs", "ünïcode ✓"], metadata={"k": [1, 2]},
                              embedding=[0.25] * 384)  # fmt: skip
        engine = w.create_entity("Engine", "machine", [], confidence=0.75)
        lab = w.create_entity("Lab", "place", ["x"], embedding=[0.5] * 384)
        w.create_relation(ada, engine, "worked on", strength=0.5, metadata={"since": 1843})
        w.create_relation(engine, lab, "located_in")
        w.conn.execute("UPDATE entities SET valid_from = 10, valid_to = 20 WHERE id = ?", (lab,))
    finally:
        w.close()
    return path


def _without_time(doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "metadata": {k: v for k, v in doc["metadata"].items() if k != "exported_at"}}


@pytest.mark.parametrize("with_embeddings", [False, True])
def test_export_import_export_is_identical(tmp_path: Path, with_embeddings: bool) -> None:
    first = export_document(_store(tmp_path / "a.db"), with_embeddings=with_embeddings)
    result = import_document(tmp_path / "b.db", json.loads(json.dumps(first)))
    second = export_document(tmp_path / "b.db", with_embeddings=with_embeddings)

    assert result.created_store
    assert result.inserted == {"entities": 3, "relations": 2, "embeddings": 2 if with_embeddings else 0}
    assert _without_time(second) == _without_time(first)
    expected = {"entities": 3, "relations": 2} | ({"embeddings": 2} if with_embeddings else {})
    assert first["metadata"]["counts"] == expected
    assert first["relations"][0]["from_name"] == "Ada"


def test_export_carries_the_store_id_once_capture_is_installed(tmp_path: Path) -> None:
    db = _store(tmp_path / "a.db")
    state = install(db)
    assert export_document(db)["metadata"]["store_id"] == state.store_id


def test_cli_round_trip_through_files(tmp_path: Path) -> None:
    db = _store(tmp_path / "a.db")
    runner = CliRunner()
    assert runner.invoke(cli, ["export", "--db", str(db), "-o", str(tmp_path / "x.json")]).exit_code == 0
    result = runner.invoke(cli, ["import", "--db", str(tmp_path / "b.db"), "--input", str(tmp_path / "x.json")])
    assert result.exit_code == 0, result.output
    assert "imported 3 entities" in result.output
    out = runner.invoke(cli, ["export", "--db", str(tmp_path / "b.db")])
    assert json.loads(out.output)["metadata"]["counts"]["relations"] == 2


def test_a_non_empty_store_is_refused_unless_merge(tmp_path: Path) -> None:
    db = _store(tmp_path / "a.db")
    doc = export_document(db)
    with pytest.raises(MigrateError, match="already holds"):
        import_document(db, doc)
    merged = import_document(db, doc, merge=True)
    assert merged.inserted == {"entities": 0, "relations": 0, "embeddings": 0}
    assert merged.skipped["entities"] == 3


def test_merge_conflict_names_the_key_and_writes_nothing(tmp_path: Path) -> None:
    db = _store(tmp_path / "a.db")
    doc = export_document(db)
    doc["entities"].append({**doc["entities"][0], "id": 99, "name": "New"})
    doc["entities"][1]["name"] = "Renamed elsewhere"
    with pytest.raises(MigrateError, match="entities id 2 already exists"):
        import_document(db, doc, merge=True)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM entities").fetchone()[0] == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON: .* line 1 column 2"),
        ("[]", "must be a JSON object"),
        ('{"entities": []}', "'relations' is missing"),
        ('{"entities": [{"id": 1}], "relations": []}', r"entities\[0\] has no 'name'"),
        ('{"entities": [{"id": "1", "name": "a", "entity_type": "t", "observations": [], "created_at": 1, '
         '"updated_at": 1}], "relations": []}', r"entities\[0\]\.id must be an integer"),
        ('{"entities": [], "relations": [{"id": 1, "from_entity_id": 1, "to_entity_id": 2, "relation_type": "r", '
         '"created_at": 1, "updated_at": 1}]}', r"relations\[0\]\.from_entity_id 1 is not an entity"),
        ('{"entities": [], "relations": [], "metadata": {"format": "other"}}', "metadata.format"),
        ('{"entities": [], "relations": [], "metadata": {"version": 99}}', "newer than"),
    ],
)  # fmt: skip
def test_bad_files_are_named_errors(text: str, message: str) -> None:
    with pytest.raises(MigrateError, match=message):
        parse_document(text, "bad.json")


def test_a_failed_import_into_a_new_path_leaves_no_file(tmp_path: Path) -> None:
    doc = export_document(_store(tmp_path / "a.db"))
    doc["relations"].append({**doc["relations"][0], "id": 77})  # same (from, to, type): duplicate
    with pytest.raises(MigrateError, match="duplicates"):
        import_document(tmp_path / "new.db", doc)
    assert not (tmp_path / "new.db").exists()


def test_cli_bad_file_is_exit_2_with_hint(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    args = ["import", "--db", str(tmp_path / "n.db"), "-i", str(tmp_path / "bad.json")]
    proc = subprocess.run(
        [sys.executable, "-m", "replicator", *args],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "is not valid JSON" in proc.stderr and "hint:" in proc.stderr
    assert not (tmp_path / "n.db").exists()


def test_export_reads_while_the_writer_holds_a_write_transaction(tmp_path: Path) -> None:
    db = _store(tmp_path / "a.db")
    writer = MemoryWriter(db)
    writer.conn.execute("BEGIN IMMEDIATE")
    writer.conn.execute("INSERT INTO entities (name, entity_type, observations, created_at, updated_at) "
                        "VALUES ('Pending', 't', '[]', 1, 1)")  # fmt: skip
    try:
        doc = export_document(db)  # WAL: a reader is never blocked by the writer
    finally:
        writer.conn.execute("ROLLBACK")
        writer.close()
    assert doc["metadata"]["counts"]["entities"] == 3


def test_stats_of_a_store_with_capture(tmp_path: Path) -> None:
    db = _store(tmp_path / "a.db")
    install(db)
    w = MemoryWriter(db)
    w.create_entity("Later", "t")
    w.close()
    result = CliRunner().invoke(cli, ["stats", "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    store = json.loads(result.output)["store"]
    assert store["entities"] == 4 and store["relations"] == 2 and store["embeddings"] == 2
    assert store["changelog_backlog"] == 1 and store["changelog_head_seq"] == 2  # seq 1 is reserved for the snapshot
    assert store["file_bytes"] > 0
