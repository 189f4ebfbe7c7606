"""The greeter, tested in-process with pystatefun.testing."""

import json

from greeter import EGRESS_RECORD_TYPE, GREET_REQUEST_TYPE, functions

from pystatefun.testing import FunctionTester


def test_person_counts_visits_and_forwards_to_the_greeter():
    tester = FunctionTester(functions)
    tester.invoke("example/person", "Bob", {"name": "Bob"}, value_type=GREET_REQUEST_TYPE)
    result = tester.invoke("example/person", "Bob", {"name": "Bob"}, value_type=GREET_REQUEST_TYPE)
    assert result.state == {"visits": 2}
    (forwarded,) = result.messages
    assert (forwarded.target_typename, forwarded.target_id) == ("example/greeter", "Bob")
    assert forwarded.as_type(GREET_REQUEST_TYPE) == {"name": "Bob", "visits": 2}


def test_greeter_writes_the_greeting_to_the_playground_egress():
    tester = FunctionTester(functions)
    result = tester.invoke("example/greeter", "Bob", {"name": "Bob", "visits": 3}, value_type=GREET_REQUEST_TYPE)
    (record,) = result.egress
    assert record.typename == "io.statefun.playground/egress"
    assert json.loads(record.raw_value()) == {"topic": "greetings", "payload": "Third time is a charm Bob"}
    assert record.value_typename() == EGRESS_RECORD_TYPE.typename
