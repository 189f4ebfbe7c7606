"""A parked address holds its own messages, not its senders: an ingress or another function sending to
it goes on at once (the messages wait on disk, or in memory up to a bound where the runtime cannot spill),
and a request waiting on a reply from it learns at once that it is parked, wherever its message waits:
in memory, spilled to disk, or read back from the inbox after a crash."""

from __future__ import annotations

import asyncio

from pystatefun import StatefulFunctions, StringType
from pystatefun.io.playground import PlaygroundIngress
from pystatefun.runtime import routing
from pystatefun.runtime.envelope import address

from .harness import Clock, Node, until

STRING = "application/vnd.io.statefun.types/string"


def fragile_functions(got: list[str], gate: asyncio.Event | None = None) -> StatefulFunctions:
    """t/fragile raises on "poison" (after ``gate`` is set, when one is given) while ``got`` holds no
    "fixed" mark; it notes and answers the rest."""
    functions = StatefulFunctions()

    @functions.bind("t/fragile")
    async def fragile(context, message):
        text = message.as_string()
        if text == "poison" and "fixed" not in got:
            if gate is not None:
                await gate.wait()
            raise RuntimeError("cannot digest poison")
        got.append(text)
        if context.caller is not None:
            context.reply(str_value=f"ok {text}")

    return functions


def run(coroutine) -> None:
    asyncio.run(asyncio.wait_for(coroutine, 60))


class Running:
    """A Node whose requests the playground ingress takes and answers, committing every few milliseconds
    as the runtime's commit loop does (a Node commits only when asked)."""

    def __init__(self, node: Node):
        self.node = node
        self.ingress = PlaygroundIngress(node.runtime, node.store)
        node.runtime.reply_sink = self.ingress
        self._commits = asyncio.ensure_future(self._commit_loop())

    @classmethod
    async def start(cls, data_dir, functions: StatefulFunctions, **options) -> "Running":
        return cls(await Node(data_dir, functions, Clock(), **options).start())

    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            self.node.runtime.commit()

    async def stop(self) -> None:
        self._commits.cancel()
        await self.node.stop()

    async def crash(self) -> None:
        self._commits.cancel()
        await self.node.crash()


def mailbox_of(node: Node, id: str):
    return node.runtime.processors[node.runtime.partition_of(id)].mailboxes[("t/fragile", id)]


async def parked(node: Node, id: str, ingress: PlaygroundIngress) -> None:
    """Sends the poison to t/fragile/``id`` and waits until the address is parked."""
    assert (await ingress.send("t/fragile", id, STRING, StringType.serializer().serialize("poison"), None, None)).status == 202
    await until(lambda: mailbox_of(node, id).parked is not None, "the address parks")


def test_senders_to_a_parked_address_go_on_and_its_messages_wait_on_disk(tmp_path):
    got: list[str] = []

    async def scenario():
        app = await Running.start(tmp_path, fragile_functions(got), max_backlog=2)
        node, ingress = app.node, app.ingress
        await parked(node, "a", ingress)
        target = address("t/fragile", "a")
        for n in range(200):  # far past the backlog: an ingress (Kafka, Kinesis) asks has_room, then admit
            assert node.runtime.has_room(target) or await asyncio.wait_for(node.runtime.admit(target), 5)
            node.send("t/fragile", "a", f"m{n}", StringType)
        answer = await asyncio.wait_for(  # the HTTP ingress takes one more too
            ingress.send("t/fragile", "a", STRING, StringType.serializer().serialize("m200"), None, None), 5)
        assert answer.status == 202
        mailbox = mailbox_of(node, "a")
        await until(lambda: not mailbox.overflow, "the next commit spills the overflow")
        assert mailbox.spilled > 150  # on disk, not in memory
        got.append("fixed")
        assert node.runtime.resume(target)
        await until(lambda: len(got) == 203, "the resumed address runs its messages")
        assert got == ["fixed", "poison"] + [f"m{n}" for n in range(201)]  # each once, in order
        await app.stop()

    run(scenario())


