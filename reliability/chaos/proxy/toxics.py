"""Toxic definitions (API shape, validation) and their per-connection behaviour.

A :class:`ToxicSpec` is what the API stores and returns. Each connection runs
one *stage* per toxic and direction; a stage executes the toxic's ``pipe``
coroutine, which takes items from the stage's inbox and emits them to the next
stage, delayed, sliced, dropped or followed by a close, with Toxiproxy 2.x
semantics:

========== ====================================== ==================================
type       attributes                             effect
========== ====================================== ==================================
latency    latency, jitter (ms)                   each chunk waits latency +/- jitter
bandwidth  rate (KB/s, 0 = unlimited)             paces bytes at ``rate`` KB/s
slow_close delay (ms)                             delays the close by ``delay``
timeout    timeout (ms)                           drops data; closes after timeout (0 = never)
reset_peer timeout (ms)                           on data, waits then resets (TCP RST)
slicer     average_size, size_variation, delay µs splits chunks into small pieces
limit_data bytes                                  closes after ``bytes`` passed through
noop       -                                      passes data through
========== ====================================== ==================================

Attributes are int64 of any sign, as in Toxiproxy: a negative time or rate acts as 0
(``timeout`` < 0 never closes, ``reset_peer`` < 0 resets at once, ``rate`` <= 0 is
unlimited), a negative ``jitter`` or ``size_variation`` as none. A slicer with
``average_size`` <= 0 passes data through.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import field, replace
from typing import Any, Protocol

from reliability._record import record
from reliability.chaos.proxy.decode import Fields, type_error
from reliability.chaos.proxy.errors import invalid_stream, invalid_toxic_type, toxic_exists
from reliability.chaos.proxy.stream import CLOSE, DATA, EOF, RESET, Item

__all__ = ["STREAMS", "TOXIC_TYPES", "StageIO", "ToxicSpec", "ToxicType", "parse_toxic"]

STREAMS = ("upstream", "downstream")


class StageIO(Protocol):
    """What a toxic's ``pipe`` coroutine may do with its stage."""

    @property
    def spec(self) -> ToxicSpec: ...

    @property
    def state(self) -> dict[str, int]: ...

    @property
    def holding(self) -> Item | None: ...

    @property
    def rng(self) -> random.Random:
        """The proxy server's random source (seedable: ``ProxyServer(seed=...)``)."""
        ...

    async def take(self) -> Item: ...

    def emit(self, item: Item) -> None: ...

    def emit_head(self, size: int) -> None: ...

    def drop(self, item: Item) -> None: ...

    def discard(self, size: int) -> None: ...

    def finish(self, kind: int) -> None: ...


Pipe = Callable[[StageIO], Coroutine[Any, Any, None]]


@record(frozen=True, slots=True)
class ToxicType:
    """A registered toxic: attribute defaults, behaviour and optional cleanup."""

    defaults: Mapping[str, int]
    pipe: Pipe
    cleanup: Callable[[StageIO], None] | None = None
    struct: str = "NoopToxic"
    """Toxiproxy's Go type, named in type errors."""
    int_type: str = "int64"
    """Go type of the attributes (``int`` for the slicer)."""


@record(frozen=True, slots=True)
class ToxicSpec:
    """A toxic as stored by a proxy and shown by the API.

    ``stream`` keeps the client's spelling (Toxiproxy echoes ``"UPSTREAM"`` back and
    names the toxic ``latency_UPSTREAM``); :attr:`direction` is its lower-case form.
    """

    name: str
    type: str
    stream: str = "downstream"
    toxicity: float = 1
    attributes: Mapping[str, int] = field(default_factory=dict)

    @property
    def kind(self) -> ToxicType:
        return TOXIC_TYPES[self.type]

    @property
    def direction(self) -> str:
        return self.stream.lower()

    def attr(self, key: str) -> int:
        return self.attributes.get(key, 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "attributes": dict(self.attributes),
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
        }

    def updated(self, body: object) -> ToxicSpec:
        """Apply an update body (``attributes`` and/or ``toxicity``); raise ApiError.

        As in Toxiproxy, other fields are ignored and ``null`` changes nothing; unlike it,
        a rejected update changes nothing at all.
        """
        if body is None:
            return self
        if not isinstance(body, dict):
            raise type_error(body, "", "struct { Attributes interface {}; Toxicity float32 }")
        fields = Fields(body, "")
        raw = fields.object("attributes", f"toxics.{self.kind.struct}")
        toxicity = fields.toxicity("toxicity")
        attrs = dict(self.attributes)
        attrs.update(_parse_attributes(self.type, raw))
        return replace(self, attributes=attrs,
                       toxicity=self.toxicity if toxicity is None else toxicity)


def parse_toxic(body: object, exists: Callable[[str], bool] = lambda _name: False
                ) -> ToxicSpec:
    """Validate a create-toxic body into a spec, raising ApiError like Toxiproxy.

    The checks run in Toxiproxy's order: field types, stream, type (a missing type is an
    invalid one), a duplicate ``name`` (409, via ``exists``), then the attribute values.
    """
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise type_error(body, "", "toxics.ToxicWrapper")
    fields = Fields(body, "ToxicWrapper")
    name = fields.string("name") or ""
    toxic_type = fields.string("type") or ""
    stream = fields.string("stream")
    toxicity = fields.toxicity("toxicity")
    raw_attributes = fields.object("attributes", "toxics.NoopToxic")
    stream = "downstream" if stream is None else stream
    if stream.lower() not in STREAMS:
        raise invalid_stream()
    name = name or f"{toxic_type}_{stream}"
    if toxic_type not in TOXIC_TYPES:
        raise invalid_toxic_type()
    if exists(name):
        raise toxic_exists()
    attrs = dict(TOXIC_TYPES[toxic_type].defaults)
    attrs.update(_parse_attributes(toxic_type, raw_attributes))
    return ToxicSpec(name, toxic_type, stream, 1 if toxicity is None else toxicity, attrs)


