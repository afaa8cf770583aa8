"""One direction of a proxied connection: source socket -> toxic stages -> destination.

With no toxics a link runs a *fast path*: the reader task receives into one
reusable 256 KiB buffer and sends straight to the destination, no copies and no
queues. As soon as the chain has a stage (or data is still draining from one),
chunks are copied into :class:`~reliability.chaos.proxy.stream.Item` objects and
flow ``reader -> stage 1 -> ... -> stage n -> writer``. Stages can be added,
updated and removed while data flows (Toxiproxy's live toxics): everything runs on
one event loop, so rewiring a stage's output is a plain attribute assignment and
items a removed stage still held are flushed in order.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from typing import Protocol

from reliability.chaos.proxy.stream import CLOSE, DATA, EOF, ChunkQueue, Item
from reliability.chaos.proxy.toxics import TOXIC_TYPES, ToxicSpec

__all__ = ["HIGH_WATER", "READ_SIZE", "Link", "LinkOwner", "Stage"]

log = logging.getLogger("reliability.chaos.proxy")

READ_SIZE = 256 * 1024
"""Bytes requested per ``recv``; large reads keep per-chunk overhead negligible."""
HIGH_WATER = 1 << 20
"""Bytes buffered inside a toxic chain before the reader stops reading."""
YIELD_EVERY = 256
"""Items a writer or slicer handles before letting other tasks run (tiny slices never
monopolise the loop the API shares)."""


class LinkOwner(Protocol):
    """The connection a link belongs to."""

    def request_close(self, kind: int) -> None: ...

    def direction_finished(self) -> None: ...

    @property
    def rng(self) -> random.Random: ...


class Stage:
    """One toxic running on one link; implements :class:`~.toxics.StageIO`."""

    def __init__(self, link: Link, spec: ToxicSpec) -> None:
        self._link = link
        self._spec = spec
        self._state: dict[str, int] = {}
        self._holding: Item | None = None
        self._task: asyncio.Task[None] | None = None
        self.inbox = ChunkQueue()
        self.next: ChunkQueue = link.out
        self.closed = False
        self.active = False

    @property
    def spec(self) -> ToxicSpec:
        return self._spec

    @property
    def state(self) -> dict[str, int]:
        return self._state

    @property
    def holding(self) -> Item | None:
        return self._holding

    @property
    def rng(self) -> random.Random:
        return self._link.owner.rng

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    def start(self) -> None:
        """Run the toxic, or a pass-through if the toxicity roll says no."""
        self.active = self.rng.random() < self._spec.toxicity
        pipe = self._spec.kind.pipe if self.active else TOXIC_TYPES["noop"].pipe
        self._task = asyncio.get_running_loop().create_task(pipe(self))
        self._task.add_done_callback(self._link.task_done)

    async def take(self) -> Item:
        item = await self.inbox.get()
        self._holding = item
        return item

    def emit(self, item: Item) -> None:
        self._holding = None
        self.next.put(item)

    def emit_head(self, size: int) -> None:
        held = self._holding
        if held is None:
            return
        view = held.data if isinstance(held.data, memoryview) else memoryview(held.data)
        head, tail = view[:size], view[size:]  # views: cutting a chunk copies nothing
        self._holding = Item(DATA, tail, held.arrived) if len(tail) else None
        self.next.put(Item(DATA, head))

    def drop(self, item: Item) -> None:
        self._holding = None
        self._link.release(item.size)

    def discard(self, size: int) -> None:
        self._link.release(size)

    def finish(self, kind: int) -> None:
        """Stop passing data and end the stream with marker ``kind``."""
        if self.closed:
            return
        self.closed = True
        pending = self.inbox.take_all()
        if self._holding is not None:
            pending.append(self._holding)
            self._holding = None
        self._link.release(sum(item.size for item in pending))
        self.next.put(Item(kind))
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()

    def interrupt(self) -> None:
        """Stop the running pipe; the item it held goes back to the head of the inbox."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._holding is not None:
            self.inbox.push_front(self._holding)
            self._holding = None

    def update(self, spec: ToxicSpec) -> None:
        self.interrupt()
        self._spec = spec
        if not self.closed:
            self.start()

    def remove(self) -> None:
        """Flush queued items unchanged to the next stage, then run the toxic's cleanup."""
        self.interrupt()
        pending = self.inbox.take_all()
        if self.closed:
            self._link.release(sum(item.size for item in pending))
            return
        for item in pending:
            self.next.put(item)
        cleanup = self._spec.kind.cleanup
        if cleanup is not None and self.active:
            cleanup(self)


