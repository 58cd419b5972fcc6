"""An agent's memory stored through mcp-server-qdrant after a cutover (a point with a random UUID id,
``document`` and ``metadata``) is named by validation, and so by rollback's check: the store does not
have it, and rolling back without a word would lose it (issue 13, item 3).

Needs no Kafka or Neo4j: the collection is filled by ``replicator import --backend qdrant`` (the
sinks' own destination, mcp layout) in Qdrant's local mode, as the migrated collection would be.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from replicator.cutover.options import TargetOptions
from replicator.cutover.targets import divergence
from replicator.sinks.settings import Neo4jSettings, QdrantSettings
from replicator.testing.workload import Workload, hash_vector
from replicator.testing.writer import MemoryWriter
from tests.mcp import run


def _replicator(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "replicator", *args]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600)


def test_a_memory_stored_through_mcp_server_qdrant_is_named_by_validation(tmp_path: Path) -> None:
    db, qdrant, export = tmp_path / "memory.db", tmp_path / "qdrant", tmp_path / "export.json"
    writer = MemoryWriter.create(db)
    work = Workload(writer, seed=5, vectorize=hash_vector)
    for _ in range(5):
        work.create()
    writer.close()
    where = ["--qdrant-path", str(qdrant), "--collection", "agent_memory", "--layout", "mcp"]
    exported = _replicator("export", "--db", str(db), "--with-embeddings", "-o", str(export))
    assert exported.returncode == 0, exported.stderr
    imported = _replicator("import", "--backend", "qdrant", *where, "--input", str(export))
    assert imported.returncode == 0, imported.stderr
    equal = _replicator("validate", "--db", str(db), "--target", "qdrant", "--full", "--no-search", *where)
    assert equal.returncode == 0, equal.stdout + equal.stderr

    note = "the user prefers dark roast coffee"
    [answer] = run.qdrant_search(
        "agent_memory", [note], path=qdrant, store=[{"content": note, "metadata": {"by": "agent"}}]
    )
    assert answer["ok"][0]["content"] == note, answer  # the server stored it and finds it

    after = _replicator("validate", "--db", str(db), "--target", "qdrant", "--full", "--no-search", *where)
    assert after.returncode == 1, after.stdout + after.stderr  # INVALID, not a bug (70)
    said = after.stdout + after.stderr
    assert "no Caxton entity id: written by another client" in said and note in said, said

    # rollback's check after a completed cutover (cutover.targets.divergence) names it too
    opts = TargetOptions(
        bootstrap_servers="127.0.0.1:9092", topic_prefix="unused", neo4j=Neo4jSettings(), neo4j_sink="-",
        neo4j_group="-", entity_label="Entity", position_label="ReplicatorPosition",
        qdrant=QdrantSettings(path=qdrant, collection="agent_memory", layout="mcp"), qdrant_api_key=None,
        collection="agent_memory", qdrant_sink="replicator-sink-qdrant", qdrant_group="replicator-sink-qdrant",
        layout="mcp",
    )  # fmt: skip
    problems = divergence(db, opts)("qdrant")
    assert any("no Caxton entity id" in line and note in line for line in problems), problems
