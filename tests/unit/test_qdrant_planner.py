"""The Qdrant sink's pure planner: which points to write, embed, update in place, delete."""

from __future__ import annotations

import struct

import pytest

from replicator.embedding import MODEL_NAME
from replicator.sinks.batch import Event
from replicator.sinks.errors import PoisonEvent
from replicator.sinks.qdrant.planner import Plan, plan
from replicator.sinks.qdrant.points import (
    COMPUTED,
    EMBEDDING_SEQ,
    EMBEDDING_SOURCE,
    PENDING,
    SEQ,
    STORE,
    TEXT_SHA256,
    Payload,
    text_sha256,
)
from replicator.testing.events import Stream, entity_image, text_of

VERSION = "all-MiniLM-L6-v2@test"
BLOB = struct.pack("<384f", *([0.05] * 384))


def run(
    events: list[Event], points: dict[int, Payload] | None = None, tombstones: dict[int, int] | None = None
) -> Plan:
    return plan(events, points or {}, tombstones or {}, MODEL_NAME, VERSION)


def stored(image: Payload, seq: int, embedding_seq: int = 0) -> Payload:
    """The payload the sink leaves after applying ``image`` at ``seq``."""
    return {**image, SEQ: seq, EMBEDDING_SEQ: embedding_seq, TEXT_SHA256: text_sha256(text_of(image))}


def test_create_embeds_the_entity_text_and_carries_every_field() -> None:
    s = Stream()
    ada = entity_image(1, "Ada", "person", ["wrote programs"], confidence=0.8, metadata='{"k": 1}')

    result = run([s.entity("c", 5, ada)])

    [write] = result.writes
    assert write.id == 1 and write.text == "Ada person wrote programs" and write.store_vector is None
    assert result.texts_to_embed == ["Ada person wrote programs"]
    assert write.payload["confidence"] == 0.8 and write.payload["metadata"] == '{"k": 1}'
    assert write.payload[SEQ] == 5 and write.payload[EMBEDDING_SOURCE] == COMPUTED
    assert write.payload[TEXT_SHA256] == text_sha256("Ada person wrote programs")


def test_change_that_keeps_the_text_is_payload_only() -> None:
    s = Stream()
    ada = entity_image(1, "Ada", "person", ["x"])

    result = run([s.entity("u", 7, {**ada, "confidence": 0.3, "version": 2})], points={1: stored(ada, 5)})

    assert result.writes == [] and result.texts_to_embed == []
    assert result.payload_updates[1]["confidence"] == 0.3 and result.payload_updates[1][SEQ] == 7


@pytest.mark.parametrize("change", [{"name": "Ada L"}, {"observations": ["x", "y"]}, {"entity_type": "human"}])
def test_rename_observation_or_type_edit_re_embeds(change: dict[str, object]) -> None:
    s = Stream()
    ada = entity_image(1, "Ada", "person", ["x"])

    result = run([s.entity("u", 7, {**ada, **change})], points={1: stored(ada, 5)})

    assert [w.text for w in result.writes] == [text_of({**ada, **change})]


def test_not_newer_than_the_point_or_its_tombstone_changes_nothing() -> None:
    s = Stream()
    ada = entity_image(1, "Ada")
    events = [s.entity("c", 5, ada), s.entity("u", 6, {**ada, "name": "B"})]

    assert run(events, points={1: stored(ada, 6)}).empty
    assert run(events, tombstones={1: 9}).empty
    assert run(events, tombstones={1: 9}).skipped == 2


def test_only_the_newest_change_of_a_batch_counts() -> None:
    s = Stream()
    ada = entity_image(1, "Ada")

    result = run(
        [s.entity("c", 5, ada), s.entity("u", 6, {**ada, "name": "B"}), s.entity("u", 8, {**ada, "name": "C"})]
    )

    assert [w.payload["name"] for w in result.writes] == ["C"] and result.writes[0].payload[SEQ] == 8


def test_delete_removes_the_point_and_keeps_a_tombstone() -> None:
    s = Stream()
    ada = entity_image(1, "Ada")

    result = run([s.entity("d", 9, ada), s.embedding(8, 1, BLOB, text_of(ada))], points={1: stored(ada, 5)})

    assert result.deletes == [1] and result.tombstones == {1: 9} and result.writes == []


def test_store_vector_in_the_same_batch_is_reused_instead_of_computing() -> None:
    s = Stream()
    ada = entity_image(1, "Ada", "person", ["x"])

    result = run([s.entity("c", 5, ada), s.embedding(6, 1, BLOB, text_of(ada))])

    [write] = result.writes
    assert write.store_vector == BLOB and write.text is None and result.texts_to_embed == []
    assert result.reused == 1 and write.payload[EMBEDDING_SOURCE] == STORE and write.payload[EMBEDDING_SEQ] == 6
    assert write.payload[SEQ] == 5 and write.payload["name"] == "Ada"


