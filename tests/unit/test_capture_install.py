"""install / uninstall: one transaction, idempotent, versioned; refusals leave the file untouched."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from replicator.capture import install as install_module
from replicator.capture import triggers
from replicator.capture.install import detect_drift, install, read_state, uninstall
from replicator.capture.storefile import CaptureError, open_store, sqlite_uri
from replicator.capture.triggers import CAPTURE_VERSION, CHANGELOG, MARK, META, TRIGGER_PREFIX, trigger_names
from replicator.source.store import StoreReader as SourceReader
from replicator.testing.writer import MemoryWriter
from replicator.validation.store import StoreReader


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "memory.db"
    w = MemoryWriter.create(path)
    a = w.create_entity("a", "t", ["o"], embedding=[0.1, 0.2])
    w.create_relation(a, w.create_entity("b", "t"), "r")
    w.close()
    return path


def master(path: Path) -> list[tuple[str, str, str | None]]:
    conn = sqlite3.connect(path)
    try:
        return sorted(conn.execute("SELECT type, name, sql FROM sqlite_master").fetchall())
    finally:
        conn.close()


def data(path: Path) -> list[object]:
    conn = sqlite3.connect(path)
    try:
        return [
            conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in ("entities", "relations", "embeddings")
        ]
    finally:
        conn.close()


def snapshot(path: Path) -> tuple[str, list[str]]:
    """The file's hash and the directory listing: what a refusal must leave exactly as it was."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
    return digest, sorted(os.listdir(path.parent))


def test_install_then_uninstall_forgetting_restores_the_schema_and_keeps_the_data(store: Path) -> None:
    before_master, before_data = master(store), data(store)

    state = install(store)
    assert state.installed and state.version == CAPTURE_VERSION and not state.missing_triggers
    assert state.store_id and state.backlog == 0
    assert data(store) == before_data

    assert uninstall(store, forget=True) == 0
    assert master(store) == before_master
    assert data(store) == before_data
    assert uninstall(store, forget=True) == 0  # idempotent


def test_uninstall_keeps_only_the_identity_and_install_continues_its_seq(store: Path) -> None:
    """A store's seq never goes backwards: after uninstall + install, every new change has a seq above
    all the old ones, under the same store id (the destinations' seq guards stay meaningful)."""
    before_master = master(store)
    first = install(store)
    assert first.capture_from == 1
    w = MemoryWriter(store)
    a = w.create_entity("c", "t")
    w.set_confidence(a, 0.5)
    w.close()
    head = read_state(sqlite3.connect(store)).head_seq
    assert head == 3

    assert uninstall(store) == 2
    kept = master(store)
    assert [row for row in kept if row not in before_master] == [
        ("index", f"sqlite_autoindex_{META}_1", None),
        ("table", META, f"CREATE TABLE {META} (key TEXT PRIMARY KEY, value TEXT NOT NULL)"),
    ]
    assert uninstall(store) == 0 and master(store) == kept  # idempotent
    gone = read_state(sqlite3.connect(store))
    assert not gone.installed and gone.store_id == first.store_id and gone.head_seq == head

    again = install(store)
    assert again.installed and again.store_id == first.store_id
    assert again.capture_from == head + 1 and again.head_seq == head + 1
    w = MemoryWriter(store)
    w.set_confidence(a, 0.25)
    w.close()
    conn = sqlite3.connect(store)
    assert [r[0] for r in conn.execute(f"SELECT seq FROM {CHANGELOG} WHERE op <> '{MARK}'")] == [head + 2]
    conn.close()

    assert uninstall(store, forget=True) == 1
    assert master(store) == before_master
    assert install(store).store_id != first.store_id  # forgotten: a new store


