"""The destination layouts, declared once for every sink and reader (docs/layouts.md). What each
means for a destination is owned by that destination's layout module (``sinks/neo4j/layout.py``)."""

from __future__ import annotations

from typing import Final

CAXTON: Final = "caxton"  # the seed's mapping (design §6): the default
MCP: Final = "mcp"  # also what the MCP memory servers (mcp-neo4j-memory, mcp-server-qdrant) read and write
LAYOUTS: Final = (CAXTON, MCP)
#: The environment variable naming the layout for every command that takes ``--layout``.
LAYOUT_ENV: Final = "REPLICATOR_LAYOUT"
