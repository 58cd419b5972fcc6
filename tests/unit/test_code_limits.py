"""Every file under ``replicator/`` stays small enough to read at once: at most 400 lines, and no
function (or method) over 60 lines, counted from its ``def`` to its last line (docstring included,
decorators not)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "replicator"
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60

#: Known exceptions, each with the issue that removes it. Nothing else may grow past the limits.
FILE_EXCEPTIONS: set[str] = set()  # "path" below replicator/
FUNCTION_EXCEPTIONS: set[str] = set()  # "path:function"


def _files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_file_is_over_400_lines() -> None:
    long = {
        str(path.relative_to(PACKAGE)): n
        for path in _files()
        if (n := len(path.read_text().splitlines())) > MAX_FILE_LINES
    }
    assert {k: v for k, v in long.items() if k not in FILE_EXCEPTIONS} == {}


def test_no_function_is_over_60_lines() -> None:
    long = {}
    for path in _files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                where = f"{path.relative_to(PACKAGE)}:{node.name}"
                if lines > MAX_FUNCTION_LINES and where not in FUNCTION_EXCEPTIONS:
                    long[f"{where} (line {node.lineno})"] = lines
    assert long == {}
