"""prompt_handover (event_loop.py): the switch interval is low while any helper thread waits in the
Kafka client, and what it was before once the last one is done, whichever order they finish in."""

from __future__ import annotations

import sys
import threading

import pytest

from pystatefun.event_loop import HANDOVER_SWITCH_SECONDS, prompt_handover


@pytest.fixture
def interval():
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    yield 0.005
    sys.setswitchinterval(before)


def test_the_interval_is_low_inside_and_restored_after(interval: float):
    with prompt_handover():
        assert sys.getswitchinterval() == pytest.approx(HANDOVER_SWITCH_SECONDS)
    assert sys.getswitchinterval() == pytest.approx(interval)


def test_the_interval_is_restored_after_a_failure_inside(interval: float):
    with pytest.raises(RuntimeError):
        with prompt_handover():
            raise RuntimeError("the flush failed")
    assert sys.getswitchinterval() == pytest.approx(interval)


def test_overlapping_threads_keep_it_low_until_the_last_one_leaves(interval: float):
    """A committer and an egress thread overlap: the first leaves while the second still waits."""
    first_inside, second_inside, first_left, second_may_leave = (threading.Event() for _ in range(4))
    seen: dict[str, float] = {}

    def first() -> None:
        with prompt_handover():
            first_inside.set()
            second_inside.wait(10)
        first_left.set()

    def second() -> None:
        first_inside.wait(10)
        with prompt_handover():
            second_inside.set()
            first_left.wait(10)
            seen["after the first left"] = sys.getswitchinterval()
            second_may_leave.wait(10)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    first_left.wait(10)
    second_may_leave.set()
    for thread in threads:
        thread.join(10)
    assert seen["after the first left"] == pytest.approx(HANDOVER_SWITCH_SECONDS)
    assert sys.getswitchinterval() == pytest.approx(interval)
