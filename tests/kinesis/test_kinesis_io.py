"""Kinesis ingress and egress on the embedded backend, with `pystatefun run` processes and both emulators:
records become messages once and in key order, every startup position, resharding while records flow,
bad-record policies, a stream that does not exist yet, and the egress through an emulator outage."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timezone

import pytest

from e2e.processes import Runtime, request

from .harness import KeyedRecords, Load, counter_module, parse_output, wait_until
from .throttling import ThrottlingProxy


def health(runtime: Runtime) -> dict:
    return json.loads(request(runtime.admin_port, "GET", "/health", timeout=10).body)


def metrics(runtime: Runtime) -> str:
    return request(runtime.admin_port, "GET", "/metrics", timeout=10).body.decode()


def reading(runtime: Runtime, stream: str) -> bool:
    """Whether the ingress reads ``stream`` (its shards are listed and their readers started)."""
    streams = health(runtime).get("kinesis_ingresses", {}).get("kc/in", {}).get("streams", {})
    return streams.get(stream, {}).get("shards_reading", 0) > 0


def test_records_become_messages_once_in_key_order_and_counts_reach_kinesis(tmp_path, emulator, stream_name):
    source, out = f"{stream_name}-in", f"{stream_name}-out"
    emulator.create_stream(source, shards=2)
    emulator.create_stream(out, shards=1)
    records = KeyedRecords(emulator, source, f"kc/kinesis-out {out}", keys=20)
    records.put(300)
    runtime = Runtime(counter_module(tmp_path / "app", emulator, source), tmp_path / "data").start()
    try:
        records.put(100)
        records.check_kinesis(out)
        assert 'pystatefun_kinesis_ingress_records_total{ingress="kc/in"} 400.0' in metrics(runtime)
        assert 'pystatefun_kinesis_egress_records_total{egress="kc/kinesis-out"} 400.0' in metrics(runtime)
        status = health(runtime)
        assert status["kinesis_ingresses"]["kc/in"]["streams"][source]["failing"] is None
        assert status["kinesis_egresses"]["kc/kinesis-out"]["records_put"] == 400
    finally:
        runtime.stop()


def test_a_restart_reads_on_after_the_last_committed_record(tmp_path, emulator, stream_name):
    source, out = f"{stream_name}-in", f"{stream_name}-out"
    emulator.create_stream(source)
    emulator.create_stream(out)
    records = KeyedRecords(emulator, source, f"kc/kinesis-out {out}", keys=3)
    records.put(20)
    runtime = Runtime(counter_module(tmp_path / "app", emulator, source), tmp_path / "data").start()
    try:
        records.check_kinesis(out)
        runtime.stop()  # a clean stop, then more records while it is down
        records.put(20)
        runtime.start()
        records.check_kinesis(out)
    finally:
        runtime.stop()


def test_startup_position_latest_reads_only_what_arrives_after_the_first_start(tmp_path, emulator, stream_name):
    source, out = f"{stream_name}-in", f"{stream_name}-out"
    emulator.create_stream(source, shards=2)
    emulator.create_stream(out)
    emulator.put(source, [("before", f"kc/kinesis-out {out}".encode())] * 5)
    runtime = Runtime(counter_module(tmp_path / "app", emulator, source, startup="type: latest"), tmp_path / "data").start()
    try:
        wait_until(lambda: reading(runtime, source), "the ingress reads the stream")
        records = KeyedRecords(emulator, source, f"kc/kinesis-out {out}", keys=4)
        records.put(30)
        records.check_kinesis(out)  # exactly the 30: none of "before"
        # a restart goes on from the committed positions, not from "latest" again
        runtime.stop()
        records.put(10)
        runtime.start()
        records.check_kinesis(out)
    finally:
        runtime.stop()


def test_startup_position_date_reads_from_the_first_record_at_or_after_it(tmp_path, emulator, stream_name):
    source, out = f"{stream_name}-in", f"{stream_name}-out"
    emulator.create_stream(source)
    emulator.create_stream(out)
    emulator.put(source, [("early", f"kc/kinesis-out {out}".encode())] * 5)
    time.sleep(1.5)
    date = datetime.now(timezone.utc)
    time.sleep(1.5)
    records = KeyedRecords(emulator, source, f"kc/kinesis-out {out}", keys=4)
    records.put(25)
    startup = f"type: date\n    date: '{date.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]} +0000'"
    runtime = Runtime(counter_module(tmp_path / "app", emulator, source, startup=startup), tmp_path / "data").start()
    try:
        records.check_kinesis(out)  # the 25 after the date, none of "early"
    finally:
        runtime.stop()


def test_a_stream_that_does_not_exist_yet_is_reported_and_read_once_it_does(tmp_path, emulator, stream_name):
    source, out = f"{stream_name}-in", f"{stream_name}-out"
    emulator.create_stream(out)
    runtime = Runtime(counter_module(tmp_path / "app", emulator, source), tmp_path / "data").start()
    try:
        def failing() -> str | None:
            return health(runtime)["kinesis_ingresses"]["kc/in"]["streams"].get(source, {}).get("failing")

        wait_until(lambda: failing() is not None, "/health says the stream fails")
        assert "ResourceNotFoundException" in failing()
        assert runtime.process.poll() is None, "a missing stream must not stop the application"
        emulator.create_stream(source)
        records = KeyedRecords(emulator, source, f"kc/kinesis-out {out}", keys=3)
        records.put(15)
        records.check_kinesis(out)
        assert failing() is None
        assert float(next(line.split()[1] for line in metrics(runtime).splitlines()
                          if line.startswith('pystatefun_kinesis_ingress_retries_total{ingress="kc/in"}'))) >= 1
    finally:
        runtime.stop()
    assert "ResourceNotFoundException" in runtime.log.read_text()  # said once in the log, at WARNING


def test_split_then_merge_while_records_flow_keeps_each_keys_order(tmp_path, emulator, stream_name):
    if emulator.name == "moto":
        pytest.skip("moto routes records to closed shards after a split or merge (tests/support/kinesis.py): "
                    "which records a reader gets across a reshard cannot be checked against it")
    source, out = f"{stream_name}-in", f"{stream_name}-out"
    emulator.create_stream(source, shards=1)
    emulator.create_stream(out)
    records = KeyedRecords(emulator, source, f"kc/kinesis-out {out}", keys=30)
    runtime = Runtime(counter_module(tmp_path / "app", emulator, source), tmp_path / "data").start()
    try:
        with Load(records):
            time.sleep(1)
            (parent,) = [shard["ShardId"] for shard in emulator.shards(source)]
            emulator.split(source, parent)
            time.sleep(1.5)
            lower, upper = emulator.adjacent_open_pair(source)
            child = emulator.merge(source, lower, upper)
            time.sleep(1.5)
        records.check_kinesis(out)
        finished = health(runtime)["kinesis_ingresses"]["kc/in"]["streams"][source]["shards_finished"]
        assert finished == 3, "the parent and both children of the split are read to their end"
        shards = {shard["ShardId"] for shard in emulator.shards(source)}
        assert child in shards and len(shards) == 4
    finally:
        runtime.stop()


BAD_KEY = "bad\x00key"  # a partition key an address id cannot be


def test_bad_records_skip_policy_counts_and_goes_past_them(tmp_path, emulator, stream_name):
    source, out = f"{stream_name}-in", f"{stream_name}-out"
    emulator.create_stream(source)
    emulator.create_stream(out)
    target = f"kc/kinesis-out {out}".encode()
    emulator.put(source, [("a", target), (BAD_KEY, target), ("a", target)])
    policy = "  badRecords:\n    type: skip"
    runtime = Runtime(counter_module(tmp_path / "app", emulator, source, bad_records=policy), tmp_path / "data").start()
    try:
        wait_until(lambda: len(emulator.read_all(out)) == 2, "two counts")
        assert sorted(parse_output(r)[2] for r in emulator.read_all(out)) == [[1], [2]]
        assert 'pystatefun_kinesis_ingress_bad_records_total{action="skip",ingress="kc/in"} 1.0' in metrics(runtime)
    finally:
        runtime.stop()
    assert "NUL character" in runtime.log.read_text()


def test_bad_records_fail_policy_stops_the_shard_at_the_record(tmp_path, emulator, stream_name):
    source, out = f"{stream_name}-in", f"{stream_name}-out"
    emulator.create_stream(source)
    emulator.create_stream(out)
    target = f"kc/kinesis-out {out}".encode()
    emulator.put(source, [("a", target), (BAD_KEY, target), ("a", target)])
    runtime = Runtime(counter_module(tmp_path / "app", emulator, source), tmp_path / "data").start()
    try:
        def stopped() -> dict:
            return health(runtime)["kinesis_ingresses"]["kc/in"]["stopped_shards"]

        wait_until(lambda: stopped(), "the shard stops at the bad record")
        ((where, why),) = stopped().items()
        assert where.startswith(f"{source}/") and "NUL character" in why
        time.sleep(1)
        assert [parse_output(r)[2] for r in emulator.read_all(out)] == [[1]]  # the record behind it waits
        runtime.stop()
        runtime.start()  # fail is not skip: after a restart it stops at the same record again
        wait_until(lambda: stopped(), "the shard stops at the bad record again")
        assert [parse_output(r)[2] for r in emulator.read_all(out)] == [[1]]
    finally:
        runtime.stop()


def test_bad_records_go_to_the_dead_letter_stream(tmp_path, emulator, stream_name):
    source, out, dead = f"{stream_name}-in", f"{stream_name}-out", f"{stream_name}-dead"
    for stream in (source, out, dead):
        emulator.create_stream(stream)
    target = f"kc/kinesis-out {out}".encode()
    emulator.put(source, [(BAD_KEY, b"lost?"), ("a", target)])
    policy = f"  badRecords:\n    type: dead-letter-stream\n    stream: {dead}"
    runtime = Runtime(counter_module(tmp_path / "app", emulator, source, bad_records=policy), tmp_path / "data").start()
    try:
        wait_until(lambda: len(emulator.read_all(out)) == 1, "the good record is counted")
        (letter,) = emulator.read_all(dead)
        assert letter["data"] == b"lost?" and letter["partition_key"] == BAD_KEY
    finally:
        runtime.stop()


def test_egress_records_wait_through_an_emulator_outage_and_are_all_put(tmp_path, emulator, stream_name):
    """Functions write (through the playground ingress) while the emulator is away: killed and restarted
    (kinesalite keeps its data), or paused and resumed (moto cannot keep data across a restart)."""
    out = f"{stream_name}-out"
    emulator.create_stream(out)
    module = counter_module(tmp_path / "app", emulator, None, max_outstanding=50)
    runtime = Runtime(module, tmp_path / "data").start()
    sent: dict[str, int] = {}

    def send(count: int) -> None:
        for n in range(count):
            key = f"k{n % 10}"
            sent[key] = sent.get(key, 0) + 1
            body = f"kc/kinesis-out {out} {sent[key]}".encode()
            assert runtime.send(f"/kc/counter/{key}", "kc/command", body).status == 202

    try:
        send(100)
        faults = 0
        for _ in range(2):
            if emulator.name == "kinesalite":
                emulator.kill()
            else:
                emulator.pause()
            faults += 1
            send(100)  # accepted and committed while Kinesis is away
            wait_until(lambda: health(runtime)["kinesis_egresses"]["kc/kinesis-out"]["failing"] is not None,
                       "/health says the egress fails")
            if emulator.name == "kinesalite":
                emulator.restart()
            else:
                emulator.resume()
        send(50)
        expected = sum(sent.values())
        wait_until(lambda: len({parse_output(r)[0] for r in emulator.read_all(out)}) >= expected, "every record put", 90)
        time.sleep(1)
        parsed = [parse_output(r) for r in emulator.read_all(out)]
        ids = [record_id for record_id, _, _ in parsed]
        assert len(set(ids)) == expected
        # a PutRecords in flight when Kinesis went away may have been taken and is put again: at most the
        # records in flight (maxOutstandingRecords) per outage, with the same ids
        assert len(ids) - len(set(ids)) <= 50 * faults
        by_key: dict[str, set] = {}
        for _, key, (count, place) in parsed:
            assert count == place
            by_key.setdefault(key, set()).add(count)
        assert by_key == {key: set(range(1, n + 1)) for key, n in sent.items()}
        assert health(runtime)["kinesis_egresses"]["kc/kinesis-out"]["failing"] is None
    finally:
        runtime.stop()
        if emulator.name == "kinesalite" and emulator.process.poll() is not None:
            emulator.restart()  # for the module's next tests
        elif emulator.name == "moto":
            emulator.resume()


def test_throttling_and_expired_iterators_are_retried_counted_and_lose_nothing(tmp_path, emulator, stream_name):
    """Through a proxy that refuses a third of GetRecords and PutRecords calls and a fifth of the other
    PutRecords calls' entries (ProvisionedThroughputExceededException), as Kinesis does under load, and
    says a tenth of the GetRecords calls' iterators expired: a new iterator goes on after the last record."""
    source, out = f"{stream_name}-in", f"{stream_name}-out"
    emulator.create_stream(source, shards=2)
    emulator.create_stream(out)
    with ThrottlingProxy(emulator.endpoint, p_call=0.3, p_entry=0.2, p_expired=0.1) as proxy:
        module = counter_module(tmp_path / "app", emulator, source)
        module.write_text(module.read_text().replace(emulator.endpoint, proxy.endpoint))
        runtime = Runtime(module, tmp_path / "data").start()
        try:
            records = KeyedRecords(emulator, source, f"kc/kinesis-out {out}", keys=10)
            for _ in range(5):
                records.put(40)
                time.sleep(0.3)
            records.check_kinesis(out)  # each count once, in order: a refused entry was not written
            text = metrics(runtime)
            assert proxy.counts["GetRecords throttled"] and proxy.counts["entries refused"]
            assert proxy.counts["GetRecords expired"]
            for name, labels in (("pystatefun_kinesis_ingress_throttles_total", 'ingress="kc/in"'),
                                 ("pystatefun_kinesis_egress_throttles_total", 'egress="kc/kinesis-out"')):
                value = next(line.split()[1] for line in text.splitlines() if line.startswith(f"{name}{{{labels}}}"))
                assert float(value) >= 1, name
            assert runtime.process.poll() is None
        finally:
            runtime.stop()


