"""The processing core on the embedded backend: batching, state, TTL, timers, failures, recovery."""

import asyncio
from datetime import timedelta

import pytest

from pystatefun import IntType, StatefulFunctions, StringType, ValueSpec, make_json_type, message_builder

from pystatefun.runtime.envelope import Envelope, address
from pystatefun.sdk.messages import to_typed_value
from pystatefun.wire.request_reply_pb2 import TypedValue

from .harness import Clock, Node

def run(coro):
    return asyncio.run(coro)


def counter_functions(log=None):
    functions = StatefulFunctions()

    @functions.bind("t/counter", specs=[ValueSpec("count", IntType)])
    def counter(context, message):
        if log is not None:
            log.append((context.address.id, message.as_int()))
        context.storage.count = (context.storage.count or 0) + message.as_int()

    return functions


def test_messages_arriving_together_form_one_batch_in_arrival_order(tmp_path):
    log = []
    functions = counter_functions(log)

    async def scenario():
        node = await Node(tmp_path, functions, Clock()).start()
        for n in range(1, 6):
            node.send("t/counter", "a", n, IntType)
        await node.commit()
        assert log == [("a", n) for n in range(1, 6)]
        assert node.state("t/counter", "a", IntType) == {"count": 15}
        await node.stop()

    run(scenario())


def test_a_mailbox_serves_its_address_while_in_use_and_is_dropped_after_an_idle_interval(tmp_path):
    """Memory stays bounded by what two commit intervals touch, and an address in use keeps its mailbox
    (not one made and dropped per message), also through the many commits of one interval that
    request/reply load makes (a waiting request commits at once)."""

    async def scenario():
        clock = Clock()
        node = await Node(tmp_path, counter_functions(), clock).start()
        interval = node.runtime.commit_interval
        mailboxes = node.runtime.processors[node.runtime.partition_of("a")].mailboxes
        node.send("t/counter", "a", 1, IntType)
        await node.commit()
        first = mailboxes[("t/counter", "a")]
        for n in range(3):  # a message in every interval: the same mailbox each time
            clock.now += interval
            node.send("t/counter", "a", 1, IntType)
            await node.commit()
            assert mailboxes[("t/counter", "a")] is first
        for _ in range(5):  # commits within the same interval, none with a message for it: kept
            clock.now += interval / 10
            await node.commit()
            assert mailboxes[("t/counter", "a")] is first
        clock.now += interval
        await node.commit()  # an interval without a message for it: dropped at its end
        assert ("t/counter", "a") not in mailboxes
        node.send("t/counter", "a", 1, IntType)
        await node.commit()
        clock.now -= 10 * interval  # the wall clock stepped back: sweeps go on from the new time
        await node.commit()
        clock.now += interval
        await node.commit()
        assert ("t/counter", "a") not in mailboxes
        node.send("t/counter", "a", 1, IntType)
        await node.commit()
        assert node.state("t/counter", "a", IntType) == {"count": 6}
        assert len(node.runtime._went_idle) == 1  # listed once, however many batches it ran
        await node.stop()

    run(scenario())


def test_a_crash_before_the_commit_reprocesses_exactly_once(tmp_path):
    async def scenario():
        clock = Clock()
        node = await Node(tmp_path, counter_functions(), clock).start()
        node.send("t/counter", "a", 1, IntType)
        await node.commit()  # committed: count 1, nothing pending
        node.send("t/counter", "a", 10, IntType)
        node.runtime.commit()  # the message is durable in the inbox, not yet processed
        await node.settle()  # processed, but this epoch never commits:
        await node.crash()
        node = await Node(tmp_path, counter_functions(), clock).start()
        await node.commit()
        assert node.state("t/counter", "a", IntType) == {"count": 11}
        await node.stop()

    run(scenario())


def test_chains_between_addresses_commit_atomically(tmp_path):
    functions = StatefulFunctions()

    @functions.bind("t/hop", specs=[ValueSpec("seen", IntType)])
    def hop(context, message):
        context.storage.seen = (context.storage.seen or 0) + 1
        if message.as_int() > 0:
            context.send(message_builder("t/hop", str((int(context.address.id) + 1) % 7), int_value=message.as_int() - 1))

    async def scenario():
        node = await Node(tmp_path, functions, Clock()).start()
        node.send("t/hop", "0", 69, IntType)
        await node.commit()
        assert sum(node.state("t/hop", str(i), IntType)["seen"] for i in range(7)) == 70
        await node.stop()

    run(scenario())


