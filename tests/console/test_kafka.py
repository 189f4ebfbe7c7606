"""The console on the Kafka backend: two workers of the shopping cart on a real broker; the console of one
worker shows both (the admin API forwards per-address routes to the owner and gathers listings from every
worker), every page loads without console errors, and a state edit made there is what the other reads."""

from __future__ import annotations

import json

import pytest

from e2e.processes import free_port
from kafka.harness import Worker, create_topics, produce, unique

from .harness import SKIP_WITHOUT_PLAYWRIGHT, App, Page, application, wait_until

expect = pytest.importorskip("playwright.sync_api", reason=SKIP_WITHOUT_PLAYWRIGHT).expect

PARTITIONS = 4
CART = "com.example/user-shopping-cart"
STOCK = "com.example/stock"
USERS = [f"user{n}" for n in range(8)]


RESTOCKS = """\
---
kind: io.statefun.kafka.v1/ingress
spec:
  id: console/restocks
  address: {bootstrap}
  consumerGroupId: {group}
  startupPosition:
    type: earliest
  topics:
    - topic: {topic}
      valueType: com.example/RestockItem
      targets: [com.example/stock]
"""


def test_the_console_of_one_worker_shows_the_whole_application(context, tmp_path, kafka_bootstrap):
    module = application(tmp_path / "app", egress=False)  # no checkout here: the playground egress is the embedded backend's
    topic = unique("restocks")
    create_topics(kafka_bootstrap, topic, partitions=PARTITIONS)
    with module.open("a") as text:  # restocks from a Kafka topic too, for the overview's ingress lag
        text.write(RESTOCKS.format(bootstrap=kafka_bootstrap, group=unique("group"), topic=topic))
    name = unique("console")
    ingress = [free_port(), free_port()]
    workers = [Worker(module, kafka_bootstrap, name, f"w{n}", tmp_path / f"w{n}.log", PARTITIONS,
                      env={"INGRESS_PORT": str(port), "OPS_FIXED": str(tmp_path / "fixed")})
               for n, port in enumerate(ingress)]
    try:
        for worker in workers:
            worker.start()
        first, second = (App(worker.admin_port, port) for worker, port in zip(workers, ingress))
        wait_until(lambda: [bool(w["partitions"]) for w in second.admin("GET", "/overview")[1]["workers"]] == [True, True],
                   "both workers own partitions")
        # one record in each partition: the lag of a partition the ingress has read nothing of is not known
        produce(kafka_bootstrap, topic, [(b"socks", json.dumps({"quantity": 25}).encode(), p) for p in range(PARTITIONS)])
        wait_until(lambda: first.admin("GET", f"/state/{STOCK}/socks")[1]["state"].get("stock", {}).get("value") == 100,
                   "socks restocked from every partition of the topic")
        for user in USERS:
            first.send(CART, user, "com.example/AddToCart", {"sku": "socks", "quantity": 1})
        wait_until(lambda: second.admin("GET", f"/addresses/{CART}")[1]["ids"] == USERS, "every cart filled")

        page = Page(context, second)
        view = page.open("overview")
        expect(view.locator(".figure", has_text="Backend")).to_contain_text("kafka")
        expect(view.locator("table").first.locator("tbody tr")).to_have_count(2)
        lag = view.locator("table", has=view.locator("caption", has_text="Ingress lag"))
        expect(lag.locator("tbody tr")).to_have_count(PARTITIONS)  # every partition of the topic, from both workers
        expect(lag).to_contain_text(topic)
        page.screenshot("kafka-overview")
        page.open("graph")
        for source, target in ((CART, STOCK), (STOCK, CART)):
            expect(view.locator(f'svg.graph .edge[data-from="function:{source}"][data-to="function:{target}"]')).to_have_count(1)
        page.open(f"addresses?type={CART}")
        expect(view.locator("ol.ids a")).to_have_text(USERS)  # from both workers, merged in order
        page.open(f"addresses?type={STOCK}&id=socks")
        view.get_by_role("button", name="Edit stock").click()
        view.get_by_label("New value of stock").fill("500")
        view.get_by_role("button", name="Save stock").click()
        expect(view.get_by_text("Saved stock.")).to_be_visible()
        assert first.admin("GET", f"/state/{STOCK}/socks")[1]["state"]["stock"]["value"] == 500
        page.open("failures")
        expect(view.get_by_role("heading", name="Dead letters")).to_be_visible()
        expect(view.get_by_text("No dead letters.")).to_be_visible()
        assert page.errors == []
    finally:
        for worker in workers:
            worker.kill()
