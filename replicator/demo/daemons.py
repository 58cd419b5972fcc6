"""Start and stop the pipeline's daemons (source, Neo4j sink, Qdrant sink) as child processes, the
way an operator would run them. Used by ``replicator demo``, the end-to-end tests and the bench.

Blocking. Each child gets its own log file; ``stop`` sends SIGTERM (drain and commit) and waits,
then SIGKILL after a grace period.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from replicator.cutover.options import DEFAULT_NEO4J_GROUP, DEFAULT_QDRANT_GROUP, TargetOptions
from replicator.sinks.neo4j.model import GraphModel
from replicator.sinks.settings import NEO4J_PASSWORD_ENV, Neo4jSettings, QdrantSettings
from replicator.transport.settings import DEFAULT_BOOTSTRAP
from replicator.transport.topics import DEFAULT_PREFIX


@dataclass(frozen=True)
class PipelineConfig:
    """Everything the three daemons need to find each other."""

    db: Path
    workdir: Path  # logs, Qdrant local storage
    bootstrap_servers: str = DEFAULT_BOOTSTRAP
    topic_prefix: str = DEFAULT_PREFIX
    neo4j: Neo4jSettings = field(default_factory=Neo4jSettings)
    entity_label: str = GraphModel.entity_label
    position_label: str = GraphModel.position_label
    tombstone_label: str = GraphModel.tombstone_label
    layout: str = GraphModel.layout  # the destination layout the sinks write (docs/layouts.md)
    neo4j_sink: str = DEFAULT_NEO4J_GROUP  # a sink is named after its group unless told otherwise
    neo4j_group: str = DEFAULT_NEO4J_GROUP
    qdrant_path: Path | None = None
    collection: str = QdrantSettings.collection
    qdrant_sink: str = DEFAULT_QDRANT_GROUP
    qdrant_group: str = DEFAULT_QDRANT_GROUP
    schema_registry: str | None = None  # Confluent framing through this registry (source and sinks)
    max_message_bytes: int | None = None  # the pipeline's size setting for all three (None: their default)
    source_metrics_port: int = 9400
    neo4j_metrics_port: int = 9401
    qdrant_metrics_port: int = 9402

    @property
    def qdrant_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.qdrant_metrics_port}"

    @property
    def qdrant_dir(self) -> Path:
        return self.qdrant_path or self.workdir / "qdrant"

    def target_options(self) -> TargetOptions:
        """How lag, cutover and validation reach these daemons' destinations and positions."""
        return TargetOptions(
            bootstrap_servers=self.bootstrap_servers, topic_prefix=self.topic_prefix, neo4j=self.neo4j,
            neo4j_sink=self.neo4j_sink, neo4j_group=self.neo4j_group, entity_label=self.entity_label,
            position_label=self.position_label,
            qdrant=QdrantSettings(path=self.qdrant_dir, collection=self.collection, layout=self.layout),
            qdrant_api_key=None,
            collection=self.collection, qdrant_sink=self.qdrant_sink, qdrant_group=self.qdrant_group,
            qdrant_endpoint=self.qdrant_endpoint, layout=self.layout,
        )  # fmt: skip

    def _registry(self) -> list[str]:
        sizes = [] if self.max_message_bytes is None else ["--max-message-bytes", str(self.max_message_bytes)]
        return sizes + ([] if self.schema_registry is None else ["--schema-registry", self.schema_registry])

    def source_argv(self) -> list[str]:
        return [
            "source", "run", "--db", str(self.db), "--bootstrap-servers", self.bootstrap_servers,
            "--topic-prefix", self.topic_prefix, "--metrics-port", str(self.source_metrics_port), *self._registry(),
        ]  # fmt: skip

    def neo4j_argv(self) -> list[str]:
        return [
            "sink", "neo4j", "--bootstrap-servers", self.bootstrap_servers, "--topic-prefix", self.topic_prefix,
            "--group", self.neo4j_group, "--sink-name", self.neo4j_sink, "--uri", self.neo4j.uri,
            "--user", self.neo4j.user, "--database", self.neo4j.database,
            "--entity-label", self.entity_label, "--position-label", self.position_label,
            "--tombstone-label", self.tombstone_label, "--layout", self.layout,
            "--metrics-port", str(self.neo4j_metrics_port), *self._registry(),
        ]  # fmt: skip

    def neo4j_env(self) -> dict[str, str]:
        """The Neo4j sink's secrets: in its environment, never on its command line (``ps`` shows argv)."""
        return {} if self.neo4j.password is None else {NEO4J_PASSWORD_ENV: self.neo4j.password}

    def qdrant_argv(self) -> list[str]:
        return [
            "sink", "qdrant", "--bootstrap-servers", self.bootstrap_servers, "--topic-prefix", self.topic_prefix,
            "--group", self.qdrant_group, "--sink-name", self.qdrant_sink, "--path", str(self.qdrant_dir),
            "--collection", self.collection, "--layout", self.layout, "--metrics-port", str(self.qdrant_metrics_port),
            *self._registry(),
        ]  # fmt: skip


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 now (bound all at once, so no two are the same)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]


