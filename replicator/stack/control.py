"""``up``, ``down`` and ``status`` of the local stack.

``up`` is idempotent: a server that already runs (pid file + command-line marker) and answers is left
alone. Servers start concurrently; ``up`` returns only when each answers a real request, and if one
does not, stops what this call started and raises with the tail of its log.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from replicator.errors import StackError
from replicator.stack.kafka import KafkaServer, check_layout
from replicator.stack.neo4j import Neo4jServer
from replicator.stack.process import marker, port_free, running_pid, spawn, tail, terminate, terminate_all
from replicator.stack.service import Server, log_file, pid_file
from replicator.stack.settings import StackSettings
from replicator.stack.toolchain import Toolchain, find_toolchain

Echo = Callable[[str], None]


@dataclass(frozen=True)
class ServerStatus:
    name: str
    endpoint: str
    pid: int | None
    answering: bool
    detail: str
    log: str


def servers(settings: StackSettings) -> list[Server]:
    """Every server of the stack: its Kafka nodes in order, then Neo4j."""
    kafka: list[Server] = [KafkaServer(settings, node) for node in range(1, settings.brokers + 1)]
    return [*kafka, Neo4jServer(settings)]


def _running(server: Server, settings: StackSettings) -> int | None:
    return running_pid(pid_file(server), marker(server.name, settings.root))


def _check_same_stack(settings: StackSettings, recorded: StackSettings | None) -> None:
    """Refuse to change the shape of a stack while any of it runs: its servers would not agree."""
    before = recorded or settings
    names = {s.name: s for s in [*servers(before), *servers(settings)]}
    running = sorted(name for name, server in names.items() if _running(server, settings) is not None)
    if not running:
        return
    now = settings.shape()
    was = {flag: value for flag, value in before.shape().items() if now[flag] != value}
    asked = {flag: now[flag] for flag in was}
    if was:
        raise StackError(
            f"already running under {settings.root}: {', '.join(running)}, with {_flags(was)}; "
            f"asked for {_flags(asked)}",
            hint="run `replicator stack down` first to change ports or brokers, or use another --dir",
        )


def _flags(ports: dict[str, int]) -> str:
    return " ".join(f"{flag} {port}" for flag, port in ports.items())


def resolve(settings: StackSettings, echo: Echo, toolchain: Toolchain | None = None) -> Toolchain:
    """Fetch every server's jars into the cache and build the launcher. Idempotent; blocks on Maven."""
    toolchain = toolchain or find_toolchain()
    for server in servers(settings):
        started = time.monotonic()
        fetched = server.resolve(toolchain)
        how = "fetched from Maven Central" if fetched else "cached"
        echo(f"{server.name}: jars {how} ({time.monotonic() - started:.1f}s)")
    return toolchain


def _check_ports(server: Server, settings: StackSettings) -> None:
    for flag, port in server.ports().items():
        if not port_free(settings.host, port):
            raise StackError(
                f"{server.name} cannot start: port {port} on {settings.host} is taken by another process",
                hint=f"stop whatever listens there (ss -ltnp 'sport = :{port}') or pick another {flag}",
            )


def _wait_answering(server: Server, settings: StackSettings, deadline: float) -> str:
    """Probe until the server answers. Raises StackError (with its log) if it dies or the deadline passes."""
    last = "no answer yet"
    while time.monotonic() < deadline:
        if _running(server, settings) is None:
            raise StackError(
                f"{server.name} exited during start-up; last lines of {log_file(server)}:\n{tail(log_file(server))}",
                hint="fix the cause shown in the log, then run `replicator stack up` again",
            )
        probe = server.probe(timeout_s=2.0)
        if probe.ok:
            return probe.detail
        last = probe.detail
        time.sleep(0.5)
    raise StackError(
        f"{server.name} did not answer within the start timeout ({last}); log {log_file(server)}:\n"
        f"{tail(log_file(server))}",
        hint="raise --timeout on a slow machine, or read the log for the cause",
    )


