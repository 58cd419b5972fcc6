"""Pid files, command-line markers, port checks and termination, on throwaway local processes."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

from replicator.stack.process import is_alive, marker, port_free, running_pid, spawn, terminate, terminate_all


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


def test_several_processes_are_signalled_together(tmp_path: Path) -> None:
    """Each one waits for a file the others' SIGTERM handlers write: signalled one after the other, the
    first could never stop cleanly (as the last nodes of a KRaft quorum cannot without a majority)."""
    code = (
        "import os, signal, sys, time; me, peer = sys.argv[1], sys.argv[2]\n"
        "def on_term(*_):\n"
        "    open(me, 'w').close()\n"
        "    while not os.path.exists(peer): time.sleep(0.05)\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, on_term); print('ready', flush=True); time.sleep(60)"
    )
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    pids = [
        spawn([sys.executable, "-c", code, a, b], tmp_path / "a.log", tmp_path / "a.pid"),
        spawn([sys.executable, "-c", code, b, a], tmp_path / "b.log", tmp_path / "b.pid"),
    ]
    deadline = time.monotonic() + 10
    while not all("ready" in (tmp_path / f"{n}.log").read_text() for n in "ab") and time.monotonic() < deadline:
        time.sleep(0.05)

    assert terminate_all(pids, timeout_s=10) == {pids[0]: True, pids[1]: True}
    assert not any(is_alive(pid) for pid in pids)
