"""Version 2 of the counter, and the upgrade of a version 1 savepoint's state, tested in-process."""

from counter_v2 import ADD, COUNT, functions
from upgrade import upgrade

from pystatefun.savepoints.transform import SavedState
from pystatefun.sdk.address import SdkAddress
from pystatefun.testing import FunctionTester


def test_version_2_keeps_a_tally():
    tester = FunctionTester(functions)
    tester.invoke("com.example/counter", "alice", {"amount": 5}, value_type=ADD)
    result = tester.invoke("com.example/counter", "alice", {"amount": 2}, value_type=ADD, caller="pystatefun/reply/1")
    assert result.state == {"tally": {"count": 7, "last": 2}}
    assert result.messages[0].as_type(COUNT) == {"count": 7, "last": 2}


def test_the_upgrade_turns_an_int_count_into_a_tally():
    address = SdkAddress("com.example", "counter", "alice", "com.example/counter")
    states = upgrade(address, {"count": SavedState.of(7, "io.statefun.types/int")})
    assert list(states) == ["tally"]
    assert states["tally"].typename == "com.example/Tally"
    assert states["tally"].as_json() == {"count": 7, "last": None}
    # other function types are left as they are
    other = SdkAddress("com.example", "other", "x", "com.example/other")
    assert upgrade(other, {"count": SavedState.of(1, "io.statefun.types/int")})["count"].as_int() == 1
