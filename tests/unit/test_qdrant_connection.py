"""The one qdrant-client constructor (sinks/qdrant/connection.py)."""

from __future__ import annotations

import threading
import warnings

from qdrant_client import QdrantClient

from replicator.demo.daemons import free_ports
from replicator.sinks.qdrant.connection import new_client
from replicator.sinks.settings import QdrantSettings


def test_a_client_for_a_server_that_does_not_answer_adds_no_warning_of_its_own() -> None:
    """qdrant-client warns "Failed to obtain server version" (from a thread of its own) when its
    compatibility check gets no answer; the sink's own error names the server and the fix, so the
    warning was noise beside it (pytest counted it in every CI run)."""
    (port,) = free_ports(1)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        client = new_client(QdrantSettings(url=f"http://127.0.0.1:{port}"), timeout_s=2)
        for thread in threading.enumerate():  # the check runs in the background
            if "_check_compatibility" in thread.name:
                thread.join(10)
    assert isinstance(client, QdrantClient)
    client.close()
    assert [str(w.message) for w in seen if "server version" in str(w.message)] == []
