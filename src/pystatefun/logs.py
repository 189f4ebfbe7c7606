"""Logging for `pystatefun run`: readable lines, or one JSON object per line (``--log-format json``)
for log pipelines. A line about an invocation carries ``address`` (``ns/type/id``) and ``invocation``
(the batch's number in this process) as fields of their own; with tracing on, a line written in a span
(an invocation, a remote call, an ingress request) carries ``trace_id`` and ``span_id`` too
(tracing/spans.py TraceIds)."""

from __future__ import annotations

import json
import logging
import time

FIELDS = ("address", "invocation", "trace_id", "span_id")  # extras the runtime attaches to lines


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                line[field] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        invocation = getattr(record, "invocation", None)
        if invocation is not None:
            text = f"{text} [invocation {invocation}]"
        trace_id = getattr(record, "trace_id", None)
        return text if trace_id is None else f"{text} [trace {trace_id}]"


def configure_logging(level: str, log_format: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def add_filter(log_filter: logging.Filter) -> None:
    """Adds ``log_filter`` to the handlers configure_logging installed (tracing's TraceIds)."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(log_filter)
