"""What the admin API shows of a running application for the console: its overview, its function graph
and one function type's calls (``GET /overview``, ``GET /graph``, ``GET /functions/{namespace}/{type}``).

Each process builds its own part from what its runtime counted (runtime/flows.py, the FunctionStats of
each type) and what its store and ingresses say. On the Kafka backend the worker asked gathers the other
workers' parts and merges them: counts and rates add up, lists are joined, and percentiles are taken
over the samples of every worker (a part carries its samples; the answer only the percentiles).
"""

from __future__ import annotations

import asyncio
import math
import time
import typing
from dataclasses import dataclass, field

from pystatefun.runtime.cardinality import MAX_FUNCTION_TYPE_LABELS
from pystatefun.runtime.invokers import RemoteInvoker
from pystatefun.runtime.processor import Runtime

# an address count stops here, so that it never reads a million addresses per request (null beyond it)
MAX_COUNTED_ADDRESSES = 10_000
_COMMITS = "commit_latency_samples_ms"  # in a worker's part only
_LATENCIES = "latency_samples_ms"


class LagSource(typing.Protocol):
    """A Kafka ingress (io/kafka.py): the records it has still to read, per topic partition."""

    async def lag(self) -> list[dict[str, typing.Any]]: ...


class CountingStore(typing.Protocol):
    def dead_letter_count(self) -> int: ...

    def addresses(self, typename: str, after: str = "", limit: int = 100) -> list[str]: ...


@dataclass(frozen=True)
class Deployment:
    """What the runtime does not know of the process it runs in."""

    backend: typing.Literal["embedded", "kafka"]
    application: str  # the Kafka backend's application name; the data dir's name on the embedded backend
    worker: str  # this process: the worker id on Kafka
    admin: str | None  # this admin API's URL, as the other workers reach it
    ingresses: tuple[str, ...] = ()  # the module's ingress and egress ids: nodes of the graph before traffic
    egresses: tuple[str, ...] = ()
    lag_sources: typing.Sequence[LagSource] = field(default_factory=tuple)


def percentiles(samples: typing.Sequence[float]) -> dict[str, float | None]:
    """p50 and p99 of ``samples`` (nearest rank), None without samples."""
    if not samples:
        return {"p50": None, "p99": None}
    ordered = sorted(samples)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    return {"p50": round(rank(0.50), 3), "p99": round(rank(0.99), 3)}


