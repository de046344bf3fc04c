"""The shared background computation: started once, its result or failure taken, closed bounded."""

from __future__ import annotations

import threading

import pytest

from bot.background_task import BackgroundTask, Cancel


def test_a_computation_starts_once_and_its_result_is_taken_once() -> None:
    go = threading.Event()
    task: BackgroundTask[int] = BackgroundTask("t")
    try:
        assert task.start(lambda _c: (go.wait(30), 42)[1], key="day-1")
        assert task.running
        assert not task.start(lambda _c: 0, key="day-2")  # one at a time
        assert task.take() is None  # still running
        go.set()
        assert task.wait(30)
        assert not task.start(lambda _c: 0, key="day-2")  # the result waits to be taken
        done = task.take()
        assert done is not None
        assert (done.result, done.error) == (42, None)
        assert task.take() is None  # once
        assert not task.start(lambda _c: 0, key="day-1")  # a key starts once
        assert task.start(lambda _c: 7, key="day-2")
        assert task.wait(30)
        again = task.take()
        assert again is not None
        assert again.result == 7
        assert task.started == 2
    finally:
        assert task.close()


def test_a_failure_is_reported_once_and_the_next_start_may_try_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    task: BackgroundTask[int] = BackgroundTask("failing")

    def fails(_c: Cancel) -> int:
        raise ValueError("boom")

    try:
        assert task.start(fails)
        assert task.wait(30)
        done = task.take()
        assert done is not None
        assert (done.result, done.error) == (None, "ValueError")
        assert task.failures == 1
        assert "failing: background computation failed" in caplog.text
        assert task.take() is None
        assert task.start(lambda _c: 1)  # no key: may start again
        assert task.wait(30)
    finally:
        task.close()


def test_close_interrupts_the_work_and_disposes_of_its_result() -> None:
    stopped = threading.Event()
    disposed: list[str] = []
    task: BackgroundTask[str] = BackgroundTask("interruptible", dispose=disposed.append)
    entered = threading.Event()

    def work(cancel: Cancel) -> str:
        cancel.on_cancel(stopped.set)
        entered.set()
        stopped.wait(60)
        return "late result"

    assert task.start(work)
    assert entered.wait(30)
    assert task.close()  # the interrupt ended the work within the bound
    assert disposed == ["late result"]  # finished after close: handed to dispose
    assert task.take() is None
    assert not task.start(lambda _c: "after close")


def test_close_is_bounded_when_the_work_ignores_the_interrupt() -> None:
    release = threading.Event()
    task: BackgroundTask[int] = BackgroundTask("stubborn", close_wait=0.2)
    assert task.start(lambda _c: (release.wait(60), 1)[1])
    try:
        assert task.close() is False  # gave up waiting: shutdown goes on
        assert task.running
    finally:
        release.set()
        assert task.wait(30)


def test_a_result_never_taken_is_disposed_of_on_close() -> None:
    disposed: list[int] = []
    task: BackgroundTask[int] = BackgroundTask("untaken", dispose=disposed.append)
    assert task.start(lambda _c: 5)
    assert task.wait(30)
    assert task.close()
    assert disposed == [5]


def test_an_interrupt_registered_after_close_runs_at_once() -> None:
    task: BackgroundTask[int] = BackgroundTask("late-register")
    registered = threading.Event()
    closed = threading.Event()
    called: list[str] = []

    def work(cancel: Cancel) -> int:
        registered.set()
        closed.wait(30)
        cancel.on_cancel(lambda: called.append("interrupt"))
        return 0

    assert task.start(work)
    assert registered.wait(30)
    closer = threading.Thread(target=task.close)
    closer.start()
    while not task._closed:  # close() marked it before waiting for the thread
        threading.Event().wait(0.01)
    closed.set()
    closer.join(30)
    assert called == ["interrupt"]
