"""The log lines operators read: the source's ``--log-format json`` carries every field's whole value
(issue 17, item 8: a multi-word value was cut to its first word)."""

from __future__ import annotations

import json
import logging

import pytest

from replicator.source.cli import _configure_logging
from replicator.source.daemon import event

VALUES = {
    "error": "Kafka at 127.0.0.1:1 did not answer within 10 s: timeout",
    "quoted": 'it\'s "quoted" and a\\backslash',
    "detail": "key=value pairs = inside",
    "empty": "",
    "seq": 42,
}


@pytest.fixture
def json_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    _configure_logging("json")
    try:
        event(logging.WARNING, "kafka_unavailable", **VALUES)
    finally:
        logging.getLogger("replicator").handlers.clear()
    return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]


def test_json_log_keeps_every_value_whole(json_lines: list[dict[str, object]]) -> None:
    assert len(json_lines) == 1
    line = json_lines[0]
    assert line["event"] == "kafka_unavailable"
    assert line["level"] == "warning"
    assert {k: line[k] for k in VALUES} == {**VALUES, "seq": 42}


def test_kv_log_quotes_values_with_spaces(capsys: pytest.CaptureFixture[str]) -> None:
    _configure_logging("kv")
    try:
        event(logging.INFO, "snapshot_done", first_seq=3, detail="two words")
    finally:
        logging.getLogger("replicator").handlers.clear()
    err = capsys.readouterr().err
    assert "event=snapshot_done first_seq=3 detail='two words'" in err
