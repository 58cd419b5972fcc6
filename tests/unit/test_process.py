"""Pid files, command-line markers, port checks and termination, on throwaway local processes."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

from replicator.stack.process import is_alive, marker, port_free, running_pid, spawn, terminate


def test_port_with_a_listener_is_not_free() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert not port_free("127.0.0.1", port)
    assert port_free("127.0.0.1", port)


def test_pid_file_of_a_process_without_our_marker_is_stale(tmp_path: Path) -> None:
    pidfile = tmp_path / "x.pid"
    pidfile.write_text(f"{os.getpid()}\n")  # alive, but it is pytest, not our server

    assert running_pid(pidfile, marker("kafka", tmp_path)) is None
    assert not pidfile.exists()


def test_spawned_process_is_found_by_marker_and_terminated(tmp_path: Path) -> None:
    mark = marker("fake", tmp_path)
    pidfile = tmp_path / "fake.pid"
    # The marker rides along as an ignored argument, as -D... does on the JVM command line.
    pid = spawn([sys.executable, "-c", "import time; time.sleep(60)", mark], tmp_path / "fake.log", pidfile)

    assert running_pid(pidfile, mark) == pid
    assert terminate(pid, timeout_s=10) is True
    assert not is_alive(pid)
    assert running_pid(pidfile, mark) is None


def test_process_ignoring_sigterm_is_killed(tmp_path: Path) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    )
    log = tmp_path / "stubborn.log"
    pid = spawn([sys.executable, "-c", code], log, tmp_path / "s.pid")
    deadline = time.monotonic() + 10
    while "ready" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)

    assert terminate(pid, timeout_s=0.5) is False
    assert not is_alive(pid)
