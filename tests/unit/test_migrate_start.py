"""``migrate`` starts its daemons and waits until each answers on its health port before it asks them
anything. A sink takes seconds to import its libraries before it serves /position; CI saw ``lag``
run in that window and the migration stop with "the Qdrant sink ... did not answer". A daemon that
exits while starting is named with its exit code and log, not with a failure of the next command."""

from __future__ import annotations

import socket
import sys
import textwrap
from pathlib import Path

import pytest

from replicator.config import MigrationConfig
from replicator.config.model import SourceOptions
from replicator.migration import history
from replicator.migration.history import MigrationError
from replicator.migration.live import Live, LivePlan
from replicator.migration.supervise import Child, answers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: A daemon that takes ``delay`` seconds before it serves /healthz (as a sink importing torch does),
#: or exits with 3 after that delay when ``fail`` is set.
SLOW_DAEMON = textwrap.dedent("""
    import http.server, sys, time
    port, delay, fail = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "fail"
    time.sleep(delay)
    if fail:
        print("cannot open the collection: locked by another process", flush=True)
        sys.exit(3)
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
        def log_message(self, *a):
            pass
    http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
""")


def _live(tmp_path: Path, port: int, *, fail: bool, start_timeout_s: float = 30.0) -> Live:
    config = MigrationConfig(source=SourceOptions(metrics_port=port))
    plan = LivePlan(tmp_path / "replicator.yaml", config, tmp_path / "memory.db", tmp_path / "caxton.yaml",
                    start_timeout_s=start_timeout_s)  # fmt: skip
    migration = history.Migration(history.new_id(), "live", "hybrid", "replicator.yaml")
    live = Live(plan, migration, log=lambda line: None, wait_for_go=lambda: True)
    mode = "fail" if fail else "serve"

    def launch(name: str, argv: list[str], log: Path, port_: int | None) -> Child:
        command = [sys.executable, "-c", SLOW_DAEMON, str(port_), "1.5", mode]
        return Child(name, argv, log, port_, command=command)

    live.launch = launch
    return live


def test_start_returns_when_every_daemon_answers(tmp_path: Path) -> None:
    port = _free_port()
    live = _live(tmp_path, port, fail=False)
    try:
        live.start()
        assert answers(port), "start returned before the source answered on its health port"
    finally:
        for child in live.children:
            child.stop(grace_s=2)


def test_a_daemon_that_exits_while_starting_is_named_with_its_log(tmp_path: Path) -> None:
    port = _free_port()
    live = _live(tmp_path, port, fail=True)
    try:
        with pytest.raises(MigrationError, match="source daemon exited with 3") as err:
            live.start()
        assert "locked by another process" in str(err.value)
    finally:
        for child in live.children:
            child.stop(grace_s=2)


def test_a_daemon_that_never_answers_is_named_with_its_port(tmp_path: Path) -> None:
    port = _free_port()
    live = _live(tmp_path, port, fail=False, start_timeout_s=0.3)
    try:
        with pytest.raises(MigrationError, match=f"did not answer on port {port}"):
            live.start()
    finally:
        for child in live.children:
            child.stop(grace_s=2)
