"""Rendering runbooks from Jinja templates, safely.

Templates are named ``<family>.md.j2`` (one per alert/failure family, see
:data:`~reliability.runbooks.evidence.FAMILIES`). The built-in defaults ship inside this
package (``reliability/runbooks/templates``); a project's ``runbooks/`` directory overrides
them by file name and may add more. A family may also have ``<family>.html.j2``; otherwise
the HTML form is the Markdown converted (raw HTML disabled) inside ``_layout.html.j2``.

Every template is rendered in a :class:`jinja2.sandbox.SandboxedEnvironment` with
:class:`jinja2.StrictUndefined`; HTML is autoescaped. An unsafe attribute access, a missing
variable, a syntax error or an unknown family is a :class:`~reliability.errors.RunbookError`
naming the template, the line and the fix.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from reliability.errors import RunbookError
from reliability.runbooks.evidence import Evidence

__all__ = ["BUILTIN_DIR", "Runbook", "RunbookRenderer"]

BUILTIN_DIR = Path(str(resources.files("reliability.runbooks") / "templates"))


@dataclass(frozen=True, slots=True)
class Runbook:
    """One rendered runbook."""

    family: str
    name: str
    markdown: str
    html: str


def _duration(seconds: Any) -> str:
    if seconds is None:
        return "n/a"
    s = float(seconds)
    if s < 120:
        return f"{s:.1f}s"
    if s < 7200:
        return f"{s / 60:.1f}m"
    return f"{s / 3600:.1f}h"


def _timestamp(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, dt.UTC).isoformat(timespec="seconds")
    return str(value)


class RunbookRenderer:
    """Renders runbook templates: project ``template_dirs`` first, then the built-ins."""

    def __init__(self, template_dirs: Iterable[str | Path] = (), *,
                 base_url: str | None = None, builtin: bool = True) -> None:
        self.template_dirs = [Path(d) for d in template_dirs if Path(d).is_dir()]
        if builtin:
            self.template_dirs.append(BUILTIN_DIR)
        self.base_url = base_url.rstrip("/") if base_url else None
        self._md = self._env(autoescape=False)
        self._html = self._env(autoescape=True)

    def _env(self, *, autoescape: bool) -> Any:
        import jinja2
        from jinja2.sandbox import SandboxedEnvironment

        env = SandboxedEnvironment(
            loader=jinja2.FileSystemLoader([str(d) for d in self.template_dirs]),
            undefined=jinja2.StrictUndefined, autoescape=autoescape,
            keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
        env.filters["duration"] = _duration
        env.filters["timestamp"] = _timestamp
        return env

    # -- discovery ------------------------------------------------------------------------
    def families(self) -> dict[str, Path]:
        """Family name -> the template file that will be used (project before built-in)."""
        found: dict[str, Path] = {}
        for d in self.template_dirs:
            for f in sorted(d.glob("*.md.j2")):
                if not f.name.startswith("_"):
                    found.setdefault(f.name.removesuffix(".md.j2"), f)
        return found

    def url_for(self, family: str, pipeline: str | None = None) -> str | None:
        if self.base_url is None:
            return None
        return f"{self.base_url}/{pipeline}/{family}.html" if pipeline else \
            f"{self.base_url}/{family}.html"

    # -- rendering ------------------------------------------------------------------------
    def render(self, evidence: Evidence) -> Runbook:
        """Render ``evidence`` with its family's template, to Markdown and HTML."""
        variables = evidence.variables()
        if variables.get("runbook_url") is None and self.base_url:
            variables["runbook_url"] = self.url_for(evidence.family, evidence.pipeline)
        md = self._render(self._md, f"{evidence.family}.md.j2", variables)
        html_name = f"{evidence.family}.html.j2"
        if self._has(html_name):
            html = self._render(self._html, html_name, variables)
        else:
            body = _markdown_to_html(md)
            html = self._render(self._html, "_layout.html.j2",
                                {**variables, "body": _markup(body)})
        return Runbook(evidence.family, evidence.slug, md, html)

    def render_string(self, source: str, variables: Mapping[str, Any], *,
                      html: bool = False) -> str:
        """Render template text in the same sandbox (used by tests and previews)."""
        import jinja2

        env = self._html if html else self._md
        try:
            return str(env.from_string(source).render(**variables))
        except jinja2.TemplateError as exc:
            raise _runbook_error(exc, "<string>", variables) from None

    def write(self, evidence: Evidence, out_dir: str | Path) -> list[Path]:
        """Render and write ``<slug>.md`` and ``<slug>.html`` into ``out_dir``."""
        book = self.render(evidence)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / f"{book.name}.md", out / f"{book.name}.html"]
        for path, text in zip(paths, (book.markdown, book.html), strict=True):
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)
        return paths

    def _has(self, name: str) -> bool:
        return any((d / name).is_file() for d in self.template_dirs)

    def _render(self, env: Any, name: str, variables: Mapping[str, Any]) -> str:
        import jinja2

        try:
            template = env.get_template(name)
        except jinja2.TemplateNotFound:
            known = sorted(self.families())
            raise RunbookError(
                f"no runbook template {name!r} in {[str(d) for d in self.template_dirs]}. "
                f"Fix: use one of the families {known} or add {name} to the project's "
                "runbooks/ directory") from None
        except jinja2.TemplateError as exc:
            raise _runbook_error(exc, name, variables) from None
        except (UnicodeDecodeError, OSError) as exc:
            where = next((str(d / name) for d in self.template_dirs if (d / name).exists()), name)
            raise RunbookError(f"runbook template {where} cannot be read "
                               f"({exc.__class__.__name__}). Fix: save it as UTF-8 text"
                               ) from None
        try:
            return str(template.render(**variables))
        except jinja2.TemplateError as exc:
            raise _runbook_error(exc, template.filename or name, variables) from None


def _runbook_error(exc: Exception, name: str, variables: Mapping[str, Any]) -> RunbookError:
    import jinja2
    from jinja2.exceptions import SecurityError

    line = getattr(exc, "lineno", None) or _template_line(exc, name)
    where = f"{getattr(exc, 'filename', None) or name}" + (f", line {line}" if line else "")
    if isinstance(exc, SecurityError):
        return RunbookError(
            f"runbook template {where} tried an unsafe operation: {exc}. Fix: templates "
            "may only read the evidence variables; remove the access to internals")
    if isinstance(exc, jinja2.UndefinedError):
        return RunbookError(
            f"runbook template {where} uses an undefined variable: {exc.message}. Fix: use "
            f"one of {sorted(variables)} (test optional ones with `{{% if name %}}`)")
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return RunbookError(f"runbook template {where} has a syntax error: {exc.message}. "
                            "Fix: correct the Jinja syntax on that line")
    return RunbookError(f"runbook template {where} failed: {exc}. Fix: correct the template")


def _template_line(exc: BaseException, filename: str) -> int | None:
    """The template line a runtime error happened on (Jinja maps frames to templates)."""
    tb, line = exc.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename in (filename, "<template>"):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _markup(html: str) -> Any:
    from markupsafe import Markup

    return Markup(html)  # noqa: S704 -- produced by markdown-it with raw HTML disabled


def _markdown_to_html(text: str) -> str:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    return str(md.render(text))
