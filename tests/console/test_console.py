"""The web console in a real headless Chromium against the shopping-cart example (with apps/ops.py beside
it) run by `pystatefun run`: every page loads without console errors, and each repair done in the page
takes effect, checked through the admin API and the egress, not through the page."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from e2e.processes import Runtime, request
from pystatefun import StringType

from .harness import SKIP_WITHOUT_PLAYWRIGHT, App, Page, application, shop_traffic, wait_until

expect = pytest.importorskip("playwright.sync_api", reason=SKIP_WITHOUT_PLAYWRIGHT).expect

CART = "com.example/user-shopping-cart"
STOCK = "com.example/stock"
STRING = "io.statefun.types/string"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("console")
    fixed = folder / "fixed"
    runtime = Runtime(application(folder / "app"), folder / "data", env={"OPS_FIXED": str(fixed)}).start()
    try:
        app = App.of(runtime)
        app.fixed = fixed
        shop_traffic(app)
        yield app
    finally:
        runtime.stop()


@pytest.fixture
def page(context, app):
    page = Page(context, app)
    yield page
    assert page.errors == []


def test_the_console_is_served_as_its_own_files_only(app):
    index = request(app.admin_port, "GET", "/ui/")
    assert index.status == 200 and index.headers["Content-Type"].startswith("text/html")
    script = request(app.admin_port, "GET", "/ui/static/app.js")
    assert script.status == 200 and script.headers["Content-Type"].startswith("text/javascript")
    for reply in (index, script):  # revalidated after an upgrade; this origin only, never framed
        assert reply.headers["Cache-Control"] == "no-cache"
        assert "default-src 'self'" in reply.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in reply.headers["Content-Security-Policy"]
    for path in ("/ui/static/no-such.js", "/ui/static/..%2Fconsole.py", "/ui/static/%2e%2e/console.py"):
        assert request(app.admin_port, "GET", path).status == 404, path
    assert request(app.admin_port, "GET", "/ui").headers["Location"] == "/ui/"


def test_every_page_loads_without_console_errors(page, app):
    view = page.open("overview")
    expect(view.get_by_text("Updated")).to_be_visible()
    expect(view.locator(".figure", has_text="Backend")).to_contain_text("embedded")
    expect(view.locator(".figure", has_text="Partitions")).to_contain_text(str(app.admin("GET", "/health")[1]["partitions"]))
    page.screenshot("overview")
    page.open("graph")
    expect(view.locator("svg.graph .node").first).to_be_visible()
    page.open(f"addresses?type={STOCK}&id=socks")
    expect(view.get_by_role("link", name="socks")).to_be_visible()
    expect(view.locator("table.states")).to_contain_text("stock")
    page.open("failures")
    expect(view.get_by_role("heading", name="Dead letters")).to_be_visible()
    expect(view.get_by_role("heading", name="Parked addresses")).to_be_visible()


def test_the_graph_shows_the_shopping_carts_flows(page, app):
    view = page.open("graph")
    flows = {(edge["from"], edge["to"]) for edge in app.admin("GET", "/graph")[1]["edges"]}
    cart, stock = f"function:{CART}", f"function:{STOCK}"
    assert {(cart, stock), (stock, cart)} <= flows
    assert any(a == cart and b.startswith("egress:") for a, b in flows)
    assert any(a.startswith("ingress:") and b == cart for a, b in flows)
    for source, target in flows:  # every flow the runtime counted is drawn, with its rate
        expect(view.locator(f'svg.graph .edge[data-from="{source}"][data-to="{target}"]')).to_contain_text("/s")
    # from the keyboard: the focus stays on a node while the page polls and draws the graph again
    view.locator(f'svg.graph a.node[data-id="{stock}"]').focus()
    drawn = view.get_by_text("Updated").inner_text()
    expect(view.get_by_text("Updated")).not_to_have_text(drawn)
    assert view.evaluate("document.activeElement.dataset.id") == stock
    view.keyboard.press("Enter")
    detail = view.locator("aside.detail")
    expect(detail.get_by_role("heading", name=STOCK)).to_be_visible()
    shown = app.admin("GET", f"/functions/{STOCK}")[1]
    expect(detail).to_contain_text(shown["endpoint"])
    expect(detail).to_contain_text("Error rate")
    page.screenshot("graph")


LAYOUT = """async () => {
  const {layout} = await import("./static/layout.js");
  const node = (id, kind) => ({id, kind, name: id});
  const edge = (from, to) => ({from, to, messages: 1, per_s: 1});
  return layout(
    [node("i", "ingress"), node("a", "function"), node("b", "function"), node("c", "function"),
     node("d", "function"), node("e", "egress"), node("z", "function")],
    [edge("i", "a"), edge("a", "b"), edge("b", "a"), edge("a", "c"), edge("c", "d"), edge("d", "e"),
     edge("i", "d"), edge("b", "e"), edge("a", "a"), edge("a", "gone")],
    {width: 100, height: 40, layerGap: 50, rowGap: 20, margin: 48});
}"""


def test_the_graph_layout_layers_the_flows_and_keeps_nodes_apart(page):
    drawn = page.open("graph").evaluate(LAYOUT)
    nodes = {node["id"]: node for node in drawn["nodes"]}
    assert {id: node["layer"] for id, node in nodes.items()} == {"i": 0, "a": 1, "b": 2, "c": 2, "d": 3, "e": 4, "z": None}
    edges = {(edge["from"], edge["to"]): edge for edge in drawn["edges"]}
    assert ("a", "gone") not in edges  # a flow to a node not in the graph is left out
    assert [pair for pair, edge in edges.items() if edge["back"]] == [("b", "a")]  # the cycle, broken once
    # a flow across layers passes through a slot in each layer between: one curve per layer it crosses
    assert edges[("i", "d")]["path"].count(" C ") == 3 and edges[("b", "e")]["path"].count(" C ") == 2
    boxes = [(node["x"], node["y"], node["x"] + 100, node["y"] + 40) for node in nodes.values()]
    for n, a in enumerate(boxes):
        assert 0 <= a[0] and a[2] <= drawn["width"] and 0 <= a[1] and a[3] <= drawn["height"]
        for b in boxes[n + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)  # apart
    assert nodes["z"]["idle"] and nodes["z"]["y"] > max(n["y"] for id, n in nodes.items() if id != "z")


def test_a_state_edit_is_checked_by_the_api_and_read_by_the_function(page, app):
    app.send(STOCK, "wool", "com.example/RestockItem", {"quantity": 1})
    wait_until(lambda: app.admin("GET", f"/state/{STOCK}/wool")[1]["state"], "wool in stock")
    view = page.open(f"addresses?type={STOCK}&id=wool")
    page.refused(400, f"/state/{STOCK}/wool")
    view.get_by_role("button", name="Edit stock").click()
    value = view.get_by_label("New value of stock")
    value.fill('"lots"')
    view.get_by_role("button", name="Save stock").click()
    status, refused = app.admin("PUT", f"/state/{STOCK}/wool", {"stock": {"value": "lots"}})
    assert status == 400
    expect(view.locator("tr.editing .outcome.error")).to_have_text(refused["error"])  # as the API words it
    assert app.admin("GET", f"/state/{STOCK}/wool")[1]["state"]["stock"]["value"] == 1

    value.fill("40")
    view.get_by_role("button", name="Save stock").click()
    expect(view.get_by_text("Saved stock.")).to_be_visible()
    assert app.admin("GET", f"/state/{STOCK}/wool")[1]["state"]["stock"]["value"] == 40
    page.screenshot("addresses")
    # the function reads the edited stock: 40 fit only in a stock of 40, and the receipt says so
    app.send(CART, "carol", "com.example/AddToCart", {"sku": "wool", "quantity": 40})
    wait_until(lambda: app.admin("GET", f"/state/{CART}/carol")[1]["state"], "carol's cart holds the wool")
    app.send(CART, "carol", "com.example/Checkout", {})
    wait_until(lambda: {"user": "carol", "items": {"wool": 40}} in app.egress("receipts"), "carol's receipt")
    assert app.admin("GET", f"/state/{STOCK}/wool")[1]["state"]["stock"]["value"] == 0

    view.reload()
    view.get_by_role("button", name="Delete stock").click()
    view.get_by_role("button", name="Delete stock for good").click()
    expect(view.get_by_text("Deleted stock.")).to_be_visible()
    assert app.admin("GET", f"/state/{STOCK}/wool")[1]["state"] == {}


def test_addresses_are_listed_a_page_at_a_time(page, app):
    ids = [f"item{n:03}" for n in range(120)]
    for id in ids:
        app.send(STOCK, id, "com.example/RestockItem", {"quantity": 1})
    wait_until(lambda: len(app.admin("GET", f"/addresses/{STOCK}?after=item&limit=1000")[1]["ids"]) >= 120,
               "the 120 items listed")
    view = page.open(f"addresses?type={STOCK}")
    listed = view.locator("ol.ids a")
    expect(listed).to_have_count(50)
    expect(listed.first).to_have_text(sorted(["socks", *ids])[0])
    view.get_by_role("button", name="Next page").click()
    expect(listed.first).to_have_text(ids[50])
    expect(listed).to_have_count(50)
    view.get_by_role("button", name="Previous page").click()
    expect(listed.first).to_have_text(ids[0])
    view.get_by_label("Address id").fill("item110")
    view.get_by_role("button", name="List from here").click()
    expect(listed.first).to_have_text("item111")
    listings = [urlsplit(url) for url in page.requests if "/addresses/" in url]
    assert listings and all(parse_qs(url.query)["limit"] == ["50"] for url in listings)  # never more than a page


def test_a_delayed_message_cancelled_in_the_page_never_arrives(page, app):
    # two reminders due in the same way; the later one, left alone, shows when the cancelled one would be due
    for label in ("cancelled", "witness"):
        app.send("ops/reminder", "r", "ops/Remind", {"label": label, "seconds": 30})
    wait_until(lambda: len(app.admin("GET", "/delayed/ops/reminder/r")[1]) == 2, "both reminders pending")
    view = page.open("addresses?type=ops/reminder&id=r")
    row = view.locator("table.delayed tr", has_text="cancelled")
    row.get_by_role("button", name="Cancel timer").click()
    expect(view.get_by_text("its message will not be sent")).to_be_visible()
    expect(row).to_have_count(0)
    expect(view.locator("table.delayed tr", has_text="witness")).to_have_count(1)
    assert [timer["value"] for timer in app.admin("GET", "/delayed/ops/reminder/r")[1]] == ["witness"]
    wait_until(lambda: {"key": "witness", "message": "witness"} in app.egress("ops"), "the witness reminder", timeout=120)
    assert not [record for record in app.egress("ops") if record["key"] == "cancelled"]


def send_text(app: App, id: str, text: str) -> None:
    app.send("ops/fragile", id, STRING, StringType.serializer().serialize(text))


def test_resume_skip_and_replay_in_the_page(page, app):
    for id in ("p1", "p2"):
        send_text(app, id, "poison")
        send_text(app, id, f"after-{id}")
    wait_until(lambda: len(app.admin("GET", "/parked")[1]) == 2, "both addresses parked")
    view = page.open("failures")
    expect(view.locator("table.parked tr", has_text="ops/fragile/p1")).to_contain_text("cannot digest poison")
    page.screenshot("failures-parked")

    view.get_by_role("button", name="Skip ops/fragile/p2").click()
    expect(view.get_by_text("Skipped the failed message of ops/fragile/p2")).to_be_visible()
    assert [entry["address"] for entry in app.admin("GET", "/parked")[1]] == ["ops/fragile/p1"]
    wait_until(lambda: {"key": "p2", "message": "after-p2"} in app.egress("ops"), "p2 goes on after the skip")
    letters = [letter for letter in app.admin("GET", "/dead-letters")[1] if letter["target"] == "ops/fragile/p2"]
    assert len(letters) == 1 and "skipped by an operator" in letters[0]["reason"]

    app.fixed.touch()  # the fix is deployed
    view.get_by_role("button", name="Resume ops/fragile/p1").click()
    expect(view.get_by_text("Resumed ops/fragile/p1")).to_be_visible()
    wait_until(lambda: {"key": "p1", "message": "after-p1"} in app.egress("ops"), "p1 resumed")
    assert [r["message"] for r in app.egress("ops") if r["key"] == "p1"] == ["poison", "after-p1"]
    assert app.admin("GET", "/parked")[1] == []

    seq = letters[0]["seq"]
    view = page.open(f"failures?letters_after={seq - 1}")  # the page that starts with it, whatever came before
    view.get_by_role("button", name=f"Replay dead letter {seq}", exact=True).click()
    expect(view.get_by_text(f"Dead letter {seq} sent again to ops/fragile/p2.")).to_be_visible()
    wait_until(lambda: {"key": "p2", "message": "poison"} in app.egress("ops"), "the replayed dead letter")
    page.screenshot("failures")
    view.get_by_role("button", name=f"Replay dead letter {seq}", exact=True).click()  # exactly once, however often
    expect(view.get_by_text(f"Dead letter {seq} was replayed before")).to_be_visible()
    send_text(app, "p2", "last")  # behind a second replay, had there been one
    wait_until(lambda: {"key": "p2", "message": "last"} in app.egress("ops"), "p2's last message")
    assert [r["message"] for r in app.egress("ops") if r["key"] == "p2"] == ["after-p2", "poison", "last"]


def test_a_message_sent_from_the_page_is_answered(page, app):
    app.send(STOCK, "caps", "com.example/RestockItem", {"quantity": 5})
    view = page.open(f"addresses?type={CART}&id=dave")
    view.get_by_label("Content-Type").fill("application/vnd.com.example/AddToCart")
    view.get_by_label("Body").fill('{"sku": "caps", "quantity": 3}')
    view.get_by_role("button", name="Send to dave").click()
    expect(view.get_by_text("Accepted")).to_be_visible()
    wait_until(lambda: app.admin("GET", f"/state/{CART}/dave")[1]["state"], "dave's cart holds the caps")
    view.get_by_label("Content-Type").fill("application/vnd.com.example/Checkout")
    view.get_by_label("Body").fill("{}")
    view.get_by_label("Wait for the reply (seconds)").fill("30")
    view.get_by_role("button", name="Send to dave").click()
    expect(view.locator("pre.reply")).to_have_text(json.dumps({"user": "dave", "items": {"caps": 3}}, indent=2))
    assert {"user": "dave", "items": {"caps": 3}} in app.egress("receipts")
    page.refused(415, f"/messages/{CART}/dave")
    view.get_by_label("Content-Type").fill("text/plain")
    view.get_by_role("button", name="Send to dave").click()
    refused = request(app.admin_port, "POST", f"/messages/{CART}/dave", b"{}", {"Content-Type": "text/plain"})
    assert refused.status == 415
    expect(view.locator("form.send .outcome.error")).to_have_text(json.loads(refused.body)["error"])


def test_parked_addresses_and_dead_letters_are_listed_a_page_at_a_time(page, app):
    ids = [f"n{n:02}" for n in range(60)]
    for id in ids:
        app.send("ops/refuses", id, STRING, StringType.serializer().serialize("refused"))
    parked = wait_until(lambda: len(every := app.admin("GET", "/parked?limit=1000")[1]) >= 60 and every,
                        "60 addresses parked")
    view = page.open("failures")
    rows = view.locator("table.parked tbody tr")
    expect(rows).to_have_count(50)
    view.get_by_role("button", name="Next page of parked addresses").click()
    expect(rows.first.locator("td").first).to_have_text(parked[50]["address"])
    expect(rows).to_have_count(min(50, len(parked) - 50))
    for id in ids:  # skipped through the API: the page's skip is tested above
        assert app.admin("POST", f"/parked/ops/refuses/{id}/skip")[0] == 200
    letters = wait_until(lambda: len(every := app.admin("GET", "/dead-letters?limit=1000")[1]) >= 60 and every,
                         "the 60 dead letters")
    view = page.open("failures")
    rows = view.locator("table.letters tbody tr")
    expect(rows).to_have_count(50)
    expect(rows.first.locator("td").first).to_have_text(str(letters[0]["seq"]))
    view.get_by_role("button", name="Next page of dead letters").click()
    expect(rows.first.locator("td").first).to_have_text(str(letters[50]["seq"]))
    expect(rows).to_have_count(min(50, len(letters) - 50))
    view.get_by_role("button", name="First page of dead letters").click()
    expect(rows.first.locator("td").first).to_have_text(str(letters[0]["seq"]))
