"""``io.statefun.playground.v1/ingress`` and ``/egress`` (spec §7.1), plus pystatefun's ``host`` and
``idempotency_key_ttl`` keys.

StateFun's playground listens on every interface; pystatefun listens on 127.0.0.1 unless ``host`` says
otherwise, since these endpoints have no authentication.
"""

from __future__ import annotations

from datetime import timedelta

from pystatefun.config.model import MAX_IDEMPOTENCY_KEY_TTL, PlaygroundEgress, PlaygroundIngress
from pystatefun.config.reader import Context, Fields, Invalid, Node, Reported, duration, integer, sequence, string

_port = integer(0, 65535)


def _topics(node: Node) -> tuple[str, ...]:
    topics = sequence(string, nonempty=True, example="greetings")(node)
    duplicates = sorted({topic for topic in topics if topics.count(topic) > 1})
    if duplicates:
        raise Invalid(f"{', '.join(map(repr, duplicates))} listed more than once: list each topic once")
    return topics


def parse_playground_ingress(fields: Fields, ctx: Context) -> PlaygroundIngress:
    port = fields.required("port", _port, example="8090")
    host = fields.optional("host", string, "127.0.0.1")
    ttl = fields.optional("idempotency_key_ttl", duration(MAX_IDEMPOTENCY_KEY_TTL, positive=True), timedelta(hours=24))
    fields.finish(hints={"id": "the playground ingress id is always io.statefun.playground/ingress"})
    if port is None:
        raise Reported
    return PlaygroundIngress(port=port, host=host, idempotency_key_ttl=ttl, origin=ctx.origin)


def parse_playground_egress(fields: Fields, ctx: Context) -> PlaygroundEgress:
    port = fields.required("port", _port, example="8091")
    topics = fields.required("topics", _topics, example="[greetings]")
    host = fields.optional("host", string, "127.0.0.1")
    fields.finish(hints={"id": "the playground egress id is always io.statefun.playground/egress"})
    if port is None or topics is None:
        raise Reported
    return PlaygroundEgress(port=port, topics=topics, host=host, origin=ctx.origin)
