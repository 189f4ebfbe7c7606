"""Flow counting (runtime/flows.py) on a clock the test moves: totals, rates over the window, the cap
on function types, replies, and the commit rate and latency window."""

from __future__ import annotations

import pytest

from pystatefun.runtime.flows import FROM_INGRESS, SENT, TO_EGRESS, Flow, Flows, RecentCommits


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def by_edge(flows: Flows) -> dict[tuple[str, str], Flow]:
    return {(flow.sender, flow.target): flow for flow in flows.flows()}


def test_totals_stay_and_rates_cover_only_the_last_window():
    clock = Clock()
    flows = Flows(window=10, clock=clock)
    for _ in range(30):
        flows.count(FROM_INGRESS, "io.statefun.playground/ingress", "shop/cart")
    flows.tick()  # their epoch's commit, in the same second
    clock.now += 1
    for _ in range(20):
        flows.count(SENT, "shop/cart", "shop/stock")
    flows.count(TO_EGRESS, "shop/cart", "shop/receipts")
    flows.tick()
    clock.now += 1  # two seconds since the start (at 1000): the rates are over those two
    edges = by_edge(flows)
    assert edges[("ingress:io.statefun.playground/ingress", "function:shop/cart")] == Flow(
        "ingress:io.statefun.playground/ingress", "function:shop/cart", 30, 15.0)
    assert edges[("function:shop/cart", "function:shop/stock")].per_s == 10.0
    assert edges[("function:shop/cart", "egress:shop/receipts")].messages == 1

    clock.now += 8.5  # the first second left the window (the last 10 s began at 1001), the second is in it
    edges = by_edge(flows)
    assert edges[("ingress:io.statefun.playground/ingress", "function:shop/cart")].per_s == 0.0
    assert edges[("function:shop/cart", "function:shop/stock")].per_s == pytest.approx(20 / 9.5)
    clock.now += 1  # all of it left the window: the totals stay
    edges = by_edge(flows)
    assert {edge: (flow.messages, flow.per_s) for edge, flow in edges.items()} == {
        ("ingress:io.statefun.playground/ingress", "function:shop/cart"): (30, 0.0),
        ("function:shop/cart", "function:shop/stock"): (20, 0.0),
        ("function:shop/cart", "egress:shop/receipts"): (1, 0.0),
    }


def test_function_types_beyond_the_cap_are_counted_as_other_ingresses_and_egresses_never():
    flows = Flows(max_function_types=2, clock=Clock())
    flows.count(SENT, "a/one", "a/two")
    for n in range(100):  # made-up type names (a namespace binding takes any)
        flows.count(SENT, "a/one", f"a/made-up-{n}")
        flows.count(FROM_INGRESS, f"ingress-{n % 3}", f"a/made-up-{n}")
    flows.count(TO_EGRESS, "a/made-up-1", "receipts")
    edges = by_edge(flows)
    assert set(edges) == {
        ("function:a/one", "function:a/two"), ("function:a/one", "function:other"),
        ("ingress:ingress-0", "function:other"), ("ingress:ingress-1", "function:other"),
        ("ingress:ingress-2", "function:other"), ("function:other", "egress:receipts"),
    }
    assert edges[("function:a/one", "function:other")].messages == 100


def test_a_reply_is_a_flow_to_the_ingress_that_answers_and_none_without_one():
    flows = Flows(clock=Clock())
    flows.count(SENT, "shop/cart", "pystatefun/reply")
    assert flows.flows() == []
    flows.replies_to = "io.statefun.playground/ingress"
    assert [(flow.sender, flow.target) for flow in flows.flows()] == [
        ("function:shop/cart", "ingress:io.statefun.playground/ingress")]


def test_the_commit_window_gives_the_rate_and_durations_of_its_commits():
    clock = Clock()
    commits = RecentCommits(keep=4, clock=clock)
    assert commits.within(10) == (0.0, [])
    clock.now += 20
    for seconds in (0.001, 0.002):
        commits.add(seconds)
    assert commits.within(10) == (0.2, [0.001, 0.002])
    clock.now += 10
    assert commits.within(10) == (0.0, [])
    for _ in range(4):  # more than it keeps in the window: the rate is over the ones kept
        clock.now += 0.5
        commits.add(0.003)
    assert commits.within(10) == (4 / 1.5, [0.003] * 4)


def test_counts_since_the_last_tick_are_in_the_second_of_the_next_tick_or_read():
    clock = Clock()
    flows = Flows(window=10, clock=clock)
    flows.count(SENT, "a/one", "a/two")
    clock.now += 5  # no commit meanwhile: the message counts in the second it is read in
    flows.tick()
    clock.now += 9.5
    assert [flow.per_s for flow in flows.flows()] == [1 / 9.5]
    clock.now += 1
    assert [(flow.messages, flow.per_s) for flow in flows.flows()] == [(1, 0.0)]


def test_a_window_shorter_than_a_second_is_refused():
    with pytest.raises(ValueError, match="at least 1 second"):
        Flows(window=0)
