"""What tracing costs: keyed-counter requests/s (bench/keyed_counter.py's load: 100 keys, 32 connections of
wrk, request/reply, durable) of `pystatefun run` with tracing off, on with 1% of requests sampled, and on
with all of them, in one run on the same machine.

Tracing is configured as a user would, by OTEL_* variables only: the OTLP/HTTP exporter (the otel extra)
sends the spans to a sink in this process that answers every export and keeps nothing, so the cost
measured includes making, batching, encoding and sending the spans. The runtimes run side by side
and take turns under the load, in short rounds (each round in another order), so that the changing load
of a busy machine spreads over all of them; the ratios compare the medians of the rounds. Besides
requests/s it prints each runtime's CPU time per answered request (all its threads, the exporter's
too). Run: ``.venv/bin/python bench/tracing.py`` (needs ``pip install -e '.[otel]'`` and wrk: apt-get
install wrk); ``--record`` appends the medians to docs/benchmarks/results.json (bench/results.py).
"""

from __future__ import annotations

import argparse
import http.server
import os
import shutil
import statistics
import sys
import threading
import time
import typing

import results as bench_results  # bench/results.py: --record
from keyed_counter import CONNECTIONS, KEYS, Processes, counted_exactly, load, start_pystatefun

VARIANTS = {  # name (in results.json) -> its name for --only, and the OTEL_* variables of the runtime
    "tracing off": ("off", {}),
    "tracing on, 1% sampled": ("1%", {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"}),
    "tracing on, 100% sampled": ("100%", {"OTEL_TRACES_SAMPLER": "parentbased_always_on"}),
}


class OtlpSink:
    """An OTLP/HTTP endpoint on 127.0.0.1 that accepts every export and counts them."""

    def __init__(self) -> None:
        self.requests = 0
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                sink.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")  # an empty ExportTraceServiceResponse: all accepted
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


BASELINE = "before tracing"  # the variant of --baseline
# each round is followed by a second without load, counted in its CPU time: what the runtime still does for
# the round's requests counts. The exporter keeps the SDK's defaults, as a user's would: it sends 512 spans
# at a time, or what it has every 5 s (OTEL_BSP_*); exporting more often costs far more CPU a span (each
# export is an HTTP request of its own), so a shorter delay would measure the exporter's setting, not
# tracing.
SETTLE_SECONDS = 1.0


def environment(variant: str, sink: OtlpSink, baseline: str | None) -> dict[str, str]:
    """The runtime's environment for ``variant``: no OTEL_* variable of ours leaks into the off runs; the
    baseline's runs import pystatefun from its source tree."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    if variant == BASELINE:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [baseline, env.get("PYTHONPATH")]))
    elif VARIANTS[variant][1]:
        env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint, "OTEL_SERVICE_NAME": "pystatefun-bench",
                **VARIANTS[variant][1]}
    return env


def own_costs() -> dict[str, float]:
    """What tracing itself costs a request, in microseconds of CPU, measured in this process on the
    runtime's own calls (the best of several repeats: what a busy machine's noise cannot hide): the
    sampling decision of an unsampled request, the spans of a sampled one (its ingress and its batch,
    made and ended), and encoding those two spans for OTLP (the exporter's thread does it, in the same
    process)."""
    import timeit

    from multidict import CIMultiDict, CIMultiDictProxy
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased

    from pystatefun.runtime.envelope import Envelope, address
    from pystatefun.tracing.spans import Tracing
    from pystatefun.wire.request_reply_pb2 import TypedValue

    headers = CIMultiDictProxy(CIMultiDict({"Content-Type": "application/vnd.io.statefun.types/int"}))
    target = address("bench/counter", "k1")

    def request(tracing: Tracing) -> None:
        span = tracing.http_ingress("PUT", "/bench/counter/k1", ["bench", "counter", "k1"], headers, "ingress")
        if span is None:
            return
        with tracing.current(span):
            batch = tracing.batch(target, [Envelope(target, None, TypedValue(), None, tracing.traceparent(span))], 1, 0)
            tracing.context(batch)
            tracing.batch_ended(batch, "ok")
            tracing.http_answered(span, 200)

    def best(call: typing.Callable[[], object], number: int = 5000) -> float:
        return min(timeit.repeat(call, number=number, repeat=5)) / number * 1e6

    kept = InMemorySpanExporter()
    unsampled, sampled = TracerProvider(sampler=ParentBased(ALWAYS_OFF)), TracerProvider(sampler=ParentBased(ALWAYS_ON))
    sampled.add_span_processor(SimpleSpanProcessor(kept))  # hands each ended span over, as the batch one does
    off_tracing, on_tracing = Tracing(unsampled, ALWAYS_OFF), Tracing(sampled, ALWAYS_ON)  # as config.py makes them
    costs = {"unsampled": best(lambda: request(off_tracing)), "sampled": best(lambda: request(on_tracing))}
    spans = kept.get_finished_spans()[:2]
    costs["encoding"] = best(lambda: encode_spans(spans).SerializeToString())
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2, help="of each round of each variant")
    parser.add_argument("--rounds", type=int, default=15, help="rounds, each variant loaded once in each")
    parser.add_argument("--kind", choices=["embedded", "remote"], default="embedded",
                        help="the counter inside the runtime, or served by `pystatefun serve`")
    parser.add_argument("--baseline", metavar="SRC",
                        help="also run the pystatefun of this source tree (the src/ folder of a checkout from before "
                             "tracing, say) with tracing off: what off costs against no tracing code at all")
    parser.add_argument("--only", nargs="+", choices=[short for short, _ in VARIANTS.values()],
                        help="run only these of the variants (with --baseline, off against the code before tracing, "
                             "say); off is always run, as the others are compared with it")
    bench_results.add_record_arguments(parser)
    args = parser.parse_args()
    sink = OtlpSink()
    processes = Processes()
    names = [name for name, (short, _) in VARIANTS.items() if args.only is None or short in args.only or short == "off"]
    names += [BASELINE] if args.baseline else []
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    running = {}
    try:
        for name in names:
            running[name] = start_pystatefun(args.kind, processes, environment(name, sink, args.baseline))
        for round_ in range(args.rounds):
            for name in names[round_ % len(names):] + names[:round_ % len(names)]:
                run = load(running[name], args.seconds, SETTLE_SECONDS)
                runs[name].append(run)
                print(f"round {round_ + 1}: {name:26} {run['rps']:9,.0f} requests/s  {run['cpu_us']:6.1f} CPU us/request  "
                      f"p99 {run['p99']:.2f} ms", file=sys.stderr)
        time.sleep(0.5)  # requests wrk gave up on at the end still complete
        totals = {name: running[name].counted() for name in names}
    finally:
        processes.stop_all()
        sink.stop()
        for started in running.values():
            shutil.rmtree(started.folder, ignore_errors=True)
    print(f"tracing cost: keyed counter ({args.kind}), {KEYS} keys, {CONNECTIONS} connections (wrk), durable, "
          f"{args.rounds} rounds of {args.seconds:g} s per variant, taking turns; {sink.requests} OTLP exports")
    print(f"{'variant':26} {'requests/s':>11} {'min-max':>17} {'vs off':>7} {'CPU us/req':>11} {'min-max':>13} "
          f"{'vs off':>7} {'p99 ms':>8}  counters")
    off = {metric: statistics.median(r[metric] for r in runs["tracing off"]) for metric in ("rps", "cpu_us")}
    recorded, all_exact, spreads = [], True, []
    for name, variant_runs in runs.items():
        rps, cpu = [r["rps"] for r in variant_runs], [r["cpu_us"] for r in variant_runs]
        summed = {"completed": sum(r["completed"] for r in variant_runs), "errors": sum(r["errors"] for r in variant_runs),
                  "total": totals[name]}
        exact = counted_exactly(summed, len(variant_runs))
        all_exact = all_exact and exact
        print(f"{name:26} {statistics.median(rps):11,.0f} {min(rps):8,.0f}-{max(rps):<8,.0f} "
              f"{statistics.median(rps) / off['rps']:7.3f} {statistics.median(cpu):11.1f} {min(cpu):6.1f}-{max(cpu):<6.1f} "
              f"{off['cpu_us'] / statistics.median(cpu):7.3f} {statistics.median(r['p99'] for r in variant_runs):8.2f}  "
              f"{'exact' if exact else 'MISMATCH'}")
        if name != BASELINE:  # results.json keeps this build's numbers
            recorded += [(name, "requests/s", round(statistics.median(rps))),
                         (name, "runtime CPU us/request", round(statistics.median(cpu), 1))]
        spreads += [(max(values) - min(values)) / statistics.median(values) for values in (rps, cpu)]
    costs = own_costs()
    at_1 = costs["unsampled"] + (costs["sampled"] + costs["encoding"]) / 100
    if args.record and names != list(VARIANTS) + ([BASELINE] if args.baseline else []):
        print("not recorded: --record keeps runs of every variant", file=sys.stderr)
        args.record = False
    print(f"tracing's own CPU per request, in process (best of 5): an unsampled request {costs['unsampled']:.1f} us; "
          f"a sampled one {costs['sampled']:.1f} us for its spans + {costs['encoding']:.1f} us to encode them; so at 1% "
          f"{at_1:.1f} us a request = {at_1 / off['cpu_us']:.1%} of the off runtime's {off['cpu_us']:.0f} us")
    print(f"noise: the rounds of one variant spread by up to {max(spreads):.0%} of their median "
          "(requests/s or CPU time); 'vs off' is the variant's median over off's (CPU: off's over the variant's)")
    print("target: off costs nothing measurable (against the baseline); 1% sampled costs under 5% (ratio >= 0.95)")
    if args.record:
        if all_exact:
            bench_results.record("tracing", recorded, args.note)
        else:
            print("not recorded: a counter did not match its answered requests", file=sys.stderr)


if __name__ == "__main__":
    main()
