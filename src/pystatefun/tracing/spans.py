"""The runtime's spans, and the trace context that travels inside messages.

One trace follows a request through the application: the ingress span (an HTTP request, a Kafka record)
is its root, or the child of the ``traceparent`` the request came with; each message carries the W3C
traceparent of the span that sent it (Envelope.trace, kept in the inbox, in delayed messages and in the
Kafka backend's log), and the invocation batch that handles it is a child of that span; a batch's remote
call, its egress records and the messages it sends are its children. A batch holding messages of several
traces is the child of its first message's span and links the others.

Only sampled spans travel: a message whose request was not sampled carries nothing, and its invocation
makes no span (the parent-based samplers would not sample it either). An unsampled request does not even
get a span object: the ingress asks the sampler first (``_start``), so with 1% sampled, 99% of requests
cost a trace id and a sampling decision, a few microseconds, and nothing after them.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import typing

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Sampler, TraceIdRatioBased
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from pystatefun.runtime.envelope import Envelope
from pystatefun.sdk.address import SdkAddress
from pystatefun.tracing import PARKED

TRACEPARENT = "traceparent"
_ROOT = otel_context.Context()  # a context without a span: what a root span starts from
INSTRUMENTATION = "pystatefun"
MAX_STATUS_CHARS = 1024  # of a parked batch's reason, in its span's status


class _ChosenTraceIds(IdGenerator):
    """The provider's id generator, except that the thread's next trace id can be chosen: the one whose
    sampling decision an ingress took already (Tracing._start), so that its span gets that decision."""

    def __init__(self, generator: IdGenerator):
        self.generator = generator
        self.chosen = threading.local()

    def generate_span_id(self) -> int:
        return self.generator.generate_span_id()

    def generate_trace_id(self) -> int:
        chosen = getattr(self.chosen, "trace_id", None)
        if chosen is None:
            return self.generator.generate_trace_id()
        self.chosen.trace_id = None
        return chosen

    def is_trace_id_random(self) -> bool:
        return self.generator.is_trace_id_random()


def _root_decision(root: Sampler | None) -> typing.Callable[[int], bool] | None:
    """Whether a trace id is sampled, as ``root`` decides a trace without a parent, in one expression for
    the SDK's standard samplers (the same rule as theirs, on their own bound); None for others."""
    if root is ALWAYS_ON:
        return lambda trace_id: True
    if root is ALWAYS_OFF:
        return lambda trace_id: False
    if isinstance(root, TraceIdRatioBased):
        limit, bound = root.TRACE_ID_LIMIT, root.bound
        return lambda trace_id: trace_id & limit < bound
    return None


