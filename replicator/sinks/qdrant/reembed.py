"""Re-embed every point of the collection (after a model or package change) while a live sink keeps
applying changes to it.

Qdrant has no transactions, but (since server 1.16/1.17) an upsert can be *conditional*: with
``update_filter`` it only replaces points that still match the filter, and ``update_mode=update_only``
never re-creates a point the live sink deleted meanwhile. Each batch therefore

1. scrolls a page of points and computes their vectors from the payload's entity fields (slow);
2. re-reads the page and drops points whose ``_seq``, ``_embedding_seq`` or ``text_sha256`` moved
   (cheap pre-check, saves a doomed write);
3. upserts vector + payload + the new labels with a per-point filter "id = i AND _seq = s AND
   _embedding_seq = e AND text_sha256 = h" (the values read in step 2), update-only.

Every write of the live sink to a point changes ``_seq`` (entity changes) or ``_embedding_seq`` (store
vectors), so step 3 is a compare-and-set per point: a point changed by the live sink after step 2 is
left alone, whatever the timing. The remaining window is the other way round: the live sink plans a
batch from state it read *before* our write and then writes a whole point (new text, or a store
vector) computed with its own model; that write is newer data and wins, labelled with the live sink's
model version. Points skipped or overwritten that way keep a correct vector for their text, only
with the older label; run ``reembed --stale-only`` again to finish them. Points still awaiting their
entity (``_seq`` = 0) have no entity text to embed and are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from qdrant_client import QdrantClient, models

from replicator.embedding import MODEL_NAME
from replicator.errors import ConfigError
from replicator.events.values import embedding_text
from replicator.sinks.layouts import CAXTON
from replicator.sinks.qdrant import layout as qlayout
from replicator.sinks.qdrant.embedder import Embedder
from replicator.sinks.qdrant.faults import qdrant_errors
from replicator.sinks.qdrant.points import (
    COMPUTED,
    EMBEDDING_MODEL,
    EMBEDDING_MODEL_VERSION,
    EMBEDDING_SEQ,
    EMBEDDING_SOURCE,
    SEQ,
    TEXT_SHA256,
    Payload,
    entity_values,
    seq_of,
    text_sha256,
)
from replicator.sinks.qdrant.reader import is_entity_point

#: What a failure tells the operator to run again (faults.py: a command, not the sink).
COMMAND = "replicator sink qdrant reembed"
#: update_filter on upsert arrived in Qdrant 1.16, update_mode in 1.17.
MIN_SERVER = (1, 17)


@dataclass
class ReembedReport:
    seen: int = 0
    reembedded: int = 0
    moved: int = 0  # changed by the live sink meanwhile: left as the live sink wrote it
    awaiting_entity: int = 0  # only a store vector so far, no text to embed
    current: int = 0  # already labelled with this version (--stale-only)
    foreign: int = 0  # stored by another client (mcp-server-qdrant's uuid ids): not the sink's, left alone


def check_server(client: QdrantClient, where: str) -> None:
    """Refuse servers without conditional upserts (an older one would overwrite unconditionally)."""
    with qdrant_errors("reading the server version", where, COMMAND):
        version = client.info().version
    numbers = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if numbers < MIN_SERVER:
        raise ConfigError(
            f"Qdrant at {where} is {version}; reembed needs >= {'.'.join(map(str, MIN_SERVER))} for "
            "conditional upserts (update_filter, update_mode)",
            hint="upgrade the server, or stop the live sink and run reembed then",
        )


def _guard(point_id: int, payload: Payload) -> models.Filter:
    """The point as read: id and its three change markers."""
    conditions: list[Any] = [models.HasIdCondition(has_id=[point_id])]
    for key in (SEQ, EMBEDDING_SEQ, TEXT_SHA256):
        value = payload.get(key)
        if value is None:
            conditions.append(models.IsEmptyCondition(is_empty=models.PayloadField(key=key)))
        else:
            conditions.append(models.FieldCondition(key=key, match=models.MatchValue(value=value)))
    return models.Filter(must=conditions)


def _markers(payload: Payload) -> tuple[Any, Any, Any]:
    return payload.get(SEQ), payload.get(EMBEDDING_SEQ), payload.get(TEXT_SHA256)


def _text(payload: Payload) -> str:
    values = entity_values(payload)
    return embedding_text(values["name"], values["entity_type"], values["observations"])


def point_text(layout: str, payload: Payload) -> str:
    """The text a point's vector embeds, from its stored payload (in ``layout``). Pure."""
    return _text(qlayout.from_payload(layout, payload))


