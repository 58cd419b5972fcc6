"""Building the changelog plugin: a jar of the Java sources beside this module, compiled against a
Neo4j's own jars (``provided``: none of them goes into the jar). Offline: javac and jar of the JDK,
nothing fetched. The stack builds it against the jars it resolved; a user against their server's
``lib/`` (``replicator reverse plugin --neo4j-lib /var/lib/neo4j/lib --out /var/lib/neo4j/plugins``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Final

from replicator.errors import ReplicatorError

JAR_NAME: Final = "replicator-changelog.jar"
_SOURCES: Final = ("ChangelogExtensionFactory.java", "ChangelogListener.java")
_SERVICE: Final = "org.neo4j.kernel.extension.ExtensionFactory"


def _jvm() -> Traversable:
    return resources.files("replicator.reverse") / "jvm"


def _source_files() -> list[Traversable]:
    base = _jvm() / "dev" / "replicator" / "reverse"
    return [base / name for name in _SOURCES]


def source_digest() -> str:
    """12 hex digits identifying the plugin's sources (a cached build of other sources is stale)."""
    digest = hashlib.sha256()
    for source in [*_source_files(), _jvm() / "META-INF" / "services" / _SERVICE]:
        digest.update(source.read_bytes())
    return digest.hexdigest()[:12]


def find_javac() -> Path:
    """javac of $JAVA_HOME, else the one on PATH. Raises ReplicatorError when there is none."""
    home = os.environ.get("JAVA_HOME")
    found = str(Path(home) / "bin" / "javac") if home else shutil.which("javac")
    if not found or not Path(found).exists():
        raise ReplicatorError(
            "no javac found (JAVA_HOME or PATH)",
            hint="install a JDK 17+ (Debian: apt-get install openjdk-17-jdk-headless) or set JAVA_HOME",
        )
    return Path(found).resolve()


def build(javac: Path, neo4j_lib: Path, out: Path) -> Path:
    """Compile the plugin against the jars in ``neo4j_lib`` and write ``out`` (a .jar path), atomically.
    Blocks on javac. Raises ReplicatorError (no jars there, or the compiler's own message)."""
    if not any(neo4j_lib.glob("neo4j-kernel-*.jar")):
        raise ReplicatorError(
            f"{neo4j_lib} holds no Neo4j jars (no neo4j-kernel-*.jar)",
            hint="pass the lib/ directory of a Neo4j 5 installation",
        )
    jar_tool = javac.with_name("jar")
    work = out.with_name(out.name + ".build")
    shutil.rmtree(work, ignore_errors=True)
    classes = work / "classes"
    (classes / "META-INF" / "services").mkdir(parents=True)
    try:
        with resources.as_file(_jvm()) as jvm:
            sources = [str(jvm / "dev" / "replicator" / "reverse" / name) for name in _SOURCES]
            shutil.copyfile(jvm / "META-INF" / "services" / _SERVICE, classes / "META-INF" / "services" / _SERVICE)
            _run([str(javac), "--release", "17", "-d", str(classes), "-cp", str(neo4j_lib / "*"), *sources], "javac")
        partial = work / JAR_NAME
        _run([str(jar_tool), "--create", "--file", str(partial), "-C", str(classes), "."], "jar")
        out.parent.mkdir(parents=True, exist_ok=True)
        partial.replace(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def cached_build(javac: Path, neo4j_lib: Path, cache: Path, neo4j_version: str) -> Path:
    """The plugin built once per (sources, Neo4j version) under ``cache``. Idempotent."""
    out = cache / "plugin" / f"neo4j-{neo4j_version}-{source_digest()}" / JAR_NAME
    return out if out.exists() else build(javac, neo4j_lib, out)


def _run(cmd: list[str], tool: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise ReplicatorError(
            f"{tool} failed building the changelog plugin (exit {proc.returncode}):\n{tail}",
            hint="the plugin targets the Neo4j 5 API; build it against the lib/ of a 5.x server",
        )