@dataclass
class Daemon:
    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)  # added to the parent's environment (secrets)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab")  # noqa: SIM115 - the child owns it for its lifetime
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", **self.env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "replicator", *self.argv], stdout=out, stderr=subprocess.STDOUT, env=env,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        out.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process is not None and self.alive():
            self.process.kill()
            self.process.wait(10)

    def stop(self, grace_s: float = 20.0) -> int | None:
        """SIGTERM (drain and commit), then SIGKILL after ``grace_s``. Returns the exit code."""
        if self.process is None:
            return None
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def tail(self, lines: int = 20) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Pipeline:
    config: PipelineConfig
    daemons: dict[str, Daemon] = field(default_factory=dict)

    def __post_init__(self) -> None:
        logs = self.config.workdir / "logs"
        self.daemons = {
            "source": Daemon("source", self.config.source_argv(), logs / "source.log"),
            "neo4j": Daemon("neo4j", self.config.neo4j_argv(), logs / "sink-neo4j.log", self.config.neo4j_env()),
            "qdrant": Daemon("qdrant", self.config.qdrant_argv(), logs / "sink-qdrant.log"),
        }

    def start(self, *names: str) -> None:
        for name in names or tuple(self.daemons):
            self.daemons[name].start()

    def check_alive(self) -> None:
        """Raise RuntimeError with the log tail of a daemon that exited."""
        for daemon in self.daemons.values():
            if daemon.process is not None and not daemon.alive():
                raise RuntimeError(f"{daemon.name} exited with {daemon.process.returncode}:\n{daemon.tail()}")

    def stop(self) -> dict[str, int | None]:
        return {name: daemon.stop() for name, daemon in reversed(list(self.daemons.items()))}

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Block until every started daemon answers on its metrics port (any HTTP status: up).
        Raises RuntimeError if one exits or the timeout passes."""
        ports = {
            "source": self.config.source_metrics_port,
            "neo4j": self.config.neo4j_metrics_port,
            "qdrant": self.config.qdrant_metrics_port,
        }
        pending = {name for name, daemon in self.daemons.items() if daemon.process is not None}
        deadline = time.monotonic() + timeout_s
        while pending:
            for name in list(pending):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{ports[name]}/healthz", timeout=1).close()
                    pending.discard(name)
                except urllib.error.HTTPError:
                    pending.discard(name)  # it answered: up, maybe not healthy yet
                except OSError:
                    pass
            self.check_alive()
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"{', '.join(sorted(pending))} did not come up within {timeout_s:g}s")
            if pending:
                time.sleep(0.2)

    def wait_for(self, predicate: object, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if callable(predicate) and predicate():
                return True
            self.check_alive()
            time.sleep(0.2)
        return False