def test_where_the_runtime_cannot_spill_a_parked_address_holds_a_bounded_number_and_the_ingress_says_so(
        tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(routing, "PARKED_OVERFLOW_LIMIT", 20)
    got: list[str] = []

    async def scenario():
        app = await Running.start(tmp_path, fragile_functions(got), max_backlog=2, spill=False)
        node, ingress = app.node, app.ingress
        await parked(node, "b", ingress)
        target = address("t/fragile", "b")
        for n in range(40):
            if not node.runtime.has_room(target):
                break
            node.send("t/fragile", "b", f"m{n}", StringType)
        mailbox = mailbox_of(node, "b")
        assert len(mailbox.overflow) == 20  # the bound: then back-pressure, as for any full address
        waiting = asyncio.ensure_future(node.runtime.admit(target))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        assert "t/fragile/b is parked and holds" in caplog.text  # the log says why the sender waits
        answer = await ingress.send("t/fragile", "b", STRING, StringType.serializer().serialize("late"), "30", None)
        assert answer.status == 503 and answer.headers["Retry-After"]  # at once, not after 30 s
        assert "t/fragile/b is parked and holds" in answer.body.decode() and "cannot digest poison" in answer.body.decode()
        other = await asyncio.wait_for(ingress.send("t/fragile", "c", STRING, StringType.serializer().serialize("x"),
                                                    None, None), 5)
        assert other.status == 202  # other addresses go on
        got.append("fixed")
        assert node.runtime.resume(target)
        assert await asyncio.wait_for(waiting, 10) is True
        await app.stop()

    run(scenario())


def test_a_waiting_request_learns_at_once_that_its_address_parked_wherever_its_message_waits(tmp_path):
    got: list[str] = []
    poison = StringType.serializer().serialize("poison")

    async def scenario():
        app = await Running.start(tmp_path, fragile_functions(got), max_backlog=2)
        node, ingress = app.node, app.ingress
        await parked(node, "w", ingress)
        # requests to the parked address: the first ones wait in the backlog, the later ones are held
        # (overflow, then spilled at the commit); each answers at once with the reason
        for n in range(6):
            answer = await asyncio.wait_for(ingress.send("t/fragile", "w", STRING, poison, "30", f"k{n}"), 10)
            assert answer.status == 500 and "t/fragile/w is parked" in answer.body.decode(), answer
        mailbox = mailbox_of(node, "w")
        await until(lambda: mailbox.spilled >= 3, "the held requests' messages spill")
        await app.crash()

        # after a crash the inbox is read back: the last requests' messages are spilled again; a keyed
        # retry of one of them learns at once too (not a 504 after its wait)
        app = await Running.start(tmp_path, fragile_functions(got), max_backlog=2)
        node, ingress = app.node, app.ingress
        assert mailbox_of(node, "w").spilled >= 3
        retry = await asyncio.wait_for(ingress.send("t/fragile", "w", STRING, poison, "30", "k5"), 10)
        assert retry.status == 500 and "cannot digest poison" in retry.body.decode()
        await app.stop()

    run(scenario())


def test_a_request_whose_message_waits_on_disk_learns_it_when_the_address_parks(tmp_path):
    """Messages read back from the inbox after a crash are spilled past the backlog; a keyed retry of a
    request whose message is among them waits for its reply while the address runs, and is answered at
    once with the reason when the address parks (the disk is not read for it)."""
    got: list[str] = []
    poison = StringType.serializer().serialize("poison")

    async def scenario():
        stuck = asyncio.Event()  # never set: the poison's batch is still in flight at the crash
        app = await Running.start(tmp_path, fragile_functions(got, stuck), max_backlog=100)
        node, ingress = app.node, app.ingress
        assert (await ingress.send("t/fragile", "d", STRING, poison, None, None)).status == 202
        for n in range(6):
            answer = await asyncio.wait_for(ingress.send("t/fragile", "d", STRING, poison, "0.05", f"k{n}"), 10)
            assert answer.status == 504
        await app.crash()

        gate = asyncio.Event()
        app = await Running.start(tmp_path, fragile_functions(got, gate), max_backlog=2)
        node, ingress = app.node, app.ingress
        assert mailbox_of(node, "d").spilled >= 3
        retry = asyncio.ensure_future(ingress.send("t/fragile", "d", STRING, poison, "30", "k5"))
        await asyncio.sleep(0.05)
        assert not retry.done()  # the address runs: the retry waits for the reply
        gate.set()  # the poison's batch raises: the address parks
        answer = await asyncio.wait_for(retry, 10)  # at once, not a 504 after 30 s
        assert answer.status == 500 and "t/fragile/d is parked" in answer.body.decode()
        await app.stop()

    run(scenario())


def test_a_message_to_a_parked_address_commits_when_the_runtime_is_idle_not_at_the_interval(tmp_path):
    """Nothing runs for a parked address, and its sender waits for the commit that makes its message
    durable: that is the next idle commit, as for any message (the commit interval here is an hour)."""
    got: list[str] = []

    async def scenario():
        node = await Node(tmp_path, fragile_functions(got), Clock(), commit_when_idle=True).start()
        ingress = PlaygroundIngress(node.runtime, node.store)
        node.runtime.reply_sink = ingress
        await asyncio.wait_for(parked(node, "i", ingress), 10)
        for n in range(3):
            answer = await asyncio.wait_for(
                ingress.send("t/fragile", "i", STRING, StringType.serializer().serialize(f"m{n}"), None, None), 10)
            assert answer.status == 202
        await node.stop()

    run(scenario())
