"""What tracing costs: keyed-counter requests/s (bench/keyed_counter.py's load: 100 keys, 32 connections of
wrk, request/reply, durable) of `pystatefun run` with tracing off, on with 1% of requests sampled, and on
with all of them, in one run on the same machine.

Tracing is configured as a user would, by OTEL_* variables only: the OTLP/HTTP exporter (the otel extra)
sends the spans to a sink in this process that answers every export and keeps nothing, so the cost
measured includes making, batching, encoding and sending the spans. The variants take turns, round after
round (each round in another order), so that a drift in the machine's load spreads over all of them;
the ratios compare the medians of the rounds. Run: ``.venv/bin/python bench/tracing.py`` (needs
``pip install -e '.[otel]'`` and wrk: apt-get install wrk); ``--record`` appends the medians to
docs/benchmarks/results.json (bench/results.py).
"""

from __future__ import annotations

import argparse
import http.server
import os
import statistics
import sys
import threading

import results as bench_results  # bench/results.py: --record
from keyed_counter import CONNECTIONS, KEYS, Processes, counted_exactly, run_pystatefun

VARIANTS = {  # name (in results.json) -> the OTEL_* variables of the runtime
    "tracing off": {},
    "tracing on, 1% sampled": {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"},
    "tracing on, 100% sampled": {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
}


class OtlpSink:
    """An OTLP/HTTP endpoint on 127.0.0.1 that accepts every export and counts its requests and bytes."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                sink.bytes += len(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
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


def environment(variant: str, sink: OtlpSink) -> dict[str, str]:
    """The runtime's environment for ``variant``: no OTEL_* variable of ours leaks into the off runs."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    if VARIANTS[variant]:
        env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint, "OTEL_SERVICE_NAME": "pystatefun-bench",
                **VARIANTS[variant]}
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="of each run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each variant, taking turns")
    parser.add_argument("--kind", choices=["embedded", "remote"], default="embedded",
                        help="the counter inside the runtime, or served by `pystatefun serve`")
    bench_results.add_record_arguments(parser)
    args = parser.parse_args()
    sink = OtlpSink()
    processes = Processes()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
    names = list(VARIANTS)
    try:
        for round_ in range(args.rounds):
            order = names[round_ % len(names):] + names[:round_ % len(names)]
            for name in order:
                exported = sink.requests
                run = run_pystatefun(args.kind, args.seconds, processes, environment(name, sink))
                run["exports"] = sink.requests - exported
                runs[name].append(run)
                print(f"round {round_ + 1}: {name:26} {run['rps']:9,.0f} requests/s  p99 {run['p99']:.2f} ms  "
                      f"{run['exports']:.0f} exports", file=sys.stderr)
    finally:
        processes.stop_all()
        sink.stop()
    print(f"tracing cost: keyed counter ({args.kind}), {KEYS} keys, {CONNECTIONS} connections (wrk), durable, "
          f"{args.rounds} rounds of {args.seconds:g} s, variants taking turns")
    print(f"{'variant':26} {'requests/s':>11} {'min-max':>17} {'p99 ms':>8} {'vs off':>7}  counters")
    off = statistics.median(r["rps"] for r in runs["tracing off"])
    recorded, all_exact = [], True
    for name, variant_runs in runs.items():
        rps = [r["rps"] for r in variant_runs]
        median = statistics.median(rps)
        exact = all(counted_exactly(r) for r in variant_runs)
        all_exact = all_exact and exact
        print(f"{name:26} {median:11,.0f} {min(rps):8,.0f}-{max(rps):<8,.0f} "
              f"{statistics.median(r['p99'] for r in variant_runs):8.2f} {median / off:7.3f}  "
              f"{'exact' if exact else 'MISMATCH'}")
        recorded.append((name, "requests/s", round(median)))
    spread = max((max(r["rps"] for r in runs[n]) - min(r["rps"] for r in runs[n])) / statistics.median(r["rps"] for r in runs[n])
                 for n in runs)
    print(f"noise: the widest spread of one variant's rounds is {spread:.1%} of its median")
    print("target: off costs nothing measurable; 1% sampled costs under 5% (ratio >= 0.95)")
    if args.record:
        if all_exact:
            bench_results.record("tracing", recorded, args.note)
        else:
            print("not recorded: a counter did not match its answered requests", file=sys.stderr)


if __name__ == "__main__":
    main()
