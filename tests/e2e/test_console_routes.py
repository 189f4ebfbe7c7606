"""The console's observation routes against the shopping-cart example run by `pystatefun run` (embedded
backend), with its functions embedded and served remotely: GET /graph has the example's real flows with
their counts, GET /overview's numbers move with the traffic, a failure and a skip show in its parked and
dead-letter counts, and GET /functions/{ns}/{type} has each function's endpoint, calls and batches."""

from __future__ import annotations

import json
import time

import pytest

from .conftest import CART, Deployment
from .processes import Runtime, request

INGRESS = "ingress:io.statefun.playground/ingress"
EGRESS = "egress:io.statefun.playground/egress"
CART_FN = "function:com.example/user-shopping-cart"
STOCK_FN = "function:com.example/stock"


def admin(runtime: Runtime, method: str, path: str) -> tuple[int, dict]:
    reply = request(runtime.admin_port, method, path)
    return reply.status, json.loads(reply.body)


def get(runtime: Runtime, path: str) -> dict:
    status, body = admin(runtime, "GET", path)
    assert status == 200, body
    return body


def send(runtime: Runtime, path: str, typename: str, body: dict) -> None:
    reply = runtime.send(path, f"com.example/{typename}", json.dumps(body).encode())
    assert reply.status in (200, 202), reply


@pytest.fixture(params=["embedded", "remote-pystatefun"])
def deployment(request, tmp_path):
    deployment = Deployment(request.param, CART, "shopping_cart:functions", tmp_path / "data")
    try:
        yield deployment
    finally:
        deployment.stop()


def test_the_graph_overview_and_function_pages_show_the_shopping_carts_traffic(deployment):
    runtime = deployment.runtime
    graph = get(runtime, "/graph")
    assert graph["edges"] == []
    nodes = {node["id"]: node for node in graph["nodes"]}
    assert nodes[INGRESS] == {"id": INGRESS, "kind": "ingress", "name": "io.statefun.playground/ingress"}
    assert nodes[EGRESS]["kind"] == "egress"
    if deployment.server is None:  # embedded: every function type is known before it runs
        assert nodes[CART_FN] == {"id": CART_FN, "kind": "function", "name": "com.example/user-shopping-cart"}
    before = get(runtime, "/overview")
    assert before["backend"] == "embedded" and before["application"] == "data"
    assert before["partitions"] == 8 and [w["partitions"] for w in before["workers"]] == [list(range(8))]
    assert before["workers"][0]["admin"] == f"http://127.0.0.1:{runtime.admin_port}"
    assert (before["epochs_per_s"], before["messages_per_s"], before["ingress_per_s"], before["egress_per_s"]) == (0, 0, 0, 0)
    assert before["commit_latency_ms"] == {"p50": None, "p99": None}
    assert (before["parked"], before["dead_letters"], before["lag"]) == (0, 0, [])

    send(runtime, "/com.example/stock/socks", "RestockItem", {"quantity": 10})
    users = ["alice", "bob", "carol"]
    for user in users:
        send(runtime, f"/com.example/user-shopping-cart/{user}", "AddToCart", {"sku": "socks", "quantity": 2})
    for user in users[:2]:  # request/reply: the answer is the receipt, so everything before it is counted
        send(runtime, f"/com.example/user-shopping-cart/{user}?wait=30", "Checkout", {})

    edges = {(edge["from"], edge["to"]): edge for edge in get(runtime, "/graph")["edges"]}
    assert {key: edge["messages"] for key, edge in edges.items()} == {
        (INGRESS, STOCK_FN): 1,  # the restock
        (INGRESS, CART_FN): 5,  # three adds, two checkouts
        (CART_FN, STOCK_FN): 3,  # an item request per add
        (STOCK_FN, CART_FN): 3,  # its availability
        (CART_FN, EGRESS): 2,  # a receipt per checkout
        (CART_FN, INGRESS): 2,  # and the reply to the checkout request
    }
    assert all(edge["per_s"] > 0 for edge in edges.values())

    after = get(runtime, "/overview")
    assert after["epochs_per_s"] > 0 and after["ingress_per_s"] > 0 and after["egress_per_s"] > 0
    assert after["messages_per_s"] > after["ingress_per_s"]  # the functions' own messages count too
    assert 0 < after["commit_latency_ms"]["p50"] <= after["commit_latency_ms"]["p99"]

    stock = get(runtime, "/functions/com.example/stock")
    if deployment.server is None:
        assert (stock["endpoint"], stock["health"]) == ("embedded", "ok")
    else:
        assert stock["endpoint"] == f"http://127.0.0.1:{deployment.server.port}/statefun"
        assert stock["health"] == "ok"  # the endpoint answered
    assert stock["typename"] == "com.example/stock"
    assert stock["calls"] >= 1 and (stock["failures"], stock["error_rate"]) == (0, 0.0)
    # four messages (the restock, three item requests) in its batches
    assert round(stock["batch_size"]["mean"] * stock["calls"]) == 4 and 1 <= stock["batch_size"]["max"] <= 4
    assert 0 < stock["latency_ms"]["p50"] <= stock["latency_ms"]["p99"]
    assert stock["addresses"] == 1  # socks
    assert get(runtime, "/functions/com.example/user-shopping-cart")["addresses"] == 1  # carol, who has not checked out

    # a message the cart cannot handle parks its address; skipping it makes it a dead letter
    send(runtime, "/com.example/user-shopping-cart/mallory", "RestockItem", {"quantity": 1})
    deadline = time.monotonic() + 60  # parked once the runtime ran the batch (a remote one after its retries)
    while get(runtime, "/overview")["parked"] == 0:
        assert time.monotonic() < deadline, "com.example/user-shopping-cart/mallory did not park"
        time.sleep(0.05)
    cart = get(runtime, "/functions/com.example/user-shopping-cart")
    assert cart["failures"] >= 1 and cart["error_rate"] == round(cart["failures"] / cart["calls"], 4)
    status, _ = admin(runtime, "POST", "/parked/com.example/user-shopping-cart/mallory/skip")
    assert status == 200
    overview = get(runtime, "/overview")
    assert (overview["parked"], overview["dead_letters"]) == (0, 1)


def test_a_function_type_no_binding_has_is_refused(deployment):
    status, body = admin(deployment.runtime, "GET", "/functions/org.other/thing")
    assert status == 404 and "org.other/thing" in body["error"]