def test_store_vector_of_another_text_or_model_is_not_reused() -> None:
    s = Stream()
    ada = entity_image(1, "Ada", "person", ["x"])

    stale = run([s.entity("c", 5, ada), s.embedding(4, 1, BLOB, "Ada person old")])
    other = run([s.entity("c", 5, ada), s.embedding(6, 1, BLOB, text_of(ada), model="other-model")])

    for result in (stale, other):
        assert result.reused == 0 and result.texts_to_embed == [text_of(ada)] and result.skipped == 1


def test_store_vector_arriving_later_replaces_the_computed_one_only_for_the_same_text() -> None:
    s = Stream()
    ada = entity_image(1, "Ada", "person", ["x"])
    point = {1: {**stored(ada, 5), EMBEDDING_SOURCE: COMPUTED}}

    same = run([s.embedding(6, 1, BLOB, text_of(ada))], points=point)
    older = run([s.embedding(4, 1, BLOB, "Ada person y")], points={1: {**point[1], EMBEDDING_SEQ: 3}})

    assert same.reused == 1 and same.writes[0].payload["name"] == "Ada" and same.writes[0].payload[SEQ] == 5
    assert older.empty and older.skipped == 1  # older than the entity's text: stale


def test_store_vector_newer_than_the_entity_waits_for_its_entity_change() -> None:
    """Cross-topic reorder: the entity changes its text at seq 6 and the writer stores its embedding
    at seq 7; the embedding arrives first. It must be kept, and the entity change then reuses it."""
    s = Stream()
    ada = entity_image(1, "Ada", "person", ["x"])
    renamed = {**ada, "observations": ["y"]}
    point = {1: {**stored(ada, 5), EMBEDDING_SOURCE: COMPUTED}}

    first = run([s.embedding(7, 1, BLOB, text_of(renamed))], points=point)
    [write] = first.writes
    assert write.store_vector == BLOB and write.payload[TEXT_SHA256] == text_sha256(text_of(renamed))
    assert write.payload[SEQ] == 5  # the entity fields wait for their own change

    then = run([s.entity("u", 6, renamed)], points={1: write.payload})
    assert then.writes == [] and then.texts_to_embed == [] and then.payload_updates[1][SEQ] == 6


def test_store_vector_arriving_first_makes_the_entity_payload_only() -> None:
    s = Stream()
    ada = entity_image(1, "Ada", "person", ["x"])

    first = run([s.embedding(6, 1, BLOB, text_of(ada))])
    [write] = first.writes
    assert write.payload[SEQ] == 0 and write.payload[TEXT_SHA256] == text_sha256(text_of(ada))

    then = run([s.entity("c", 5, ada)], points={1: write.payload})
    assert then.writes == [] and then.payload_updates[1][SEQ] == 5 and then.payload_updates[1]["name"] == "Ada"


def test_embedding_replayed_or_deleted_changes_nothing() -> None:
    s = Stream()
    ada = entity_image(1, "Ada")

    replay = run([s.embedding(6, 1, BLOB, text_of(ada))], points={1: stored(ada, 5, embedding_seq=6)})
    delete = run([s.embedding(7, 1, BLOB, text_of(ada), op="d")], points={1: stored(ada, 5)})

    assert replay.empty and delete.empty


def test_identical_texts_are_embedded_once() -> None:
    s = Stream()
    events = [s.entity("c", 1, entity_image(1, "Same")), s.entity("c", 2, entity_image(2, "Same"))]

    assert run(events).texts_to_embed == ["Same concept "]


def test_heartbeats_are_not_changes_and_a_change_without_image_is_poison() -> None:
    s = Stream()
    beat = s.heartbeat(s.entities, 10)
    bad = s.entity("c", 3, entity_image(1, "Ada"))
    broken = type(bad)(bad.topic, bad.partition, bad.offset, 1, bad.schema, {**bad.record, "after": None})  # type: ignore[dict-item]

    assert run([beat]).empty
    with pytest.raises(PoisonEvent) as caught:
        run([beat, broken])
    assert caught.value.index == 1


