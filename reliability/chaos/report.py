"""An HTML report of a journal: verdict, resilience score, a timeline of attempts and faults
as inline SVG, the steady-state probes and the rollbacks. One self-contained file; every
value is escaped (Jinja autoescape), so step names or error text cannot inject markup.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reliability._timeline import LEGEND, SVG, layout
from reliability.chaos.journal import Journal

__all__ = ["render_report", "write_report"]

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
{% include "timeline" %}
<p class="muted">{{ legend }} Here the triangles are injected faults.</p>
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
    marks = [{"t": f.get("t", 0.0), "step": f.get("step"),
              "title": f"{f.get('fault')} ({f.get('type')}) on "
                       f"{f.get('step') or f.get('target')} attempt {f.get('attempt')}"}
             for f in data.get("faults", [])]
    return layout(data.get("attempts", []), marks)


def render_report(journal: Journal) -> str:
    """The report as an HTML string."""
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    d = journal.data
    # missing journal fields render empty
    env = SandboxedEnvironment(autoescape=True, loader=jinja2.DictLoader({"timeline": SVG}))
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
        legend=LEGEND, **_layout(d))


def write_report(journal: Journal, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render_report(journal), encoding="utf-8")
    return p
