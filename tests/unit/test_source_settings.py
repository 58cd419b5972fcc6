"""Source settings (flags > env > config file > defaults) and the store checks the daemon relies on."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from replicator.capture.install import install
from replicator.errors import ConfigError
from replicator.source.settings import SourceSettings, parse_duration
from replicator.source.store import SourceError, StoreReader
from replicator.testing.writer import MemoryWriter


def test_precedence_flags_over_env_over_file(tmp_path: Path) -> None:
    config = tmp_path / "source.yaml"
    config.write_text("source:\n  db: /a.db\n  topic_prefix: from.file\n  partitions: 5\n  heartbeat_interval_s: 2s\n")
    env = {"REPLICATOR_TOPIC_PREFIX": "from.env", "REPLICATOR_KAFKA_BOOTSTRAP": "k:1"}

    s = SourceSettings.load({"partitions": None, "topic_prefix": None, "db": "/b.db"}, config_file=config, env=env)

    assert (s.db, s.topic_prefix, s.partitions, s.bootstrap_servers) == (Path("/b.db"), "from.env", 5, "k:1")
    assert s.heartbeat_interval_s == 2.0


def test_toml_config(tmp_path: Path) -> None:
    config = tmp_path / "source.toml"
    config.write_text('db = "/a.db"\nheartbeat_interval_s = "250ms"\n')
    assert SourceSettings.load({}, config_file=config, env={}).heartbeat_interval_s == 0.25


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({}, "no store given"),
        ({"db": "x", "partitions": 0}, "partitions = 0"),
        ({"db": "x", "topic_prefix": "bad prefix"}, "not a valid Kafka topic"),
        ({"db": "x", "bootstrap_servers": "nohostport"}, "not host:port"),
        ({"db": "x", "colour": "red"}, "unknown source setting"),
    ],
)
def test_invalid_settings_are_named(flags: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SourceSettings.load(flags, env={})


def test_durations() -> None:
    assert [parse_duration(v, "x") for v in ("1s", "250ms", "2m", 1.5)] == [1.0, 0.25, 120.0, 1.5]
    with pytest.raises(ConfigError, match="not a duration"):
        parse_duration("soon", "x")


def _store(tmp_path: Path) -> tuple[Path, MemoryWriter]:
    db = tmp_path / "m.db"
    writer = MemoryWriter.create(db)
    return db, writer


def test_not_installed_is_refused_with_the_install_hint(tmp_path: Path) -> None:
    db, _ = _store(tmp_path)
    with pytest.raises(SourceError, match="not installed") as info:
        StoreReader(db).check()
    assert "replicator source install" in info.value.hint


def test_a_removed_trigger_stops_the_source(tmp_path: Path) -> None:
    db, writer = _store(tmp_path)
    install(db)
    reader = StoreReader(db)
    reader.check()
    writer.conn.execute('DROP TRIGGER "_replicator_capture_relations_d"')
    with pytest.raises(SourceError, match="_replicator_capture_relations_d"):
        reader.check_drift()
    reader.close()


def test_a_column_added_by_the_writer_stops_the_source_naming_it(tmp_path: Path) -> None:
    db, writer = _store(tmp_path)
    install(db)
    reader = StoreReader(db)
    reader.check()
    writer.conn.execute("ALTER TABLE relations ADD COLUMN weight REAL")
    with pytest.raises(SourceError, match="weight to relations") as info:
        reader.check_drift()
    assert "replicator source install" in info.value.hint
    install(db)  # the documented fix: triggers now carry the column
    reader.check_drift()
    reader.close()


def test_delete_of_published_rows_gives_way_to_a_held_write_lock(tmp_path: Path) -> None:
    db, writer = _store(tmp_path)
    install(db)
    writer.create_entity("a", "t")
    reader = StoreReader(db)
    fence = sqlite3.connect(db, isolation_level=None)
    fence.execute("BEGIN IMMEDIATE")  # like the cutover fence

    assert reader.delete_published(10, busy_timeout_ms=20) is False
    fence.execute("ROLLBACK")
    assert reader.delete_published(10, busy_timeout_ms=20) is True
    assert reader.changelog_after(0, 10) == []
    reader.close()


def test_replication_settings_reach_the_kafka_client(tmp_path: Path) -> None:
    env = {"REPLICATOR_KAFKA_REPLICATION_FACTOR": "3"}
    s = SourceSettings.load({"db": "/a.db", "min_insync_replicas": "2"}, env=env)
    kafka = s.kafka()
    assert (kafka.replication_factor, kafka.min_insync_replicas) == (3, 2)
    assert SourceSettings.load({"db": "/a.db"}, env={}).kafka().replication_factor is None  # from the brokers
    with pytest.raises(ConfigError, match=r"min\.insync\.replicas 3 exceeds the replication factor 2"):
        SourceSettings.load({"db": "/a.db", "replication_factor": 2, "min_insync_replicas": 3}, env={})
