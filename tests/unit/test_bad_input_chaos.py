"""Chaos inputs naming things that do not exist, impossible toxics, unreadable journals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sample_pipelines import chain

from reliability.chaos.experiment import check_experiment, load_experiment
from reliability.chaos.explore import explore
from reliability.chaos.journal import Journal
from reliability.chaos.leases import LeaseStore
from reliability.errors import ConfigError


def _experiment(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "title": "t",
        "target": {"services": [{"name": "wine", "upstream": "127.0.0.1:9",
                                 "param": "signal_dir"}]},
        "method": [{"type": "network", "proxy": "wine", "toxic": "latency",
                    "attributes": {"latency": 5}}],
    }
    base.update(extra)
    return base


def _check(data: dict[str, Any]) -> None:
    spec, file = load_experiment(data)
    check_experiment(spec, chain, file=file, env="local")


def test_the_valid_experiment_passes() -> None:
    _check(_experiment())


@pytest.mark.parametrize(("change", "path", "needle"), [
    ({"method": [{"type": "network", "proxy": "nosuch", "toxic": "latency"}],
      "blast_radius": {"proxies": ["wine", "nosuch"]}},
     "method[0].proxy", "not a service of the target"),
    ({"rollbacks": [{"type": "remove_toxics", "proxy": "nosuch"}]},
     "rollbacks[0].proxy", "not a service of the target"),
    ({"params": {"rowz": 3}}, "params.rowz", "has no parameter 'rowz'"),
    ({"target": {"services": [{"name": "wine", "upstream": "127.0.0.1:9", "param": "url"}]}},
     "target.services[0].param", "has no parameter 'url'"),
    ({"target": {"services": [{"name": "wine", "upstream": "127.0.0.1:9"},
                              {"name": "wine", "upstream": "127.0.0.1:8"}]}},
     "target.services[1].name", "used twice"),
])
def test_references_to_missing_things(change: dict[str, Any], path: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle) as info:
        _check(_experiment(**change))
    assert info.value.key_path == path
    assert info.value.fix


def test_negative_toxic_attribute() -> None:
    bad = _experiment(method=[{"type": "network", "proxy": "wine", "toxic": "latency",
                               "attributes": {"latency": -5}}])
    with pytest.raises(ConfigError, match="latency=-5 must be >= 0"):
        load_experiment(bad)


def test_explore_rejects_unknown_steps_and_kinds_before_running(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'nuke' is not one of the choices"):
        explore(chain, home=tmp_path / "home", kinds=["nuke"])
    with pytest.raises(ConfigError, match="'nosuch' is not one of the choices"):
        explore(chain, home=tmp_path / "home", steps=["nosuch"])
    assert not (tmp_path / "home").exists()


def test_unreadable_journals(tmp_path: Path) -> None:
    binary = tmp_path / "j.json"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="cannot read the journal"):
        Journal.load(binary)
    with pytest.raises(ConfigError, match="is a directory"):
        Journal.load(tmp_path)


def test_lease_store_under_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot open the chaos lease store"):
        LeaseStore(blocker / "chaos" / "state.db")
