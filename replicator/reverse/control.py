"""The reverse stream as ``rollback`` drives it (cutover/rollback.py ``ReverseControl``): Neo4j's
fence and capture switch (the changelog's owner) and the store's applied position (apply's owner)."""

from __future__ import annotations

from pathlib import Path

import neo4j

from replicator.capture.storefile import open_store
from replicator.reverse.apply import read_position
from replicator.reverse.aside import set_aside
from replicator.reverse.changelog import Changelog
from replicator.sinks.settings import Neo4jSettings


class Reverse:
    """One namespace's reverse stream into ``db``. Owns a driver: close() it. Blocks; raises what the
    driver raises and CaptureError."""

    def __init__(self, db: Path, settings: Neo4jSettings, label: str, timeout_s: float = 10.0) -> None:
        self.db = db
        self._driver = neo4j.GraphDatabase.driver(
            settings.uri, auth=settings.auth(), connection_timeout=timeout_s, max_transaction_retry_time=timeout_s,
            notifications_min_severity="OFF",
        )  # fmt: skip
        self.changelog = Changelog.for_driver(self._driver, settings.database, label)

    def active(self) -> bool:
        return self.changelog.capturing()

    def head_seq(self) -> int:
        head = self.changelog.head()
        return 0 if head is None else head.seq

    def fence(self, message: str) -> int:
        return self.changelog.fence(message).seq

    def unfence(self) -> None:
        self.changelog.unfence()

    def applied(self) -> int:
        conn = open_store(self.db, readonly=True)
        try:
            position = read_position(conn, self.changelog.ns)
        finally:
            conn.close()
        return 0 if position is None else position.seq

    def set_aside(self) -> list[str]:
        conn = open_store(self.db, readonly=True)
        try:
            return set_aside(conn, self.changelog.ns)
        finally:
            conn.close()

    def finish(self) -> None:
        self.changelog.finish()

    def close(self) -> None:
        self._driver.close()