class Link:
    """Copies one direction of a connection through its chain of toxic stages."""

    def __init__(
        self, owner: LinkOwner, direction: str, source: socket.socket, dest: socket.socket,
        specs: list[ToxicSpec],
    ) -> None:
        self.owner = owner
        self.direction = direction
        self._src = source
        self._dst = dest
        self.out = ChunkQueue()
        self.stages: list[Stage] = []
        self._inflight = 0
        self._room = asyncio.Event()
        self._room.set()
        self._busy = False
        self._tasks: list[asyncio.Task[None]] = []
        self.closed = False
        self.bytes_received = 0
        self.bytes_sent = 0
        for spec in specs:
            self._append(spec)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for stage in self.stages:
            stage.start()
        for coro in (self._pump(), self._write()):
            task = loop.create_task(coro)
            task.add_done_callback(self.task_done)
            self._tasks.append(task)

    def shutdown(self) -> list[asyncio.Task[None]]:
        """Cancel every task of this link and return them for awaiting."""
        self.closed = True
        tasks = list(self._tasks)
        tasks += [stage.task for stage in self.stages if stage.task is not None]
        for task in tasks:
            task.cancel()
        return tasks

    def task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("proxy link %s failed: %r", self.direction, exc, exc_info=exc)
            self.owner.request_close(CLOSE)

    # -- live toxics -----------------------------------------------------------------------

    def add_toxic(self, spec: ToxicSpec) -> None:
        if not self.closed:
            self._append(spec).start()

    def update_toxic(self, spec: ToxicSpec) -> None:
        for stage in self.stages:
            if stage.spec.name == spec.name:
                stage.update(spec)

    def remove_toxic(self, name: str) -> None:
        for index, stage in enumerate(self.stages):
            if stage.spec.name == name:
                del self.stages[index]
                if index > 0:
                    self.stages[index - 1].next = stage.next
                stage.remove()
                return

    def _append(self, spec: ToxicSpec) -> Stage:
        stage = Stage(self, spec)
        if self.stages:
            self.stages[-1].next = stage.inbox
        self.stages.append(stage)
        return stage

    # -- data flow -------------------------------------------------------------------------

    def release(self, size: int) -> None:
        self._inflight -= size
        if self._inflight < HIGH_WATER:
            self._room.set()

    def _inject(self, item: Item) -> None:
        target = self.stages[0].inbox if self.stages else self.out
        self._inflight += item.size
        target.put(item)

    def _fast(self) -> bool:
        return not self.stages and not self._busy and not len(self.out)

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        view = memoryview(bytearray(READ_SIZE))
        while True:
            try:
                size = await loop.sock_recv_into(self._src, view)
            except OSError:
                self._inject(Item(CLOSE))
                return
            if not size:
                self._inject(Item(EOF))
                return
            self.bytes_received += size
            if self._fast():
                if not await self._send(view[:size]):
                    return
                continue
            self._inject(Item(DATA, bytes(view[:size])))
            if self._inflight >= HIGH_WATER:
                self._room.clear()
                await self._room.wait()

    async def _send(self, data: bytes | memoryview) -> bool:
        try:
            await asyncio.get_running_loop().sock_sendall(self._dst, data)
        except OSError:
            self.owner.request_close(CLOSE)
            return False
        self.bytes_sent += len(data)
        return True

    async def _write(self) -> None:
        written = 0
        while True:
            written += 1
            if written % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            item = await self.out.get()
            if item.kind != DATA:
                self._end(item.kind)
                return
            self._busy = True
            try:
                if not await self._send(item.data):
                    return
            finally:
                self._busy = False
            self.release(item.size)

    def _end(self, kind: int) -> None:
        if kind != EOF:
            self.owner.request_close(kind)
            return
        try:
            self._dst.shutdown(socket.SHUT_WR)
        except OSError:
            self.owner.request_close(CLOSE)
            return
        self.owner.direction_finished()
