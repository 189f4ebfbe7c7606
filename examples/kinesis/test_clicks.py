"""The click counter, tested in-process with pystatefun.testing."""

import json

from clicks import PAGE_TYPE, functions

from pystatefun.testing import FunctionTester
from pystatefun.wire.kinesis_egress_pb2 import KinesisEgressRecord


def test_each_click_counts_and_puts_the_count_on_click_counts():
    tester = FunctionTester(functions)
    tester.invoke("example/clicks", "alice", "home", value_type=PAGE_TYPE)
    result = tester.invoke("example/clicks", "alice", "cart", value_type=PAGE_TYPE)
    assert result.state == {"clicks": 2}
    (egress,) = result.egress
    assert egress.typename == "example/click-counts"
    record = KinesisEgressRecord.FromString(egress.raw_value())
    assert (record.stream, record.partition_key) == ("click-counts", "alice")
    assert json.loads(record.value_bytes) == {"user": "alice", "clicks": 2, "last_page": "cart"}