def test_a_foreign_meta_table_is_not_taken_for_a_kept_identity(store: Path) -> None:
    conn = sqlite3.connect(store)
    conn.execute(f"CREATE TABLE {META} (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute(f"INSERT INTO {META} VALUES ('store_id', 'x'), ('owner', 'someone else')")
    conn.commit()
    conn.close()
    schema = master(store)

    with pytest.raises(CaptureError, match="which capture did not install"):
        install(store)
    assert uninstall(store, forget=True) == 0 and master(store) == schema


def test_second_install_changes_nothing_and_keeps_the_store_id(store: Path) -> None:
    first = install(store)
    schema = master(store)

    assert install(store) == first
    assert master(store) == schema


def test_uninstall_reports_the_discarded_backlog(store: Path) -> None:
    install(store)
    w = MemoryWriter(store)
    w.create_entity("c", "t")
    w.close()

    assert uninstall(store) == 1


def test_older_capture_version_is_upgraded_in_place(store: Path) -> None:
    store_id = install(store).store_id
    conn = sqlite3.connect(store)
    conn.execute(f"UPDATE {META} SET value = '1' WHERE key = 'version'")
    conn.execute(f"DROP TRIGGER {trigger_names('entities')[0]}")
    conn.execute(f"CREATE TRIGGER {TRIGGER_PREFIX}entities_legacy AFTER INSERT ON entities BEGIN SELECT 1; END")
    conn.commit()
    conn.close()

    state = install(store)

    assert state.version == CAPTURE_VERSION and not state.missing_triggers and state.store_id == store_id
    assert f"{TRIGGER_PREFIX}entities_legacy" not in {name for _, name, _ in master(store)}


def test_added_column_is_drift_then_install_regenerates_and_carries_it(store: Path) -> None:
    install(store)
    conn = sqlite3.connect(store)
    conn.execute("ALTER TABLE entities ADD COLUMN importance")
    conn.commit()
    conn.close()

    with closing(open_store(store)) as probe:
        assert detect_drift(probe, read_state(probe)) == [("entities", ("importance",), ())]
    install(store)
    with closing(open_store(store)) as probe:
        assert detect_drift(probe, read_state(probe)) == []

    w = MemoryWriter(store)
    w.conn.execute(
        "INSERT INTO entities (name, entity_type, observations, created_at, updated_at, importance)"
        " VALUES ('n', 't', '[]', 1, 1, x'00ff')"
    )
    with closing(SourceReader(store)) as reader:  # the state as the source reads it while publishing
        created = reader.changelog_after(0, 10)[-1].after
    w.conn.execute("UPDATE entities SET importance = 2.5 WHERE name = 'n'")
    with closing(SourceReader(store)) as reader:
        updated = reader.changelog_after(0, 10)[-1].after
    w.close()
    assert created is not None and '"importance":["blob","00FF"]' in created
    assert updated is not None and '"importance":["real",2.5]' in updated


def test_removed_column_is_reported_as_drift(store: Path) -> None:
    install(store)
    conn = sqlite3.connect(store)  # as if the triggers were generated before a column was dropped
    conn.execute(f"UPDATE {META} SET value = value || ',ghost' WHERE key = 'columns.entities'")
    conn.commit()
    conn.close()

    with closing(open_store(store)) as probe:
        assert detect_drift(probe, read_state(probe)) == [("entities", (), ("ghost",))]


def test_writer_drop_column_is_refused_by_sqlite_while_captured(store: Path) -> None:
    # A known limit (docs/capture.md): SQLite checks triggers on DROP COLUMN; uninstall first.
    install(store)
    conn = sqlite3.connect(store)
    with pytest.raises(sqlite3.OperationalError, match="error in trigger"):
        conn.execute("ALTER TABLE entities DROP COLUMN valid_to")
    conn.close()
    uninstall(store)
    conn = sqlite3.connect(store)
    conn.execute("ALTER TABLE entities DROP COLUMN valid_to")
    conn.close()
    assert "valid_to" not in install(store).columns["entities"]


# -- refusals: the file (and its directory) exactly as before --------------------------------------


def _refused(path: Path, match: str, action: Callable[[], object] | None = None) -> CaptureError:
    before = snapshot(path)
    with pytest.raises(CaptureError, match=match) as info:
        (action or (lambda: install(path)))()
    assert snapshot(path) == before
    assert info.value.hint
    return info.value


def test_missing_path_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path / "nope.db", "no store at")
    assert not (tmp_path / "nope.db").exists()


