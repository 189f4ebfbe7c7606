"""How long a helper thread's flush of Kafka records with a delivery callback each takes while another
thread keeps the GIL busy, with Python's default switch interval (5 ms) and inside
``pystatefun.event_loop.prompt_handover`` (0.1 ms): the decision's numbers (docs/benchmarks.md, "Liveness
under load").

The busy thread stands for a loaded event loop: pure Python that never waits. The flushing thread stands
for a Kafka-backend epoch's committer (a delivery report per message in flight) and for an at-least-once
Kafka egress (a report per record): librdkafka's client takes the GIL back for every report it hands to
Python. Each round produces ``--records`` records to a topic of one partition on a real broker
(idempotent producer, as the egress's), flushes them, and times produce + flush; the two settings
alternate. Also printed: the same flush with the busy thread stopped (the broker's own time).

End to end (``--chain``): an embedded runtime in this process runs a hundred chains of hops between
embedded functions (bench/functions/egress_chain.py; 3,000 hops each by default) whose every hop also
sends a record to an at-least-once Kafka egress. Printed: how many of the records the egress had
forwarded when the functions were done, and how long the rest took. Before prompt_handover, the egress
fell behind a busy drain loop (docs/benchmarks.md, "Liveness under load").

The broker is the one in $PYSTATEFUN_KAFKA_BOOTSTRAP, else one started here (tests/support/kafka.py) and
stopped at the end. Run: ``.venv/bin/python bench/gil_handover.py`` (about 30 s with a broker running);
``--record`` appends the medians to docs/benchmarks/results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

import results as bench_results  # bench/results.py: --record
from runtime_chain import wait_until_idle

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE / "functions"))
from egress_chain import TOPIC  # noqa: E402

from pystatefun import IntType  # noqa: E402
from pystatefun.app import Application  # noqa: E402
from pystatefun.config import load_module  # noqa: E402
from pystatefun.event_loop import prompt_handover, run_event_loop  # noqa: E402
from pystatefun.runtime.envelope import Envelope, address  # noqa: E402
from pystatefun.sdk.messages import to_typed_value  # noqa: E402
from tests.support.kafka import shared_broker  # noqa: E402


def flush_seconds(producer: Producer, topic: str, records: int, handover: bool) -> float:
    failures: list = []

    def delivered(error, _message) -> None:
        if error is not None:
            failures.append(error)

    started = time.monotonic()
    for n in range(records):
        producer.produce(topic, b"x" * 100, str(n).encode(), on_delivery=delivered)
    with prompt_handover() if handover else contextlib.nullcontext():
        producer.flush()
    if failures:
        raise SystemExit(f"the broker refused records: {failures[0]}")
    return time.monotonic() - started


def measure(bootstrap: str, records: int, rounds: int) -> dict[str, list[float]]:
    topic = f"gil-handover-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    flush_seconds(producer, topic, records, False)  # the connection and the producer id, once
    times: dict[str, list[float]] = {"idle": [], "busy, 5 ms": [], "busy, prompt_handover": []}
    for _ in range(rounds):
        times["idle"].append(flush_seconds(producer, topic, records, False))
    busy = True

    def spin() -> None:
        spins = 0
        while busy:
            spins += 1

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    time.sleep(0.1)  # spinning before the first round
    try:
        for round_ in range(rounds):
            for handover in ((False, True) if round_ % 2 == 0 else (True, False)):
                name = "busy, prompt_handover" if handover else "busy, 5 ms"
                times[name].append(flush_seconds(producer, topic, records, handover))
    finally:
        busy = False
        spinner.join()
    admin.delete_topics([topic])
    return times


CHAINS = 100
RING = 1000


async def egress_beside_chains(bootstrap: str, folder: Path, hops: int) -> tuple[float, float, float]:
    """Runs the chains with their egress records; returns the seconds the functions took, the share of the
    records forwarded by then, and the seconds until the last one was."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    if TOPIC not in admin.list_topics(timeout=30).topics:
        admin.create_topics([NewTopic(TOPIC, 4)])[TOPIC].result(30)
    module = folder / "module.yaml"
    module.write_text("kind: pystatefun.v1/embedded\nspec:\n  functions: bench/*\n  module: egress_chain:functions\n"
                      f"---\nkind: io.statefun.kafka.v1/egress\nspec:\n  id: bench/out\n  address: {bootstrap}\n")
    app = Application(load_module(module), folder / "data")
    await app.start()
    try:
        runtime, egress = app.runtime, app.kafka_egresses[0]
        records = CHAINS * hops
        started = time.perf_counter()
        for chain in range(CHAINS):
            target = address("bench/counter", f"{RING}/{chain * RING // CHAINS}")
            runtime.route(Envelope(target, None, to_typed_value(IntType, hops - 1)))
        await wait_until_idle(runtime)
        functions_done = time.perf_counter()
        forwarded_then = egress.forwarded
        deadline = functions_done + 300
        while egress.forwarded < records:
            if time.perf_counter() > deadline:
                raise SystemExit(f"the egress forwarded {egress.forwarded} of {records} records in 300 s")
            await asyncio.sleep(0.01)
        return functions_done - started, forwarded_then / records, time.perf_counter() - functions_done
    finally:
        await app.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000, help="records per flush (a Kafka egress batch: 1,000)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chain", type=int, default=0, metavar="HOPS",
                        help="also run the end-to-end flow with HOPS hops per chain (3000 is a good size)")
    bench_results.add_record_arguments(parser)
    args = parser.parse_args()
    with shared_broker() as bootstrap:
        times = measure(bootstrap, args.records, args.rounds)
        if args.chain:
            with tempfile.TemporaryDirectory(prefix="bench-gil-handover-") as folder:
                chain = run_event_loop(egress_beside_chains(bootstrap, Path(folder), args.chain))
    print(f"produce + flush of {args.records:,} records with a delivery callback each, {args.rounds} rounds, ms")
    medians = {name: statistics.median(seconds) * 1000 for name, seconds in times.items()}
    for name, seconds in times.items():
        print(f"  {name:24} median {medians[name]:8.1f}   ({', '.join(f'{s * 1000:.0f}' for s in seconds)})")
    print(f"  busy: 5 ms / prompt_handover = {medians['busy, 5 ms'] / medians['busy, prompt_handover']:.1f}x")
    if args.chain:
        seconds, share, rest = chain
        print(f"{CHAINS} chains of {args.chain:,} hops between embedded functions, each hop a record to an "
              f"at-least-once Kafka egress: the functions took {seconds:.1f} s; the egress had forwarded "
              f"{share:.1%} of the records by then, and the rest {rest:.2f} s later")
    if args.record:
        bench_results.record("gil_handover", [(name, f"ms, flush of {args.records} records", round(ms, 1))
                                              for name, ms in medians.items()], args.note)


if __name__ == "__main__":
    main()