def _parse_attributes(toxic_type: str, raw: Mapping[str, Any] | None) -> dict[str, int]:
    """Known attributes as int64 (any sign, as Toxiproxy); unknown ones ignored, null kept."""
    if not raw:
        return {}
    kind = TOXIC_TYPES[toxic_type]
    fields = Fields(raw, f"{kind.struct}.attributes")
    parsed: dict[str, int] = {}
    for key in kind.defaults:
        value = fields.int64(key, kind.int_type)
        if value is not None:
            parsed[key] = value
    return parsed


# -- behaviours ---------------------------------------------------------------------------


def _now() -> float:
    return asyncio.get_running_loop().time()


async def _sleep_until(deadline: float) -> None:
    delay = deadline - _now()
    if delay > 0:
        await asyncio.sleep(delay)


async def _noop(stage: StageIO) -> None:
    while True:
        stage.emit(await stage.take())


async def _latency(stage: StageIO) -> None:
    while True:
        item = await stage.take()
        if item.kind == DATA:
            delay = stage.spec.attr("latency")
            jitter = stage.spec.attr("jitter")
            if jitter > 0:  # Toxiproxy ignores a negative jitter
                delay += stage.rng.randint(-jitter, jitter)
            await _sleep_until(item.arrived + delay / 1000)
        stage.emit(item)


async def _bandwidth(stage: StageIO) -> None:
    clock = 0.0
    while True:
        item = await stage.take()
        rate = stage.spec.attr("rate")
        if item.kind != DATA or rate <= 0:
            stage.emit(item)
            continue
        piece = rate * 100  # at most 100 ms worth of bytes per write
        while (held := stage.holding) is not None:
            size = min(piece, held.size)
            clock = max(clock, _now()) + size / (rate * 1000)
            await _sleep_until(clock)
            stage.emit_head(size)


async def _slow_close(stage: StageIO) -> None:
    while True:
        item = await stage.take()
        if item.kind in (EOF, CLOSE):
            await asyncio.sleep(stage.spec.attr("delay") / 1000)
        stage.emit(item)


async def _timeout(stage: StageIO) -> None:
    ms = stage.spec.attr("timeout")
    try:
        async with asyncio.timeout(ms / 1000 if ms > 0 else None):  # <= 0: never
            while True:
                item = await stage.take()
                if item.kind != DATA:
                    stage.finish(RESET if item.kind == RESET else CLOSE)
                    return
                stage.drop(item)
    except TimeoutError:
        stage.finish(CLOSE)


def _timeout_cleanup(stage: StageIO) -> None:
    # Data was dropped while the toxic was active; the stream cannot be resumed.
    stage.finish(CLOSE)


async def _reset_peer(stage: StageIO) -> None:
    await stage.take()
    await asyncio.sleep(stage.spec.attr("timeout") / 1000)
    stage.finish(RESET)


async def _slicer(stage: StageIO) -> None:
    while True:
        item = await stage.take()
        average = stage.spec.attr("average_size")
        if item.kind != DATA or average <= 0:
            stage.emit(item)
            continue
        variation = max(0, min(stage.spec.attr("size_variation"), average - 1))
        delay = stage.spec.attr("delay") / 1_000_000
        pieces = 0
        while (held := stage.holding) is not None and held.size > average + variation:
            stage.emit_head(average + stage.rng.randint(-variation, variation))
            pieces += 1
            if delay > 0 or pieces % 256 == 0:  # tiny slices never hold the loop
                await asyncio.sleep(max(delay, 0))
        if stage.holding is not None:
            stage.emit(stage.holding)


async def _limit_data(stage: StageIO) -> None:
    state = stage.state
    while True:
        item = await stage.take()
        if item.kind != DATA:
            stage.emit(item)
            continue
        remaining = stage.spec.attr("bytes") - state.get("sent", 0)
        if remaining < item.size:
            keep = max(remaining, 0)
            stage.discard(item.size - keep)
            item = Item(DATA, item.data[:keep])
        if item.size:
            state["sent"] = state.get("sent", 0) + item.size
            stage.emit(item)
        if state.get("sent", 0) >= stage.spec.attr("bytes"):
            stage.finish(CLOSE)
            return


TOXIC_TYPES: dict[str, ToxicType] = {
    "noop": ToxicType({}, _noop),
    "latency": ToxicType({"latency": 0, "jitter": 0}, _latency, struct="LatencyToxic"),
    "bandwidth": ToxicType({"rate": 0}, _bandwidth, struct="BandwidthToxic"),
    "slow_close": ToxicType({"delay": 0}, _slow_close, struct="SlowCloseToxic"),
    "timeout": ToxicType({"timeout": 0}, _timeout, _timeout_cleanup, struct="TimeoutToxic"),
    "reset_peer": ToxicType({"timeout": 0}, _reset_peer, struct="ResetToxic"),
    "slicer": ToxicType({"average_size": 0, "size_variation": 0, "delay": 0}, _slicer,
                        struct="SlicerToxic", int_type="int"),
    "limit_data": ToxicType({"bytes": 0}, _limit_data, struct="LimitDataToxic"),
}
