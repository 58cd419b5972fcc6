"""The tree keeps its layers: production code never imports the test stand-ins (``replicator.testing``)
or the development stack (``replicator.stack``, its smoke test and the demo); only the command line
reaches the stack's and the demo's commands.

Walks every import statement (function-level ones too) of every module under ``replicator/``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "replicator"

#: Development-only packages: they may import anything, production imports none of them.
DEVELOPMENT = ("replicator.testing", "replicator.stack", "replicator.demo")
#: The command line may register the stack's and the demo's commands.
CLI_MAY_IMPORT = {"replicator.cli": ("replicator.stack.cli", "replicator.stack.smoke", "replicator.demo.cli")}


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute name) of every import in ``path``; ``from x import y`` gives x.y."""
    module = _module(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def _within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_production_code_never_imports_test_stand_ins_or_the_development_stack() -> None:
    offending = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module(path)
        if _within(module, DEVELOPMENT):
            continue
        allowed = CLI_MAY_IMPORT.get(module, ())
        for line, name in _imports(path):
            if _within(name, DEVELOPMENT) and not _within(name, allowed):
                offending.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}")
    assert offending == [], "\n".join(offending)


def test_the_walk_sees_the_imports_it_must_refuse() -> None:
    """The check above is only as good as its walk: the CLI's own (allowed) imports of the stack must
    be among what it finds."""
    found = [name for _, name in _imports(PACKAGE / "cli.py")]
    assert "replicator.stack.cli.stack" in found and "replicator.demo.cli" in found
    assert not [name for name in found if _within(name, ("replicator.testing",))]