def ttl_functions():
    functions = StatefulFunctions()

    @functions.bind("t/ttl", specs=[
        ValueSpec("by_write", StringType, expire_after_write=timedelta(seconds=10)),
        ValueSpec("by_call", StringType, expire_after_call=timedelta(seconds=10)),
        ValueSpec("seen", StringType),
    ])
    def ttl(context, message):
        command = message.as_string()
        if command == "write":
            context.storage.by_write = "w"
            context.storage.by_call = "c"
        context.storage.seen = f"{context.storage.by_write}|{context.storage.by_call}"

    return functions


def test_ttl_after_write_and_after_call(tmp_path):
    async def scenario():
        clock = Clock()
        node = await Node(tmp_path, ttl_functions(), clock).start()
        node.send("t/ttl", "a", "write", StringType)
        await node.commit()
        clock.now += 6
        node.send("t/ttl", "a", "read", StringType)  # a call: by_call lives 10 s from now
        await node.commit()
        assert node.state("t/ttl", "a", StringType)["seen"] == "w|c"
        clock.now += 6  # 12 s after the write, 6 s after the last call
        node.send("t/ttl", "a", "read", StringType)
        await node.commit()
        assert node.state("t/ttl", "a", StringType)["seen"] == "None|c"
        clock.now += 11
        node.send("t/ttl", "a", "read", StringType)
        await node.commit()
        assert node.state("t/ttl", "a", StringType)["seen"] == "None|None"
        assert node.store.sweep(int(clock.now * 1000)) >= 1  # storage is reclaimed
        assert set(node.state("t/ttl", "a", StringType)) == {"seen"}
        await node.stop()

    run(scenario())


def test_ttl_holds_across_a_restart(tmp_path):
    """Expiry times are stored with the values: a restart neither revives nor extends them."""

    async def scenario():
        clock = Clock()
        node = await Node(tmp_path, ttl_functions(), clock).start()
        node.send("t/ttl", "a", "write", StringType)
        await node.commit()
        await node.crash()
        clock.now += 6
        node = await Node(tmp_path, ttl_functions(), clock).start()
        node.send("t/ttl", "a", "read", StringType)  # both alive; the call extends by_call only
        await node.commit()
        assert node.state("t/ttl", "a", StringType)["seen"] == "w|c"
        await node.stop()
        clock.now += 6  # 12 s after the write, 6 s after the last call
        node = await Node(tmp_path, ttl_functions(), clock).start()
        node.send("t/ttl", "a", "read", StringType)
        await node.commit()
        assert node.state("t/ttl", "a", StringType)["seen"] == "None|c"
        await node.stop()

    run(scenario())


def timer_functions(received):
    functions = StatefulFunctions()

    @functions.bind("t/timer")
    def timer(context, message):
        command = message.as_string()
        if command.startswith("schedule:"):
            _, token, seconds = command.split(":")
            context.send_after(timedelta(seconds=int(seconds)), message_builder("t/timer", "sink", str_value=f"fired:{token}"), token)
        elif command.startswith("cancel:"):
            context.cancel_delayed_message(command.split(":")[1])
        else:
            received.append((command, context.caller.id if context.caller else None))

    return functions


def test_delayed_messages_and_cancellation_survive_a_restart(tmp_path):
    async def scenario():
        received = []
        clock = Clock()
        node = await Node(tmp_path, timer_functions(received), clock).start()
        node.send("t/timer", "s", "schedule:keep:5", StringType)
        node.send("t/timer", "s", "schedule:drop:5", StringType)
        await node.commit()
        node.send("t/timer", "s", "cancel:drop", StringType)
        await node.commit()
        await node.crash()
        clock.now += 60  # fell due while the runtime was down
        node = await Node(tmp_path, timer_functions(received), clock).start()
        node.wake_timers()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if received:
                break
        await node.commit()
        assert received == [("fired:keep", "s")]
        await node.crash()
        node = await Node(tmp_path, timer_functions(received), clock).start()
        node.wake_timers()
        await asyncio.sleep(0.05)
        await node.commit()
        assert received == [("fired:keep", "s")]  # once
        await node.stop()

    run(scenario())


