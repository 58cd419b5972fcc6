"""``replicator stack`` against real processes: status, idempotent up, port conflicts, clean down."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from replicator.demo.daemons import free_ports
from replicator.errors import StackError
from replicator.stack import control
from replicator.stack.maven import is_resolved
from replicator.stack.process import is_alive
from replicator.stack.settings import StackSettings

REPO = Path(__file__).resolve().parents[2]


def _replicator(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "replicator", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def test_status_of_the_running_stack_shows_both_servers_answering() -> None:
    proc = _replicator("stack", "status", "--json")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    statuses = {s["name"]: s for s in json.loads(proc.stdout)}
    assert set(statuses) == {"kafka", "neo4j"}
    assert all(s["answering"] and s["pid"] for s in statuses.values()), statuses
    assert "Neo4j/5" in statuses["neo4j"]["detail"]


def test_up_twice_is_harmless() -> None:
    before = json.loads(_replicator("stack", "status", "--json").stdout)

    proc = _replicator("stack", "up")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("already running") == 2
    after = json.loads(_replicator("stack", "status", "--json").stdout)
    assert [s["pid"] for s in after] == [s["pid"] for s in before]


def test_taken_port_is_a_clear_error_and_starts_nothing(tmp_path: Path) -> None:
    kafka_port, controller_port, bolt_port = free_ports(3)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", bolt_port))
        squatter.listen()
        proc = _replicator(
            "stack", "up", "--dir", str(tmp_path / "stack"), "--kafka-port", str(kafka_port),
            "--kafka-controller-port", str(controller_port), "--bolt-port", str(bolt_port),
        )  # fmt: skip

    assert proc.returncode == 2
    assert f"port {bolt_port} on 127.0.0.1 is taken" in proc.stderr
    assert "--bolt-port" in proc.stderr
    assert "stopping" not in proc.stdout  # ports are checked before anything starts
    assert not (tmp_path / "stack" / "kafka" / "kafka.pid").exists()
    assert not _pids_with_marker(str((tmp_path / "stack").resolve()))


@pytest.fixture
def second_stack(tmp_path: Path) -> Iterator[StackSettings]:
    kafka_port, controller_port, bolt_port = free_ports(3)
    settings = StackSettings(
        root=tmp_path / "stack",
        kafka_port=kafka_port,
        kafka_controller_port=controller_port,
        bolt_port=bolt_port,
    )
    yield settings
    control.down(settings, lambda _line: None)


def test_a_second_stack_comes_up_beside_and_down_leaves_no_process(second_stack: StackSettings) -> None:
    s = second_stack
    up = _replicator(
        "stack", "up", "--dir", str(s.root), "--kafka-port", str(s.kafka_port),
        "--kafka-controller-port", str(s.kafka_controller_port), "--bolt-port", str(s.bolt_port),
    )  # fmt: skip
    assert up.returncode == 0, up.stdout + up.stderr
    pids = [st.pid for st in control.status(s)]
    assert all(pids) and all(st.answering for st in control.status(s))
    assert json.loads(s.state_file.read_text())["kafka_bootstrap"] == f"127.0.0.1:{s.kafka_port}"
    assert oct(s.state_file.stat().st_mode & 0o777) == "0o600"

    down = _replicator("stack", "down", "--dir", str(s.root))  # ports come from stack.json

    assert down.returncode == 0, down.stdout + down.stderr
    assert down.stdout.count("stopped") == 2, down.stdout
    assert not any(is_alive(pid) for pid in pids if pid)
    assert not _pids_with_marker(str(s.root.resolve()))
    assert _replicator("stack", "status", "--dir", str(s.root)).returncode == 1


def _pids_with_marker(root: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                if f"@{root}".encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_up_with_other_ports_while_running_is_refused_at_once() -> None:
    proc = _replicator("stack", "up", "--bolt-port", "17999")

    assert proc.returncode == 2
    refusal = "already running under .stack: kafka, neo4j, with --bolt-port 7687; asked for --bolt-port 17999"
    assert refusal in proc.stderr
    assert "stack down" in proc.stderr
    assert _replicator("stack", "status").returncode == 0  # the running stack is untouched


def test_a_version_maven_cannot_resolve_is_a_named_error_and_caches_nothing(tmp_path: Path) -> None:
    settings = StackSettings(root=tmp_path / "stack", cache=tmp_path / "cache", kafka_version="0.0.0-no-such")

    with pytest.raises(StackError, match=r"Maven could not resolve kafka 0\.0\.0-no-such") as info:
        control.resolve(settings, lambda _line: None)

    assert "Maven Central" in info.value.hint
    assert not is_resolved(settings.cache, "kafka", "0.0.0-no-such")
