"""One process's subscribers and the fan-out to them.

Publishing never waits: each subscriber has a bounded queue, and one that lets it fill (a
slow or stalled client) is dropped, so no reader can hold up the others or the publisher.
"""

from __future__ import annotations

import asyncio
import logging

from fedi.live.events import LiveEvent

log = logging.getLogger(__name__)

QUEUE_SIZE = 64


class Subscription:
    def __init__(self, hub: Hub, queue_size: int) -> None:
        self._hub = hub
        self._queue: asyncio.Queue[LiveEvent] = asyncio.Queue(queue_size)
        self._closed = asyncio.Event()
        self.dropped = False  # closed because it fell behind

    def offer(self, event: LiveEvent) -> bool:
        """Queue the event; False (and closed) when the subscriber has fallen behind."""
        if self._closed.is_set():
            return False
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped = True
            self.close()
            return False
        return True

    async def next(self, wait: float) -> LiveEvent | None:
        """The next event; None after `wait` seconds without one. Raises Closed."""
        if not self._queue.empty():
            return self._queue.get_nowait()
        if self._closed.is_set():
            raise Closed
        getting = asyncio.ensure_future(self._queue.get())
        closing = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait({getting, closing}, timeout=wait,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            if not getting.done():
                getting.cancel()
        if getting.done() and not getting.cancelled():
            return getting.result()
        if self._closed.is_set():
            raise Closed
        return None

    def close(self) -> None:
        self._closed.set()
        self._hub.unsubscribe(self)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()


class Closed(Exception):
    """The subscription ended: the server is stopping, or the subscriber fell behind."""


class Hub:
    def __init__(self, max_subscribers: int, queue_size: int = QUEUE_SIZE) -> None:
        self.max_subscribers = max_subscribers
        self.queue_size = queue_size
        self._subscribers: set[Subscription] = set()
        self._closed = False

    def subscribe(self) -> Subscription | None:
        """A new subscription, or None when the process has as many as it allows (or is
        stopping)."""
        if self._closed or len(self._subscribers) >= self.max_subscribers:
            return None
        subscription = Subscription(self, self.queue_size)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    def publish(self, event: LiveEvent) -> None:
        for subscription in list(self._subscribers):
            if not subscription.offer(event):
                log.info("live updates: dropped a subscriber that fell %d events behind",
                         self.queue_size)

    def close(self) -> None:
        """End every subscription and refuse new ones (the server is stopping)."""
        self._closed = True
        for subscription in list(self._subscribers):
            subscription.close()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)
