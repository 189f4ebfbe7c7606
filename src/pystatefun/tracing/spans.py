"""The runtime's spans, and the trace context that travels inside messages.

One trace follows a request through the application: the ingress span (an HTTP request, a Kafka record)
is its root, or the child of the ``traceparent`` the request came with; each message carries the W3C
traceparent of the span that sent it (Envelope.trace, kept in the inbox, in delayed messages and in the
Kafka backend's log), and the invocation batch that handles it is a child of that span; a batch's remote
call, its egress records and the messages it sends are its children. A batch holding messages of several
traces is the child of its first message's span and links the others.

Only sampled spans travel: a message whose request was not sampled carries nothing, and its invocation
makes no span (the parent-based samplers would not sample it either), so an unsampled request costs its
ingress span and nothing after it.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import typing

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from pystatefun.runtime.envelope import Envelope
from pystatefun.sdk.address import SdkAddress
from pystatefun.tracing import PARKED

TRACEPARENT = "traceparent"
INSTRUMENTATION = "pystatefun"
MAX_STATUS_CHARS = 1024  # of a parked batch's reason, in its span's status


class Tracing:
    """Makes the runtime's spans with ``provider``'s tracer (the global one when None)."""

    def __init__(self, provider: TracerProvider | None = None):
        self.provider = provider
        self.tracer = (provider or trace.get_tracer_provider()).get_tracer(INSTRUMENTATION)
        self._propagator = TraceContextTextMapPropagator()

    # -- the trace context -----------------------------------------------------------------------------

    @staticmethod
    def traceparent(span: Span) -> str | None:
        """What a message sent under ``span`` carries: its W3C traceparent, or None when it is not sampled."""
        context = span.get_span_context()
        if not context.trace_flags.sampled:
            return None
        return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"

    def _parent(self, traceparent: str | None) -> otel_context.Context | None:
        """The context whose span is the one a traceparent names (None: a root span)."""
        if traceparent is None:
            return None
        return self._propagator.extract({TRACEPARENT: traceparent})

    def _link(self, traceparent: str) -> Link | None:
        context = trace.get_current_span(self._propagator.extract({TRACEPARENT: traceparent})).get_span_context()
        return Link(context) if context.is_valid else None

    @staticmethod
    def context(span: Span) -> contextvars.Context:
        """A copy of the current context with ``span`` current: code run in it (an invocation, its task)
        makes its spans as children of ``span``, and its log lines carry the trace id (TraceIds)."""
        context = contextvars.copy_context()
        context.run(otel_context.attach, trace.set_span_in_context(span))
        return context

    # -- ingresses -------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def http_ingress(self, method: str, path: str, segments: typing.Sequence[str], headers: typing.Mapping[str, str],
                     ingress_id: str) -> typing.Iterator[Span]:
        """The span of one request to an HTTP ingress, current while it is handled; the child of the
        request's own ``traceparent`` header, if it has one. Its name is the method and the route, the
        function type with ``{id}`` (one name per function type, as tracing backends group by name)."""
        attributes = {"http.request.method": method, "url.path": path, "pystatefun.ingress": ingress_id}
        name = method
        if len(segments) == 3:
            route = attributes["http.route"] = f"/{segments[0]}/{segments[1]}/{{id}}"
            name = f"{method} {route}"
        span = self.tracer.start_span(name, context=self._propagator.extract(headers), kind=SpanKind.SERVER,
                                      attributes=attributes)
        with trace.use_span(span, end_on_exit=True):
            yield span

    @staticmethod
    def http_answered(span: Span, status: int) -> None:
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))

    def kafka_ingress(self, ingress_id: str, topic: str, partition: int, offset: int,
                      headers: typing.Sequence[tuple[str, bytes]] | None, targets: typing.Sequence[SdkAddress]) -> Span:
        """The span of one record a Kafka ingress took (ended: the record is in the epoch), the child of
        the record's ``traceparent`` header if it has one."""
        parent = None
        for key, value in headers or ():
            if key == TRACEPARENT and value:
                parent = self._parent(value.decode("latin-1"))
        span = self.tracer.start_span(
            f"process {topic}", context=parent, kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka", "messaging.operation.type": "process",
                "messaging.destination.name": topic, "messaging.destination.partition.id": str(partition),
                "messaging.kafka.offset": offset, "pystatefun.ingress": ingress_id,
                "pystatefun.targets": [f"{t.typename}/{t.id}" for t in targets],
            },
        )
        span.end()
        return span

    # -- invocation batches ----------------------------------------------------------------------------

    def batch(self, target: SdkAddress, batch: typing.Sequence[Envelope], invocation: int, partition: int) -> Span | None:
        """The span of an invocation batch, or None when none of its messages is traced."""
        traces = [envelope.trace for envelope in batch if envelope.trace is not None]
        if not traces:
            return None
        others = [link for link in (self._link(t) for t in dict.fromkeys(traces[1:]) if t != traces[0]) if link]
        return self.tracer.start_span(
            f"invoke {target.typename}", context=self._parent(traces[0]), kind=SpanKind.INTERNAL, links=others,
            attributes={
                "pystatefun.function.type": target.typename, "pystatefun.address.id": target.id,
                "pystatefun.batch.size": len(batch), "pystatefun.invocation": invocation,
                "pystatefun.partition": partition,
            },
        )

    @staticmethod
    def batch_ended(span: Span, outcome: str, reason: str | None = None) -> None:
        span.set_attribute("pystatefun.outcome", outcome)
        if outcome == PARKED:
            span.set_status(Status(StatusCode.ERROR, (reason or "")[:MAX_STATUS_CHARS]))
        span.end()

    def egress(self, parent: Span, egress_typename: str, topic: str) -> None:
        """The span of one egress record a batch wrote (it leaves with the batch's commit)."""
        self.tracer.start_span(
            f"egress {egress_typename}", context=trace.set_span_in_context(parent), kind=SpanKind.PRODUCER,
            attributes={"pystatefun.egress": egress_typename, "pystatefun.egress.topic": topic},
        ).end()

    # -- remote calls ----------------------------------------------------------------------------------

    async def remote_call(self, call: typing.Callable[..., typing.Awaitable[bytes]], url: str, body: bytes) -> bytes:
        """``call(url, body, traceparent=...)`` in a span of its own, the child of the current span (the
        batch's); the function gets the span's traceparent, so that spans its SDK makes join the trace."""
        if not trace.get_current_span().is_recording():  # an untraced batch: its call is not traced either
            return await call(url, body)
        with self.tracer.start_as_current_span(
            "POST", kind=SpanKind.CLIENT, attributes={"http.request.method": "POST", "url.full": url},
        ) as span:
            try:
                answer = await call(url, body, traceparent=self.traceparent(span))
            except Exception as e:
                status = getattr(e, "status", None)
                if status is not None:
                    span.set_attribute("http.response.status_code", status)
                span.set_attribute("error.type", type(e).__name__)
                raise
            span.set_attribute("http.response.status_code", 200)
            return answer


class TraceIds(logging.Filter):
    """Gives log lines written while a span is current its trace and span ids (``trace_id``,
    ``span_id``; logs.py prints them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "trace_id", None) is None:
            context = trace.get_current_span().get_span_context()
            if context.is_valid:
                record.trace_id = f"{context.trace_id:032x}"
                record.span_id = f"{context.span_id:016x}"
        return True
