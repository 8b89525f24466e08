"""The throttled notifier that wakes subscribers after appends (no server:
``send`` is a stand-in that records what it saw)."""

from __future__ import annotations

import threading

from ordersys.persistence.notifier import ThrottledNotifier


def test_a_burst_of_appends_is_followed_by_a_few_notifies_the_last_after_it() -> None:
    appended = 0
    seen_by_each_send: list[int] = []
    all_seen = threading.Event()

    def send() -> None:
        seen_by_each_send.append(appended)
        if appended == 1000:
            all_seen.set()

    notifier = ThrottledNotifier(send, interval=0.005, idle_timeout=0.05)
    for _ in range(1000):
        appended += 1
        notifier.notify()

    assert all_seen.wait(10), "no NOTIFY was sent after the last append"
    assert len(seen_by_each_send) < 1000
    assert seen_by_each_send == sorted(seen_by_each_send)


def test_the_sending_thread_ends_when_idle_and_starts_again_when_asked() -> None:
    sent = threading.Semaphore(0)
    notifier = ThrottledNotifier(sent.release, interval=0.001, idle_timeout=0.01)

    notifier.notify()
    assert sent.acquire(timeout=10)
    pause = threading.Event()
    for _ in range(1000):
        if notifier._thread is None:
            break
        pause.wait(0.01)
    assert notifier._thread is None, "the idle sending thread did not end"
    notifier.notify()

    assert sent.acquire(timeout=10)
