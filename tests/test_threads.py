"""utils.threads.prefetched: same items in order, the producer's errors at their place, and an
early stop that ends the producer."""

import threading
import time

import pytest

from utils.threads import prefetched


def test_prefetched_keeps_order_and_raises_where_the_producer_failed():
    assert list(prefetched(range(100), depth=3)) == list(range(100))

    def failing():
        yield from range(5)
        raise ValueError("frame 5 unreadable")

    seen = []
    with pytest.raises(ValueError, match="frame 5 unreadable"):
        for item in prefetched(failing(), depth=2):
            seen.append(item)
    assert seen == [0, 1, 2, 3, 4]


def test_closing_early_stops_the_producer():
    produced = []

    def endless():
        k = 0
        while True:
            produced.append(k)
            yield k
            k += 1

    items = prefetched(endless(), depth=4)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()
    time.sleep(0.3)
    count = len(produced)
    time.sleep(0.3)
    assert len(produced) == count <= 3 + 4 + 2
    assert not any(t.name == "prefetch" and t.is_alive() for t in threading.enumerate())
