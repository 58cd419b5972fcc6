"""Asking for help loads no client library: ``replicator --help`` (and a command's ``--help``) imports
neither qdrant-client, the Neo4j driver, confluent-kafka, torch nor sentence-transformers. They load
when a command runs (each command imports them in its body), so help, typos and config errors
answer at once."""

from __future__ import annotations

import subprocess
import sys

import pytest

CLIENTS = ("qdrant_client", "neo4j", "confluent_kafka", "torch", "sentence_transformers")
_PROBE = """
import runpy, sys
sys.argv = ["replicator", *sys.argv[1:]]
try:
    runpy.run_module("replicator", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print("\\nLOADED " + " ".join(sorted({m.split(".")[0] for m in sys.modules})), file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize(
    "args",
    [["--help"], ["sink", "neo4j", "--help"], ["sink", "qdrant", "--help"], ["source", "run", "--help"],
     ["lag", "--help"], ["cutover", "--help"], ["rollback", "--help"], ["validate", "--help"], ["stack", "--help"]],
    ids=" ".join,
)  # fmt: skip
def test_help_loads_no_client_library(args: list[str]) -> None:
    probe = [sys.executable, "-c", _PROBE, *args]
    done = subprocess.run(probe, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout
    loaded = set(done.stderr.rsplit("LOADED ", 1)[1].split())
    assert "replicator" in loaded and "click" in loaded  # the probe saw the command line load
    assert sorted(loaded & set(CLIENTS)) == []