class Tracing:
    """Makes the runtime's spans with ``provider``'s tracer. ``root``: the sampler that decides the traces
    without a parent (the root of a ParentBased sampler, config.py); when it is a standard one, an ingress
    decides an unsampled request without calling the SDK's sampler at all."""

    def __init__(self, provider: TracerProvider, root: Sampler | None = None):
        self.provider = provider
        self._ids = _ChosenTraceIds(provider.id_generator)
        provider.id_generator = self._ids  # before get_tracer: a tracer keeps the generator it is given
        self.tracer = provider.get_tracer(INSTRUMENTATION)
        self._sampler = provider.sampler
        self._root_sampled = _root_decision(root)
        self._propagator = TraceContextTextMapPropagator()

    # -- the trace context -----------------------------------------------------------------------------

    @staticmethod
    def traceparent(span: Span) -> str | None:
        """What a message sent under ``span`` carries: its W3C traceparent, or None when it is not sampled."""
        context = span.get_span_context()
        if not context.trace_flags.sampled:
            return None
        return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"

    @staticmethod
    def _carried(traceparent: str) -> SpanContext:
        """The span a message's traceparent names. Only ``traceparent`` writes those, so they are read by
        position; a traceparent from outside (a request's header) goes through the propagator, which
        checks it."""
        return SpanContext(int(traceparent[3:35], 16), int(traceparent[36:52], 16), is_remote=True,
                           trace_flags=TraceFlags(int(traceparent[53:55], 16)))

    @staticmethod
    def context(span: Span) -> contextvars.Context:
        """A copy of the current context with ``span`` current: code run in it (an invocation, its task)
        makes its spans as children of ``span``, and its log lines carry the trace id (TraceIds)."""
        context = contextvars.copy_context()
        context.run(otel_context.attach, trace.set_span_in_context(span))
        return context

    # -- ingresses -------------------------------------------------------------------------------------

    def _start(self, name: str, kind: SpanKind, traceparent: str | None) -> Span | None:
        """The span of something that came from outside, the child of the ``traceparent`` it came with,
        else a root; None when it is not sampled. A root's sampling decision is taken before any span is
        made, on the trace id the span then gets: most requests are not sampled, and a span costs more."""
        if traceparent is not None:
            parent = self._propagator.extract({TRACEPARENT: traceparent})
            span = self.tracer.start_span(name, context=parent, kind=kind)
            return span if span.is_recording() else None
        trace_id = self._ids.generator.generate_trace_id()
        decide = self._root_sampled
        if decide is not None:
            if not decide(trace_id):
                return None
        elif not self._sampler.should_sample(_ROOT, trace_id, name, kind).decision.is_sampled():
            return None
        self._ids.chosen.trace_id = trace_id
        return self.tracer.start_span(name, context=_ROOT, kind=kind)

    def http_ingress(self, method: str, path: str, segments: typing.Sequence[str], headers: typing.Mapping[str, str],
                     ingress_id: str) -> Span | None:
        """The span of one request to an HTTP ingress (None: not sampled), the child of the request's own
        ``traceparent`` header if it has one. Its name is the method and the route, the function type with
        ``{id}`` (one name per function type: tracing backends group spans by name). The caller ends it
        (``current``)."""
        route = f"/{segments[0]}/{segments[1]}/{{id}}" if len(segments) == 3 else None
        span = self._start(method if route is None else f"{method} {route}", SpanKind.SERVER, headers.get(TRACEPARENT))
        if span is not None:
            span.set_attributes({"http.request.method": method, "url.path": path, "pystatefun.ingress": ingress_id})
            if route is not None:
                span.set_attribute("http.route", route)
        return span

    @staticmethod
    def current(span: Span) -> typing.ContextManager[Span]:
        """``span`` current for the block, and ended after it (an exception recorded in it)."""
        return trace.use_span(span, end_on_exit=True)

    @staticmethod
    def http_answered(span: Span, status: int) -> None:
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))

    def kafka_ingress(self, ingress_id: str, topic: str, partition: int, offset: int,
                      headers: typing.Sequence[tuple[str, bytes]] | None, targets: typing.Sequence[SdkAddress]) -> str | None:
        """The span of one record a Kafka ingress took, the child of the record's ``traceparent`` header if
        it has one, ended at once (the record's messages are in the epoch now); the traceparent its
        messages carry (None: not sampled)."""
        traceparent = None
        for key, value in headers or ():
            if key == TRACEPARENT and value:
                traceparent = value.decode("latin-1")
        span = self._start(f"process {topic}", SpanKind.CONSUMER, traceparent)
        if span is None:
            return None
        span.set_attributes({
            "messaging.system": "kafka", "messaging.operation.type": "process",
            "messaging.destination.name": topic, "messaging.destination.partition.id": str(partition),
            "messaging.kafka.offset": offset, "pystatefun.ingress": ingress_id,
            "pystatefun.targets": [f"{t.typename}/{t.id}" for t in targets],
        })
        span.end()
        return self.traceparent(span)

    # -- invocation batches ----------------------------------------------------------------------------

    def batch(self, target: SdkAddress, batch: typing.Sequence[Envelope], invocation: int, partition: int) -> Span | None:
        """The span of an invocation batch, or None when none of its messages is traced."""
        traces = [envelope.trace for envelope in batch if envelope.trace is not None]
        if not traces:
            return None
        parent = trace.set_span_in_context(NonRecordingSpan(self._carried(traces[0])), _ROOT)
        others = [Link(self._carried(t)) for t in dict.fromkeys(traces[1:]) if t != traces[0]]
        return self.tracer.start_span(
            f"invoke {target.typename}", context=parent, kind=SpanKind.INTERNAL, links=others,
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
