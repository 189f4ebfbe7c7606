"""Reading one partition through once, from an offset to where it ended when the reading began: a
changelog partition restored on assignment, the dead letters listed by the admin API."""

from __future__ import annotations

import math
import time
import typing

from confluent_kafka import Consumer, Message, TopicPartition

from pystatefun.io.kafka import consume_batch

BATCH_RECORDS = 1000
POLL_SECONDS = 0.2


class PartitionReader:
    """A read_committed reader of one partition, outside any consumer group's assignment (``group`` only
    names it to the brokers). Use it as a context manager: it closes its consumer."""

    def __init__(self, client_config: typing.Mapping[str, typing.Any], group: str, topic: str, partition: int):
        self.partition = TopicPartition(topic, partition)
        self.position = 0  # the next offset to read, after ``batches`` began
        self._consumer = Consumer({**client_config, "group.id": group, "enable.auto.commit": False,
                                   "isolation.level": "read_committed"})

    def __enter__(self) -> PartitionReader:
        return self

    def __exit__(self, *_: object) -> None:
        self._consumer.close()

    def watermarks(self, timeout: float) -> tuple[int, int]:
        """(first offset, offset after the last record) as the partition's leader has them now."""
        return self._consumer.get_watermark_offsets(self.partition, timeout=timeout, cached=False)

    def batches(self, start: int, end: int, deadline: float = math.inf,
                max_records: int = BATCH_RECORDS) -> typing.Iterator[list[Message]]:
        """The committed records from ``start`` up to ``end``, a batch at a time (possibly empty: the
        position also moves past transaction markers and aborted records, which are never delivered),
        until ``deadline`` (time.monotonic()): an open transaction holds read_committed readers back."""
        self.position = start
        if start >= end:
            return
        self._consumer.assign([TopicPartition(self.partition.topic, self.partition.partition, start)])
        while self.position < end and time.monotonic() < deadline:
            batch = [record for record in consume_batch(self._consumer, max_records, POLL_SECONDS)
                     if record.error() is None]
            self.position = max(self.position, self._consumer.position([self.partition])[0].offset)
            yield batch