@pytest.mark.parametrize(
    "content",
    [os.urandom(4096), b"just some text\n" * 10, b"SQLite format 2\x00" + bytes(100)],
    ids=["random", "text", "near-miss"],
)
def test_file_that_is_not_sqlite_is_refused_untouched(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "memory.db"
    path.write_bytes(content)
    _refused(path, "not a SQLite database")


def test_sqlite_file_with_a_corrupt_schema_page_is_refused_untouched(store: Path) -> None:
    with closing(sqlite3.connect(store)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(store.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # page 1 after the file header: the schema's b-tree
    store.write_bytes(bytes(data))
    _refused(store, "not a usable SQLite database")


def test_a_live_store_is_never_mistaken_for_a_foreign_file(store: Path) -> None:
    """open_store's header probe reads the main file without the WAL or locks; under a busy writer
    that checkpoints and changes the schema it can see a half-written schema. Only a real refusal
    may come out of it: thousands of opens of a healthy store, none refused."""
    install(store)
    stop, opened, refused = threading.Event(), [0], []

    def writer() -> None:
        with closing(sqlite3.connect(store, isolation_level=None)) as conn:
            conn.execute("PRAGMA wal_autocheckpoint=2")  # checkpoint all the time
            i = 0
            while not stop.is_set():
                i += 1
                conn.execute(
                    "INSERT INTO entities (name, entity_type, observations, created_at, updated_at)"
                    " VALUES (?, 'c', '[]', 1, 1)",
                    (f"live {i}",),
                )
                if i % 10 == 0:  # schema changes too (cutover's refusal triggers are one)
                    trigger = f"probe_{i} BEFORE INSERT ON relations BEGIN SELECT 1; END"
                    conn.execute(f"CREATE TRIGGER IF NOT EXISTS {trigger}")
                if i % 10 == 5:
                    conn.execute(f"DROP TRIGGER IF EXISTS probe_{i - 5}")

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while opened[0] < 4000:
            try:
                open_store(store, readonly=True).close()
            except CaptureError as exc:
                refused.append(str(exc))
            opened[0] += 1
    finally:
        stop.set()
        thread.join()
    assert refused == [], f"{len(refused)} of {opened[0]} opens refused a healthy store: {refused[0]}"


def test_empty_file_is_refused_as_lacking_the_store_tables_and_not_written(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    path.touch()
    _refused(path, "lacks the store tables")
    assert path.stat().st_size == 0


@pytest.mark.parametrize("wal", [False, True])
def test_foreign_sqlite_database_is_refused_untouched(tmp_path: Path, wal: bool) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE entities (x)")
    conn.commit()
    conn.close()
    _refused(path, r"lacks the store tables \(relations, embeddings\)")


def test_read_only_file_is_refused(store: Path) -> None:
    store.chmod(0o444)
    try:
        _refused(store, "is read-only")
    finally:
        store.chmod(0o644)


def test_read_only_directory_is_refused(store: Path) -> None:
    store.parent.chmod(0o555)
    try:
        _refused(store, "directory of .* is read-only")
    finally:
        store.parent.chmod(0o755)


def test_store_locked_past_the_timeout_is_refused(store: Path) -> None:
    holder = MemoryWriter(store)  # WAL: -wal/-shm exist while it is open
    holder.conn.execute("BEGIN IMMEDIATE")
    try:
        error = _refused(store, r"stayed locked", lambda: install(store, timeout_s=0.2))
        assert "--lock-timeout" in error.hint
    finally:
        holder.conn.execute("ROLLBACK")
        holder.close()
    assert not read_state(sqlite3.connect(store)).installed


def test_object_named_like_ours_is_refused_and_kept(store: Path) -> None:
    conn = sqlite3.connect(store)
    conn.execute(f"CREATE TRIGGER {trigger_names('relations')[2]} AFTER DELETE ON relations BEGIN SELECT 1; END")
    conn.commit()
    conn.close()
    schema = master(store)

    with pytest.raises(CaptureError, match="which capture did not install"):
        install(store)
    assert master(store) == schema
    assert uninstall(store) == 0 and master(store) == schema  # not ours: uninstall leaves it


def test_failure_mid_install_leaves_nothing_of_ours(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    schema = master(store)
    real = triggers.trigger_sql

    def broken(table: str, columns: tuple[str, ...]) -> list[str]:
        statements = real(table, columns)
        return (
            [*statements[:2], "CREATE TRIGGER broken AFTER DELETE ON no_such_table BEGIN SELECT 1; END"]
            if (table == "embeddings")
            else statements
        )

    monkeypatch.setattr(install_module, "trigger_sql", broken)
    with pytest.raises(CaptureError, match="rolled back: no such table"):
        install(store)
    assert master(store) == schema


def test_failure_mid_upgrade_keeps_the_previous_installation(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(store)
    conn = sqlite3.connect(store)
    conn.execute(f"UPDATE {META} SET value = '1' WHERE key = 'version'")
    conn.commit()
    conn.close()
    schema = master(store)

    monkeypatch.setattr(install_module, "trigger_sql", lambda table, columns: ["CREATE TRIGGER x BOGUS"])
    with pytest.raises(CaptureError, match="rolled back"):
        install(store)
    assert master(store) == schema


def test_open_store_never_creates_a_file(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="no store"):
        open_store(tmp_path / "x.db")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["mem?ory.db", "mem#1.db", "mem%41.db", "a ?#%20 b.db"])
def test_a_store_path_with_uri_characters_opens_that_file_and_creates_no_other(tmp_path: Path, name: str) -> None:
    db = tmp_path / name
    MemoryWriter.create(db).close()
    state = install(db)
    assert state.installed
    with closing(open_store(db, readonly=True)) as conn:
        assert read_state(conn).store_id == state.store_id
    with StoreReader(db) as reader:
        assert reader.capture_installed
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(name)) == []


def test_sqlite_uri_escapes_what_sqlite_would_read_as_uri_syntax() -> None:
    assert sqlite_uri(Path("/d/a?b#c%d e.db"), mode="ro") == "file:/d/a%3Fb%23c%25d%20e.db?mode=ro"
