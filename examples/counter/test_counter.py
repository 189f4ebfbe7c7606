"""The counter of the README's first function, tested in-process with pystatefun.testing."""

from counter import ADD, COUNT, functions

from pystatefun.testing import FunctionTester


def test_counter_adds_and_answers_its_caller():
    tester = FunctionTester(functions)
    tester.invoke("com.example/counter", "alice", {"amount": 5}, value_type=ADD)
    result = tester.invoke("com.example/counter", "alice", {"amount": 2}, value_type=ADD, caller="pystatefun/reply/1")
    assert result.state == {"count": 7}
    assert result.messages[0].as_type(COUNT) == {"count": 7}
