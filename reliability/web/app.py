"""The pages of ``reliability serve``: plain server-rendered HTML over one home.

Routes (GET and HEAD unless noted)::

    /                                     home: firing alerts, latest runs
    /runs?pipeline=&status=&limit=        the run list
    /runs/RUN                             a run's page (``runs show --html``)
    /runbooks/PIPELINE/FAMILY.html?step=&run=&sla=
                                          the runbook behind an alert's runbook_url, rendered
                                          from the ledger's evidence of the latest
                                          production failure of that family
    /alerts                               the on-call page: what fired, when, what to do
    /alerts/ID, /alerts/ID/runbook        one stored alert, its runbook as rendered on arrival
    POST /alerts/webhook                  Alertmanager's webhook receiver
    /chaos, /chaos/ID                     chaos reports of the home's journals
    /metrics                              Prometheus metrics fed from the ledger
    /healthz                              ``ok``

Every value is escaped by sandboxed autoescaping templates; a bad path, query or body gets
a 4xx page naming the problem, and an unexpected error a 500 page: the server stays up.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from reliability._record import record
from reliability.errors import ConfigError, LedgerError, ReliabilityError
from reliability.runbooks.evidence import FAMILIES, Evidence
from reliability.runner.ledger import Ledger, RunRecord

__all__ = ["OnCallApp", "Response"]

HTML = "text/html; charset=utf-8"
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
MAX_LIMIT = 1000
RUN_STATUSES = ("pending", "running", "succeeded", "failed", "cancelled")
_TEMPLATES = Path(__file__).with_name("templates")
_ID = re.compile(r"[A-Za-z0-9_.:-]{1,200}")
_BODY = re.compile(r"<body[^>]*>", re.IGNORECASE)
_ROUTES = [(re.compile(pattern), name) for pattern, name in (
    (r"/", "index"), (r"/healthz", "healthz"), (r"/favicon\.ico", "favicon"),
    (r"/metrics", "scrape"), (r"/runs", "runs"), (r"/runs/(?P<run_id>[^/]+)", "run_page"),
    (r"/runbooks/(?P<pipeline>[^/]+)/(?P<family>[^/]+)\.html", "runbook"),
    (r"/alerts", "alerts"), (r"/alerts/(?P<alert_id>[0-9]{1,12})", "alert_page"),
    (r"/alerts/(?P<alert_id>[0-9]{1,12})/runbook", "alert_runbook"),
    (r"/chaos", "chaos_list"), (r"/chaos/(?P<journal_id>[^/]+)", "chaos_report"))]
_NAV = ('<nav id="nav" style="font:600 14px system-ui,sans-serif;padding:.6em 0;'
        'border-bottom:1px solid #ddd;margin-bottom:1em"><a href="/">pipeline reliability</a>'
        ' · <a href="/alerts">Alerts</a> · <a href="/runs">Runs</a> · <a href="/chaos">Chaos'
        '</a> · <a href="/metrics">Metrics</a>{extra}</nav>')


@record
class Response:
    status: int
    body: bytes
    content_type: str = HTML
    headers: list[tuple[str, str]] = field(default_factory=list)


class HTTPError(ReliabilityError):
    """A request the server refuses: its status and a message for the page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class OnCallApp:
    """Routes requests to pages over ``home``'s ledger, store, runbooks and chaos journals.

    ``base_url`` is where this server is reached (links inside runbooks); ``runbooks_dir``
    holds the project's runbook templates; ``metrics`` serves ``/metrics`` when given.
    """

    def __init__(self, home: str | Path, *, base_url: str = "http://127.0.0.1:8080",
                 runbooks_dir: str | Path | None = None, metrics: Any = None) -> None:
        import jinja2
        from jinja2.sandbox import SandboxedEnvironment

        from reliability.runbooks.render import RunbookRenderer

        self.home = Path(home)
        self.base_url = base_url.rstrip("/")
        self.ledger = Ledger(self.home / "ledger.db")
        self.lock = threading.RLock()  # one ledger connection, one request at a time on it
        self.renderer = RunbookRenderer([runbooks_dir] if runbooks_dir else [],
                                        base_url=f"{self.base_url}/runbooks")
        self.metrics = metrics
        self._pages = SandboxedEnvironment(
            loader=jinja2.FileSystemLoader(str(_TEMPLATES)), autoescape=True,
            undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)

    def close(self) -> None:
        with self.lock:
            self.ledger.close()

    # -- dispatch -------------------------------------------------------------------------
    def handle(self, method: str, target: str, headers: Mapping[str, str],
               body: bytes = b"") -> Response:
        """Answer one request; never raises."""
        try:
            return self._dispatch(method, target, headers, body)
        except HTTPError as exc:
            page = self.error_page(exc.status, str(exc))
            if exc.status == 405:
                page.headers.append(("Allow", "GET, HEAD, POST"))
            return page
        except (ConfigError, LedgerError) as exc:
            return self.error_page(400 if isinstance(exc, ConfigError) else 404, str(exc))
        except ReliabilityError as exc:  # e.g. a runbook template that fails to render
            return self.error_page(500, str(exc))
        except Exception as exc:
            import logging

            logging.getLogger("reliability.web").exception("error serving %s", target[:200])
            return self.error_page(500, f"internal error ({exc.__class__.__name__}); see the "
                                    "server's log")

    def _dispatch(self, method: str, target: str, headers: Mapping[str, str],
                  body: bytes) -> Response:
        url = urlsplit(target)
        try:
            path = unquote(url.path, errors="strict")
        except UnicodeDecodeError:
            raise HTTPError(400, "the path is not UTF-8 once percent-decoded") from None
        try:
            params = parse_qs(url.query, keep_blank_values=True, max_num_fields=20)
        except (ValueError, UnicodeDecodeError):
            raise HTTPError(400, "bad query string (at most 20 fields)") from None
        query = {k: v[-1] for k, v in params.items()}
        if method == "POST":
            if path != "/alerts/webhook":
                raise HTTPError(405, f"POST is only accepted at /alerts/webhook, not {path}")
            return self.webhook(body)
        if method not in ("GET", "HEAD"):
            raise HTTPError(405, f"method {method} is not allowed; use GET")
        for pattern, name in _ROUTES:
            m = pattern.fullmatch(path.rstrip("/") or "/")
            if m:
                handler = getattr(self, name)
                return handler(query=query, params=params, headers=headers,  # type: ignore[no-any-return]
                               **m.groupdict())
        raise HTTPError(404, "no such page; see the links above")

    # -- pages ----------------------------------------------------------------------------
    def _page(self, name: str, **variables: Any) -> Response:
        html = self._pages.get_template(name).render(**variables)
        return Response(200, html.encode())

    def error_page(self, status: int, message: str) -> Response:
        from http import HTTPStatus

        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
        html = self._pages.get_template("error.html.j2").render(
            status=status, reason=reason, message=message)
        return Response(status, html.encode())

    def healthz(self, **_: Any) -> Response:
        return Response(200, b"ok\n", TEXT)

    def favicon(self, **_: Any) -> Response:
        return Response(204, b"", TEXT)

    def index(self, **_: Any) -> Response:
        with self.lock:
            runs = self.ledger.list_runs(limit=20)
            firing = len(self.ledger.alerts(status="firing", limit=MAX_LIMIT))
        return self._page("index.html.j2", home=str(self.home), firing=firing,
                          runs=[_run_row(r) for r in runs])

    def runs(self, query: dict[str, str], **_: Any) -> Response:
        status = query.get("status") or None
        if status is not None and status not in RUN_STATUSES:
            raise HTTPError(400, f"status={status!r} is not one of {list(RUN_STATUSES)}")
        limit = _number(query.get("limit") or "50", name="limit")
        if not 1 <= limit <= MAX_LIMIT:
            raise HTTPError(400, f"limit={limit} must be between 1 and {MAX_LIMIT}")
        pipeline = query.get("pipeline") or None
        with self.lock:
            runs = self.ledger.list_runs(pipeline, limit=limit, status=status)
        return self._page("runs.html.j2", runs=[_run_row(r) for r in runs], pipeline=pipeline,
                          status=status, limit=limit, statuses=RUN_STATUSES,
                          max_limit=MAX_LIMIT)

    def run_page(self, run_id: str, **_: Any) -> Response:
        _ident(run_id, "run id")
        from reliability.runbooks.from_ledger import run_evidence
        from reliability.runner.report import render_run_report

        with self.lock:
            rec = self.ledger.get_run(run_id)
            html = render_run_report(rec, self.ledger.steps(rec.run_id),
                                     self.ledger.attempts(rec.run_id),
                                     self.ledger.events(rec.run_id))
            evidence = run_evidence(self.ledger, rec, home=str(self.home))
        links = "".join(
            f' · <a class="runbook" href="{_esc(self._runbook_href(e))}">runbook: '
            f"{_esc(e.family)}{_esc(' at ' + e.step if e.step else '')}</a>" for e in evidence)
        return Response(200, _with_nav(html, links).encode())

    def _runbook_href(self, ev: Evidence, *, absolute: bool = False) -> str:
        q = f"?run={quote(ev.run_id, safe='')}" + (f"&step={quote(ev.step, safe='')}"
                                                   if ev.step else "")
        path = f"/runbooks/{quote(ev.pipeline, safe='')}/{ev.family}.html{q}"
        return self.base_url + path if absolute else path

    def render_runbook(self, pipeline: str, family: str, *, step: str | None = None,
                       run_id: str | None = None, sla: str | None = None,
                       before: float | None = None, strict: bool = True
                       ) -> tuple[Evidence | None, str]:
        """The evidence of the failure behind an alert and its runbook page (HTML).

        A template that fails to render raises, unless not ``strict``: then the page says
        why, and the evidence is still returned.
        """
        from reliability.runbooks.from_ledger import find_evidence

        with self.lock:
            ev = find_evidence(self.ledger, pipeline, family, step=step, run_id=run_id,
                               sla=sla, before=before, home=str(self.home))
        shown = ev or Evidence(
            family=family, pipeline=pipeline, run_id="RUN_ID", step=step,
            summary=f"No production failure of this kind is recorded for pipeline "
                    f"{pipeline!r}{f' at step {step!r}' if step else ''}: this is the "
                    "generic runbook.", home=str(self.home))
        try:
            return ev, self.renderer.render(shown).html
        except ReliabilityError as exc:
            if strict:
                raise
            page = self.error_page(500, f"the runbook could not be rendered: {exc}")
            return ev, page.body.decode()

    def runbook(self, pipeline: str, family: str, query: dict[str, str], **_: Any
                ) -> Response:
        if family not in FAMILIES and family not in self.renderer.families():
            raise HTTPError(404, f"no runbook family {family!r}; known: "
                                 f"{sorted(self.renderer.families())}")
        _ident(pipeline, "pipeline")
        run_id = query.get("run") or None
        ev, html = self.render_runbook(
            pipeline, family, step=query.get("step") or None,
            run_id=_ident(run_id, "run id") if run_id else None,
            sla=query.get("sla") or None)
        extra = (f' · evidence from run <a id="evidence-run" href="/runs/'
                 f'{quote(ev.run_id, safe="")}"><code>{_esc(ev.run_id)}</code></a>'
                 if ev else "")
        return Response(200, _with_nav(html, extra).encode())

    def alerts(self, **_: Any) -> Response:
        with self.lock:
            rows = self.ledger.alerts(limit=MAX_LIMIT)
            commands = {a.run_id: self._resume(a.run_id) for a in rows if a.run_id}
        return self._page("alerts.html.j2", alerts=[
            {"id": a.id, "status": a.status, "alertname": a.alertname, "labels": a.labels,
             "annotations": a.annotations, "starts_at": a.starts_at, "ends_at": a.ends_at,
             "run_id": a.run_id, "command": commands.get(a.run_id or "")}
            for a in rows])

    def _resume(self, run_id: str) -> str | None:
        """The command that finishes ``run_id``; None once it succeeded (or is gone)."""
        from reliability.runbooks.evidence import shell_quote

        try:
            status = self.ledger.get_run(run_id).status
        except LedgerError:
            return None
        if status == "succeeded":
            return None
        return f"reliability resume {shell_quote(run_id)} --home {shell_quote(str(self.home))}"

    def alert_page(self, alert_id: str, **_: Any) -> Response:
        return self._alert(int(alert_id), runbook=False)

    def alert_runbook(self, alert_id: str, **_: Any) -> Response:
        return self._alert(int(alert_id), runbook=True)

    def _alert(self, alert_id: int, *, runbook: bool) -> Response:
        with self.lock:
            alert = self.ledger.get_alert(alert_id)
        if runbook:
            if alert.runbook is None:
                raise HTTPError(404, f"alert {alert_id} has no runbook (it was first seen "
                                     "resolved, or names no pipeline)")
            extra = f' · alert <a href="/alerts/{alert.id}">{_esc(alert.alertname)}</a>' + (
                f' · evidence from run <a id="evidence-run" href="/runs/'
                f'{quote(alert.run_id, safe="")}"><code>{_esc(alert.run_id)}</code></a>'
                if alert.run_id else "")
            return Response(200, _with_nav(alert.runbook, extra).encode())
        from reliability.web.alerts import target_of

        target = target_of(alert.labels, alert.annotations)
        live = None
        if target is not None:
            live = f"/runbooks/{quote(target.pipeline, safe='')}/{target.family}.html" + (
                f"?step={quote(target.step, safe='')}" if target.step else "")
        return self._page("alert.html.j2", alert=alert, live_url=live)

    def webhook(self, body: bytes) -> Response:
        import json

        from reliability.web.alerts import parse_webhook, store_alerts

        alerts = parse_webhook(body)

        def render(target: Any, before: float | None) -> tuple[Evidence | None, str | None]:
            if target.family not in FAMILIES and target.family not in \
                    self.renderer.families():
                return None, None
            return self.render_runbook(target.pipeline, target.family, step=target.step,
                                       sla=target.sla, before=before, strict=False)

        with self.lock:
            stored = store_alerts(self.ledger, alerts, render)
        answer = {"stored": [{"id": a.id, "status": a.status, "run_id": a.run_id,
                              "url": f"{self.base_url}/alerts/{a.id}"} for a in stored]}
        return Response(200, json.dumps(answer).encode(), JSON)

    def chaos_list(self, **_: Any) -> Response:
        import json

        from reliability.chaos.journal import FORMAT

        folder = self.home / "chaos" / "journals"
        journals = []
        files = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        for f in files[:MAX_LIMIT]:
            try:
                d = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if not isinstance(d, dict) or d.get("format") != FORMAT:
                continue
            exp = d.get("experiment") if isinstance(d.get("experiment"), dict) else {}
            journals.append({"id": f.stem, "title": (exp or {}).get("title", f.stem),
                             "status": d.get("status"), "score": d.get("score"),
                             "seed": d.get("seed"), "pipeline": d.get("pipeline"),
                             "written": time.strftime("%Y-%m-%d %H:%M:%S",
                                                      time.gmtime(f.stat().st_mtime))})
        return self._page("chaos.html.j2", journals=journals, folder=str(folder))

    def chaos_report(self, journal_id: str, **_: Any) -> Response:
        _ident(journal_id, "journal id")
        from reliability.chaos.journal import Journal
        from reliability.chaos.report import render_report

        path = self.home / "chaos" / "journals" / f"{journal_id}.json"
        if not path.is_file():
            raise HTTPError(404, f"no chaos journal {journal_id!r}")
        return Response(200, _with_nav(render_report(Journal.load(path)), "").encode())

    def scrape(self, headers: Mapping[str, str], params: dict[str, list[str]], **_: Any
               ) -> Response:
        from reliability.sla.exporter import _gzip_accepted, render_metrics

        if self.metrics is None:
            raise HTTPError(404, "metrics are off on this server")
        body, content_type = render_metrics(self.metrics.registry, headers.get("Accept"),
                                            params)
        if _gzip_accepted(headers.get("Accept-Encoding")):
            import gzip

            return Response(200, gzip.compress(body, compresslevel=1), content_type,
                            [("Content-Encoding", "gzip")])
        return Response(200, body, content_type)


def _with_nav(html: str, extra: str) -> str:
    nav = _NAV.format(extra=extra)
    m = _BODY.search(html)
    return html[:m.end()] + nav + html[m.end():] if m else nav + html


def _esc(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))


def _ident(text: str, what: str) -> str:
    if not _ID.fullmatch(text):
        raise HTTPError(404, f"{what} {text[:80]!r} is not a valid name (letters, digits, "
                             "'_', '-', '.', ':')")
    return text


def _number(text: str, *, name: str = "id") -> int:
    if not text.isdigit() or len(text) > 12:
        raise HTTPError(400 if name != "id" else 404, f"{name}={text[:40]!r} is not a number")
    return int(text)


def _run_row(r: RunRecord) -> dict[str, Any]:
    return {"run_id": r.run_id, "pipeline": r.pipeline, "status": r.status,
            "trigger": r.trigger, "error": (r.error or "")[:200],
            "created": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.created_at)),
            "seconds": f"{r.duration:.2f}" if r.duration is not None else "",
            "interval_start": r.interval_start, "interval_end": r.interval_end}