def relabelled(
    layout: str, point_id: int, payload: Payload, vectors: dict[str, Any], version: str
) -> models.PointStruct:
    """The point re-embedded: its text's new vector (``vectors`` by text), labelled with ``version``, in
    ``layout``. ``payload``: as stored (in ``layout``). Pure."""
    entity = qlayout.from_payload(layout, payload)  # the layout's owner: Caxton fields both ways
    text = _text(entity)
    labelled = {**entity, TEXT_SHA256: text_sha256(text), EMBEDDING_MODEL: MODEL_NAME,
                EMBEDDING_MODEL_VERSION: version, EMBEDDING_SOURCE: COMPUTED}  # fmt: skip
    return models.PointStruct(id=point_id, vector=qlayout.point_vector(layout, vectors[text]),
                              payload=qlayout.to_payload(layout, labelled, text))  # fmt: skip


def reembed_page(
    client: QdrantClient,
    collection: str,
    embedder: Embedder,
    page: Sequence[models.Record],
    report: ReembedReport,
    *,
    where: str,
    stale_only: bool = False,
    layout: str = CAXTON,
    before_write: Callable[[], None] | None = None,
) -> None:
    """Steps 2-3 for one scrolled page of a collection in ``layout``. ``before_write`` runs between the
    re-read and the conditional write (tests use it to land a live change in the tightest window).
    Raises DestinationUnavailable."""
    report.seen += len(page)
    todo: dict[int, Payload] = {}
    for record in page:
        payload = dict(record.payload or {})
        if not is_entity_point(record.id):
            report.foreign += 1
        elif seq_of(payload) == 0:
            report.awaiting_entity += 1
        elif stale_only and payload.get(EMBEDDING_MODEL_VERSION) == embedder.version:
            report.current += 1
        else:
            todo[int(record.id)] = payload
    if not todo:
        return
    vectors = embedder.embed([point_text(layout, p) for p in todo.values()])
    with qdrant_errors("re-reading points before re-embedding them", where, COMMAND):
        fresh = {int(r.id): dict(r.payload or {}) for r in client.retrieve(collection, list(todo), with_payload=True)}
    unchanged = {i: fresh[i] for i, p in todo.items() if i in fresh and _markers(fresh[i]) == _markers(p)}
    if before_write is not None:
        before_write()
    if unchanged:
        points = [relabelled(layout, i, payload, vectors, embedder.version) for i, payload in unchanged.items()]
        guard = models.Filter(should=[_guard(i, p) for i, p in unchanged.items()])
        with qdrant_errors("writing re-embedded points", where, COMMAND):
            client.upsert(collection, points, update_filter=guard, update_mode=models.UpdateMode.UPDATE_ONLY)
            after = client.retrieve(collection, list(unchanged), with_payload=True)
        done = {
            int(r.id)
            for r in after
            if r.payload and r.payload.get(EMBEDDING_MODEL_VERSION) == embedder.version
            and r.payload.get(SEQ) == unchanged[int(r.id)].get(SEQ)
        }  # fmt: skip
        report.reembedded += len(done)
        report.moved += len(todo) - len(done)
    else:
        report.moved += len(todo)


def reembed(
    client: QdrantClient,
    collection: str,
    embedder: Embedder,
    page_size: int = 64,
    *,
    stale_only: bool = False,
    where: str = "qdrant",
    layout: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReembedReport:
    """Re-embed every point of ``collection`` page by page (see the module doc for the concurrency
    contract), in ``layout`` (None: the one the collection holds). ``progress(n)`` is called after
    each page with the points it covered. Safe to run again (it converges); safe to interrupt. Raises
    ConfigError (server too old, no collection, another layout), DestinationUnavailable, ModelError."""
    if page_size < 1:
        raise ConfigError(f"page size {page_size} is below 1", hint="e.g. --batch-size 64")
    check_server(client, where)
    with qdrant_errors("opening the collection", where, COMMAND):
        if not client.collection_exists(collection):
            raise ConfigError(f"Qdrant at {where} has no collection {collection!r}", hint="check --collection")
        held = qlayout.layout_of(client.get_collection(collection).config.params.vectors)
    if held is None or (layout is not None and held != layout):
        raise ConfigError(f"Qdrant collection {collection!r} holds the {held or 'no known'} layout, not {layout}",
                          hint=f"pass --layout {held}, as the sink was run (docs/layouts.md)" if held else
                          "re-embed only a collection the Qdrant sink wrote")  # fmt: skip
    report = ReembedReport()
    offset: Any = None
    while True:
        with qdrant_errors("scrolling points", where, COMMAND):
            page, offset = client.scroll(collection, limit=page_size, offset=offset, with_payload=True)
        reembed_page(client, collection, embedder, page, report, where=where, stale_only=stale_only, layout=held)
        if progress is not None:
            progress(len(page))
        if offset is None:
            return report


def count_points(client: QdrantClient, collection: str, where: str) -> int:
    with qdrant_errors("counting points", where, COMMAND):
        return int(client.count(collection, exact=True).count)
