"""The one place a qdrant-client is made (the sink, the readers, the cutover's targets, the stack's
smoke test), so that what every client needs is said once."""

from __future__ import annotations

import warnings
from typing import Final

from qdrant_client import QdrantClient

from replicator.sinks.settings import QdrantSettings

#: qdrant-client's own UserWarning when its compatibility check cannot reach the server. Whoever
#: asks the server next names it with a fix (DestinationUnavailable, MigrateError), so the warning
#: only adds a file path and a Python class to that message. The check itself stays on: it still
#: warns when the server answers with a version this client does not support.
_UNREACHABLE_VERSION: Final = "Failed to obtain server version"


def new_client(settings: QdrantSettings, api_key: str | None = None, timeout_s: int | None = None) -> QdrantClient:
    """A client for ``settings``' server URL, or its local-mode path (opens and locks the directory
    for this process). Blocks while the client asks a server for its version. Raises what
    QdrantClient raises (RuntimeError: the local directory is open in another process)."""
    # Added on every call (Python moves an identical filter to the front, no duplicate): a filter
    # added once at import would be lost wherever warnings are reset (pytest resets them per test).
    warnings.filterwarnings("ignore", message=_UNREACHABLE_VERSION, category=UserWarning)
    if settings.path is not None:
        return QdrantClient(path=str(settings.path))
    return QdrantClient(url=settings.url, api_key=api_key, timeout=timeout_s)
