"""The command line: help, version, and bad flags turned into named errors (exit 2), not tracebacks."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from replicator import __version__
from replicator.cli import cli


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "replicator", *args], capture_output=True, text=True, check=False)


def test_help_lists_the_command_groups() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "stack" in result.output and "smoke" in result.output


def test_version() -> None:
    proc = _run("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"replicator, version {__version__}"


def test_invalid_port_is_a_named_error_without_traceback() -> None:
    proc = _run("stack", "up", "--bolt-port", "70000", "--dir", "/nonexistent/never-created")

    assert proc.returncode == 2
    assert "error: --bolt-port 70000 is not a TCP port" in proc.stderr
    assert "hint:" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_option_is_a_usage_error() -> None:
    proc = _run("stack", "up", "--no-such-flag")
    assert proc.returncode == 2
    assert "No such option '--no-such-flag'" in proc.stderr
    assert proc.stderr.startswith("Usage: replicator stack up")


def test_status_of_a_stack_that_never_ran_exits_1(tmp_path: object) -> None:
    proc = _run("stack", "status", "--dir", str(tmp_path))
    assert proc.returncode == 1
    assert "stopped" in proc.stdout
