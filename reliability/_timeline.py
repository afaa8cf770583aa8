"""The SVG timeline shared by the HTML reports: one row per step, a bar per attempt
(colour = outcome) and triangles for point events (faults, breaches, lost workers).

:func:`layout` turns attempts and marks into coordinates; :data:`SVG` draws them inside a
template rendered with autoescape, so names and error text cannot inject markup.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["COLORS", "LEGEND", "SVG", "layout"]

COLORS = {"succeeded": "#2e7d32", "failed": "#c62828", "worker_lost": "#6a1b9a",
          "timed_out": "#ef6c00", "contract_violated": "#ad1457", "cancelled": "#757575",
          "lost": "#6a1b9a", "running": "#1565c0"}

LEGEND = ("Bars are attempts (colour = outcome: green succeeded, purple worker lost, red "
          "failed, pink contract violated, orange timed out, grey cancelled, blue still "
          "running); red triangles mark events. Hover for details.")

SVG = """<svg xmlns="http://www.w3.org/2000/svg" width="{{ width }}" height="{{ height }}"
     role="img" aria-label="attempts and events over time">
{% for row in rows %}
 <text x="4" y="{{ row.y + 14 }}">{{ row.step }}</text>
 {% for bar in row.bars %}
 <rect x="{{ bar.x }}" y="{{ row.y + 2 }}" width="{{ bar.w }}" height="16" rx="3"
       fill="{{ bar.color }}"><title>{{ bar.title }}</title></rect>
 {% endfor %}
{% endfor %}
{% for m in markers %}
 <path d="M{{ m.x }},{{ m.y }} l-6,-10 h12 z" fill="#d50000"><title>{{ m.title }}</title></path>
{% endfor %}
 <line x1="{{ left }}" x2="{{ width - 10 }}" y1="{{ height - 20 }}" y2="{{ height - 20 }}"
       stroke="#999"/>
 <text x="{{ left }}" y="{{ height - 5 }}">0 s</text>
 <text x="{{ width - 60 }}" y="{{ height - 5 }}">{{ span }} s</text>
</svg>"""


def layout(attempts: Iterable[Mapping[str, Any]], marks: Iterable[Mapping[str, Any]] = (),
           *, steps: Iterable[str] = ()) -> dict[str, Any]:
    """Coordinates for :data:`SVG`.

    ``attempts``: ``step``, ``attempt``, ``status``, ``start``, ``end`` (seconds from the
    timeline's origin), optionally ``error_type``/``error``. ``marks``: ``t`` (seconds),
    ``step`` (or None) and ``title``. ``steps`` fixes the row order (default: first seen).
    """
    attempts = [a for a in attempts if isinstance(a, Mapping)]
    marks = [m for m in marks if isinstance(m, Mapping)]
    order = list(dict.fromkeys([*map(str, steps), *(str(a.get("step")) for a in attempts)]))
    span = max([_seconds(a.get("end")) for a in attempts]
               + [_seconds(m.get("t")) for m in marks] + [0.001])
    left, width, row_h = 130, 1000, 24
    scale = (width - left - 20) / span
    rows, y_of = [], {}
    for i, step in enumerate(order):
        y = 10 + i * row_h
        y_of[step] = y
        bars = []
        for a in attempts:
            if str(a.get("step")) != step:
                continue
            start, end = _seconds(a.get("start")), _seconds(a.get("end"))
            status = str(a.get("status", "unknown"))
            error = f" ({a.get('error_type')}: {a['error']})" if a.get("error") else ""
            bars.append({"x": round(left + start * scale, 1),
                         "w": max(2.0, round((end - start) * scale, 1)),
                         "color": COLORS.get(status, "#9e9e9e"),
                         "title": f"{step} attempt {a.get('attempt')}: {status}{error}"})
        rows.append({"step": step, "y": y, "bars": bars})
    markers = [{"x": round(left + _seconds(m.get("t")) * scale, 1),
                "y": y_of.get(str(m.get("step") or ""), 10) + 2, "title": m.get("title", "")}
               for m in marks]
    return {"rows": rows, "markers": markers, "width": width, "left": left,
            "height": 10 + max(1, len(order)) * row_h + 30, "span": round(span, 2)}


def _seconds(value: Any) -> float:
    """Seconds from the timeline's origin; anything that is no finite number >= 0 (a
    hand-edited or truncated record) is drawn at the origin rather than failing the page."""
    try:
        seconds = float(value)
    except (TypeError, ValueError, OverflowError):
        return 0.0
    return seconds if math.isfinite(seconds) and seconds >= 0 else 0.0
