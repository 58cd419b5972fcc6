"""When to migrate, and where to: the seed guide's indicators and decision matrix ("When to Migrate"),
filled in for one store. Pure: measurements and the operator's stated needs in, a verdict out.

The guide's lines: semantic search consistently over 100 ms, an entity count approaching the
embedded backend's 100K limit, memory over 2 GB, a file over 10 GB. "Approaching" is 80 % of a limit
here (the guide gives no number; 80 % leaves time to run a migration before the limit is reached).
What a store cannot tell about itself (graph queries, several Caxton instances, analytics, cost) the
operator states with ``needs``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

ENTITY_LIMIT: Final = 100_000
FILE_LIMIT_BYTES: Final = 10 * 1000**3  # the guide's "10GB"
MEMORY_LIMIT_BYTES: Final = 2 * 1000**3  # the guide's "2GB"
SEARCH_LINE_MS: Final = 100.0
APPROACHING: Final = 0.8

Status = Literal["ok", "approaching", "over"]
Backend = Literal["embedded", "neo4j", "qdrant", "hybrid"]

#: Needs the operator may state (``--need``), each with the guide's matrix row it answers.
NEEDS: Final = {
    "graph": "Complex graph queries",
    "search": "High-speed semantic search",
    "multi-node": "Multi-node deployment",
    "analytics": "Advanced analytics",
    "zero-config": "Zero configuration",
    "cost": "Cost optimization",
}

#: The guide's matrix as it prints it: row -> marks for embedded, Neo4j, Qdrant, hybrid.
MATRIX: Final = {
    "<100K entities": ("✅", "⚠️", "⚠️", "✅"),
    ">1M entities": ("❌", "✅", "✅", "✅"),
    "Complex graph queries": ("⚠️", "✅", "❌", "✅"),
    "High-speed semantic search": ("⚠️", "❌", "✅", "✅"),
    "Zero configuration": ("✅", "❌", "❌", "❌"),
    "Multi-node deployment": ("❌", "✅", "✅", "✅"),
    "Advanced analytics": ("❌", "✅", "⚠️", "✅"),
    "Cost optimization": ("✅", "❌", "❌", "⚠️"),
}
BACKENDS: Final[tuple[Backend, ...]] = ("embedded", "neo4j", "qdrant", "hybrid")


@dataclass(frozen=True)
class Indicator:
    """One of the guide's performance indicators, measured."""

    name: str
    value: float
    limit: float
    unit: str  # "entities", "bytes", "ms"

    @property
    def status(self) -> Status:
        if self.value > self.limit or (self.unit != "ms" and self.value >= self.limit):
            return "over"
        return "approaching" if self.value >= APPROACHING * self.limit else "ok"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "limit": self.limit, "unit": self.unit, "status": self.status}


@dataclass(frozen=True)
class Verdict:
    backend: Backend
    reasons: tuple[str, ...]
    #: Matrix row -> why it applies to this store (rows that do not apply are absent).
    applies: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "reasons": list(self.reasons), "applies": self.applies}


def check_needs(needs: Iterable[str]) -> frozenset[str]:
    """The stated needs, validated. Raises ValueError naming an unknown one and the known ones."""
    given = frozenset(needs)
    unknown = sorted(given - NEEDS.keys())
    if unknown:
        raise ValueError(f"unknown need {', '.join(unknown)}: use {', '.join(NEEDS)}")
    return given


def _applies(entities: int, indicators: dict[str, Indicator], needs: frozenset[str]) -> dict[str, str]:
    rows: dict[str, str] = {}
    if entities < ENTITY_LIMIT:
        rows["<100K entities"] = f"{entities:,} entities (measured)"
    if entities > 1_000_000:
        rows[">1M entities"] = f"{entities:,} entities (measured)"
    search = indicators.get("search_p50_ms")
    if search is not None and search.status != "ok":
        rows["High-speed semantic search"] = (
            f"search p50 {search.value:.0f} ms against the {SEARCH_LINE_MS:.0f} ms line"
        )
    for need in sorted(needs):
        rows.setdefault(NEEDS[need], "stated (--need)")
    return rows


def decide(entities: int, indicators: Iterable[Indicator], needs: Iterable[str] = ()) -> Verdict:
    """The backend the guide's matrix points to for this store, with the reasons. Pure.

    Pressure (an indicator approaching or over its line, or several Caxton instances) means leaving
    the embedded backend. Where to: Neo4j when graph queries or analytics are needed, Qdrant when
    search is slow or wanted fast, both (hybrid) when both or when nothing singles one out: Caxton's
    memory is a graph with a vector per entity, and hybrid is the only column with no ❌ for a store
    that outgrows one file."""
    by_name = {i.name: i for i in indicators}
    stated = check_needs(needs)
    applies = _applies(entities, by_name, stated)
    pressure = [f"{i.name} is {i.status}: {_shown(i)}" for i in by_name.values() if i.status != "ok"]
    if "multi-node" in stated:
        pressure.append("several Caxton instances share memory (stated): one embedded file cannot")
    graph = bool(stated & {"graph", "analytics"})
    search = "search" in stated or by_name.get("search_p50_ms", Indicator("", 0, 1, "ms")).status != "ok"
    if not pressure and not graph and not search:
        reasons = ["every indicator is within the guide's lines and no need for another backend was stated"]
        return Verdict("embedded", tuple(reasons), applies)
    backend: Backend = "hybrid" if graph == search else ("neo4j" if graph else "qdrant")
    why = {
        "hybrid": "graph queries and fast semantic search both matter (or nothing singles one out): Neo4j for "
        "the graph, Qdrant for the vectors",
        "neo4j": "graph queries or analytics are needed and search is fast enough",
        "qdrant": "semantic search is what needs speed, and no graph queries were stated",
    }[backend]
    return Verdict(backend, (*pressure, why), applies)


def _shown(indicator: Indicator) -> str:
    if indicator.unit == "bytes":
        return f"{indicator.value / 1e9:.2f} GB of {indicator.limit / 1e9:.0f} GB"
    if indicator.unit == "ms":
        return f"{indicator.value:.0f} ms against {indicator.limit:.0f} ms"
    return f"{indicator.value:,.0f} of {indicator.limit:,.0f} {indicator.unit}"


def matrix_rows(verdict: Verdict) -> list[tuple[str, tuple[str, ...], str]]:
    """The guide's matrix with a column saying which rows apply to this store and why. Pure."""
    return [(row, marks, verdict.applies.get(row, "")) for row, marks in MATRIX.items()]