class Observation:
    """Builds this process's parts and merges them with the other workers' (see the module docstring)."""

    def __init__(self, runtime: Runtime, store: CountingStore, deployment: Deployment,
                 functions: typing.Callable[[], list[dict[str, typing.Any]]], started: float):
        """``started``: when this process started (time.time())."""
        self.runtime = runtime
        self.store = store
        self.deployment = deployment
        self.functions = functions
        self.started = started

    # -- GET /overview ------------------------------------------------------------------------------------

    async def overview_part(self) -> dict[str, typing.Any]:
        runtime = self.runtime
        deployment = self.deployment
        epochs_per_s, durations = runtime.recent_commits.within()
        ingress = egress = messages = 0.0
        for flow in runtime.flows.flows():
            if flow.sender.startswith("ingress:"):
                ingress += flow.per_s
            if flow.target.startswith("egress:"):
                egress += flow.per_s
            elif flow.target.startswith("function:"):
                messages += flow.per_s
        lag = [entry for source in deployment.lag_sources for entry in await source.lag()]
        return {
            "backend": deployment.backend, "application": deployment.application,
            "uptime_s": round(time.time() - self.started, 3),
            "workers": [{"worker": deployment.worker, "partitions": sorted(runtime.processors), "admin": deployment.admin}],
            "partitions": runtime.partitions, "epochs_per_s": epochs_per_s,
            _COMMITS: [seconds * 1000 for seconds in durations],
            "messages_per_s": messages, "ingress_per_s": ingress, "egress_per_s": egress,
            "lag": lag, "parked": len(runtime.parked()),
        }

    async def overview(self, parts: list[dict[str, typing.Any]]) -> dict[str, typing.Any]:
        """The overview from this process's part (first) and the other workers'."""
        merged = dict(parts[0])
        for part in parts[1:]:
            for key in ("epochs_per_s", "messages_per_s", "ingress_per_s", "egress_per_s", "parked"):
                merged[key] += part[key]
            for key in ("workers", "lag", _COMMITS):
                merged[key] = merged[key] + part[key]
        merged["workers"] = sorted(merged["workers"], key=lambda worker: worker["worker"])
        merged["lag"] = sorted(merged["lag"], key=lambda entry: (entry["ingress"], entry["topic"], entry["partition"]))
        merged["commit_latency_ms"] = percentiles(merged.pop(_COMMITS))
        for key in ("epochs_per_s", "messages_per_s", "ingress_per_s", "egress_per_s"):
            merged[key] = round(merged[key], 3)
        # the same for every worker (a table or a topic of the application): asked once
        merged["dead_letters"] = await asyncio.to_thread(self.store.dead_letter_count)
        return merged

    # -- GET /graph ---------------------------------------------------------------------------------------

    def graph_part(self) -> dict[str, typing.Any]:
        deployment = self.deployment
        functions = [typename for binding in self.functions() for typename in binding["function_types"]]
        nodes = {f"function:{typename}" for typename in sorted(functions)[:MAX_FUNCTION_TYPE_LABELS]}
        nodes |= {f"ingress:{id}" for id in deployment.ingresses} | {f"egress:{id}" for id in deployment.egresses}
        edges = []
        for flow in self.runtime.flows.flows():
            nodes |= {flow.sender, flow.target}
            edges.append({"from": flow.sender, "to": flow.target, "messages": flow.messages, "per_s": flow.per_s})
        return {"nodes": [_node(id) for id in sorted(nodes)], "edges": edges}

    @staticmethod
    def graph(parts: list[dict[str, typing.Any]]) -> dict[str, typing.Any]:
        nodes: dict[str, dict[str, str]] = {}
        edges: dict[tuple[str, str], dict[str, typing.Any]] = {}
        for part in parts:
            nodes.update((node["id"], node) for node in part["nodes"])
            for edge in part["edges"]:
                key = (edge["from"], edge["to"])
                if key in edges:
                    edges[key]["messages"] += edge["messages"]
                    edges[key]["per_s"] += edge["per_s"]
                else:
                    edges[key] = dict(edge)
        for edge in edges.values():
            edge["per_s"] = round(edge["per_s"], 3)
        return {"nodes": [nodes[id] for id in sorted(nodes)], "edges": [edges[key] for key in sorted(edges)]}

    # -- GET /functions/{namespace}/{type} ----------------------------------------------------------------

    async def function_part(self, typename: str) -> dict[str, typing.Any] | None:
        """This process's part of a function type (None: no function has that type)."""
        invoker = self.runtime.resolve(typename)
        if invoker is None:
            return None
        if isinstance(invoker, RemoteInvoker):
            endpoint, health = invoker.url_for(typename), invoker.health.describe()["status"]
        else:
            endpoint, health = "embedded", "ok"  # runs in this process: nothing between it and the runtime
        stats = self.runtime.stats.get(typename)
        ids = await asyncio.to_thread(self.store.addresses, typename, "", MAX_COUNTED_ADDRESSES + 1)
        return {
            "typename": typename, "endpoint": endpoint, "health": health,
            "calls": 0 if stats is None else stats.batches, "failures": 0 if stats is None else stats.failures,
            "messages": 0 if stats is None else stats.messages_in,
            "largest_batch": 0 if stats is None else stats.largest_batch,
            _LATENCIES: [] if stats is None else [seconds * 1000 for seconds in stats.latencies],
            "addresses": len(ids),
        }

    @staticmethod
    def function(parts: list[dict[str, typing.Any]]) -> dict[str, typing.Any]:
        """A function type's calls over the parts of every worker."""
        first = parts[0]
        calls = sum(part["calls"] for part in parts)
        failures = sum(part["failures"] for part in parts)
        messages = sum(part["messages"] for part in parts)
        largest = max(part["largest_batch"] for part in parts)
        addresses = sum(part["addresses"] for part in parts)
        # an endpoint failing for any worker is failing; else ok once any worker called it
        healths = {part["health"] for part in parts}
        health = next((h for h in ("failing", "ok") if h in healths), first["health"])
        return {
            "typename": first["typename"], "endpoint": first["endpoint"], "health": health,
            "calls": calls, "failures": failures, "error_rate": round(failures / calls, 4) if calls else 0.0,
            "latency_ms": percentiles([sample for part in parts for sample in part[_LATENCIES]]),
            "batch_size": {"mean": round(messages / calls, 3) if calls else None, "max": largest or None},
            "addresses": addresses if addresses <= MAX_COUNTED_ADDRESSES else None,
        }


def _node(id: str) -> dict[str, str]:
    kind, _, name = id.partition(":")
    return {"id": id, "kind": kind, "name": name}