def test_a_store_vector_two_text_changes_ahead_is_kept_while_they_arrive() -> None:
    """The embeddings partition ran ahead of the entities partition by two text changes (seen after a
    broker failover: a rebalance and catch-up reads). Each entity change then arrives in a batch of
    its own, older than the point's store vector: neither may replace it with a computed vector."""
    s = Stream()
    ada = entity_image(1, "Ada", "person", ["x"])
    y, z = {**ada, "observations": ["y"]}, {**ada, "observations": ["z"]}
    ahead = run([s.embedding(7, 1, BLOB, text_of(y)), s.embedding(9, 1, BLOB, text_of(z))],
                points={1: {**stored(ada, 5), EMBEDDING_SOURCE: COMPUTED}})  # fmt: skip
    [write] = ahead.writes
    assert write.payload[EMBEDDING_SEQ] == 9 and write.payload[TEXT_SHA256] == text_sha256(text_of(z))

    older = run([s.entity("u", 6, y)], points={1: write.payload})
    assert older.writes == [] and older.texts_to_embed == [] and older.payload_updates[1][SEQ] == 6
    point = {**write.payload, **older.payload_updates[1]}
    matching = run([s.entity("u", 8, z)], points={1: point})
    assert matching.writes == [] and matching.payload_updates[1][SEQ] == 8


def test_a_tombstone_deletes_unless_the_point_is_newer() -> None:
    """Compaction leaves only the key's tombstone: it is the delete, at the seq of its header."""
    s = Stream()
    todo = plan([s.tombstone(9, 1)], {1: {"id": 1, SEQ: 4}}, {}, MODEL_NAME, "v")
    assert todo.deletes == [1] and todo.tombstones == {1: 9}
    newer = plan([s.tombstone(9, 1)], {1: {"id": 1, SEQ: 12}}, {}, MODEL_NAME, "v")
    assert newer.empty and newer.skipped == 1


def test_tombstones_without_a_seq_or_of_embeddings_delete_nothing() -> None:
    s = Stream()
    todo = plan([s.tombstone(None, 1), s.tombstone(9, 2, s.embeddings)], {1: {"id": 1, SEQ: 4}, 2: {"id": 2, SEQ: 4}},
                {}, MODEL_NAME, "v")  # fmt: skip
    assert todo.empty and todo.skipped == 2


def test_a_snapshot_entity_is_written_pending_without_a_model_call_and_its_store_vector_then_replaces_it() -> None:
    """The snapshot reads entities before embeddings: computing the entity's vector first was wasted."""
    s = Stream()
    ada = entity_image(1, "Ada", "person", ["x"])

    first = plan([s.entity("r", 9, ada)], {}, {}, MODEL_NAME, VERSION, defer_snapshot=True)

    [write] = first.writes
    assert first.texts_to_embed == [] and write.pending and write.text is None and write.store_vector is None
    assert write.payload[EMBEDDING_SOURCE] == PENDING and write.payload[SEQ] == 9
    assert write.payload[TEXT_SHA256] == text_sha256(text_of(ada)) and write.document == text_of(ada)
    then = plan([s.embedding(9, 1, BLOB, text_of(ada), op="r")], {1: write.payload}, {}, MODEL_NAME, VERSION,
                defer_snapshot=True)  # fmt: skip
    [vector] = then.writes
    assert vector.store_vector == BLOB and vector.payload[EMBEDDING_SOURCE] == STORE and then.texts_to_embed == []
    # the same text changed again before the fill: payload-only, still pending (the fill computes it)
    same = plan([s.entity("u", 10, {**ada, "confidence": 0.5})], {1: write.payload}, {}, MODEL_NAME, VERSION,
                defer_snapshot=True)  # fmt: skip
    assert same.writes == [] and list(same.payload_updates) == [1]


def test_only_snapshot_entities_are_deferred() -> None:
    s = Stream()
    ada = entity_image(1, "Ada", "person", ["x"])

    streamed = plan([s.entity("c", 9, ada)], {}, {}, MODEL_NAME, VERSION, defer_snapshot=True)
    undeferred = run([s.entity("r", 9, ada)])

    assert streamed.texts_to_embed == [text_of(ada)] and not streamed.writes[0].pending
    assert undeferred.texts_to_embed == [text_of(ada)] and undeferred.pending == 0


def test_chunks_split_the_point_writes_and_keep_every_other_outcome_once() -> None:
    s = Stream()
    images = [entity_image(i, f"e{i}") for i in range(1, 6)]
    events = [s.entity("c", i, image) for i, image in enumerate(images, start=1)]
    result = run([*events, s.entity("d", 9, entity_image(7, "gone"))])

    parts = result.chunks(2)

    assert [len(p.writes) for p in parts] == [2, 2, 1]
    assert [w.id for p in parts for w in p.writes] == [w.id for w in result.writes]
    assert [p.deletes for p in parts] == [[], [], [7]] and parts[-1].tombstones == {7: 9}
