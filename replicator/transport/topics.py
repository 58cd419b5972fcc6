"""Every Kafka topic name, derived from the topic prefix here and nowhere else (design §3).

The source creates and writes them, the sinks read them, lag and cutover look at them: each asks
these functions, so a prefix always names the same topics everywhere. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

#: The prefix when none is given (``--topic-prefix``, ``REPLICATOR_TOPIC_PREFIX``).
DEFAULT_PREFIX: Final = "caxton.memory"
POSITIONS_SUFFIX: Final = "source-positions"
DLQ_SUFFIX: Final = "dlq"


def change_topic(prefix: str, table: str) -> str:
    """The change topic of a store table (entities, relations, embeddings): ``<prefix>.<table>``."""
    return f"{prefix}.{table}"


def change_topics(prefix: str, tables: Iterable[str]) -> list[str]:
    """The change topics of ``tables``, in their order."""
    return [change_topic(prefix, table) for table in tables]


def positions_topic(prefix: str) -> str:
    """The source's positions topic (1 partition, compacted; keyed by store id)."""
    return f"{prefix}.{POSITIONS_SUFFIX}"


def dlq_topic(prefix: str) -> str:
    """The dead-letter topic the sinks set poison events aside in."""
    return f"{prefix}.{DLQ_SUFFIX}"
