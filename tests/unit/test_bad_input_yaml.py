"""Hostile spec files: deep nesting, alias bombs, huge values, duplicate keys and project
files that are not files end in one ConfigError naming the file, fast, for every spec kind."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reliability.chaos.experiment import check_experiment, load_experiment
from reliability.chaos.proxy import load_config
from reliability.contracts.loader import load_contracts
from reliability.errors import ConfigError
from reliability.pipeline import Pipeline
from reliability.project import find_project
from reliability.schedule import load_schedules
from reliability.sla.spec import load_slas


def _chain(ref: str | None = None) -> Pipeline:
    from sample_pipelines import chain

    return chain


def _contracts(path: Path) -> Any:
    return load_contracts(path.parent, _chain())


def _chaos(path: Path) -> Any:
    spec, file = load_experiment(path)
    check_experiment(spec, _chain(), file=file, env="local")
    return spec


def _schedule(path: Path) -> Any:
    return load_schedules(path, resolve=_chain)


def _project(path: Path) -> Any:
    return find_project(path.parent)


#: spec kind -> (file name, loader as the CLI calls it)
KINDS: dict[str, tuple[str, Callable[[Path], Any]]] = {
    "contracts": ("out.yaml", _contracts),
    "chaos": ("exp.yaml", _chaos),
    "sla": ("chain.sla.yaml", load_slas),
    "schedule": ("a.schedule.yaml", _schedule),
    "project": ("reliability.yaml", _project),
}


def _refused(tmp_path: Path, kind: str, text: str, *, within: float = 2.0) -> ConfigError:
    name, load = KINDS[kind]
    f = tmp_path / kind / name
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(text, encoding="utf-8")
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load(f)
    assert time.monotonic() - t0 < within
    assert info.value.file == str(f) or info.value.file == str(f.resolve())
    assert len(str(info.value)) < 1000
    return info.value


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_deep_nesting_is_a_config_error_in_every_spec_kind(tmp_path: Path, kind: str) -> None:
    err = _refused(tmp_path, kind, "method: " + "[" * 500 + "]" * 500 + "\n")
    assert "nesting is deeper than" in err.reason
    err = _refused(tmp_path, kind, "".join("  " * i + f"k{i}:\n" for i in range(300)))
    assert "at line 64" in err.reason


BOMB = "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n"
               for p, c in zip("abcdefgh", "bcdefghi", strict=True))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_an_alias_bomb_is_refused_fast(tmp_path: Path, kind: str) -> None:
    text = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + BOMB
    err = _refused(tmp_path, kind, text, within=1.0)
    assert "expands to more than" in err.reason


def test_an_alias_bomb_in_sla_steps_is_refused_fast(tmp_path: Path) -> None:
    text = ("pipeline: chain\nx: &a {max_duration: 5}\n" +
            "".join(f"y{i}: &{c} [{', '.join([f'*{p}'] * 10)}]\n"
                    for i, (p, c) in enumerate(zip("abcdefgh", "bcdefghi", strict=True)))
            + "steps: {source: *i}\n")
    err = _refused(tmp_path, "sla", text, within=1.0)
    assert "aliases" in err.reason


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path: Path) -> None:
    err = _refused(tmp_path, "sla", "pipeline: chain\nsteps: &s {source: *s}\n")
    assert "contains it" in err.reason


def test_a_huge_value_is_cut_in_the_message(tmp_path: Path) -> None:
    err = _refused(tmp_path, "sla", "pipeline: chain\nrun: {max_duration: " + "x" * 200_000 +
                   "}\n")
    assert "characters cut" in str(err)
    err = _refused(tmp_path, "schedule", "schedules:\n- name: a\n  cron: '" + "1" * 200_000
                   + "'\n")
    assert "characters cut" in str(err)


def test_an_oversized_file_is_refused_before_parsing(tmp_path: Path) -> None:
    err = _refused(tmp_path, "sla", "# " + "x" * (5 * 1024 * 1024) + "\npipeline: chain\n")
    assert "larger than 2 MB" in err.reason


def test_a_document_of_too_many_values_is_refused_fast(tmp_path: Path) -> None:
    err = _refused(tmp_path, "sla", "- x\n" * 120_000, within=5.0)
    assert "more than 100000 values" in err.reason


def test_duplicate_keys_name_both_lines(tmp_path: Path) -> None:
    text = ("pipeline: chain\nrun:\n  max_duration: 10m\nsteps:\n  source: {max_duration: 5}\n"
            "run:\n  freshness: 26h\n")
    err = _refused(tmp_path, "sla", text)
    assert "key 'run' appears twice (lines 2 and 6)" in err.reason
    err = _refused(tmp_path, "schedule", "schedules:\n- name: a\n  cron: '0 * * * *'\n"
                   "  name: b\n")
    assert "lines 2 and 4" in err.reason


def test_merge_keys_may_still_be_overridden(tmp_path: Path) -> None:
    f = tmp_path / "chain.sla.yaml"
    f.write_text("pipeline: chain\nbase: &b {max_duration: 5, severity: ticket}\n"
                 "steps:\n  source:\n    <<: *b\n    max_duration: 7\n".replace(
                     "base: &b", "run: &b"))
    sset = load_slas(f)
    assert sset.for_step("source").max_duration == 7  # type: ignore[union-attr]


def test_unreadable_yaml_values_are_config_errors(tmp_path: Path) -> None:
    err = _refused(tmp_path, "schedule", "schedules:\n- name: a\n  cron: '0 * * * *'\n"
                   "  start: 2026-13-45\n")
    assert "cannot be read" in err.reason


def test_deeply_nested_proxy_config_is_a_config_error(tmp_path: Path) -> None:
    for depth in (500, 100_000):
        f = tmp_path / f"deep{depth}.json"
        f.write_text("[" * depth + "]" * depth)
        with pytest.raises(ConfigError) as info:
            load_config(f)
        assert info.value.file == str(f)
    f = tmp_path / "digits.json"
    f.write_text('[{"name": "a", "listen": "127.0.0.1:0", "upstream": ' + "1" * 5000 + "}]")
    with pytest.raises(ConfigError) as info:
        load_config(f)
    assert info.value.file == str(f)


@pytest.mark.parametrize("kind", ["directory", "loop", "devnull", "dangling"])
def test_a_project_file_that_is_not_a_file_is_an_error(tmp_path: Path, kind: str) -> None:
    f = tmp_path / "reliability.yaml"
    if kind == "directory":
        f.mkdir()
    elif kind == "loop":
        os.symlink(f, f)
    elif kind == "devnull":
        os.symlink("/dev/null", f)
    else:
        os.symlink(tmp_path / "nowhere.yaml", f)
    with pytest.raises(ConfigError) as info:
        find_project(tmp_path)
    assert info.value.file == str(f)


def test_a_bad_pipeline_value_names_the_project_file_and_key(tmp_path: Path) -> None:
    f = tmp_path / "reliability.yaml"
    f.write_text("pipeline: not a reference\n")
    with pytest.raises(ConfigError) as info:
        find_project(tmp_path)
    assert (info.value.file, info.value.key_path) == (str(f), "pipeline")
    f.write_text("pipeline: no_such_module_here:pipeline\n")
    with pytest.raises(ConfigError) as info:
        find_project(tmp_path).load_pipeline()
    assert (info.value.file, info.value.key_path) == (str(f), "pipeline")
    assert "no_such_module_here" in info.value.reason


def test_sla_check_fails_on_a_duplicate_run_key(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from reliability.cli.main import main

    f = tmp_path / "chain.sla.yaml"
    f.write_text("pipeline: chain\nrun:\n  max_duration: 10m\nrun:\n  freshness: 26h\n")
    monkeypatch.chdir(tmp_path)
    assert main(["sla", "check", "--sla", str(f)]) == 2
    err = capsys.readouterr().err
    assert "'run' appears twice (lines 2 and 4)" in " ".join(err.split())
