"""Items flowing through a toxic chain and the queue that connects two stages.

A link moves :class:`Item` objects from one stage to the next. Data items carry
bytes; marker items end the stream: ``EOF`` (the source half-closed), ``CLOSE``
(close the whole connection) and ``RESET`` (close it with a TCP RST).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import field
from typing import Final

from reliability._record import record

__all__ = ["CLOSE", "DATA", "EOF", "RESET", "ChunkQueue", "Item"]

DATA: Final = 0
EOF: Final = 1
CLOSE: Final = 2
RESET: Final = 3


@record(slots=True)
class Item:
    """One chunk of a stream (``kind == DATA``) or an end-of-stream marker."""

    kind: int
    data: bytes | memoryview = b""  # a memoryview when cut from a larger chunk (no copy)
    arrived: float = field(default=0.0)

    @property
    def size(self) -> int:
        return len(self.data)


class ChunkQueue:
    """An unbounded FIFO of items with an awaitable ``get``.

    ``get`` pops in the same step it wakes up in, so a task cancelled while
    waiting never loses an item (unlike a ``wait_for`` around a queue).
    """

    __slots__ = ("_event", "_items")

    def __init__(self) -> None:
        self._items: deque[Item] = deque()
        self._event = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Item) -> None:
        """Append ``item`` stamped with its arrival time."""
        item.arrived = asyncio.get_running_loop().time()
        self._items.append(item)
        self._event.set()

    def push_front(self, item: Item) -> None:
        """Return ``item`` to the head of the queue, keeping its arrival time."""
        self._items.appendleft(item)
        self._event.set()

    def take_all(self) -> list[Item]:
        """Remove and return every queued item."""
        items = list(self._items)
        self._items.clear()
        self._event.clear()
        return items

    async def get(self) -> Item:
        while not self._items:
            self._event.clear()
            await self._event.wait()
        return self._items.popleft()
