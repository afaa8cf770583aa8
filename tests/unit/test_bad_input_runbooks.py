"""Runaway runbook templates end in a RunbookError within the sandbox's bounds."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import reliability.runbooks.render as render
from reliability.errors import RunbookError
from reliability.runbooks.render import RunbookRenderer


@pytest.fixture
def renderer(monkeypatch: pytest.MonkeyPatch) -> RunbookRenderer:
    monkeypatch.setattr(render, "MAX_SECONDS", 0.5)
    return RunbookRenderer()


@pytest.mark.parametrize("source", [
    "{{ range(10**9)|list }}",
    "{{ 'a'*10**9 }}",
    "{{ ['a']*10**8 }}",
    "{{ 'a'|center(10**9) }}",
    "{{ 'a'.ljust(10**9) }}",
    "{{ 'x'|indent(10**9) }}",
    "{{ ('x'*100000)|replace('x', 'x'*100000) }}",
    "{{ ('x'*100000).replace('x', 'x'*100000) }}",
    "{{ '{:>999999999}'.format(1) }}",
    "{{ '%999999999d' % 1 }}",
    "{{ 7**99999999 }}",
    "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
    "{% for i in range(10000) %}{% for j in range(10000) %}x{% endfor %}{% endfor %}",
    "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
])
def test_runaway_templates_are_runbook_errors(renderer: RunbookRenderer, source: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(RunbookError, match="bounds") as info:
        renderer.render_string(source, {})
    assert time.monotonic() - t0 < 3
    assert "Fix:" in str(info.value)


def test_a_runaway_project_template_names_its_file(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from reliability.runbooks.evidence import Evidence

    monkeypatch.setattr(render, "MAX_SECONDS", 0.5)
    (tmp_path / "step_failed.md.j2").write_text("# {{ 'a'*10**9 }}\n")
    renderer = RunbookRenderer([tmp_path])
    evidence = Evidence(family="step_failed", pipeline="p", run_id="r", summary="s")
    with pytest.raises(RunbookError, match=r"step_failed.md.j2, line 1 went past"):
        renderer.render(evidence)


def test_ordinary_templates_still_render(renderer: RunbookRenderer) -> None:
    out = renderer.render_string(
        "{{ 'ab'*3 }} {{ range(3)|list }} {{ '{:>4}'.format(1) }} {{ 'x'|center(5) }}"
        "|{{ '%3d' % 7 }} {{ 2**10 }} {{ 'a-b'|replace('-', '+') }}", {})
    assert out == "ababab [0, 1, 2]    1   x  |  7 1024 a+b"
