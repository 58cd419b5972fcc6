"""The pure parts of migrate and the guide's tools: the seed guide's addresses, the migration history
(ids, steps, resume, interruption named), the progress lines off a terminal, the import's identity."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from replicator.errors import ConfigError
from replicator.guide.addresses import parse_address
from replicator.guide.backends import identity
from replicator.migration import history
from replicator.migration.progress import Progress


@pytest.mark.parametrize(
    ("text", "backend", "location"),
    [
        ("embedded:./data/memory.db", "embedded", "./data/memory.db"),
        ("neo4j:bolt://localhost:7687", "neo4j", "bolt://localhost:7687"),
        ("qdrant:http://localhost:6333", "qdrant", "http://localhost:6333"),
        ("qdrant:./qdrant", "qdrant", "./qdrant"),
    ],
)
def test_the_guides_addresses(text: str, backend: str, location: str) -> None:
    address = parse_address(text, "--destination")
    assert (address.backend, address.location) == (backend, location)
    assert address.is_url == ("://" in location)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("bolt://localhost:7687", "names no backend"),
        ("mysql:x", "names no backend"),
        ("neo4j:", "has no location"),
        ("neo4j:localhost:7687", "Bolt URI"),
        ("embedded:http://x", "a store is a file"),
    ],
)
def test_a_bad_address_is_named_with_the_forms(text: str, said: str) -> None:
    with pytest.raises(ConfigError, match=said) as err:
        parse_address(text, "--destination")
    assert "--destination" in str(err.value)
    assert any(form in err.value.hint for form in ("neo4j:bolt://", "embedded:./"))


def test_history_records_steps_and_names_an_interrupted_run(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    first = history.Migration(history.new_id(), "blue-green", "hybrid", "replicator.yaml")
    history.record(db, first, "preflight", pid=os.getpid())
    history.record(db, first, "fence")
    assert history.unfinished(db) is not None
    assert "step fence in progress" in history.find(db, first.id).describe()
    history.record(db, first, None, pid=2**22 + 12345)  # a pid no process has (above the kernel's max)
    found = history.find(db, first.id)
    assert [s["step"] for s in found.steps] == ["preflight", "fence"]
    assert "interrupted at step fence" in found.describe() and "--migration-id" in found.describe()
    history.record(db, found, "done", state="done", pid=None)
    assert history.unfinished(db) is None
    second = history.record(db, history.Migration(history.new_id() + "b", "live", "neo4j", "x"), "install")
    assert list(history.load_all(db)) == [first.id, second.id]


def test_an_unknown_id_and_a_foreign_file_are_named(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    with pytest.raises(history.MigrationError, match=r"no migration '12345' for .* \(known: none\)"):
        history.find(db, "12345")
    history.history_path(db).write_text(json.dumps({"not": "a history"}))
    with pytest.raises(history.MigrationError, match="is not a migration history"):
        history.load_all(db)


def test_progress_off_a_terminal_is_plain_lines_at_most_every_interval() -> None:
    out = io.StringIO()
    progress = Progress(out, every_s=3600, terminal=False)
    for done in (10, 20, 30, 40):
        progress.update("neo4j entities", done, 40)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # the first one, then the last (always shown)
    assert "10 / 40" in lines[0] and lines[1].rstrip().endswith("100.0%")


def test_an_export_without_capture_gets_a_stable_identity() -> None:
    doc = {"entities": [{"id": 1}], "relations": [], "metadata": {"exported_at": "now"}}
    assert identity(doc) == identity({**doc, "metadata": {"exported_at": "later"}})
    assert identity(doc)[1] == 1
    assert identity({**doc, "metadata": {"store_id": "s", "head_seq": 42}}) == ("s", 42)
    assert identity({**doc, "entities": [{"id": 2}]})[0] != identity(doc)[0]
