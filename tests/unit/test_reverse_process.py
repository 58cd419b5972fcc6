"""The reverse process's loop (process.run) with a stand-in changelog (the real one, against Neo4j:
tests/integration/test_reverse.py): it ends by itself once capture is off, and Neo4j going away while
it asks is retried, never a crash."""

from __future__ import annotations

import time
from pathlib import Path

import neo4j
import pytest
from neo4j.exceptions import ServiceUnavailable

from replicator.capture.install import install
from replicator.reverse import process
from replicator.reverse.changelog import Change, Changelog
from replicator.sinks.neo4j.model import GraphModel
from replicator.sinks.settings import Neo4jSettings
from replicator.testing.writer import MemoryWriter


class QuietChangelog:
    """Nothing captured; ``capturing`` answers from ``answers`` in turn (an exception is raised)."""

    ns = "Entity"

    def __init__(self, answers: list[bool | Exception]) -> None:
        self.answers = answers

    def read(self, after_seq: int, limit: int = 500) -> list[Change]:
        return []

    def prune(self, upto_seq: int) -> int:
        return 0

    def capturing(self) -> bool:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class NoDriver:
    def close(self) -> None:
        pass


def test_run_retries_neo4j_lost_while_it_asks_whether_capture_is_on_then_ends_once_it_is_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "memory.db"
    MemoryWriter.create(db).close()
    install(db)
    changelog = QuietChangelog([True, ServiceUnavailable("Neo4j restarts"), True, False])
    monkeypatch.setattr(neo4j.GraphDatabase, "driver", lambda *a, **k: NoDriver())
    monkeypatch.setattr(Changelog, "for_driver", lambda *a: changelog)
    monkeypatch.setattr(time, "sleep", lambda s: None)
    lines: list[str] = []
    ended = process.run(db, Neo4jSettings(), GraphModel(), embed=None, stop=lambda: False, log=lines.append,
                        capture_check_s=0)  # fmt: skip
    assert ended is not None and "Neo4j label Entity is no longer captured" in ended, ended
    assert changelog.answers == [] and any("unavailable" in line for line in lines), lines
