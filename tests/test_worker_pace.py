"""An idle worker's threads share one safety poll: idle work does not grow with threads."""

from __future__ import annotations

from jobs.background import Pace
from tests.support.clock import PassingClock


def test_one_safety_poll_per_idle_period_whatever_the_number_of_threads() -> None:
    clock = PassingClock()
    pace = Pace(2.0, clock=clock)
    assert pace.wait_for() == 2.0
    clock.now = 2.0
    # Four idle threads time out together: one of them polls, the others sleep on.
    assert [pace.take_poll() for _ in range(4)] == [True, False, False, False]
    assert pace.wait_for() == 2.0
    clock.now = 3.0
    assert [pace.take_poll() for _ in range(4)] == [False] * 4
    clock.now = 4.0
    assert [pace.take_poll() for _ in range(4)] == [True, False, False, False]


def test_work_found_by_any_thread_puts_the_safety_poll_off() -> None:
    clock = PassingClock()
    pace = Pace(2.0, clock=clock)
    clock.now = 1.5
    pace.stepped()  # a thread woken by a request just looked
    clock.now = 2.0
    assert not pace.take_poll()
    assert pace.wait_for() == 1.5
    clock.now = 3.5
    assert pace.take_poll()