def test_a_duplicate_pending_token_parks_only_that_address(tmp_path):
    async def scenario():
        received = []
        node = await Node(tmp_path, timer_functions(received), Clock()).start()
        node.send("t/timer", "a", "schedule:t1:100", StringType)
        await node.commit()
        node.send("t/timer", "a", "schedule:t1:100", StringType)  # the same token again: refused
        node.send("t/timer", "b", "schedule:t1:100", StringType)  # another sender may use it
        await node.commit()
        assert len(node.runtime.timers) == 2
        assert "already pending" in node.store.parked()[("t/timer", "a")]
        await node.crash()
        node = await Node(tmp_path, timer_functions(received), Clock()).start()
        mailbox = node.runtime.processors[node.runtime.partition_of("a")].mailboxes
        parked = [m for m in mailbox.values() if m.address.id == "a"]
        assert parked and parked[0].parked and len(parked[0].backlog) == 1  # still parked, message kept
        await node.stop()

    run(scenario())


def test_a_raising_function_parks_its_address_and_the_others_go_on(tmp_path):
    functions = counter_functions()

    @functions.bind("t/fragile", specs=[ValueSpec("count", IntType)])
    def fragile(context, message):
        if message.as_int() < 0:
            raise RuntimeError("negative")
        context.storage.count = (context.storage.count or 0) + 1

    async def scenario():
        node = await Node(tmp_path, functions, Clock()).start()
        node.send("t/fragile", "x", -1, IntType)
        node.send("t/fragile", "x", 1, IntType)
        for i in range(50):
            node.send("t/counter", str(i), 1, IntType)
        await node.commit()
        assert all(node.state("t/counter", str(i), IntType) == {"count": 1} for i in range(50))
        assert node.state("t/fragile", "x", IntType) == {}
        assert "RuntimeError: negative" in node.store.parked()[("t/fragile", "x")]
        assert [r.target_type for r in node.store.inbox()] == ["t/fragile", "t/fragile"]  # nothing lost
        await node.stop()

    run(scenario())


def test_a_parked_reason_shows_the_functions_own_line_when_a_library_raised_for_it(tmp_path):
    """A message that is not the JSON its type says: json and the SDK raise, five frames deep, and the
    reason still shows the line of the function that read it (then the innermost frames)."""
    functions = StatefulFunctions()
    order = make_json_type("t/Order")

    @functions.bind("t/orders")
    def orders(context, message):
        context.storage.last = message.as_type(order)  # the line the reason must show

    async def scenario():
        node = await Node(tmp_path, functions, Clock()).start()
        node.runtime.route(Envelope(address("t/orders", "o"), None,
                                    TypedValue(typename="t/Order", has_value=True, value=b'{"item":')))
        await node.commit()
        reason = node.store.parked()[("t/orders", "o")]
        assert reason.startswith("t/orders/o raised JSONDecodeError: ")
        assert f'File "{__file__}", line ' in reason and ", in orders" in reason
        assert "context.storage.last = message.as_type(order)" in reason
        assert "\n  ...\n" in reason and 'json/decoder.py", line' in reason  # then the innermost frames
        await node.stop()

    run(scenario())


def test_a_partition_catching_up_with_its_log_runs_the_logs_messages_before_those_it_holds(tmp_path):
    """A partition taken over on the Kafka backend can have messages in its log that its previous owner
    did not process. What this process routes to it meanwhile (its functions' messages, timers, requests)
    is held until the log is read, so that a sender's earlier messages run first (guarantee 1); a commit
    meanwhile makes the held message durable without running it, and it runs once."""
    log = []

    async def scenario():
        node = await Node(tmp_path, counter_functions(log), Clock()).start()
        runtime = node.runtime
        partition = runtime.partition_of("a")
        runtime.own(partition, catching_up=True)
        node.send("t/counter", "a", 2, IntType)  # from this process: held
        await node.settle()
        runtime.commit()
        assert log == []
        from_log = Envelope(address("t/counter", "a"), None, to_typed_value(IntType, 1), runtime.new_seq())
        runtime.route(from_log)  # as the worker routes a message read from the partition's log
        await node.settle()
        assert log == [("a", 1)]
        runtime.caught_up(partition)
        await node.commit()
        assert log == [("a", 1), ("a", 2)]
        assert node.state("t/counter", "a", IntType) == {"count": 3}
        await node.stop()
        again = await Node(tmp_path, counter_functions(log), Clock()).start()
        await again.commit()
        assert log == [("a", 1), ("a", 2)]  # the held message was durable and consumed: not run again
        await again.stop()

    run(scenario())


def test_a_message_to_an_unknown_function_type_is_a_dead_letter(tmp_path):
    functions = StatefulFunctions()

    @functions.bind("t/sender")
    def sender(context, message):
        context.send(message_builder("t/nobody", "1", int_value=1))

    async def scenario():
        node = await Node(tmp_path, functions, Clock()).start()
        node.send("t/sender", "a", 1, IntType)
        await node.commit()
        rows = node.store.db.execute("SELECT target_type, caller_id, reason FROM dead_letters").fetchall()
        assert rows == [("t/nobody", "a", "no function type 't/nobody' is bound in the module")]
        await node.stop()

    run(scenario())


