"""Rendering runbooks from Jinja templates, safely.

Templates are named ``<family>.md.j2`` (one per alert/failure family, see
:data:`~reliability.runbooks.evidence.FAMILIES`). The built-in defaults ship inside this
package (``reliability/runbooks/templates``); a project's ``runbooks/`` directory overrides
them by file name and may add more. A family may also have ``<family>.html.j2``; otherwise
the HTML form is the Markdown converted (raw HTML disabled) inside ``_layout.html.j2``.

Besides the evidence variables, templates have the filters ``duration`` (seconds as
``1.5s``/``2.0m``), ``timestamp`` (Unix time as ISO 8601), ``oneline`` (lines folded into
one), ``cell`` (text made safe for one Markdown table cell: folded, pipes escaped) and
``fenced`` (text as a fenced code block).

Every template is rendered in a :class:`jinja2.sandbox.SandboxedEnvironment` with
:class:`jinja2.StrictUndefined`; HTML is autoescaped. An unsafe attribute access, a missing
variable, a syntax error or an unknown family is a :class:`~reliability.errors.RunbookError`
naming the template, the line and the fix.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from reliability._record import record
from reliability.errors import RunbookError
from reliability.runbooks.evidence import Evidence

__all__ = ["BUILTIN_DIR", "Runbook", "RunbookRenderer"]

BUILTIN_DIR = Path(str(resources.files("reliability.runbooks") / "templates"))

#: Bounds of the sandbox: a template may not build a range, string or list larger than
#: these, nor render for longer, so a runaway template is a RunbookError, not a hang.
MAX_RANGE = 10_000
MAX_TEXT = 1_000_000
MAX_SECONDS = 5.0


@record(frozen=True, slots=True)
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


def _oneline(value: Any) -> str:
    """``value``'s lines folded into one, joined with `` ↵ ``."""
    lines = [line.strip() for line in str(value).replace("\r", "\n").split("\n")]
    return " ↵ ".join(line for line in lines if line)


def _cell(value: Any) -> str:
    """Text safe inside one Markdown table cell: folded into one line, backslashes and
    pipes escaped so the text cannot end the cell."""
    return _oneline(value).replace("\\", "\\\\").replace("|", "\\|")


def _fenced(value: Any) -> str:
    """``value`` as a fenced Markdown code block, whatever backticks it holds."""
    text = str(value).rstrip("\n")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text}\n{fence}"


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

        env = _bounded_sandbox()(
            loader=jinja2.FileSystemLoader([str(d) for d in self.template_dirs]),
            undefined=jinja2.StrictUndefined, autoescape=autoescape,
            keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
        env.filters["duration"] = _duration
        env.filters["timestamp"] = _timestamp
        env.filters["oneline"] = _oneline
        env.filters["cell"] = _cell
        env.filters["fenced"] = _fenced
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
            return _render_bounded(env.from_string(source), variables)
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
            return _render_bounded(template, variables)
        except jinja2.TemplateError as exc:
            raise _runbook_error(exc, template.filename or name, variables) from None


def _limit(message: str) -> Exception:
    """A SecurityError marked as a sandbox bound (rather than an access to internals)."""
    from jinja2.exceptions import SecurityError

    exc = SecurityError(message)
    exc.bound = True  # type: ignore[attr-defined]
    return exc


def _too_big(what: str) -> Exception:
    return _limit(f"{what} is larger than the sandbox allows ({MAX_TEXT} characters or "
                  f"items, ranges of {MAX_RANGE})")


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple) else 0


def _bounded_int(value: Any) -> bool:
    return not isinstance(value, int) or isinstance(value, bool) or abs(value) <= MAX_TEXT


