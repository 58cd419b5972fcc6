"""The partitions a sink owns in its consumer group, and what the runner does to them on the
consumer: assign them at their stored offsets, pause and resume them all, rewind them to the
destination's stored position, and commit the offsets of what was applied."""

from __future__ import annotations

import logging

from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

from replicator.position import PartitionKey, SinkPosition
from replicator.sinks.clients import KafkaConsumer, RebalanceCallback

log = logging.getLogger("replicator.sink")


def stored_offset(stored: SinkPosition | None, key: PartitionKey) -> int:
    """Where a partition resumes: the destination's stored offset, the beginning without one."""
    return stored.offsets.get(key, OFFSET_BEGINNING) if stored is not None else OFFSET_BEGINNING


class Assignment:
    """Not thread-safe: the runner's thread, rebalance callbacks included (they run inside consume)."""

    def __init__(
        self, consumer: KafkaConsumer, topics: list[str], on_assign: RebalanceCallback, on_revoke: RebalanceCallback
    ) -> None:
        self.consumer = consumer
        self.topics = topics
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        #: The partitions this member owns now; events of any other are not applied.
        self.keys: set[PartitionKey] = set()
        self.paused = False

    def subscribe(self) -> None:
        self.consumer.subscribe(self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_revoke)  # fmt: skip

    def _partitions(self) -> list[TopicPartition]:
        return [TopicPartition(k.topic, k.partition) for k in sorted(self.keys)]

    def assigned(self, partitions: list[TopicPartition], stored: SinkPosition | None, use_committed: bool) -> None:
        """Take ``partitions`` (inside on_assign): at ``stored``'s offsets, or at Kafka's committed ones
        when ``use_committed``; paused too when every partition is."""
        for tp in partitions:
            key = PartitionKey(tp.topic, tp.partition)
            if not use_committed:
                tp.offset = stored_offset(stored, key)
            self.keys.add(key)
        self.consumer.assign(partitions)
        if self.paused:
            self.consumer.pause(partitions)
        log.info("partitions assigned",
                 extra={"partitions": [f"{tp.topic}/{tp.partition}@{tp.offset}" for tp in partitions]})  # fmt: skip

    def revoked(self, partitions: list[TopicPartition]) -> list[PartitionKey]:
        """Give ``partitions`` up (inside on_revoke or on_lost); returns their keys."""
        keys = [PartitionKey(tp.topic, tp.partition) for tp in partitions]
        self.keys.difference_update(keys)
        log.info("partitions revoked", extra={"partitions": [f"{tp.topic}/{tp.partition}" for tp in partitions]})
        return keys

    def pause_all(self) -> None:
        """Stop fetching every owned partition (polling goes on, so the group keeps this member)."""
        if not self.paused:
            self.consumer.pause(self._partitions())
            self.paused = True

    def resume_all(self) -> None:
        if self.paused:
            self.consumer.resume(self._partitions())
        self.paused = False

    def rewind(self, stored: SinkPosition | None) -> None:
        """Seek every owned partition to ``stored``'s offset (the beginning without one), then resume.
        A partition that never fetched cannot seek yet: then the member leaves the group and joins it
        again, and every partition comes back through on_assign at the stored position."""
        try:
            for key in sorted(self.keys):
                self.consumer.seek(TopicPartition(key.topic, key.partition, stored_offset(stored, key)))
        except KafkaException as exc:
            log.warning("seek failed; joining the group again to re-read from the stored position",
                        extra={"error": str(exc)})  # fmt: skip
            self.consumer.unsubscribe()  # revokes all; every partition comes back through on_assign
            self.keys.clear()
            self.paused = False
            self.subscribe()
        self.resume_all()

    def commit(self, position: SinkPosition) -> None:
        """Commit ``position``'s offsets of the owned partitions, asynchronously: Kafka's offsets only
        mirror the destination's position (for lag tools), so a failed commit is logged, not raised."""
        offsets = [TopicPartition(k.topic, k.partition, off) for k, off in position.offsets.items() if k in self.keys]
        if offsets:
            try:
                self.consumer.commit(offsets=offsets, asynchronous=True)
            except Exception as exc:  # the mirror may lag; the destination holds the truth
                log.warning("offset commit failed", extra={"error": str(exc)})
