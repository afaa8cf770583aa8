"""An HTML report of a journal: verdict, resilience score, a timeline of attempts and faults
as inline SVG, the steady-state probes and the rollbacks. One self-contained file; every
value is escaped (Jinja autoescape), so step names or error text cannot inject markup.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reliability.chaos.journal import Journal

__all__ = ["render_report", "write_report"]

_COLORS = {"succeeded": "#2e7d32", "failed": "#c62828", "worker_lost": "#6a1b9a",
           "timed_out": "#ef6c00", "contract_violated": "#ad1457", "cancelled": "#757575",
           "lost": "#6a1b9a"}
_VERDICT = {"passed": "#2e7d32", "deviated": "#c62828", "aborted": "#ef6c00",
            "failed": "#424242"}

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Chaos report: {{ title }}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
.badge{display:inline-block;padding:.2em .7em;border-radius:1em;color:#fff;font-weight:600}
table{border-collapse:collapse;width:100%;margin:.5em 0 1.5em}
td,th{border-bottom:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}
.ok{color:#2e7d32}.bad{color:#c62828}.muted{color:#777}
svg text{font:12px system-ui,sans-serif}
</style></head><body>
<h1>{{ title }}</h1>
<p class="muted">{{ description }}</p>
<p><span class="badge" style="background:{{ verdict_color }}">{{ status }}</span>
 resilience score <strong>{{ score }}</strong>/100 · seed {{ seed }} · pipeline
 <code>{{ pipeline }}</code> · environment {{ environment }}
 {% if aborted %}<br><strong class="bad">aborted:</strong> {{ aborted }}{% endif %}
 {% if error %}<br><strong class="bad">error:</strong> {{ error }}{% endif %}</p>
<h2>Timeline</h2>
<svg xmlns="http://www.w3.org/2000/svg" width="{{ width }}" height="{{ height }}"
     role="img" aria-label="attempts and faults over time">
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
</svg>
<p class="muted">Bars are attempts (colour = outcome: green succeeded, purple worker lost,
red failed, orange timed out); red triangles are injected faults. Hover for details.</p>
<h2>Faults injected ({{ faults|length }})</h2>
<table><tr><th>fault</th><th>type</th><th>target</th><th>attempt</th><th>source</th>
<th>details</th></tr>
{% for f in faults %}<tr><td>{{ f.fault }}</td><td>{{ f.type }}</td>
<td>{{ f.step or f.target }}</td><td>{{ f.attempt }}</td><td>{{ f.source }}</td>
<td>{{ f.extra }}</td></tr>{% endfor %}</table>
<h2>Steady-state hypothesis</h2>
<table><tr><th>phase</th><th>probe</th><th>result</th><th>detail</th></tr>
{% for phase, probes in checks %}{% for p in probes %}<tr><td>{{ phase }}</td>
<td>{{ p.probe }}</td><td class="{{ 'ok' if p.ok else 'bad' }}">{{ 'held' if p.ok else
'deviated' }}</td><td>{{ p.detail }}</td></tr>{% endfor %}{% endfor %}</table>
<h2>Rollbacks</h2>
<table><tr><th>action</th><th>proxy</th><th>toxic</th><th>reason</th><th>ok</th></tr>
{% for r in rollbacks %}<tr><td>{{ r.action }}</td><td>{{ r.proxy }}</td><td>{{ r.toxic }}</td>
<td>{{ r.reason }}</td><td class="{{ 'ok' if r.ok else 'bad' }}">{{ r.ok }}
{{ r.error or '' }}</td></tr>{% endfor %}</table>
<h2>Runs</h2>
<table><tr><th></th><th>run</th><th>status</th><th>duration (s)</th></tr>
{% for label, run in runs %}<tr><td>{{ label }}</td><td><code>{{ run.run_id }}</code></td>
<td>{{ run.status }}</td><td>{{ run.duration }}</td></tr>{% endfor %}</table>
</body></html>
"""


def _layout(data: dict[str, Any]) -> dict[str, Any]:
    attempts = data.get("attempts", [])
    faults = data.get("faults", [])
    steps = list(dict.fromkeys(a["step"] for a in attempts))
    span = max([a["end"] for a in attempts] + [f.get("t", 0.0) for f in faults] + [0.001])
    left, width, row_h = 130, 1000, 24
    scale = (width - left - 20) / span
    rows, y_of = [], {}
    for i, step in enumerate(steps):
        y = 10 + i * row_h
        y_of[step] = y
        bars = [{"x": round(left + a["start"] * scale, 1),
                 "w": max(2.0, round((a["end"] - a["start"]) * scale, 1)),
                 "color": _COLORS.get(a["status"], "#9e9e9e"),
                 "title": f"{step} attempt {a['attempt']}: {a['status']}"
                          + (f" ({a['error_type']}: {a['error']})" if a.get("error") else "")}
                for a in attempts if a["step"] == step]
        rows.append({"step": step, "y": y, "bars": bars})
    markers = [{"x": round(left + f.get("t", 0.0) * scale, 1),
                "y": y_of.get(f.get("step") or "", 10) + 2,
                "title": f"{f.get('fault')} ({f.get('type')}) on {f.get('step') or f.get('target')}"
                         f" attempt {f.get('attempt')}"} for f in faults]
    return {"rows": rows, "markers": markers, "width": width, "left": left,
            "height": 10 + max(1, len(steps)) * row_h + 30, "span": round(span, 2)}


def render_report(journal: Journal) -> str:
    """The report as an HTML string."""
    import jinja2

    d = journal.data
    env = jinja2.Environment(autoescape=True)  # missing journal fields render empty
    skip = {"fault", "type", "step", "attempt", "source", "time", "t", "target"}
    faults = [{**{k: f.get(k) for k in ("fault", "type", "step", "attempt", "source",
                                          "target")},
               "extra": ", ".join(f"{k}={v}" for k, v in sorted(f.items()) if k not in skip)}
              for f in d.get("faults", [])]
    ss = d.get("steady_state", {})
    runs = [(label, d[key]) for label, key in (("baseline", "baseline"), ("chaos", "run"))
            if d.get(key)]
    return env.from_string(_TEMPLATE).render(
        title=d.get("experiment", {}).get("title", "experiment"),
        description=d.get("experiment", {}).get("description", ""),
        status=journal.status, verdict_color=_VERDICT.get(journal.status, "#424242"),
        score=journal.score, seed=d.get("seed"), pipeline=d.get("pipeline"),
        environment=d.get("environment"), aborted=d.get("aborted"), error=d.get("error"),
        faults=faults, checks=[(p, ss.get(p, [])) for p in ("before", "during", "after")],
        rollbacks=[{"error": None, **r} for r in d.get("rollbacks", [])], runs=runs,
        **_layout(d))


def write_report(journal: Journal, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render_report(journal), encoding="utf-8")
    return p
