"""Neo4j Community with Bolt, run from Maven Central jars by a one-class launcher compiled here."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from replicator.errors import StackError
from replicator.reverse import plugin
from replicator.stack import maven
from replicator.stack.process import marker
from replicator.stack.service import Probe
from replicator.stack.settings import StackSettings
from replicator.stack.toolchain import Toolchain

_LAUNCHER = "Neo4jLauncher"
_LAUNCHER_SOURCE = resources.files("replicator.stack") / "jvm" / f"{_LAUNCHER}.java"


@dataclass(frozen=True)
class Neo4jServer:
    settings: StackSettings
    name: str = "neo4j"

    @property
    def home(self) -> Path:
        return self.settings.root / self.name

    @property
    def endpoint(self) -> str:
        return self.settings.bolt_uri

    def ports(self) -> dict[str, int]:
        return {"--bolt-port": self.settings.bolt_port}

    def _jars(self) -> Path:
        return maven.jars_dir(self.settings.cache, "neo4j", self.settings.neo4j_version)

    def _launcher_dir(self) -> Path:
        digest = hashlib.sha256(_LAUNCHER_SOURCE.read_bytes()).hexdigest()[:12]
        return self.settings.cache / "launcher" / f"neo4j-{self.settings.neo4j_version}-{digest}"

    def resolve(self, toolchain: Toolchain) -> bool:
        fetched = maven.resolve(toolchain, self.settings.cache, "neo4j", self.settings.neo4j_version)[1]
        self._build_launcher(toolchain)
        self._plugin(toolchain)
        return fetched

    def _plugin(self, toolchain: Toolchain) -> Path:
        """The reverse changelog plugin (docs/reverse.md), built once per (sources, version). The
        embedded server finds it on its classpath as a server does in plugins/ (ServiceLoader)."""
        return plugin.cached_build(toolchain.javac, self._jars(), self.settings.cache, self.settings.neo4j_version)

    def _build_launcher(self, toolchain: Toolchain) -> Path:
        """Compile the launcher against this Neo4j version, once per (source, version)."""
        out = self._launcher_dir()
        if (out / f"{_LAUNCHER}.class").exists():
            return out
        partial = out.with_name(out.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        with resources.as_file(_LAUNCHER_SOURCE) as src_path:
            cmd = [
                str(toolchain.javac),
                "-d",
                str(partial),
                "-cp",
                maven.classpath(self._jars()),
                str(src_path),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise StackError(
                f"compiling the Neo4j launcher against Neo4j {self.settings.neo4j_version} failed:\n{proc.stderr}",
                hint="the launcher targets the Neo4j 5 embedded API; use a 5.x --neo4j-version",
            )
        shutil.rmtree(out, ignore_errors=True)
        partial.rename(out)
        return out

    def command(self, toolchain: Toolchain) -> list[str]:
        launcher = self._build_launcher(toolchain)
        changelog_plugin = self._plugin(toolchain)
        (self.home / "home").mkdir(parents=True, exist_ok=True)
        s = self.settings
        return [
            str(toolchain.java), f"-Xmx{s.neo4j_heap_mb}m", "-Djava.awt.headless=true",
            # The JVM options of the server distribution's neo4j.conf (server.jvm.additional): the kernel
            # reaches into NIO internals for its page cache and native I/O.
            "--add-opens=java.base/java.nio=ALL-UNNAMED", "--add-opens=java.base/java.io=ALL-UNNAMED",
            "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED", "-Dlog4j2.disable.jmx=true",
            marker(self.name, s.root), "-cp", f"{launcher}:{changelog_plugin}:{maven.classpath(self._jars())}",
            _LAUNCHER,
            str((self.home / "home").resolve()), s.host, str(s.bolt_port), str(s.neo4j_pagecache_mb),
        ]  # fmt: skip

    def environment(self) -> dict[str, str]:
        return {"NEO4J_PASSWORD": self.settings.neo4j_password}

    def auth(self) -> tuple[str, str] | None:
        return ("neo4j", self.settings.neo4j_password) if self.settings.neo4j_password else None

    def probe(self, timeout_s: float) -> Probe:
        """``RETURN 1`` over Bolt, with the stack's credentials."""
        import neo4j  # noqa: PLC0415 - the driver loads when the stack is probed, not for --help

        try:
            with neo4j.GraphDatabase.driver(
                self.endpoint, auth=self.auth(), connection_timeout=timeout_s, max_transaction_retry_time=0
            ) as driver:
                records, _, _ = driver.execute_query("RETURN 1 AS one")
                info = driver.get_server_info()
        except Exception as exc:
            return Probe(False, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        if records[0]["one"] != 1:
            return Probe(False, f"RETURN 1 gave {records[0]['one']!r}")
        return Probe(True, f"{info.agent}, auth {'on' if self.auth() else 'off'}")
