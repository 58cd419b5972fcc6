"""A Neo4j server of a test's own (the stack's Neo4j on free ports, in a temp dir, with the reverse
plugin the stack builds), for tests that stop, pause or reconfigure it: the shared stack is never
touched. The ``private_neo4j`` fixture (conftest.py) starts one per test module and always stops it."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from replicator.demo.daemons import free_ports
from replicator.sinks.settings import Neo4jSettings
from replicator.stack.neo4j import Neo4jServer
from replicator.stack.process import is_alive, spawn, tail, terminate
from replicator.stack.service import log_file, pid_file
from replicator.stack.settings import StackSettings
from replicator.stack.toolchain import find_toolchain


class PrivateNeo4j:
    """Only the Neo4j server of a second stack (``control.up`` would start a Kafka too), started,
    stopped, paused and resumed by this test; its data survives a stop."""

    def __init__(self, root: Path) -> None:
        kafka_port, controller_port, bolt_port = free_ports(3)  # Kafka's are reserved, never bound
        self.settings = StackSettings(
            root=root, kafka_port=kafka_port, kafka_controller_port=controller_port, bolt_port=bolt_port,
            neo4j_heap_mb=512, neo4j_pagecache_mb=64,
        )  # fmt: skip
        self.server = Neo4jServer(self.settings)
        self.toolchain = find_toolchain()
        self.server.resolve(self.toolchain)
        self.pid: int | None = None
        self.graph = Neo4jSettings(uri=self.settings.bolt_uri, password=self.settings.neo4j_password)

    def start(self) -> None:
        env = {**os.environ, **self.server.environment()}
        self.pid = spawn(self.server.command(self.toolchain), log_file(self.server), pid_file(self.server), env)
        deadline = time.monotonic() + 120
        while not self.server.probe(timeout_s=2.0).ok:
            assert is_alive(self.pid) and time.monotonic() < deadline, tail(log_file(self.server))
            time.sleep(0.3)

    def stop(self) -> None:
        if self.pid is not None:
            self.signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
            terminate(self.pid)
            self.pid = None

    def signal(self, signum: int) -> None:
        assert self.pid is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)
