"""The command line: help, version, and bad flags turned into named errors (exit 2), not tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from replicator import __version__
from replicator import cli as cli_module
from replicator.capture.install import install
from replicator.cli import cli
from replicator.cutover import config, state
from replicator.demo.daemons import free_port
from replicator.testing.writer import MemoryWriter


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    """The command in a child; one that would run on (e.g. a daemon given bad flags) fails the test."""
    return subprocess.run(
        [sys.executable, "-m", "replicator", *args], capture_output=True, text=True, check=False, timeout=120
    )


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


def _store(tmp_path: Path) -> Path:
    db = tmp_path / "memory.db"
    MemoryWriter.create(db).close()
    install(db)
    return db


def test_an_unexpected_error_is_one_line_and_a_hint_never_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(**_kwargs: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(cli_module.cli, "main", boom)
    monkeypatch.setattr(sys, "argv", ["replicator", "status", "--db", "x.db"])
    monkeypatch.delenv("REPLICATOR_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exited:
        cli_module.main()
    err = capsys.readouterr().err
    assert exited.value.code == cli_module.EX_SOFTWARE
    assert "Traceback" not in err
    assert "error: unexpected KeyError in `replicator status`: 'a bug'" in err
    assert "rerun with --debug (or REPLICATOR_DEBUG=1)" in err

    monkeypatch.setenv("REPLICATOR_DEBUG", "1")  # asked for: the traceback, to file the bug
    with pytest.raises(SystemExit):
        cli_module.main()
    assert "Traceback" in capsys.readouterr().err


def test_an_environment_fault_is_named_not_a_bug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def full(**_kwargs: object) -> None:
        raise OSError(28, "No space left on device", "/data/memory.db.migration.json")

    monkeypatch.setattr(cli_module.cli, "main", full)
    monkeypatch.delenv("REPLICATOR_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exited:
        cli_module.main()
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert "error: No space left on device: /data/memory.db.migration.json" in err and "Traceback" not in err


def test_cutover_of_a_store_in_a_missing_directory_is_named(tmp_path: Path) -> None:
    db = tmp_path / "no-such-dir" / "memory.db"
    proc = _run("cutover", "--db", str(db), "--caxton-config", str(tmp_path / "caxton.yaml"), "--target", "neo4j")
    assert proc.returncode == 2, proc.stderr
    assert f"error: no store at {db}" in proc.stderr and "hint:" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "no-such-dir").exists()


@pytest.mark.parametrize("value", ["inf", "nan", "1e400ms", "-3s", "0", "2h"])
def test_cutover_refuses_a_pause_that_is_not_a_sane_duration(tmp_path: Path, value: str) -> None:
    db = _store(tmp_path)
    proc = _run("cutover", "--db", str(db), "--caxton-config", str(tmp_path / "caxton.yaml"), "--target", "neo4j",
                "--max-pause", value)  # fmt: skip
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "--max-pause" in proc.stderr and "Traceback" not in proc.stderr
    assert not state.state_path(db).exists()  # refused before anything was recorded


def test_rollback_with_an_unreadable_config_is_named_and_changes_nothing(tmp_path: Path) -> None:
    db = _store(tmp_path)
    cfg = tmp_path / "caxton.yaml"
    cfg.mkdir()  # not a file any more
    config.backup_path(cfg).write_text(config.sample_config(str(db)))
    state.save(db, state.load(db), state="cut_over", target="neo4j", config=str(cfg), final_seq=1)
    proc = _run("rollback", "--db", str(db), "--discard-new-writes")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert f"error: cannot read {cfg}" in proc.stderr and "Traceback" not in proc.stderr
    assert cfg.is_dir() and state.load(db).state == "cut_over"


def test_lag_against_a_broker_that_is_not_there_is_named(tmp_path: Path) -> None:
    db = _store(tmp_path)
    port = free_port()
    proc = _run("lag", "--db", str(db), "--bootstrap-servers", f"127.0.0.1:{port}", "--sink", "neo4j")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert f"error: Kafka at 127.0.0.1:{port}" in proc.stderr and "hint:" in proc.stderr
    assert "Traceback" not in proc.stderr and "KafkaException" not in proc.stderr


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["sink", "neo4j", "--group", "g", "--password", "s3cret"], "--password"),
        (["lag", "--neo4j-password", "s3cret"], "--neo4j-password"),
        (["sink", "qdrant", "--group", "g", "--url", "http://q:6333", "--api-key", "s3cret"], "--api-key"),
        (["stack", "up", "--neo4j-password", "s3cret", "--dir", "/nonexistent/never-created"], "--neo4j-password"),
    ],
)
def test_a_secret_on_the_command_line_is_refused_with_the_way_to_pass_it(argv: list[str], flag: str) -> None:
    proc = _run(*argv)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert f"error: {flag} takes no value on the command line" in proc.stderr, proc.stderr
    assert "-file" in proc.stderr and "Traceback" not in proc.stderr
