"""Fast ``/metrics`` text for high-cardinality metrics: :class:`SeriesCollector`.

prometheus-client rebuilds every sample object on each ``collect()``; with a hundred
pipelines of twenty steps that is tens of thousands of samples and half a second per
scrape. :class:`SeriesCollector` keeps its values in plain dicts and caches each series'
exposition lines (Prometheus text format 0.0.4). An update only marks the series dirty;
a scrape re-renders the dirty series, re-joins only the families they belong to and
serves the cached bytes of the rest.

The collector is still an ordinary prometheus-client collector: ``collect()`` yields
proper metric families, so ``registry.get_sample_value``, ``generate_latest(registry)``
and ``push_to_gateway`` work as with the library's own metrics.
:func:`render_registry` is the fast path the exporter uses: the cached text of every
:class:`SeriesCollector` in the registry plus ``generate_latest`` of the other collectors.

No ``_created`` series are emitted for these metrics (neither in the fast text nor in
``collect()``): Prometheus does not need them for ``rate()``/``increase()``, and for a
histogram they would add one series per label set to every scrape. prometheus-client's
global ``disable_created_metrics()`` is left alone, so other collectors are unaffected.

History: inside :meth:`SeriesCollector.replaying` counters and histograms only create their
series (at zero) and gauges take their values: a process that rebuilds its state from a log
(``reliability sla serve``) starts counting at zero like any restarted exporter, so
Prometheus sees a counter reset, never a burst of old failures.

Thread safety: updates hold one short lock (the caller's, :attr:`SeriesCollector.lock`);
scrapes take a snapshot of the dirty values under it and render outside it, serialised
by a second lock so an older snapshot never overwrites a newer rendering.
"""

from __future__ import annotations

import bisect
import contextlib
import contextvars
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from reliability._lazy import require
from reliability.errors import DefinitionError

__all__ = ["Family", "SeriesCollector", "render_registry"]

Labels = tuple[str, ...]
_INF = float("inf")
_TYPES = ("counter", "gauge", "histogram")
# During render_registry() our collectors report themselves here instead of yielding
# families, so generate_latest() renders only the registry's other collectors.
_SCRAPE: contextvars.ContextVar[list[SeriesCollector] | None] = contextvars.ContextVar(
    "reliability_sla_scrape", default=None)


_FORMAT: list[Callable[[float], str]] = []  # prometheus-client's float formatter, once loaded


def _go_float(value: float) -> str:
    """A value as prometheus-client writes it (Go's float formatting: ``+Inf``, ``1e+09``)."""
    if not _FORMAT:
        utils = require("prometheus_client.utils", "prometheus", "Prometheus metrics")
        _FORMAT.append(utils.floatToGoString)
    return _FORMAT[0](value)