@functools.cache
def _bounded_sandbox() -> Any:
    """The sandbox with bounded ranges, repetition, padding, replacement and powers."""
    import re

    from jinja2 import filters
    from jinja2.sandbox import SandboxedEnvironment

    wide = re.compile(r"\d{7,}|\*")  # a width of a million or more, or one taken from args

    def check_text(value: Any) -> None:
        if _size(value) > MAX_TEXT:
            raise _too_big("a value")

    def bounded_range(*args: int) -> range:
        if not all(_bounded_int(a) for a in args):
            raise _too_big("a range")
        r = range(*args)
        if len(r) > MAX_RANGE:
            raise _too_big(f"range{args}")
        return r

    def padded(fn: Any) -> Any:
        def wrapper(value: Any, *args: Any, **kwargs: Any) -> Any:
            if not all(_bounded_int(a) for a in (*args, *kwargs.values())):
                raise _too_big(f"the {fn.__name__} width")
            out = fn(value, *args, **kwargs)
            check_text(out)
            return out
        return wrapper

    def replace(eval_ctx: Any, value: Any, old: Any, new: Any, count: Any = None) -> Any:
        text, o, n = str(value), str(old), str(new)
        if len(text) + text.count(o) * max(0, len(n) - len(o)) > MAX_TEXT or (
                not o and len(text) * len(n) > MAX_TEXT):
            raise _too_big("the replaced text")
        return filters.do_replace(eval_ctx, value, old, new, count)

    def format_(value: Any, *args: Any, **kwargs: Any) -> Any:
        if wide.search(str(value)):
            raise _too_big("the format width")
        return filters.do_format(value, *args, **kwargs)

    replace.jinja_pass_arg = filters.do_replace.jinja_pass_arg  # type: ignore[attr-defined]

    class BoundedSandbox(SandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**", "+", "%"})

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.globals["range"] = bounded_range
            for name in ("center", "indent", "wordwrap", "truncate"):
                self.filters[name] = padded(self.filters[name])
            self.filters["replace"] = replace
            self.filters["format"] = format_

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if operator == "*":
                for seq, times in ((left, right), (right, left)):
                    if isinstance(times, int) and _size(seq) * times > MAX_TEXT:
                        raise _too_big("a repeated value")
            elif operator == "**":
                if (isinstance(left, int) and isinstance(right, int) and abs(left) > 1
                        and right * abs(left).bit_length() > 64 * 1024):
                    raise _too_big("a power")
                if isinstance(right, float | int) and abs(right) > 10_000:
                    raise _too_big("an exponent")
            elif operator == "+":
                if _size(left) + _size(right) > MAX_TEXT:
                    raise _too_big("a concatenation")
            elif operator == "%" and isinstance(left, str) and wide.search(left):
                raise _too_big("the format width")
            return super().call_binop(context, operator, left, right)

        def wrap_str_format(self, value: Any) -> Any:
            owner = getattr(value, "__self__", None)
            if isinstance(owner, str) and wide.search(owner):
                raise _too_big("the format width")
            return super().wrap_str_format(value)

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
            owner = getattr(__obj, "__self__", None)
            if isinstance(owner, str | bytes):
                if not all(_bounded_int(a) for a in (*args, *kwargs.values())):
                    raise _too_big(f"the {__obj.__name__} width")
                if __obj.__name__ in ("format", "format_map") and wide.search(str(owner)):
                    raise _too_big("the format width")
                if __obj.__name__ == "replace" and len(args) >= 2:
                    replace(None, owner, args[0], args[1])  # checks the size only
                if __obj.__name__ == "join" and args:
                    items = args[0]
                    if _size(items) > MAX_TEXT:
                        raise _too_big("a joined list")
            out = super().call(__context, __obj, *args, **kwargs)
            check_text(out)
            return out

    return BoundedSandbox


def _render_bounded(template: Any, variables: Mapping[str, Any]) -> str:
    """Render ``template`` for at most :data:`MAX_SECONDS` and :data:`MAX_TEXT` characters.

    The time is checked on every line the template's own code runs (a trace on its frames
    only), so a loop that prints nothing is stopped too."""
    import sys
    import time

    deadline = time.monotonic() + MAX_SECONDS
    names = {template.filename or "<template>", "<template>"}
    active = True
    late = f"rendering took longer than {MAX_SECONDS:g}s"

    def local(frame: Any, event: str, arg: Any) -> Any:
        if active and time.monotonic() > deadline:
            raise _limit(late)
        return local if active else None

    def on_call(frame: Any, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename in names else None

    previous = sys.gettrace()
    chunks = template.generate(**variables)
    sys.settrace(on_call)
    try:
        parts: list[str] = []
        size = 0
        for chunk in chunks:
            size += len(chunk)
            if size > MAX_TEXT:
                raise _too_big("the rendered runbook")
            if time.monotonic() > deadline:
                raise _limit(late)
            parts.append(chunk)
        return "".join(parts)
    except (OverflowError, MemoryError, RecursionError) as exc:
        raise _limit(f"{exc.__class__.__name__}: {exc}") from None
    finally:
        active = False
        sys.settrace(previous)
        chunks.close()


def _runbook_error(exc: Exception, name: str, variables: Mapping[str, Any]) -> RunbookError:
    import jinja2
    from jinja2.exceptions import SecurityError

    line = getattr(exc, "lineno", None) or _template_line(exc, name)
    where = f"{getattr(exc, 'filename', None) or name}" + (f", line {line}" if line else "")
    if isinstance(exc, SecurityError) and getattr(exc, "bound", False):
        return RunbookError(
            f"runbook template {where} went past the sandbox's bounds: {exc}. Fix: keep "
            "ranges, repeated text and loops small; a runbook shows the evidence, it does "
            "not compute")
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
