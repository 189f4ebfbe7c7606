"""Logging for `pystatefun run`: readable lines, or one JSON object per line (``--log-format json``)
for log pipelines. A line about an invocation carries ``address`` (``ns/type/id``) and ``invocation``
(the batch's number in this process) as fields of their own."""

from __future__ import annotations

import json
import logging
import time

FIELDS = ("address", "invocation")  # extras the runtime attaches to lines about an invocation


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
        return text if invocation is None else f"{text} [invocation {invocation}]"


def configure_logging(level: str, log_format: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
