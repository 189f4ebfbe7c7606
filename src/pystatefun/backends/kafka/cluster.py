"""The other workers of an application: which one owns a partition, and where its HTTP servers are.

Each worker names its HTTP ingress and admin API in the ``client.id`` of its consumer of
``<app>.messages`` (:func:`client_id`); the group coordinator reports every member's client id with
the partitions it was assigned, so one describe call of the group tells any worker where every partition
is served, with no registry of our own to keep in step with the group. The answer is cached briefly:
between rebalances it does not change, and a request that meets a stale view is refused by the worker it
went to (not the owner any more) and tried again with a fresh one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from dataclasses import dataclass

from confluent_kafka.admin import AdminClient, ConsumerGroupDescription

PREFIX = "pystatefun"
SEPARATOR = "|"  # in none of a worker id, a URL or the prefix
DESCRIBE_TIMEOUT_SECONDS = 10
FRESH_FOR_SECONDS = 2.0


@dataclass(frozen=True)
class WorkerUrls:
    """Where a worker serves HTTP (None: it does not serve that one)."""

    ingress: str | None
    admin: str | None


@dataclass(frozen=True)
class Member:
    worker_id: str
    urls: WorkerUrls
    partitions: frozenset[int]


def client_id(worker_id: str, urls: WorkerUrls) -> str:
    return SEPARATOR.join([PREFIX, worker_id, urls.ingress or "", urls.admin or ""])


def parse_client_id(text: str) -> tuple[str, WorkerUrls] | None:
    """The worker id and URLs in a member's client id (None: not one of our workers)."""
    parts = text.split(SEPARATOR)
    if len(parts) != 4 or parts[0] != PREFIX:
        return None
    return parts[1], WorkerUrls(parts[2] or None, parts[3] or None)


class GroupView:
    """The members of the application's consumer group and their partitions of ``topic``."""

    def __init__(self, admin: AdminClient, group: str, topic: str):
        self.admin = admin
        self.group = group
        self.topic = topic
        self._members: list[Member] = []
        self._read_at = float("-inf")
        self._reading: asyncio.Task | None = None

    async def members(self, fresh: bool = False) -> list[Member]:
        """The members as of at most FRESH_FOR_SECONDS ago (``fresh``: as of now); concurrent callers
        share one describe call."""
        if fresh or time.monotonic() - self._read_at > FRESH_FOR_SECONDS:
            if self._reading is None or self._reading.done():
                self._reading = asyncio.get_running_loop().create_task(self._describe())
            await asyncio.shield(self._reading)
        return self._members

    async def owner(self, partition: int, fresh: bool = False) -> Member | None:
        for member in await self.members(fresh):
            if partition in member.partitions:
                return member
        return None

    async def _describe(self) -> None:
        self._members = members_of(await asyncio.wrap_future(self._describe_future()), self.topic)
        self._read_at = time.monotonic()

    def worker_ids(self) -> set[str]:
        """The ids of the workers in the group now (a blocking call, for the consumer thread)."""
        return {member.worker_id for member in members_of(self._describe_future().result(DESCRIBE_TIMEOUT_SECONDS), self.topic)}

    def _describe_future(self) -> concurrent.futures.Future:
        return self.admin.describe_consumer_groups([self.group], request_timeout=DESCRIBE_TIMEOUT_SECONDS)[self.group]


def members_of(description: ConsumerGroupDescription, topic: str) -> list[Member]:
    """Our workers in a group's description, with their partitions of ``topic``."""
    members = []
    for member in description.members:
        parsed = parse_client_id(member.client_id)
        if parsed is None:
            continue
        assigned = member.assignment.topic_partitions if member.assignment else []
        members.append(Member(parsed[0], parsed[1], frozenset(tp.partition for tp in assigned if tp.topic == topic)))
    return members
