from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from reliability._spec import Spec, load_model
from reliability.errors import ConfigError
from reliability.project import find_project


class Inner(Spec):
    threshold: float = Field(gt=0)


class Outer(Spec):
    name: str
    items: list[Inner] = []


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "spec.yaml"
    p.write_text(text)
    return p


def test_unknown_key_names_file_path_and_suggests(tmp_path: Path) -> None:
    p = _write(tmp_path, "name: x\nitems:\n  - threshhold: 1\n")
    with pytest.raises(ConfigError) as err:
        load_model(p, Outer)
    e = err.value
    assert e.file == str(p) and e.key_path == "items[0].threshhold"
    assert "unknown key" in str(e) and "did you mean 'threshold'" in str(e)


def test_wrong_type_and_impossible_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"items\[0\]\.threshold.*greater than 0"):
        load_model(_write(tmp_path, "name: x\nitems: [{threshold: -1}]\n"), Outer)
    with pytest.raises(ConfigError, match=r"items.*valid list"):
        load_model(_write(tmp_path, "name: x\nitems: 3\n"), Outer)


def test_malformed_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"malformed YAML at line 2"):
        load_model(_write(tmp_path, "name: x\n  bad: [\n"), Outer)
    with pytest.raises(ConfigError, match="file not found"):
        load_model(tmp_path / "nope.yaml", Outer)
    with pytest.raises(ConfigError, match="file is empty"):
        load_model(_write(tmp_path, ""), Outer)
    with pytest.raises(ConfigError, match=r"name: Field required\. Fix: add this required key"):
        load_model(_write(tmp_path, "items: []\n"), Outer)


def test_unsafe_yaml_tags_are_refused(tmp_path: Path) -> None:
    p = _write(tmp_path, "name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_model(p, Outer)


def test_project_file_is_found_in_parents(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RELIABILITY_HOME", raising=False)
    (tmp_path / "reliability.yaml").write_text("pipeline: mypkg.pipe:pipeline\nworkers: 3\n")
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    proj = find_project(sub)
    assert proj.root == tmp_path and proj.pipeline_ref == "mypkg.pipe:pipeline"
    assert proj.spec.workers == 3 and proj.home == tmp_path / ".reliability"
    monkeypatch.setenv("RELIABILITY_HOME", str(tmp_path / "elsewhere"))
    assert find_project(sub).home == tmp_path / "elsewhere"  # the variable wins
    (tmp_path / "reliability.yaml").write_text("workers: 0\n")
    with pytest.raises(ConfigError, match="workers"):
        find_project(sub)
