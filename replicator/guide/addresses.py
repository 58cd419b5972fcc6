"""The seed guide's backend addresses (``diff --source embedded:./data/memory.db --destination
neo4j:bolt://localhost:7687``): ``<backend>:<location>``, parsed once here. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from replicator.errors import ConfigError

BACKENDS: Final = ("embedded", "neo4j", "qdrant")
_FORMS: Final = "embedded:PATH, neo4j:bolt://HOST:7687, qdrant:http://HOST:6333 or qdrant:DIR (local mode)"


@dataclass(frozen=True)
class Address:
    """``backend`` is one of BACKENDS. ``location``: the store file (embedded), the Bolt URI (neo4j),
    or a server URL or local-mode directory (qdrant: a URL has a scheme)."""

    backend: str
    location: str

    @property
    def path(self) -> Path:
        return Path(self.location)

    @property
    def is_url(self) -> bool:
        return "://" in self.location


def parse_address(text: str, flag: str) -> Address:
    """``text`` as an Address. Raises ConfigError naming ``flag`` and the forms it takes."""
    backend, sep, location = text.partition(":")
    if not sep or backend not in BACKENDS:
        raise ConfigError(f"{flag} {text!r} names no backend", hint=f"use one of {_FORMS}")
    if not location:
        raise ConfigError(f"{flag} {text!r} has no location after '{backend}:'", hint=f"use one of {_FORMS}")
    if backend == "embedded" and "://" in location:
        raise ConfigError(f"{flag} {text!r}: a store is a file, not a URL", hint="embedded:./data/memory.db")
    if backend == "neo4j" and "://" not in location:
        raise ConfigError(f"{flag} {text!r}: Neo4j is reached by a Bolt URI", hint="neo4j:bolt://localhost:7687")
    return Address(backend, location)
