"""Resolving runtime jars from Maven Central into the shared cache, once per version.

Resolution is all-or-nothing: jars land in a temporary directory that is renamed into place with a
completion stamp, so an interrupted download is never mistaken for a complete classpath.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from importlib import resources
from pathlib import Path

from replicator.errors import StackError
from replicator.stack.toolchain import Toolchain

_STAMP = ".complete"


def jars_dir(cache: Path, product: str, version: str) -> Path:
    return cache / "jars" / f"{product}-{version}"


def is_resolved(cache: Path, product: str, version: str) -> bool:
    return (jars_dir(cache, product, version) / _STAMP).exists()


def resolve(toolchain: Toolchain, cache: Path, product: str, version: str) -> tuple[Path, bool]:
    """Make ``<cache>/jars/<product>-<version>/`` hold the product's runtime jars.

    ``product`` names a POM beside this module (``kafka`` or ``neo4j``). Blocks on Maven. Returns the
    directory and whether anything was fetched (False: cache hit). Idempotent. Raises StackError with
    Maven's own last lines when resolution fails.
    """
    dest = jars_dir(cache, product, version)
    if (dest / _STAMP).exists():
        return dest, False
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    pom = resources.files("replicator.stack") / "jvm" / f"{product}.pom.xml"
    started = time.monotonic()
    with resources.as_file(pom) as pom_path:
        cmd = [
            str(toolchain.mvn), "-B", "-q", "-f", str(pom_path),
            "dependency:copy-dependencies", "-DincludeScope=runtime",
            f"-DoutputDirectory={partial}", f"-D{product}.version={version}",
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not any(partial.glob("*.jar")):
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise StackError(
            f"Maven could not resolve {product} {version} from Maven Central (exit {proc.returncode}):\n{tail}",
            hint="check network access to Maven Central and any mirror in ~/.m2/settings.xml, "
            f"and that {product} {version} exists",
        )
    (partial / _STAMP).write_text(f"resolved in {time.monotonic() - started:.1f}s\n")
    shutil.rmtree(dest, ignore_errors=True)
    partial.rename(dest)
    return dest, True


def classpath(directory: Path) -> str:
    """A java -cp value for every jar in ``directory`` (the JVM expands the wildcard itself)."""
    return str(directory / "*")
