"""Commits: sealing the open epoch and writing it through the backend, in order.

Part of the Runtime (processor.py holds its fields). The commit loop seals an epoch every interval (or
at once when someone waits and nothing else is ready), hands it to the store and, once it is durable,
releases what waited for it: answers, egress records, spilled overflow. A full disk keeps the sealed
epoch and retries; any other failed commit stops the runtime.
"""

from __future__ import annotations

import asyncio
import logging
import time

from pystatefun.runtime.epoch import Epoch, StoreFullError
from pystatefun.runtime.waiting import wait_for_event

log = logging.getLogger("pystatefun.runtime")

STORE_FULL_RETRY_SECONDS = 1.0  # how often a commit is tried again while the disk is full


class Committing:
    """Epoch commits. A part of Runtime (processor.py), which holds the fields used here."""

    async def _commit_loop(self) -> None:
        while True:
            await wait_for_event(self._commit_now, self.commit_interval)
            self._commit_now.clear()
            # shielded: a commit once begun completes even when stop() cancels this loop
            self._committing = asyncio.get_running_loop().create_task(self.commit_async())
            await asyncio.shield(self._committing)

    def request_commit(self) -> None:
        self._commit_now.set()

    def commit(self) -> None:
        """Commits the open epoch and opens the next, on this thread (at shutdown, and in tests)."""
        epoch, started = self._seal()
        if not epoch.empty:
            self.store.commit(epoch, self.partition_of)
        self._after_commit(epoch, started)

    async def commit_async(self) -> None:
        """The same, with the backend's slow part (the embedded store's fsync, the Kafka transaction) in its
        committer thread while the loop goes on processing the next epoch: a busy runtime overlaps its
        commits with its work."""
        async with self._commit_lock:  # one commit at a time: the commit loop's, or a hand-over's
            epoch, started = self._seal()
            if not epoch.empty:
                await self._write(epoch)
            self._after_commit(epoch, started)

    async def _write(self, epoch: Epoch) -> None:
        """Commits a sealed epoch. While the disk is full the runtime stays up: the epoch waits in memory,
        unacknowledged, and is tried again every second; meanwhile ``unavailable`` says why,
        ingresses refuse new messages and no new batch starts, so what waits stays bounded. Epochs
        commit in order, so nothing after this one commits before it does."""
        while True:
            try:
                await self.store.commit_async(epoch, self.partition_of)
            except StoreFullError as e:
                if not self.running:
                    raise  # stopping: stop() says what that means
                if self.unavailable is None:
                    log.error("cannot commit epoch %d: %s. New messages from outside are refused (507) and "
                              "processing waits until there is space; nothing acknowledged is lost",
                              epoch.number, e)
                self.unavailable = str(e)
                await asyncio.sleep(STORE_FULL_RETRY_SECONDS)
                continue
            if self.unavailable is not None:
                log.warning("epoch %d committed: the disk has space again, processing goes on", epoch.number)
                self.unavailable = None
                self._wake.set()
            return

    def _seal(self) -> tuple[Epoch, float]:
        """Closes the open epoch for its commit and opens the next. The sealed epoch's state goes into the
        caches at once, so the next epoch reads it while it commits; nothing leaves the process (answers,
        egress records) before the commit is on disk, and a failed commit stops the runtime."""
        epoch = self.epoch
        self.epoch = Epoch(epoch.number + 1)
        for envelope in epoch.volatile:
            envelope.seq = self._next_seq
            self._next_seq += 1
        for key, (values, _) in epoch.state.items():
            self.processors[epoch.partitions_of_state[key]].cache[key] = values
        for processor in self.processors.values():
            if len(processor.cache) > self.max_cached_addresses // self.partitions:
                processor.cache.clear()  # committed values only: they reload from the store
        now = self.clock()
        # idle mailboxes are swept once per commit interval, not at every seal: under load group commits
        # seal every few milliseconds, and a sweep at each dropped and remade the mailbox of every address
        # that got a message only every few tens of milliseconds (one Mailbox per request). The clock is
        # the wall's: a step back sweeps at once rather than not until it is caught up
        if now - self._swept_at >= self.commit_interval or now < self._swept_at:
            self._swept_at = now
            self._drop_idle_mailboxes()
        for listener in self.on_seal:
            listener(epoch)
        return epoch, time.perf_counter()

    def _after_commit(self, epoch: Epoch, started: float) -> None:
        if not epoch.empty:
            seconds = time.perf_counter() - started
            if self.on_commit is not None:
                self.on_commit(seconds, epoch.size())
            self.recent_commits.add(seconds)
            self.flows.tick()
            self.commits += 1
            if epoch.overflowing and self.spill:
                self._spill_overflow(epoch)
            for egress in {id(e): e for e in self.egresses.values()}.values():
                egress.committed(epoch)
        epoch.done.set_result(None)
