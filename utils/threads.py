"""Running a producer beside its consumer."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator

_DONE = object()


def prefetched(items: Iterable, depth: int) -> Iterator:
    """The items of `items`, produced on a background thread up to `depth` ahead of the
    consumer: work that releases the GIL (OpenCV, numpy, model kernels) then overlaps. An
    exception of the producer is raised to the consumer at its place in the sequence; closing
    the returned generator early stops the producer."""
    buffer: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(value) -> bool:
        while not stop.is_set():
            try:
                buffer.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
        except BaseException as error:  # handed to the consumer, which re-raises it
            put((_DONE, error))
            return
        finally:  # the producer's own clean-up (open videos) runs on its thread, now
            close = getattr(items, "close", None)
            if close is not None:
                close()
        put((_DONE, None))

    worker = threading.Thread(target=produce, name="prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item, error = buffer.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)
