"""replicator: change-data-capture from Caxton's embedded memory store to Neo4j and Qdrant.

The pipeline, one package per step: capture (SQLite changelog) -> events (Avro change events, see
``replicator.events`` and ``schemas/``) -> transport (Kafka) -> apply (Neo4j, Qdrant sinks) -> observe
(lag) -> cut over. ``replicator.stack`` runs the real servers locally for development and tests.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("replicator")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
