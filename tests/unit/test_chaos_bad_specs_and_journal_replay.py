"""Chaos specs with bad input are clear errors, toxic errors match Toxiproxy's, and journals
of the same seed with network faults normalize equal."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from reliability.chaos.experiment import load_experiment
from reliability.chaos.journal import FORMAT, Journal
from reliability.chaos.proxy.errors import ApiError
from reliability.chaos.proxy.toxics import parse_toxic
from reliability.errors import ConfigError


def test_a_fault_type_that_is_not_a_string_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "exp.yaml"
    bad.write_text("title: t\nmethod:\n  - {type: [kill_worker], step: train}\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(bad)
    assert info.value.file == str(bad)
    assert "method[0].type" in str(info.value) and "kill_worker" in str(info.value)


def test_a_service_start_that_is_not_module_class_names_file_and_index(tmp_path: Path) -> None:
    bad = tmp_path / "exp.yaml"
    bad.write_text("title: t\ntarget: {services: [{name: wine, start: nomodule}]}\n"
                   "method:\n  - {type: network, proxy: wine, toxic: latency}\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(bad)
    message = str(info.value)
    assert info.value.file == str(bad)
    assert "target.services[0].start" in message and "module:Class" in message


def _journal(exp_id: str) -> Journal:
    toxic = f"chaos-{exp_id}-lag"
    data: dict[str, Any] = {
        "format": FORMAT, "experiment": {"title": "t"}, "seed": 5, "status": "passed",
        "score": 100.0, "experiment_id": exp_id, "run": {"status": "succeeded"},
        "faults": [{"fault": "lag", "type": "network", "toxic": "latency"}],
        "attempts": [], "steady_state": {"before": [], "after": []},
        "rollbacks": [{"action": "undo toxic", "proxy": "svc", "toxic": toxic, "ok": True}],
    }
    return Journal(copy.deepcopy(data))


def test_same_seed_journals_with_network_faults_normalize_equal() -> None:
    first, second = _journal("5-aaaa1111"), _journal("5-bbbb2222")
    assert first.normalized() == second.normalized()
    assert first.normalized()["rollbacks"] == [
        ("undo toxic", "svc", "chaos-{experiment_id}-lag", True)]


def test_a_toxic_without_type_is_an_invalid_type_as_in_toxiproxy() -> None:
    with pytest.raises(ApiError) as info:
        parse_toxic({"attributes": {"latency": 10}})
    assert info.value.body() == {"error": "invalid toxic type", "status": 400}


def test_a_duplicate_toxic_name_is_409_before_attributes_are_checked() -> None:
    with pytest.raises(ApiError) as info:
        parse_toxic({"type": "latency", "name": "lag", "attributes": {"latency": "x"}},
                    lambda name: name == "lag")
    assert info.value.body() == {"error": "toxic already exists", "status": 409}
