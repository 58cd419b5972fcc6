"""Finding the JDK and Maven the stack needs, with errors that say how to get them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from replicator.errors import StackError

MIN_JAVA: Final = 17  # Kafka 4 brokers and Neo4j 5 both need Java 17.


@dataclass(frozen=True)
class Toolchain:
    java: Path
    javac: Path
    mvn: Path
    java_major: int


def parse_java_major(version_output: str) -> int:
    """The major version from ``java -version`` output ("1.8.0_292" is 8, "17.0.15" is 17).

    Raises ValueError when no version string is found.
    """
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not match:
        raise ValueError(f"no version in {version_output!r}")
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def _jdk_bin(env: dict[str, str]) -> Path | None:
    java_home = env.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        return candidate if candidate.exists() else None
    found = shutil.which("java", path=env.get("PATH"))
    # /usr/bin/java is a chain of symlinks; javac sits beside the real binary.
    return Path(found).resolve() if found else None


def find_toolchain(env: dict[str, str] | None = None) -> Toolchain:
    """Locate java, javac (JAVA_HOME first, then PATH) and mvn (PATH). Raises StackError if unusable."""
    env = dict(os.environ) if env is None else env
    java = _jdk_bin(env)
    if java is None:
        where = f"JAVA_HOME={env['JAVA_HOME']} has no bin/java" if env.get("JAVA_HOME") else "no java on PATH"
        raise StackError(
            f"no JDK found ({where})",
            hint=f"install a JDK {MIN_JAVA}+ (Debian: apt-get install openjdk-17-jdk-headless) or set JAVA_HOME",
        )
    out = subprocess.run([str(java), "-version"], capture_output=True, text=True, check=False)
    try:
        major = parse_java_major(out.stderr + out.stdout)
    except ValueError as exc:
        raise StackError(f"{java} -version printed no version", hint="check the JDK installation") from exc
    if major < MIN_JAVA:
        raise StackError(
            f"{java} is Java {major}; Kafka 4 and Neo4j 5 need Java {MIN_JAVA} or newer",
            hint=f"install a JDK {MIN_JAVA}+ and point JAVA_HOME at it",
        )
    javac = java.with_name("javac")
    if not javac.exists():
        raise StackError(
            f"{java.parent} has java but no javac (a JRE, not a JDK); the Neo4j launcher must be compiled",
            hint="install the full JDK (Debian: apt-get install openjdk-17-jdk-headless)",
        )
    mvn = shutil.which("mvn", path=env.get("PATH"))
    if mvn is None:
        raise StackError(
            "Maven (mvn) is not on PATH; it resolves the Kafka and Neo4j jars from Maven Central",
            hint="install Maven 3 (Debian: apt-get install maven)",
        )
    return Toolchain(java=java, javac=javac, mvn=Path(mvn), java_major=major)
