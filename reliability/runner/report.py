"""An HTML page of one run from the ledger: status, a timeline of every attempt with the
run's notable events, the steps with their input and output hashes, the attempts and the
audit events. One self-contained file (``reliability runs show RUN --html FILE``); every
value is escaped by the sandboxed, autoescaping template.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from reliability._timeline import LEGEND, SVG, layout
from reliability.runner.ledger import Ledger, RunRecord

__all__ = ["render_run_report", "write_run_report"]

_STATUS = {"succeeded": "#2e7d32", "failed": "#c62828", "cancelled": "#757575",
           "running": "#1565c0", "pending": "#9e9e9e"}
_MARKED = {"worker_lost", "fault_injected", "sla_breached", "contract_violated",
           "step_timed_out", "run_cancelled"}

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Run {{ run.run_id }}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
.badge{display:inline-block;padding:.2em .7em;border-radius:1em;color:#fff;font-weight:600}
table{border-collapse:collapse;width:100%;margin:.5em 0 1.5em}
td,th{border-bottom:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}
code{font-size:12px}.muted{color:#777}.bad{color:#c62828}
svg text{font:12px system-ui,sans-serif}
</style></head><body>
<h1>{{ run.pipeline }} <code>{{ run.run_id }}</code></h1>
<p><span class="badge" style="background:{{ color }}">{{ run.status }}</span>
 {{ duration }} · started {{ started }} UTC · code <code>{{ run.code_version }}</code>
 {% if run.trigger %}· trigger {{ run.trigger }}{% endif %}
 {% if run.interval_start %}<br>data interval [{{ run.interval_start }},
 {{ run.interval_end }}){% endif %}
 <br>parameters <code>{{ params }}</code>
 {% if run.error %}<br><strong class="bad">{{ run.error }}</strong>{% endif %}</p>
<h2>Timeline</h2>
{% include "timeline" %}
<p class="muted">{{ legend }}</p>
<h2>Steps</h2>
<table><tr><th>step</th><th>status</th><th>attempts</th><th>inputs (sha256)</th>
<th>output (sha256)</th><th>bytes</th><th>error</th></tr>
{% for s in steps %}<tr><td>{{ s.step }}</td><td>{{ s.status }}</td><td>{{ s.attempts }}</td>
<td>{% for k, v in s.inputs %}<code>{{ k }}={{ v[:12] }}</code><br>{% endfor %}</td>
<td><code title="{{ s.output_hash or '' }}">{{ (s.output_hash or '-')[:16] }}</code></td>
<td>{{ s.output_size or '-' }}</td><td class="bad">{{ s.error or '' }}</td></tr>{% endfor %}
</table>
<h2>Attempts</h2>
<table><tr><th>step</th><th>#</th><th>status</th><th>worker pid</th><th>started (UTC)</th>
<th>seconds</th><th>error</th></tr>
{% for a in attempts %}<tr><td>{{ a.step }}</td><td>{{ a.attempt }}</td><td>{{ a.status }}</td>
<td>{{ a.worker_pid }}</td><td>{{ a.started }}</td><td>{{ a.seconds }}</td>
<td class="bad">{{ a.error }}</td></tr>{% endfor %}</table>
<h2>Events ({{ events|length }})</h2>
<table><tr><th>time (UTC)</th><th>kind</th><th>step</th><th>details</th></tr>
{% for e in events %}<tr><td>{{ e.time }}</td><td>{{ e.kind }}</td><td>{{ e.step or '' }}</td>
<td><code>{{ e.details }}</code></td></tr>{% endfor %}</table>
</body></html>
"""


def _ts(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) if t else "-"


def render_run_report(rec: RunRecord, steps: list[dict[str, Any]],
                      attempts: list[dict[str, Any]], events: list[dict[str, Any]],
                      *, now: float | None = None) -> str:
    """The page as an HTML string (rows as returned by the :class:`Ledger` methods)."""
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    starts = [a["started_at"] for a in attempts] + [rec.started_at or rec.created_at]
    t0 = min(t for t in starts if t is not None)
    end_of_running = now if now is not None else time.time()
    bars = [{"step": a["step"], "attempt": a["attempt"], "status": a["status"],
             "error_type": a["error_type"], "error": a["error"],
             "start": a["started_at"] - t0,
             "end": (a["ended_at"] or end_of_running) - t0} for a in attempts]
    marks = [{"t": e["time"] - t0, "step": e["step"],
              "title": f"{e['kind']}" + (f" at {e['step']}" if e["step"] else "")
                       + (f": {e['details'].get('error') or e['details'].get('fault') or ''}"
                          if isinstance(e["details"], dict) else "")}
             for e in events if e["kind"] in _MARKED]
    env = SandboxedEnvironment(autoescape=True, loader=jinja2.DictLoader({"timeline": SVG}))
    return env.from_string(_TEMPLATE).render(
        run=rec, color=_STATUS.get(rec.status, "#424242"),
        duration=f"{rec.duration:.2f} s" if rec.duration is not None else "not finished",
        started=_ts(rec.started_at or rec.created_at),
        params=json.dumps(rec.params, sort_keys=True, default=str), legend=LEGEND,
        steps=[{**s, "inputs": sorted(json.loads(s["input_hashes"] or "{}").items())}
               for s in steps],
        attempts=[{**a, "started": _ts(a["started_at"]),
                   "seconds": (f"{a['ended_at'] - a['started_at']:.3f}" if a["ended_at"]
                               else "running"),
                   "error": f"{a['error_type']}: {a['error']}" if a["error_type"] else ""}
                  for a in attempts],
        events=[{**e, "time": _ts(e["time"]),
                 "details": json.dumps(e["details"], sort_keys=True, default=str)[:400]}
                for e in events],
        **layout(bars, marks, steps=[s["step"] for s in steps]))


def write_run_report(ledger: Ledger, run_id: str, path: str | Path) -> Path:
    """Write the page of run ``run_id`` (a unique prefix will do) to ``path``."""
    rec = ledger.get_run(run_id)
    html = render_run_report(rec, ledger.steps(rec.run_id), ledger.attempts(rec.run_id),
                             ledger.events(rec.run_id))
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(html, encoding="utf-8")
    return p
