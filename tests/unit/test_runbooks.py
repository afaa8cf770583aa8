"""Runbook rendering: sandboxed, strict, overridable by file name, HTML escaped."""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability.errors import RunbookError, SLAError
from reliability.runbooks import FAMILIES, Evidence, RunbookRenderer

ROOT = Path(__file__).resolve().parents[2]


def evidence(**kw: object) -> Evidence:
    base: dict[str, object] = {
        "family": "step_failed", "pipeline": "reference", "run_id": "reference-1",
        "summary": "train failed", "step": "train", "error": "boom",
        "interval": {"start": "2026-01-01T00:00:00+00:00",
                     "end": "2026-01-02T00:00:00+00:00"}}
    base.update(kw)
    return Evidence(**base)  # type: ignore[arg-type]


def test_every_family_has_a_builtin_with_all_sections() -> None:
    renderer = RunbookRenderer()
    assert set(renderer.families()) == set(FAMILIES)
    for family in FAMILIES:
        md = renderer.render(evidence(family=family)).markdown
        for section in ("## Meaning", "## Impact", "## Evidence", "## Diagnosis",
                        "## Mitigation", "## Escalation"):
            assert section in md, (family, section)
        assert "reliability resume reference-1" in md
        assert ("reliability backfill reference --start 2026-01-01T00:00:00+00:00 "
                "--end 2026-01-02T00:00:00+00:00") in md


def test_project_templates_override_by_file_name(tmp_path: Path) -> None:
    (tmp_path / "step_failed.md.j2").write_text("custom for {{ step }}\n")
    (tmp_path / "quality_gate.md.j2").write_text("gate {{ pipeline }}\n")
    renderer = RunbookRenderer([tmp_path])
    assert renderer.render(evidence()).markdown == "custom for train\n"
    assert renderer.render(evidence(family="quality_gate")).markdown == "gate reference\n"
    assert "## Meaning" in renderer.render(evidence(family="worker_lost")).markdown


def test_reference_project_overrides_render() -> None:
    renderer = RunbookRenderer([ROOT / "runbooks"])
    assert renderer.families()["contract_violation"].parent == ROOT / "runbooks"
    md = renderer.render(evidence(
        family="contract_violation", failures=[{
            "contract": "raw", "column": "alcohol", "check": "in_range(0, 20)",
            "failure_count": 2, "failure_cases": [-1.0, 99.0]}])).markdown
    assert "wine" in md and "in_range(0, 20)" in md and "-1.0, 99.0" in md
    gate = renderer.render(evidence(error_type="QualityGateFailed")).markdown
    assert "quality gate" in gate


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ pipeline.__class__.__init__.__globals__ }}",
    "{{ evidence_func.__code__ }}",
    "{% for c in ().__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
])
def test_sandbox_escapes_are_refused(tmp_path: Path, source: str) -> None:
    (tmp_path / "step_failed.md.j2").write_text(source)
    renderer = RunbookRenderer([tmp_path])
    with pytest.raises(RunbookError, match=r"unsafe|undefined") as err:
        renderer.render(evidence())
    assert "step_failed.md.j2" in str(err.value)
    assert isinstance(err.value, SLAError)


def test_missing_variable_names_it_and_the_available_ones(tmp_path: Path) -> None:
    (tmp_path / "step_failed.md.j2").write_text("line one\n{{ owner_email }}\n")
    with pytest.raises(RunbookError, match=r"line 2.*'owner_email' is undefined") as err:
        RunbookRenderer([tmp_path]).render(evidence())
    assert "pipeline" in str(err.value) and "Fix:" in str(err.value)


def test_missing_key_of_optional_mapping_is_an_error() -> None:
    with pytest.raises(RunbookError, match="undefined"):
        RunbookRenderer().render_string("{{ breach.sla }}", {"breach": {}})


def test_syntax_error_and_unknown_family(tmp_path: Path) -> None:
    (tmp_path / "step_failed.md.j2").write_text("{% if %}")
    with pytest.raises(RunbookError, match="syntax error"):
        RunbookRenderer([tmp_path]).render(evidence())
    with pytest.raises(RunbookError, match=r"no runbook template 'nope\.md\.j2'.*step_failed"):
        RunbookRenderer().render(evidence(family="nope"))


def test_html_is_escaped() -> None:
    evil = "<script>alert(1)</script>"
    book = RunbookRenderer().render(evidence(summary=evil, error=evil))
    assert "<script>" not in book.html
    assert "&lt;script&gt;" in book.html
    assert evil in book.markdown


def test_html_template_is_autoescaped(tmp_path: Path) -> None:
    (tmp_path / "step_failed.html.j2").write_text("<p>{{ error }}</p>")
    book = RunbookRenderer([tmp_path]).render(evidence(error="<b>x</b>"))
    assert book.html == "<p>&lt;b&gt;x&lt;/b&gt;</p>"


def test_write_and_runbook_url(tmp_path: Path) -> None:
    renderer = RunbookRenderer(base_url="https://runbooks.example/")
    paths = renderer.write(evidence(), tmp_path / "out")
    assert [p.name for p in paths] == ["step_failed-train.md", "step_failed-train.html"]
    assert renderer.url_for("step_failed", "reference") == \
        "https://runbooks.example/reference/step_failed.html"
