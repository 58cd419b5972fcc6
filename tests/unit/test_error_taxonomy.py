"""Every error of the package is one of the three kinds (retry, stop this process, set one event
aside), by its class: none derives from the base directly, so a new error has to choose."""

from __future__ import annotations

import ast
from pathlib import Path

import replicator

KINDS = {"Retryable", "Fatal", "Poison"}
ROOT = Path(replicator.__file__).parent


def test_no_error_class_skips_the_taxonomy() -> None:
    direct = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
                if "ReplicatorError" in bases and node.name not in KINDS:
                    direct.append(f"{path.relative_to(ROOT)}: {node.name}")
    assert direct == []
