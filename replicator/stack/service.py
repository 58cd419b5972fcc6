"""What the stack needs to know of one server: how to resolve it, launch it and ask if it answers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from replicator.stack.toolchain import Toolchain


@dataclass(frozen=True)
class Probe:
    """The outcome of asking a server a real question (a metadata request, a Cypher query)."""

    ok: bool
    detail: str


class Server(Protocol):
    @property
    def name(self) -> str:
        """Short name, used for its directory, log and pid file: ``kafka``, ``neo4j``."""

    @property
    def home(self) -> Path:
        """The server's directory under the stack root: data, log file, pid file."""

    @property
    def endpoint(self) -> str:
        """Where clients connect, e.g. ``127.0.0.1:9092`` or ``bolt://127.0.0.1:7687``."""

    def ports(self) -> dict[str, int]:
        """Every port it binds, keyed by the flag that sets it."""

    def resolve(self, toolchain: Toolchain) -> bool:
        """Fetch (and build) what it runs from; True if anything was fetched. Idempotent, blocking."""

    def command(self, toolchain: Toolchain) -> list[str]:
        """Prepare its data directory if new and return the command line that runs it in the foreground."""

    def environment(self) -> dict[str, str]:
        """Extra environment for the process (secrets go here, not on the command line)."""

    def probe(self, timeout_s: float) -> Probe:
        """Ask it a real question; never raises."""


def log_file(server: Server) -> Path:
    return server.home / f"{server.name}.log"


def pid_file(server: Server) -> Path:
    return server.home / f"{server.name}.pid"
