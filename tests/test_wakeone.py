"""WakeOne: one permit per signal, at most one kept for a thread about to wait."""

from __future__ import annotations

import threading

from bot.wakeone import WakeOne
from tests.support.waiting import wait_for


def test_a_signal_while_nobody_waits_lets_the_next_wait_through_once() -> None:
    wake = WakeOne()
    assert not wake.wait(0)
    wake.set()
    wake.set()  # nobody waits: one permit is kept, not two
    assert wake.is_set()
    assert wake.wait(0)
    assert not wake.wait(0)


def test_each_signal_wakes_one_of_the_waiting_threads() -> None:
    wake = WakeOne()
    woken: list[str] = []
    lock = threading.Lock()

    def waiter(name: str) -> None:
        if wake.wait(60):
            with lock:
                woken.append(name)

    threads = [threading.Thread(target=waiter, args=(f"t{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    wait_for(lambda: wake._waiting == 3, what="three waiting threads")
    wake.set()
    wait_for(lambda: len(woken) == 1, what="one thread woken")
    assert wake._waiting == 2  # the others still wait
    wake.set_all()
    for t in threads:
        t.join(timeout=10)
    assert sorted(woken) == ["t0", "t1", "t2"]