def test_a_stream_assigned_after_the_ingress_stopped_is_not_read_and_fails_nothing(tmp_path, emulator, stream_name):
    """A Kafka worker stopping in the middle of a rebalance can be given a stream's partition after its
    Kinesis ingress stopped: the stream is left to the partition's next owner, and the stopping runtime
    does not fail (before, reading began on the shut-down threads and the runtime stopped with an error)."""
    from pystatefun import StatefulFunctions
    from pystatefun.config.loader import load_module
    from pystatefun.io.kinesis.ingress import KinesisIngress
    from runtime.harness import Clock, Node

    emulator.create_stream(stream_name)
    spec = load_module(counter_module(tmp_path / "app", emulator, stream_name, playground=False)).ingresses[0]

    async def scenario() -> None:
        node = await Node(tmp_path / "data", StatefulFunctions(), Clock()).start()
        ingress = KinesisIngress(spec, node.runtime, node.store)
        try:
            assert ingress.follow(stream_name, {}, 0)  # a running ingress reads the stream it is given
            for _ in range(100):
                if ingress.status()["streams"][stream_name]["shards_reading"]:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"the ingress never read {stream_name}: {ingress.status()}")
            await ingress.stop()

            assert not ingress.follow(stream_name, {}, 0)
            await asyncio.sleep(0.5)
            assert not node.runtime.failed.done(), node.runtime.failed.exception()
            assert ingress.status()["streams"] == {}
        finally:
            await ingress.stop()
            await node.stop()

    asyncio.run(scenario())