def escape_label_value(value: str) -> str:
    """Escape a label value for the text format: backslash, double quote, newline."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


class Family:
    """One metric family: its values by label values, and its cached exposition text.

    Mutate only through the owning :class:`SeriesCollector` (under its lock).
    """

    def __init__(self, name: str, documentation: str, kind: str, labelnames: Sequence[str],
                 buckets: Sequence[float] = ()) -> None:
        if kind not in _TYPES:
            raise DefinitionError(f"metric {name!r}: type {kind!r} is not one of {_TYPES}. "
                                  "Fix: use a counter, gauge or histogram")
        self.kind = kind
        # counters keep prometheus-client's convention: family name without "_total"
        self.name = name[:-6] if kind == "counter" and name.endswith("_total") else name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.bounds: tuple[float, ...] = ()
        if kind == "histogram":
            bounds = sorted(float(b) for b in buckets)
            if not bounds or bounds[-1] != _INF:
                bounds.append(_INF)
            self.bounds = tuple(bounds)
            if "le" in self.labelnames:
                raise DefinitionError(f"histogram {name!r}: label 'le' is reserved for its "
                                      "buckets. Fix: rename the label")
        self.values: dict[Labels, Any] = {}  # float, or [bucket counts..., sum] for histograms
        self.counting = True  # False: inc/observe only create the series (replaying history)
        self.dirty: dict[Labels, None] = {}  # ordered, so new series keep creation order
        # rendering: label names in output order, where "le" goes, bucket bounds as text
        self._sorted = sorted((n, i) for i, n in enumerate(self.labelnames))
        self._le_at = bisect.bisect_left([n for n, _ in self._sorted], "le")
        self._les = [_go_float(b) for b in self.bounds]
        self._chunks: dict[Labels, bytes] = {}  # each series' lines, encoded
        self._header = self._render_header().encode()
        self.blob = self._header

    # -- updates (caller holds the collector's lock) -------------------------------------
    def touch(self, key: Labels) -> None:
        """Create the series at zero if it does not exist (so ``increase()`` sees it)."""
        if key not in self.values:
            self.values[key] = [0.0] * (len(self.bounds) + 1) if self.bounds else 0.0
            self.dirty[key] = None

    def inc(self, key: Labels, amount: float = 1.0) -> None:
        if not self.counting:
            self.touch(key)
            return
        self.values[key] = self.values.get(key, 0.0) + amount
        self.dirty[key] = None

    def set(self, key: Labels, value: float) -> None:
        self.values[key] = float(value)
        self.dirty[key] = None

    def observe(self, key: Labels, value: float) -> None:
        if not self.counting:
            self.touch(key)
            return
        counts = self.values.get(key)
        if counts is None:
            counts = self.values[key] = [0.0] * (len(self.bounds) + 1)
        if not math.isnan(value):  # NaN lands in no bucket, as in prometheus-client
            counts[bisect.bisect_left(self.bounds, value)] += 1.0
        counts[-1] += value
        self.dirty[key] = None

    def take_dirty(self) -> list[tuple[Labels, Any]]:
        """Snapshot and clear the changed series (caller holds the lock)."""
        values = self.values
        out = [(k, list(values[k]) if self.bounds else values[k]) for k in self.dirty]
        self.dirty = {}
        return out

    # -- rendering ------------------------------------------------------------------------
    def _render_header(self) -> str:
        name = self.name + "_total" if self.kind == "counter" else self.name
        return (f"# HELP {name} {_escape_help(self.documentation)}\n"
                f"# TYPE {name} {self.kind}\n")

    def _pairs(self, key: Labels) -> list[str]:
        """``name="value"`` label pairs sorted by name, as prometheus-client writes them."""
        return [f'{n}="{escape_label_value(key[i])}"' for n, i in self._sorted]

    def render_series(self, key: Labels, value: Any) -> str:
        """The text lines of one series (histograms: buckets, ``_count``, ``_sum``)."""
        fmt = _go_float
        pairs = self._pairs(key)
        labels = "{" + ",".join(pairs) + "}" if pairs else ""
        if not self.bounds:
            suffix = "_total" if self.kind == "counter" else ""
            return f"{self.name}{suffix}{labels} {fmt(value)}\n"
        before, after = ",".join(pairs[:self._le_at]), ",".join(pairs[self._le_at:])
        opening = f"{self.name}_bucket{{{before}{',' if before else ''}le=\""
        closing = f"\"{',' if after else ''}{after}}} "
        lines = []
        acc = 0.0
        for le, count in zip(self._les, value[:-1], strict=True):
            acc += count
            lines.append(f"{opening}{le}{closing}{fmt(acc)}\n")
        lines.append(f"{self.name}_count{labels} {fmt(acc)}\n")
        lines.append(f"{self.name}_sum{labels} {fmt(value[-1])}\n")
        return "".join(lines)

    def refresh(self, changed: list[tuple[Labels, Any]]) -> None:
        """Re-render ``changed`` series and rebuild this family's cached bytes."""
        chunks = self._chunks
        for key, value in changed:
            chunks[key] = self.render_series(key, value).encode()
        self.blob = b"".join([self._header, *chunks.values()])

    def family(self, snapshot: list[tuple[Labels, Any]] | None) -> Any:
        """A prometheus-client metric family with ``snapshot``'s samples (None: none)."""
        core = require("prometheus_client.metrics_core", "prometheus", "Prometheus metrics")
        labels = list(self.labelnames)
        if self.kind == "counter":
            fam = core.CounterMetricFamily(self.name, self.documentation, labels=labels)
        elif self.kind == "gauge":
            fam = core.GaugeMetricFamily(self.name, self.documentation, labels=labels)
        else:
            fam = core.HistogramMetricFamily(self.name, self.documentation, labels=labels)
        for key, value in snapshot or ():
            if self.bounds:
                acc, buckets = 0.0, []
                for le, count in zip(self._les, value[:-1], strict=True):
                    acc += count
                    buckets.append((le, acc))
                fam.add_metric(list(key), buckets, value[-1])
            else:
                fam.add_metric(list(key), value)
        return fam


class SeriesCollector:
    """A prometheus-client collector over :class:`Family` objects with cached text.

    It satisfies prometheus-client's ``Collector`` protocol (``collect()``, plus
    ``describe()`` so the registry rejects duplicate names).

    ``lock`` guards every update; callers batch several updates under one acquisition.
    """

    def __init__(self, families: Iterable[Family]) -> None:
        self.families = tuple(families)
        self.lock = threading.Lock()
        self._render_lock = threading.Lock()

    @contextlib.contextmanager
    def replaying(self) -> Iterator[None]:
        """Within: counters and histograms create their series at zero and count nothing;
        gauges are set as usual. For rebuilding state from history."""
        with self.lock:
            counted = [f for f in self.families if f.kind != "gauge"]
            for f in counted:
                f.counting = False
        try:
            yield
        finally:
            with self.lock:
                for f in counted:
                    f.counting = True

    def describe(self) -> list[Any]:
        """The families without samples: lets the registry reject duplicate names."""
        return [f.family(None) for f in self.families]

    def collect(self) -> Iterator[Any]:
        scrape = _SCRAPE.get()
        if scrape is not None:  # render_registry() serves our cached text instead
            scrape.append(self)
            return
        with self.lock:
            snapshots = [(f, [(k, list(v) if f.bounds else v) for k, v in f.values.items()])
                         for f in self.families]
        for fam, snapshot in snapshots:
            yield fam.family(snapshot)

    def exposition(self) -> bytes:
        """This collector's metrics in text format 0.0.4, re-rendering only what changed."""
        with self._render_lock:
            with self.lock:
                changed = [(f, f.take_dirty()) for f in self.families if f.dirty]
            for fam, series in changed:
                fam.refresh(series)
            return b"".join(f.blob for f in self.families)


def render_registry(registry: Any) -> bytes:
    """``registry`` in text format 0.0.4: the other collectors through ``generate_latest``,
    then the cached text of every :class:`SeriesCollector` registered in it."""
    generate_latest = require("prometheus_client", "prometheus",
                              "the metrics exporter").generate_latest
    ours: list[SeriesCollector] = []
    token = _SCRAPE.set(ours)
    try:
        others = generate_latest(registry)
    finally:
        _SCRAPE.reset(token)
    return bytes(others) + b"".join(c.exposition() for c in ours)
