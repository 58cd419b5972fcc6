"""Finding the JDK and Maven, and the errors when they are missing or too old."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from replicator.errors import StackError
from replicator.stack.toolchain import find_toolchain, parse_java_major


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_292"', 8),
        ('openjdk version "25" 2025-09-16', 25),
        ('openjdk version "21.0.2" 2024-01-16 LTS', 21),
    ],
)
def test_java_major_version_is_parsed(output: str, major: int) -> None:
    assert parse_java_major(output) == major


def _fake_jdk(tmp_path: Path, version: str, javac: bool = True) -> Path:
    bin_dir = tmp_path / "jdk" / "bin"
    bin_dir.mkdir(parents=True)
    java = bin_dir / "java"
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\"' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    if javac:
        (bin_dir / "javac").write_text("")
    return tmp_path / "jdk"


def test_no_java_anywhere_names_the_problem_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="no JDK found") as info:
        find_toolchain({"PATH": str(tmp_path)})
    assert "JAVA_HOME" in info.value.hint


def test_old_java_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="is Java 11; Kafka 4 and Neo4j 5 need Java 17"):
        find_toolchain({"JAVA_HOME": str(_fake_jdk(tmp_path, "11.0.2")), "PATH": ""})


def test_jre_without_javac_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="no javac"):
        find_toolchain({"JAVA_HOME": str(_fake_jdk(tmp_path, "17.0.1", javac=False)), "PATH": ""})


def test_missing_maven_is_named(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="Maven") as info:
        find_toolchain({"JAVA_HOME": str(_fake_jdk(tmp_path, "17.0.1")), "PATH": str(tmp_path)})
    assert "apt-get install maven" in info.value.hint


def test_machine_toolchain_is_usable() -> None:
    tc = find_toolchain(dict(os.environ))
    assert tc.java_major >= 17 and tc.javac.exists() and tc.mvn.exists()