def test_ingress_back_pressure_waits_for_room_in_that_address_only(tmp_path):
    functions = StatefulFunctions()
    gate = {}

    @functions.bind("t/slow")
    async def slow(context, message):
        await gate["event"].wait()

    async def scenario():
        gate["event"] = asyncio.Event()
        node = await Node(tmp_path, functions, Clock(), max_backlog=3).start()

        for _ in range(4):  # one in flight, three in the backlog
            assert await node.runtime.admit(address("t/slow", "a"))
            node.send("t/slow", "a", 1, IntType)
            await asyncio.sleep(0)
        waiting = asyncio.ensure_future(node.runtime.admit(address("t/slow", "a")))
        other = await asyncio.wait_for(node.runtime.admit(address("t/slow", "b")), 1)
        await asyncio.sleep(0.05)
        assert other is True and not waiting.done()
        gate["event"].set()
        assert await asyncio.wait_for(waiting, 2) is True
        await node.stop()

    run(scenario())


def fan_out_functions(gate: dict, got: list):
    functions = StatefulFunctions()

    @functions.bind("t/fan")
    def fan(context, message):
        for i in range(message.as_int()):
            context.send(message_builder("t/sink", "one", int_value=i))

    @functions.bind("t/sink", specs=[ValueSpec("n", IntType)])
    async def sink(context, message):
        await gate["open"].wait()
        got.append(message.as_int())
        context.storage.n = (context.storage.n or 0) + 1

    return functions


async def drain(node: Node, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    rt = node.runtime
    while rt._ready or rt._invocations or any(m.backlog or m.in_flight or m.overflow or m.spilled
                                              for p in rt.processors.values() for m in p.mailboxes.values()):
        assert asyncio.get_running_loop().time() < deadline, "the runtime did not drain"
        await asyncio.sleep(0.01)
    rt.commit()


def sink_mailbox(node: Node):
    return node.runtime.processors[node.runtime.partition_of("one")].mailboxes["t/sink", "one"]


def test_messages_between_functions_for_a_busy_address_wait_on_disk_not_in_memory(tmp_path):
    """A function that sends 2,000 messages to a stuck address: once committed, all but the capped
    backlog leave memory, and they are read back in order as the address catches up."""

    async def scenario():
        gate, got = {"open": asyncio.Event()}, []
        node = await Node(tmp_path, fan_out_functions(gate, got), Clock(), max_backlog=10).start()
        node.send("t/fan", "x", 2000, IntType)
        await asyncio.sleep(0.05)  # the fan ran; the sink's first batch is in flight, stuck
        mailbox = sink_mailbox(node)
        assert len(mailbox.backlog) == 10 and len(mailbox.overflow) == 2000 - 20  # not committed yet
        node.runtime.commit()
        assert not mailbox.overflow and len(mailbox.backlog) == 10 and mailbox.spilled == 2000 - 20
        assert await asyncio.wait_for(node.runtime.admit(address("t/fan", "y")), 1)  # others go on
        node.send("t/fan", "y", 0, IntType)
        gate["open"].set()
        await drain(node)
        assert got == list(range(2000))
        assert node.state("t/sink", "one", IntType) == {"n": 2000}
        assert list(node.store.inbox()) == []
        await node.stop()

    run(scenario())


def test_a_large_inbox_is_read_back_bounded_after_a_crash(tmp_path):
    async def scenario():
        gate, got = {"open": asyncio.Event()}, []
        node = await Node(tmp_path, fan_out_functions(gate, got), Clock(), max_backlog=10).start()
        node.send("t/fan", "x", 2000, IntType)
        await asyncio.sleep(0.05)
        node.runtime.commit()
        await node.crash()  # the sink's first batch never completed

        node = await Node(tmp_path, fan_out_functions(gate, got), Clock(), max_backlog=10).start()
        await asyncio.sleep(0.05)
        mailbox = sink_mailbox(node)
        assert len(mailbox.in_flight) + len(mailbox.backlog) == 20 and mailbox.spilled == 2000 - 20
        gate["open"].set()
        await drain(node)
        assert got == list(range(2000))  # each once, in order
        assert node.state("t/sink", "one", IntType) == {"n": 2000}
        await node.stop()

    run(scenario())