def up(settings: StackSettings, echo: Echo) -> list[ServerStatus]:
    """Resolve, start and wait for every server. Blocks until all answer. Raises StackError."""
    toolchain = resolve(settings, echo)
    settings.root.mkdir(parents=True, exist_ok=True)
    recorded = load_settings(settings.root)
    _check_same_stack(settings, recorded)
    to_start = []
    for server in servers(settings):
        if _running(server, settings) is None:
            to_start.append(server)
        else:
            echo(f"{server.name}: already running")
    check_layout(settings)
    for server in to_start:  # every port checked before anything starts: a conflict starts nothing
        _check_ports(server, settings)
    started: dict[str, int] = {}
    try:
        for server in to_start:
            cmd = server.command(toolchain)
            env = {**os.environ, **server.environment()}
            started[server.name] = spawn(cmd, log_file(server), pid_file(server), env)
        deadline = time.monotonic() + settings.start_timeout_s
        for server in servers(settings):
            t0 = time.monotonic()
            detail = _wait_answering(server, settings, deadline)
            echo(f"{server.name}: answering at {server.endpoint} after {time.monotonic() - t0:.1f}s ({detail})")
    except BaseException:
        for name, pid in started.items():
            echo(f"{name}: stopping (start-up failed)")
            terminate(pid)
        raise
    write_state(settings)
    return status(settings)


def write_state(settings: StackSettings) -> None:
    """Record where the stack listens, so that ``status``/``down`` and clients need no flags."""
    state = {
        "kafka_bootstrap": settings.kafka_bootstrap,
        "neo4j_uri": settings.bolt_uri,
        "neo4j_user": "neo4j" if settings.neo4j_password else "",
        "neo4j_password": settings.neo4j_password,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()},
    }
    # It holds the Neo4j password: readable by this user only from the first byte (a temporary file
    # created 0600, then renamed over the old one), never world-readable for an instant.
    path = settings.state_file
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)  # O_CREAT does not change the mode of a leftover file
        out.write(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, path)


def load_settings(root: Path) -> StackSettings | None:
    """The settings the stack under ``root`` was last started with, or None if it never was."""
    try:
        raw = json.loads((root / "stack.json").read_text())["settings"]
    except (OSError, ValueError, KeyError):
        return None
    fields = StackSettings.__dataclass_fields__
    kwargs: dict[str, Any] = {k: Path(v) if k == "cache" else v for k, v in raw.items() if k in fields}
    # The directory asked about wins over the one recorded: `up` may have been given a relative path
    # from another working directory.
    return StackSettings(**{**kwargs, "root": root})


def status(settings: StackSettings) -> list[ServerStatus]:
    """What runs and whether it answers. Never raises for a stopped server."""
    result = []
    for server in servers(settings):
        pid = _running(server, settings)
        probe = server.probe(timeout_s=3.0) if pid is not None else None
        result.append(
            ServerStatus(
                name=server.name,
                endpoint=server.endpoint,
                pid=pid,
                answering=bool(probe and probe.ok),
                detail=probe.detail if probe else "not running",
                log=str(log_file(server)),
            )
        )
    return result


def down(settings: StackSettings, echo: Echo) -> None:
    """Stop exactly the servers this stack started (pid file and marker must match), all at once.
    Blocks until they are gone. Idempotent."""
    running: dict[int, Server] = {}
    for server in reversed(servers(settings)):
        pid = _running(server, settings)
        if pid is None:
            echo(f"{server.name}: not running")
        else:
            running[pid] = server
    t0 = time.monotonic()
    for pid, clean in terminate_all(list(running)).items():
        pid_file(running[pid]).unlink(missing_ok=True)
        how = "stopped" if clean else "did not stop on SIGTERM; killed"
        echo(f"{running[pid].name}: {how} (pid {pid}, {time.monotonic() - t0:.1f}s)")
