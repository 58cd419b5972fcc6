"""``replicator import --backend neo4j|qdrant``: load an export into a destination through the sinks'
own destinations, so what is written is exactly the sinks' layout (one owner per format) and lag,
validate, diff and cutover read it back with the sinks' readers.

How: the export is checked and written into a private SQLite copy (``importer``), the copy is read
as the source's snapshot reads a store (the same image SQL), each row becomes the ``op=r`` event the
source would publish (``source.convert``), decoded as a sink decodes it, and handed in batches to
``Neo4jDestination.apply`` / ``QdrantDestination.apply``: the sinks' planners decide, their appliers
write, with the sinks' ``_seq`` rules, tombstones and namespace ownership.

Checkpoint: the batches carry offsets on synthetic topics ``replicator-import.<table>`` (partition
0, one offset per row in key order) and the destination stores their position with the data (Neo4j:
in the same transaction) under the sink name ``replicator-import.<namespace>``. A rerun of the same
export reads that position and skips what it covers: an import interrupted at any point resumes after
its last completed batch, and an import run twice changes nothing the second time.

Seq: every row carries the export's ``head_seq`` (the store's changelog head when it was exported;
1 without capture), as a snapshot at that head would. Store identity: the export's ``store_id``, or
for a store without capture a stable id derived from the export's content.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from replicator.capture.storefile import table_columns
from replicator.events import headers as record_headers
from replicator.events.avro import decode_any, decode_key
from replicator.guide.importer import check_document, import_document
from replicator.position import PartitionKey, SinkPosition
from replicator.sinks.batch import Batch, Event
from replicator.sinks.errors import DestinationRefused, DestinationUnavailable
from replicator.sinks.neo4j import faults
from replicator.sinks.settings import Neo4jSettings
from replicator.source.convert import Unfit, convert_snapshot_row
from replicator.source.store import StoreReader
from replicator.transport.topics import change_topic
from replicator.validation.errors import MigrateError

PREFIX: Final = "replicator-import"
#: The tables each backend applies, in the order that spares work: Qdrant takes the store's vectors
#: first (the entity that follows with the same text is payload-only, no model), Neo4j entities first.
TABLES_OF: Final = {"neo4j": ("entities", "relations"), "qdrant": ("embeddings", "entities")}

Progress = Callable[[str, int, int], None]  # table, rows done, rows in the table


class Loadable(Protocol):
    """What the sinks' destinations offer (``replicator.sinks.runner.Destination``)."""

    name: str

    def start(self) -> SinkPosition | None: ...

    def apply(self, batch: Batch) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class LoadResult:
    backend: str
    sink: str
    store_id: str
    seq: int
    rows: dict[str, int]  # rows of each table applied by this run
    resumed: dict[str, int]  # rows of each table an earlier run had applied (skipped)


def sink_name(namespace: str) -> str:
    """The position name of the import into ``namespace`` (entity label or collection)."""
    return f"{PREFIX}.{namespace}"


def identity(doc: dict[str, Any]) -> tuple[str, int]:
    """(store id, seq) the export's rows are written with (see the module's docstring)."""
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    seq = meta.get("head_seq")
    seq = seq if isinstance(seq, int) and not isinstance(seq, bool) and seq > 0 else 1
    store_id = meta.get("store_id")
    if isinstance(store_id, str) and store_id:
        return store_id, seq
    content = json.dumps({k: doc.get(k) for k in ("entities", "relations", "embeddings")}, sort_keys=True)
    digest = hashlib.sha256(content.encode("utf-8")).hexdigest()
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"replicator:export:{digest}")), seq


def load_export(
    doc: dict[str, Any], backend: str, destination: Loadable, *, batch_size: int, progress: Progress | None = None
) -> LoadResult:
    """Apply the export ``doc`` to ``destination`` (started and closed here) in batches of
    ``batch_size`` rows. Blocks. Idempotent and resumable (module docstring). Raises MigrateError for
    a bad document, and the destination's errors (DestinationUnavailable, DestinationRefused,
    StoreMismatch, ...) unchanged: each names the server and the fix."""
    if batch_size < 1:
        raise MigrateError(f"batch size {batch_size} is not positive", hint="e.g. --batch-size 1000")
    check_document(doc)
    store_id, seq = identity(doc)
    tables = TABLES_OF[backend]
    with tempfile.TemporaryDirectory(prefix="replicator-import-") as tmp:
        copy = Path(tmp) / "export.db"
        import_document(copy, doc)
        try:
            stored = destination.start()
            rows, resumed = _apply_all(
                copy,
                tables=tables,
                destination=destination,
                store_id=store_id,
                seq=seq,
                stored=stored,
                batch_size=batch_size,
                progress=progress,
            )
        finally:
            destination.close()
    return LoadResult(backend, destination.name, store_id, seq, rows, resumed)


def _apply_all(
    copy: Path, *, tables: tuple[str, ...], destination: Loadable, store_id: str, seq: int,
    stored: SinkPosition | None, batch_size: int, progress: Progress | None,
) -> tuple[dict[str, int], dict[str, int]]:  # fmt: skip
    partitions = {change_topic(PREFIX, t): 1 for t in tables}
    rows: dict[str, int] = {}
    resumed: dict[str, int] = {}
    reader = StoreReader(copy)
    try:
        totals = reader.count_rows()
        for table in tables:
            topic = change_topic(PREFIX, table)
            done = 0 if stored is None else min(stored.offsets.get(PartitionKey(topic, 0), 0), totals[table])
            resumed[table] = done
            rows[table] = 0
            batch: list[Event] = []
            for event in _events(reader, table, store_id, seq, skip=done):
                batch.append(event)
                if len(batch) >= batch_size:
                    rows[table] += _apply(destination, batch, partitions)
                    batch = []
                    if progress is not None:
                        progress(table, done + rows[table], totals[table])
            if batch:
                rows[table] += _apply(destination, batch, partitions)
            if progress is not None:
                progress(table, done + rows[table], totals[table])
    finally:
        reader.close()
    return rows, resumed


def _apply(destination: Loadable, events: list[Event], partitions: dict[str, int]) -> int:
    destination.apply(Batch(events, partitions))
    return len(events)


def _events(reader: StoreReader, table: str, store_id: str, seq: int, *, skip: int) -> Iterator[Event]:
    """The ``op=r`` events of ``table``'s rows in key order, decoded as a sink decodes them; offsets
    count rows from 0, and the first ``skip`` rows are passed over without converting them."""
    columns = table_columns(reader.conn, table)
    topic = change_topic(PREFIX, table)
    after: int | None = None
    offset = 0
    while True:
        chunk = reader.snapshot_chunk(table, columns, after, 1000)
        if not chunk:
            return
        for key, image in chunk:
            if offset >= skip:
                yield _event(table, image, topic=topic, offset=offset, store_id=store_id, seq=seq, key=key)
            offset += 1
        after = chunk[-1][0]


def _event(table: str, image: str, *, topic: str, offset: int, store_id: str, seq: int, key: int) -> Event:
    try:
        message = convert_snapshot_row(table, image, prefix=PREFIX, store_id=store_id, read_seq=seq, last=False)
    except Unfit as exc:
        raise MigrateError(f"the export's {table} row {key} cannot be carried: {exc}", hint="fix that row") from exc
    first = message.messages[0]
    assert first.value is not None
    schema, record = decode_any(first.value)
    hdrs = record_headers.parse(first.headers)
    return Event(topic, 0, offset, decode_key(first.key), schema, record, first.key, first.value, hdrs)


def named(exc: DestinationUnavailable | DestinationRefused, where: str, neo4j: Neo4jSettings | None) -> MigrateError:
    """A destination's failure as a command (not the sink) says it: the server's words and the
    operator's fix, and that a rerun resumes."""
    said, fix = exc.message, "fix what it names"
    if isinstance(exc, DestinationUnavailable):
        fix = "check that the server is up and the address right (`replicator stack status` for the local one)"
    elif neo4j is not None and exc.__cause__ is not None and exc.__cause__ is not exc:
        said, fix = faults.describe(exc.__cause__, neo4j)  # the server's words, not the sink's
    return MigrateError(f"{where}: {said}", hint=f"{fix}; then rerun: it resumes after the last batch written")
